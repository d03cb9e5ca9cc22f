"""``embedlab serve``: the HTTP API and web page of one collection (uvicorn, one process)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from pathlib import Path

from embedlab.cli.help import examples
from embedlab.errors import EmbedlabError

log = logging.getLogger(__name__)
API_KEY_ENV = "EMBEDLAB_API_KEY"
_SKIPPED_SHOWN = 20  # damaged feedback rows named one by one; the rest are counted


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a collection (search API, web page, feedback, metrics) and models (OpenAI-style embeddings)",
        description="Serve a collection and/or embedding models over HTTP (FastAPI + uvicorn): /v1/search, "
        "/v1/embeddings and /v1/models (OpenAI-compatible). Concurrent requests are batched. The API key, when "
        f"wanted, is read from ${API_KEY_ENV} (or --api-key-file), never from the command line.",
        epilog=examples(
            "embedlab serve lib",
            "embedlab serve lib --port 8080 --rerank models/scifact-ce",
            "embedlab serve --model all-MiniLM-L6-v2 --model models/scifact-ft --workers 2",
            "embedlab serve scifact --arms arms.toml",
            "embedlab serve photos --max-image-mb 4",
        ),
    )
    p.add_argument("collection", nargs="?", help="collection name (optional with --model)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--root", type=Path, help="collections folder (default $EMBEDLAB_COLLECTIONS or ./collections)")
    p.add_argument(
        "--model",
        "-m",
        action="append",
        default=[],
        help="model to serve on /v1/embeddings, NAME[:key=value,...] (repeatable; a collection's own model is "
        "always served)",
    )
    p.add_argument("--rerank", help="re-ranker for the top results: a local cross-encoder folder, or word-overlap")
    p.add_argument("--api-key-file", type=Path, help=f"file holding the API key (default: ${API_KEY_ENV} if set)")
    p.add_argument("--max-k", type=int, default=100, help="largest k a request may ask for (default 100)")
    p.add_argument("--max-body", type=int, default=1_048_576, help="largest request body in bytes (default 1 MiB)")
    p.add_argument(
        "--max-image-mb",
        type=float,
        default=8.0,
        help="largest query image a client may upload to /v1/search/image, in MiB (default 8)",
    )
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own model (default 1)")
    b = p.add_argument_group("dynamic batching (concurrent requests share one encoder call)")
    b.add_argument("--max-batch", type=int, default=64, help="texts or queries per encoder call (default 64)")
    b.add_argument(
        "--max-wait-ms",
        type=float,
        default=0.0,
        help="wait for more requests when idle (default 0: requests pile up while a batch runs)",
    )
    b.add_argument("--max-queue", type=int, default=4096, help="waiting texts/queries before 503 (default 4096)")
    b.add_argument("--max-inputs", type=int, default=2048, help="texts per /v1/embeddings request (default 2048)")
    b.add_argument("--cache-dir", type=Path, help="use the embedding cache in this folder for /v1/embeddings")
    p.add_argument("--feedback-db", type=Path, help="feedback SQLite file (default <collection>/feedback.sqlite)")
    p.add_argument(
        "--arms",
        type=Path,
        help="A/B arms file (TOML/JSON: split or interleave, re-read when it changes; default: no arms)",
    )
    p.set_defaults(handler=run_serve)

    f = sub.add_parser(
        "feedback",
        help="export the feedback a served collection received",
        description="Feedback stored by `embedlab serve`, exported as a click log for "
        "`embedlab finetune --train FILE`.",
    )
    actions = f.add_subparsers(dest="action", required=True, metavar="ACTION")
    e = actions.add_parser(
        "export",
        help="write a click-log JSONL: query, clicked texts, shown texts",
        description="Write the feedback a served collection received as a click log (one JSON object per "
        "search with a click: query, clicked texts, shown texts), the input of `embedlab finetune --train`.",
        epilog=examples("embedlab feedback export lib --out clicks.jsonl"),
    )
    e.add_argument("collection", help="collection name")
    e.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    e.add_argument("--root", type=Path, help="collections folder (default $EMBEDLAB_COLLECTIONS or ./collections)")
    e.add_argument("--feedback-db", type=Path, help="feedback SQLite file (default <collection>/feedback.sqlite)")
    e.add_argument(
        "--arms", type=Path, help="the arms file served: clicks read from their arm's collection (default: no arms)"
    )
    e.set_defaults(handler=run_export)


def _api_key(args: argparse.Namespace) -> str | None:
    """The key from --api-key-file, else $EMBEDLAB_API_KEY, else None (no authentication).

    An empty or blank key is refused rather than read as "no key": ``EMBEDLAB_API_KEY=""`` or an
    empty key file is almost always a secret that failed to arrive (an unset CI variable, a
    missing mount), and serving without authentication then would be silent and wrong."""
    if args.api_key_file is not None:
        try:
            key = args.api_key_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise EmbedlabError(f"cannot read the API key file ({reason})", path=args.api_key_file) from None
        if not key:
            raise EmbedlabError(
                "the API key file is empty",
                path=args.api_key_file,
                hint="put the key in it, or leave --api-key-file out to run without a key",
            )
        return key
    value = os.environ.get(API_KEY_ENV)
    if value is None:
        return None
    if not value.strip():
        raise EmbedlabError(
            f"${API_KEY_ENV} is set but empty, which would turn authentication off",
            hint=f"set it to the key, or unset it (`unset {API_KEY_ENV}`) to run without a key",
        )
    return value


def _image_bytes(mib: float) -> int:
    if not mib > 0 or mib == float("inf"):  # also NaN
        raise EmbedlabError("invalid --max-image-mb", found=repr(mib), expected="a number of MiB > 0")
    return max(1, round(mib * 1024 * 1024))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(args: argparse.Namespace) -> int:
    from embedlab.serve import ServeConfig, create_app
    from embedlab.serve.app import CONFIG_ENV, config_to_env, preflight

    if not 1 <= args.port <= 65535:
        raise EmbedlabError("invalid --port", found=str(args.port), expected="1 to 65535")
    key = _api_key(args)
    if not _is_loopback(args.host) and key is None:
        log.warning(
            "serving on %s without an API key: anyone who can reach this address can search and "
            "read the documents (set $%s)",
            args.host,
            API_KEY_ENV,
        )
    if not 1 <= args.workers <= 64:
        raise EmbedlabError("invalid --workers", found=str(args.workers), expected="1 to 64")
    config = ServeConfig(
        collection=args.collection,
        root=args.root,
        models=tuple(args.model),
        reranker=args.rerank,
        api_key=key,
        max_k=args.max_k,
        max_body_bytes=args.max_body,
        max_image_bytes=_image_bytes(args.max_image_mb),
        feedback_path=args.feedback_db,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_inputs=args.max_inputs,
        cache_dir=args.cache_dir,
        arms=args.arms,
    )
    try:
        import uvicorn
    except ImportError:
        raise EmbedlabError("serving needs uvicorn", hint='pip install "embedlab[serve]"') from None
    what = f"collection {args.collection}" if args.collection else "models"
    if args.workers == 1:
        app = create_app(config)
        log.info("serving %s on http://%s:%d/", what, args.host, args.port)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
        return 0
    preflight(config)  # user errors as one line here, not as tracebacks in every worker
    os.environ[CONFIG_ENV] = config_to_env(config)
    # each worker has its own model: split the cores between them unless the user chose
    os.environ.setdefault("EMBEDLAB_THREADS", str(max(1, (os.cpu_count() or 1) // args.workers)))
    log.info("serving %s on http://%s:%d/ with %d worker processes", what, args.host, args.port, args.workers)
    uvicorn.run(
        "embedlab.serve.app:app_from_environment",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    import json

    from embedlab.atomic import atomic_write_text
    from embedlab.collection.layout import CollectionDir
    from embedlab.monitor.clicks import export_clicks
    from embedlab.output import check_output_file
    from embedlab.serve.arms import load_arms
    from embedlab.serve.feedback import FILE

    check_output_file(args.out)  # a folder, a device or a read-only place is refused before any work
    arms = load_arms(args.arms) if args.arms is not None else None
    cdir = CollectionDir(args.collection, root=args.root)
    if not cdir.exists():
        raise cdir.unknown()
    path = args.feedback_db or cdir.path / FILE
    if not path.is_file():
        raise EmbedlabError("no feedback yet", path=path, hint=f"serve it first: `embedlab serve {args.collection}`")
    export = export_clicks(args.collection, db=path, arms=arms, root=args.root)
    for bad in export.skipped[:_SKIPPED_SHOWN]:
        log.warning("feedback row %s skipped: %s", bad.id, bad.reason)
    if len(export.skipped) > _SKIPPED_SHOWN:
        log.warning("... and %d more damaged feedback rows skipped", len(export.skipped) - _SKIPPED_SHOWN)
    atomic_write_text(args.out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in export.rows))
    print(export.summary(args.out))
    return 0
