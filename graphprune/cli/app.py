"""``main``: parse, run the command, and turn any failure into one line and an exit code (``errors.py``)."""
from __future__ import annotations

import sys

from .errors import report
from .parser import build_parser

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run ``graphprune`` with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    0: success; 2: a user error (one line on stderr); 1: a graphprune bug (one line; ``--debug`` shows the
    traceback); 130: interrupted.  ``--help`` and ``--version`` return 0.
    """
    from .commands import cmd_inspect, cmd_prune
    from .compress_cmd import cmd_compress

    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # NOTE: known before parsing, so even a parse error can be re-raised
    try:
        args = build_parser().parse_args(argv)
        return {"prune": cmd_prune, "inspect": cmd_inspect, "compress": cmd_compress}[args.command](args)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:
        if debug:
            raise
        return report(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
