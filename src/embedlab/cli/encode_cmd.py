"""``embedlab encode``: a corpus -> Parquet vector shards + manifest, in one process or on Ray."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from embedlab.cli.help import examples
from embedlab.errors import EmbedlabError

if TYPE_CHECKING:
    from embedlab.distributed.ray_engine import RayEngine


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "encode",
        help="encode a corpus into Parquet vector shards (one process, or Ray actors on a cluster)",
        description="Read a corpus (BEIR corpus.jsonl[.gz], a Parquet file with id and text columns, or a "
        "dataset name in $EMBEDLAB_DATA), encode every document with --model and write OUT/shard-NNNNN.parquet "
        "files of (id, vector) plus OUT/manifest.json (encoder fingerprint, shards with row counts and "
        "SHA-256).  A re-run with the same options resumes: intact shards are not encoded again.  "
        "--engine ray runs one model per Ray actor (in this process, or on the cluster --ray-address names).",
        epilog=examples(
            "embedlab encode --model all-MiniLM-L6-v2 --corpus scifact --out vectors/scifact",
            "embedlab encode --model all-MiniLM-L6-v2 --corpus docs.parquet --out vectors/big --engine ray --actors 2",
            "embedlab encode --model all-MiniLM-L6-v2 --corpus corpus.jsonl.gz --out /shared/vectors --engine ray "
            "--ray-address auto --actors 8 --num-gpus-per-actor 1 --batch-size 256",
        ),
    )
    p.add_argument(
        "--model", "-m", required=True, help="embedding model: NAME or NAME:key=value,... (`embedlab models`)"
    )
    p.add_argument(
        "--corpus",
        required=True,
        help="corpus.jsonl[.gz], a Parquet file (id, text, optional title), a dataset folder or a dataset name",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder for the shards and manifest.json")
    add_ray_options(p)
    p.add_argument("--batch-size", type=int, default=32, help="texts per encoder batch and per Ray batch (default 32)")
    p.add_argument(
        "--shard-rows",
        type=int,
        default=10_000,
        help="documents per output shard, the unit of resuming (default 10000)",
    )
    p.add_argument(
        "--cache-dir", type=Path, help="embedding cache folder (default $EMBEDLAB_CACHE or ~/.cache/embedlab)"
    )
    p.add_argument("--no-cache", action="store_true", help="read and write no embedding cache")
    p.set_defaults(handler=run)


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """``--engine local|ray`` and where and how wide Ray runs: ``embedlab encode`` and ``index build/update``."""
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: encode in this process; ray: on Ray Data actors, one model each (default: local)",
    )
    p.add_argument(
        "--ray-address",
        help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT (default: start Ray in this process)",
    )
    p.add_argument("--actors", type=int, default=1, help="encoder actors, one model each (--engine ray)")
    p.add_argument(
        "--num-gpus-per-actor",
        type=float,
        default=0.0,
        help="GPUs per actor (default 0: CPU actors with cores / actors threads each)",
    )


def ray_engine(args: argparse.Namespace) -> RayEngine | None:
    """The Ray options given (None: ``--engine local``); Ray options without ``--engine ray`` are an error."""
    from embedlab.distributed.ray_engine import RayEngine

    return RayEngine.of(args.engine, args.ray_address, args.actors, args.num_gpus_per_actor)


def run(args: argparse.Namespace) -> int:
    from embedlab.distributed.run import EncodeSpec, encode_corpus
    from embedlab.encoders.spec import parse_model_spec

    ray_engine(args)
    if args.batch_size < 1:
        raise EmbedlabError("--batch-size must be at least 1", found=str(args.batch_size))
    model = parse_model_spec(args.model)
    result = encode_corpus(
        EncodeSpec(
            model=model.model_copy(update={"batch_size": args.batch_size}),
            corpus=args.corpus,
            out=args.out,
            engine=args.engine,
            ray_address=args.ray_address,
            actors=args.actors,
            num_gpus_per_actor=args.num_gpus_per_actor,
            shard_rows=args.shard_rows,
            use_cache=not args.no_cache,
            cache_dir=args.cache_dir,
        )
    )
    rate = f", {result.docs_per_second:.1f} docs/s" if result.docs_per_second else ""
    print(
        f"{result.documents} documents in {result.shards} shard(s) at {result.out} "
        f"({result.shards_encoded} encoded now with --engine {result.engine} in {result.seconds:.1f} s{rate}; "
        f"{result.shards - result.shards_encoded} already done)"
    )
    return 0
