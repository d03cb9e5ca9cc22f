"""``embedlab index build|update|info`` and ``embedlab search``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from embedlab.cli.encode_cmd import add_ray_options
from embedlab.cli.help import examples
from embedlab.cli.index_images import image_limits, image_options, search_by_image
from embedlab.errors import EmbedlabError

ROOT_HELP = "collections folder (default: $EMBEDLAB_COLLECTIONS, else the per-user data folder; see `index list`)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index",
        help="build, update, list and describe searchable collections of documents",
        description="Collections: PDF, text, Markdown and HTML files indexed for search (dense vectors and "
        "BM25), kept in a per-user data folder unless --root or $EMBEDLAB_COLLECTIONS says otherwise.",
        epilog=examples(
            "embedlab index build lib ~/papers --model all-MiniLM-L6-v2",
            "embedlab index list",
            "embedlab index info lib",
        ),
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    b = actions.add_parser(
        "build",
        help="index a folder into a new collection",
        description="Read a folder (PDF, text, Markdown, HTML; recursively, hidden files left out), cut the "
        "text into chunks of --chunk-tokens model tokens, embed them with --model and write a new "
        "collection: chunk store, vectors, BM25 index and a manifest of how it was made.  The collection "
        "is written as one generation and switched to atomically; `index update` re-reads the folder later.",
        epilog=examples(
            "embedlab index build lib ~/papers --model all-MiniLM-L6-v2",
            "embedlab index build lib ~/papers --model all-MiniLM-L6-v2 --chunk-tokens 128 --overlap 16 --replace",
            "embedlab index build scifact-256 --dataset scifact --model all-MiniLM-L6-v2",
            "embedlab index build photos --images ~/photos --model efficientnet-lite0",
            "embedlab index build catalogue --images ~/catalogue --model ./my-clip-folder",
            "embedlab index build lib ~/papers --model all-MiniLM-L6-v2 --index milvus:index=HNSW,m=16",
            "embedlab index build big /mnt/corpus --model all-MiniLM-L6-v2 --engine ray --ray-address auto --actors 8",
        ),
    )
    b.add_argument("collection", nargs="?", help="collection name (a new one unless --replace)")
    b.add_argument("folder", type=Path, nargs="?", help="library folder (read recursively; hidden files are left out)")
    b.add_argument(
        "--dataset",
        "-d",
        help="index a BEIR dataset's corpus instead (one file per document), "
        "to score the collection with `embedlab eval --collection`",
    )
    b.add_argument(
        "--images",
        type=Path,
        metavar="FOLDER",
        help="index a folder of images instead (PNG, JPEG, WebP; one image per document; other, corrupt, "
        "over-size files skipped) with an image model or a CLIP/SigLIP folder; default: documents",
    )
    b.add_argument(
        "--collection",
        "-c",
        dest="collection_option",
        metavar="NAME",
        help="deprecated spelling of the positional collection name (`index build FOLDER --collection NAME` "
        "still works)",
    )
    b.add_argument(
        "--model", "-m", required=True, help="embedding model: NAME or NAME:key=value,... (`embedlab models`)"
    )
    b.add_argument("--chunk-tokens", type=int, default=256, help="chunk budget in the model's tokens")
    b.add_argument("--overlap", type=int, default=32, help="tokens shared by consecutive chunks")
    b.add_argument("--replace", action="store_true", help="rebuild an existing collection from scratch")
    b.add_argument(
        "--ann-threshold",
        type=int,
        default=None,
        help="chunks from which an HNSW index is built (default 50000, or 1 with --index; exact search below)",
    )
    b.add_argument(
        "--index",
        metavar="KIND[:key=value,...]",
        default=None,
        help="vector index kind built at or above --ann-threshold, kept by `index update` (default faiss-hnsw): "
        "milvus (Milvus Lite inside the collection, or milvus:uri=http://HOST:19530,index=HNSW,m=16), "
        "chroma (embedded, or chroma:host=HOST,port=8000), or another registered kind",
    )
    _library_options(b)
    image_options(b)
    add_ray_options(b)
    _common(b)
    b.set_defaults(handler=run_build)

    u = actions.add_parser(
        "update",
        help="re-read a collection's folder: index new and changed files, drop deleted",
        description="Re-read the folder a collection was built from (or --folder): new and changed files "
        "are indexed, deleted ones dropped, unchanged ones kept; the options of the build are kept.",
        epilog=examples("embedlab index update lib", "embedlab index update lib --folder /mnt/papers"),
    )
    u.add_argument("collection", help="collection name")
    u.add_argument("--folder", type=Path, help="read this folder instead (the library moved)")
    add_ray_options(u)
    _common(u)
    u.set_defaults(handler=run_update)

    i = actions.add_parser(
        "info",
        help="counts, model, chunking, size and skipped files of a collection",
        description="What a collection holds and how it was made; no model is loaded.",
        epilog=examples("embedlab index info lib", "embedlab index info lib --json"),
    )
    i.add_argument("collection", help="collection name")
    i.add_argument("--root", type=Path, help=ROOT_HELP)
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(handler=run_info)

    li = actions.add_parser(
        "list",
        help="the collections in the collections folder: generation, chunks, model, size, path",
        description="One row per collection under the collections folder (--root, $EMBEDLAB_COLLECTIONS or "
        "the per-user data folder); only manifests are read.",
        epilog=examples("embedlab index list", "embedlab index list --root ./collections --json"),
    )
    li.add_argument("--root", type=Path, help=ROOT_HELP)
    li.add_argument("--json", action="store_true", help="print JSON")
    li.set_defaults(handler=run_list)

    s = sub.add_parser(
        "search",
        help="search a collection",
        description="Dense, BM25 or hybrid (RRF) search of a collection, optionally re-ranked.  BM25 alone "
        "loads no embedding model.  With --image FILE the query is an image (dense search through the "
        "model's image tower).  For many queries, `embedlab serve` keeps the model loaded.",
        epilog=examples(
            'embedlab search lib "how do I fit a model with scipy"',
            'embedlab search lib "scipy curve_fit" --mode bm25 --k 5 --json',
            'embedlab search lib "fit a model" --pipeline "bm25 + dense | rrf:k=30 >> word-overlap@50"',
            "embedlab search photos --image ~/query.jpg --k 5",
            'embedlab search catalogue "a red bicycle"',
        ),
    )
    s.add_argument("collection", help="collection name")
    s.add_argument("query", nargs="?", help="what to look for (or --image FILE)")
    s.add_argument(
        "--image",
        type=Path,
        metavar="FILE",
        help="search with this image instead of a text query (PNG, JPEG, WebP; dense only); default: none",
    )
    s.add_argument("--k", "-k", type=int, default=10, help="number of results")
    s.add_argument(
        "--mode",
        default=None,
        help="first-stage retrieval: dense, bm25 or hybrid (default hybrid; dense for an image collection)",
    )
    s.add_argument("--rrf-k", type=float, default=60.0, help="RRF constant")
    s.add_argument("--weights", default="1,1", help="hybrid weights DENSE,BM25")
    s.add_argument("--filter", dest="path_filter", help="glob on file paths, e.g. 'papers/*.pdf' (or path=GLOB)")
    s.add_argument("--rerank", help="re-ranker: a local cross-encoder folder, or word-overlap")
    s.add_argument("--rerank-depth", type=int, default=20, help="first-stage results re-ranked")
    s.add_argument(
        "--pipeline",
        help="the whole pipeline instead of --mode/--rrf-k/--weights/--rerank, e.g. "
        "'bm25 + dense | rrf:k=30,weights=1/2 >> word-overlap@50'",
    )
    s.add_argument("--model", "-m", help="query model (default: the collection's; must match its fingerprint)")
    s.add_argument("--root", type=Path, help=ROOT_HELP)
    s.add_argument("--json", action="store_true", help="print the response as JSON")
    s.set_defaults(handler=run_search)


def _library_options(p: argparse.ArgumentParser) -> None:
    from embedlab.data.library import DEFAULT_MAX_CHUNKS, DEFAULT_MAX_PAGES, DEFAULT_MAX_TEXT_BYTES

    g = p.add_argument_group("reading the library (kept for `index update`)")
    g.add_argument(
        "--follow-links",
        action="store_true",
        help="also index symbolic links that lead outside the folder (default: skipped)",
    )
    g.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out files or folders matching GLOB (gitignore-like, repeatable; also read from the "
        "folder's .embedlabignore); listed as skipped",
    )
    g.add_argument(
        "--max-pages",
        type=int,
        default=DEFAULT_MAX_PAGES,
        help=f"skip a PDF with more pages (default {DEFAULT_MAX_PAGES})",
    )
    g.add_argument(
        "--max-text-mb",
        type=float,
        default=DEFAULT_MAX_TEXT_BYTES / 1_000_000,
        help=f"skip a file with more text, in MB (default {DEFAULT_MAX_TEXT_BYTES // 1_000_000})",
    )
    g.add_argument(
        "--max-chunks",
        type=int,
        default=DEFAULT_MAX_CHUNKS,
        help=f"skip a file that makes more chunks (default {DEFAULT_MAX_CHUNKS})",
    )


def _library_rules(args: argparse.Namespace):
    from embedlab.data.library import LibraryRules

    text_mb = args.max_text_mb
    if not text_mb > 0 or text_mb == float("inf"):  # also NaN
        raise EmbedlabError("invalid --max-text-mb", found=repr(text_mb), expected="a number of megabytes > 0")
    return LibraryRules(
        follow_links=args.follow_links,
        exclude=tuple(args.exclude),
        max_pages=args.max_pages,
        max_text_bytes=max(1, round(text_mb * 1_000_000)),
        max_chunks=args.max_chunks,
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, help=ROOT_HELP)
    p.add_argument(
        "--cache-dir", type=Path, help="embedding cache folder (default $EMBEDLAB_CACHE or ~/.cache/embedlab)"
    )
    p.add_argument("--no-cache", action="store_true", help="read and write no embedding cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def _print_report(report) -> None:
    if report.up_to_date:
        print(
            f"{report.name}: up to date (generation {report.generation}, {report.files} files, {report.chunks} chunks)"
        )
    else:
        print(
            f"{report.name}: generation {report.generation}: {report.files} files, {report.chunks} chunks "
            f"({report.files_new} new, {report.files_changed} changed, {report.files_unchanged} unchanged, "
            f"{report.files_removed} removed files; +{report.chunks_added} / -{report.chunks_removed} chunks; "
            f"{report.encoded} encoded, {report.cache_hits} from cache) in {report.seconds:.1f} s, "
            f"{_size(report.size_bytes)}"
        )
        index = report.index
        if index.get("recall_at_10") is not None:  # an approximate kind, measured at build
            print(
                f"  dense index: {_kind_name(index['kind'])} {index['params']}, "
                f"recall@10 {index['recall_at_10']:.3f} vs exact ({index['recall_queries']} sample queries)"
            )
        drift = report.corpus_drift
        if drift is not None:
            from embedlab.collection.generation import describe_drift

            shifted = "the added chunks differ from the collection" if drift["p_value"] < 0.01 else "no clear shift"
            print(
                f"  corpus drift: {describe_drift(drift['statistic'], drift['p_value'], drift['chunks_added'])} "
                f"vs generation {drift['previous_generation']} ({shifted}; `embedlab monitor check` can alert on it)"
            )
    if report.skipped:
        print(f"skipped {len(report.skipped)} file{'s' if len(report.skipped) != 1 else ''}:")
        for path, reason in report.skipped:
            print(f"  {path}: {reason}")


def run_build(args: argparse.Namespace) -> int:
    from embedlab.api.collections import build_collection
    from embedlab.encoders.spec import parse_model_spec

    deprecated = _collection_and_folder(args)
    if sum(x is not None for x in (args.folder, args.dataset, args.images)) != 1:
        raise EmbedlabError(
            "give a library folder, --images FOLDER or --dataset NAME (one of the three)",
            expected="embedlab index build NAME FOLDER --model MODEL",
        )
    limits = image_limits(args)
    from embedlab.collection.layout import CollectionDir
    from embedlab.output import check_output_folder

    check_output_folder(
        CollectionDir(args.collection, root=args.root).root,
        option="--root" if args.root is not None else "collections folder",
    )
    folder = args.folder
    if args.dataset is not None:
        from embedlab.collection.corpus import corpus_folder
        from embedlab.data.beir import load_dataset

        folder = corpus_folder(load_dataset(args.dataset), cache_dir=args.cache_dir)
    rules = _library_rules(args)
    report = build_collection(
        folder if args.images is None else args.images,
        args.collection,
        model=parse_model_spec(args.model),
        chunk_tokens=args.chunk_tokens,
        overlap=args.overlap,
        root=args.root,
        replace=args.replace,
        cache=False if args.no_cache else (args.cache_dir or True),
        ann_threshold=args.ann_threshold,
        index=args.index,
        follow_links=rules.follow_links,
        exclude=rules.exclude,
        max_pages=rules.max_pages,
        max_text_bytes=rules.max_text_bytes,
        max_chunks=rules.max_chunks,
        images=args.images is not None,
        max_image_bytes=limits.max_bytes,
        max_image_pixels=limits.max_pixels,
        show_progress=not args.no_progress,
        **_engine(args),
    )
    _print_report(report)
    print(f"collection folder: {CollectionDir(args.collection, root=args.root).path.absolute()}")
    if deprecated:  # after the work, so an error stays one line
        print(
            "embedlab: note: --collection is deprecated here: write `embedlab index build NAME FOLDER`", file=sys.stderr
        )
    return 0


def _collection_and_folder(args: argparse.Namespace) -> bool:
    """``index build NAME FOLDER`` and the deprecated ``index build FOLDER --collection NAME`` to one
    form; True when the deprecated spelling was used."""
    deprecated = args.collection_option is not None
    if deprecated:
        if args.folder is not None:
            raise EmbedlabError(
                "the collection is named twice",
                found=f"{args.collection!r} and --collection {args.collection_option!r}",
                expected="embedlab index build NAME FOLDER (--collection is the old spelling)",
            )
        if args.collection is not None:
            args.folder = Path(args.collection)
        args.collection = args.collection_option
    if args.collection is None:
        raise EmbedlabError("no collection name", expected="embedlab index build NAME FOLDER --model MODEL")
    return deprecated


def run_list(args: argparse.Namespace) -> int:
    from embedlab.collection.layout import collections_root
    from embedlab.collection.listing import summaries
    from embedlab.reports.terminal import print_table

    root = collections_root(args.root)
    rows = summaries(root)
    if args.json:
        print(json.dumps({"root": str(root.absolute()), "collections": [vars(r) for r in rows]}, indent=2))
        return 0
    if not rows:
        print(f"no collections in {root.absolute()}")
        return 0
    print_table(
        f"collections in {root.absolute()}",
        ["name", "generation", "files", "chunks", "model", "size", "path", "problem"],
        [[r.name, r.generation, r.files, r.chunks, r.model, _size(r.size_bytes), r.path, r.problem] for r in rows],
    )
    return 0


def run_update(args: argparse.Namespace) -> int:
    from embedlab.api.collections import update_collection

    report = update_collection(
        args.collection,
        root=args.root,
        folder=args.folder,
        cache=False if args.no_cache else (args.cache_dir or True),
        show_progress=not args.no_progress,
        **_engine(args),
    )
    _print_report(report)
    return 0


def _engine(args: argparse.Namespace) -> dict[str, Any]:
    """``--engine`` and the Ray options as the API's keywords (it checks them before loading a model)."""
    return {
        "engine": args.engine,
        "ray_address": args.ray_address,
        "actors": args.actors,
        "num_gpus_per_actor": args.num_gpus_per_actor,
    }


