"""``embedlab`` console script.  User mistakes end as one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from embedlab import __version__
from embedlab.errors import EmbedlabError

log = logging.getLogger("embedlab")


def _parser() -> argparse.ArgumentParser:
    from embedlab.cli import eval_cmd, finetune_cmd, index_cmd, select_cmd, serve_cmd

    parser = argparse.ArgumentParser(prog="embedlab", description="Trustworthy decisions about embedding models.")
    parser.add_argument("--version", action="version", version=f"embedlab {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    eval_cmd.add_parser(sub)
    select_cmd.add_parser(sub)
    index_cmd.add_parser(sub)
    finetune_cmd.add_parser(sub)
    serve_cmd.add_parser(sub)
    return parser



def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s" if verbose == 0 else "%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("embedlab")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.handler(args) or 0)
    except EmbedlabError as err:
        print(f"embedlab: error: {err.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("embedlab: interrupted; finished work is kept (cache), no result files were written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