def run_info(args: argparse.Namespace) -> int:
    from embedlab.collection import info

    data = info(args.collection, root=args.root)
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    counts, chunking, index = data["counts"], data["chunking"], data["index"]
    encoder = data["encoder"]
    print(f"collection {data['name']} (generation {data['generation']}, {data['path']})")
    print(f"  folder:   {data['source_folder']}")
    print(
        f"  model:    {data['model']} ({encoder['backend']}, {encoder['pooling']} pooling, "
        f"max {encoder['max_length']} tokens, dim {data['dim']}, {data['metric']})"
    )
    reading, images = data["library"], data["images"]
    if images is not None:
        print(
            f"  images:   one per document; per image at most {images['max_bytes'] / 1024 / 1024:g} MiB and "
            f"{images['max_pixels']:,} pixels ({images['decoding']})"
        )
    else:
        print(f"  chunking: {chunking['max_tokens']} tokens, overlap {chunking['overlap']} ({chunking['counter']})")
    print(
        f"  reading:  links out of the folder {'followed' if reading['follow_links'] else 'skipped'}; per file at "
        f"most {reading['max_pages']} PDF pages, {reading['max_text_bytes'] / 1_000_000:g} MB of text, "
        f"{reading['max_chunks']} chunks"
    )
    kinds = ", ".join(f"{n} {kind}" for kind, n in data["files_by_kind"].items()) or "none"
    print(
        f"  content:  {counts['files']} files ({kinds}), {counts['pages']} pages, {counts['chunks']} chunks, "
        f"{counts['skipped']} skipped"
    )
    if index["kind"] != "exact":
        dense = f"{_kind_name(index['kind'])} {index['params']}, recall@10 {index['recall_at_10']} vs exact"
    else:
        dense = f"exact ({_kind_name(index.get('ann', 'faiss-hnsw'))} from {index['threshold']} chunks)"
    print(f"  search:   dense {dense}; BM25 k1={data['lexical']['k1']} b={data['lexical']['b']}")
    print(f"  size:     {_size(data['size_bytes'])} (folder {_size(data['folder_bytes'])})")
    print(f"  updated:  {data['updated']} (created {data['created']})")
    for item in data["skipped"]:
        print(f"  skipped:  {item['path']}: {item['reason']}")
    return 0


def parse_weights(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 2:
        raise EmbedlabError(f"invalid --weights {text!r}", expected="two numbers DENSE,BM25 such as 1,0.5")
    return values


def run_search(args: argparse.Namespace) -> int:
    from embedlab.api.collections import open_collection
    from embedlab.collection.search import MODES, pipeline_options
    from embedlab.search.pipeline import parse_pipeline
    from embedlab.search.rerank import load_reranker

    if (args.query is None) == (args.image is None):
        raise EmbedlabError("give a query or --image FILE (one of the two)", expected='embedlab search NAME "words"')
    if args.image is not None:
        response, images = search_by_image(args)
        return _print_response(args, response, args.path_filter, images=images)
    if args.mode is not None:
        MODES.get(args.mode)  # a typo is reported ("Did you mean") before any model is loaded
    weights = parse_weights(args.weights)
    pattern = args.path_filter[5:] if args.path_filter and args.path_filter.startswith("path=") else args.path_filter
    pipeline = parse_pipeline(args.pipeline) if args.pipeline else None
    rerank = args.rerank
    # the model is loaded at the first dense search only: `--mode bm25` never loads it
    collection = open_collection(args.collection, model=args.model, root=args.root, load_model=False)
    try:
        mode = args.mode or ("dense" if collection.manifest.images is not None else "hybrid")
        rrf_k, depth, candidates = args.rrf_k, args.rerank_depth, 100
        fusion, rerank_fuse = "rrf", 0.0
        if pipeline is not None:
            chosen = pipeline_options(pipeline, dense_model=collection.dense_model)
            mode, rrf_k, weights, depth = chosen.mode, chosen.rrf_k, chosen.weights, chosen.rerank_depth
            candidates, rerank = chosen.candidates, chosen.reranker
            fusion, rerank_fuse = chosen.fusion, chosen.rerank_fuse
        reranker = load_reranker(rerank) if rerank else None
        response = collection.search(
            args.query,
            k=args.k,
            mode=mode,
            rrf_k=rrf_k,
            weights=weights,
            path_filter=pattern,
            reranker=reranker,
            rerank_depth=depth,
            candidates=candidates,
            fusion=fusion,
            rerank_fuse=rerank_fuse,
        )
        images = collection.manifest.images is not None
    finally:
        collection.close()
    return _print_response(args, response, pattern, images=images)


def _print_response(args: argparse.Namespace, response, pattern: str | None, *, images: bool) -> int:
    if args.json:
        json.dump(response.to_dict(), sys.stdout, indent=2, ensure_ascii=False)
        print()
        return 0
    if not response.hits:
        where = f" among files matching {pattern!r}" if pattern else ""
        print(f"no results{where} ({response.chunks_searched} chunks searched)")
    from embedlab.collection.snippet import terminal_marks

    before, after = terminal_marks(sys.stdout)  # bold on a terminal, plain when piped; --json keeps **markup**
    for hit in response.hits:
        if images:  # the row's text is its path: nothing more to show
            print(f"{hit.rank:>2}. {hit.path}  score {hit.score:.4g}  [id {hit.chunk_id}]")
            continue
        print(f"{hit.rank:>2}. {hit.path}  p. {hit.page}  score {hit.score:.4g}  [chunk {hit.chunk_id}]")
        print(f"    {hit.marked_snippet(before, after)}")
    t = response.latency_ms
    stages = " · ".join(f"{key} {t[key]:.1f}" for key in ("encode", "search", "fuse", "rerank", "fetch") if t[key])
    print(
        f"{response.mode}{' + ' + response.reranker if response.reranker else ''}, "
        f"{response.chunks_searched} chunks: {stages} · total {t['total']:.1f} ms"
    )
    return 0


def _kind_name(kind: str) -> str:
    """How `index build|info` names a vector index kind (HNSW: FAISS's graph, the default)."""
    return {"faiss-hnsw": "HNSW", "milvus": "Milvus", "chroma": "Chroma"}.get(kind, kind)
