"""How the command line reports failures: one line, what went wrong and what to do, then an exit code.

Three kinds of failure, three exit codes:

1. **user errors** (exit 2): a :class:`CliError` raised by the command line itself (a missing file, a misspelled
   model name, a bad option), or an error graphprune raises about its input (``BudgetError``, ``TraceError``,
   ``PlanError``, a missing dataset, any ``ValueError``).  Printed as
   ``graphprune: error: <what> — <what to do>``.
2. **graphprune bugs** (exit 1): any other exception.  One line says so, with the exception's type and message,
   and asks for a rerun with ``--debug``.
3. **interrupted** (exit 130): Ctrl-C.

``--debug`` re-raises instead, so the traceback is shown.
"""
from __future__ import annotations

import difflib
import sys
from typing import Iterable

__all__ = ["CliError", "did_you_mean", "report", "one_line", "is_user_error", "USER_ERROR", "BUG"]

USER_ERROR = 2
BUG = 1


class CliError(Exception):
    """A user error: ``what`` went wrong and ``fix``, what to do about it."""

    def __init__(self, what: str, fix: str):
        super().__init__(f"{what} — {fix}")
        self.what = what
        self.fix = fix


def did_you_mean(name: str, known: Iterable[str], prefix: str = "") -> str:
    """``"did you mean X? "`` for the closest names in ``known`` (empty when none is close)."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    if not close:
        return ""
    return "did you mean " + " or ".join(f"{prefix}{c}" for c in close) + "? "


def one_line(text: str, limit: int = 400) -> str:
    """``text`` squeezed onto one line (whitespace runs become one space), cut at ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def _fix_for(exc: BaseException) -> str:
    """What to do about one of graphprune's own input errors (their messages say what went wrong)."""
    from ..budget import BudgetError
    from ..data import DatasetNotFoundError
    from ..passes.in_place import InPlaceError
    from ..plan import PlanError
    from ..trace import TraceError

    text = str(exc)
    if isinstance(exc, InPlaceError):
        return "pass --output auto (or graph) to get the pruned torch.fx GraphModule instead"
    if isinstance(exc, TraceError) and "failed to run on example_inputs" in text:
        return "check --input-shape: the model must run on a tensor of that shape"
    if isinstance(exc, TraceError):
        return "keep the module fx cannot trace opaque with --leaf NAME ... or --auto-leaf"
    if isinstance(exc, BudgetError) and text.startswith("latency budget"):
        return "raise --latency / --ms above the measured time the message names"
    if isinstance(exc, BudgetError):
        return "choose --budget in (0, 1], the fraction of the dense model's --metric to keep"
    if isinstance(exc, DatasetNotFoundError):
        return "install the dataset or set the environment variable named above"
    if isinstance(exc, PlanError):
        return "prune the same architecture with the same --input-shape"
    return "see graphprune --help, or rerun with --debug for the traceback"


def is_user_error(exc: BaseException) -> bool:
    from ..budget import BudgetError
    from ..data import DatasetNotFoundError
    from ..passes import RewriteError
    from ..plan import PlanError
    from ..trace import TraceError

    if isinstance(exc, RewriteError):  # NOTE: a rewrite that fails its own verification is our bug
        return False
    return isinstance(exc, (CliError, BudgetError, TraceError, PlanError, DatasetNotFoundError, ValueError))


def report(exc: BaseException) -> int:
    """Print ``exc`` as one line on stderr and return the exit code (see the module docstring)."""
    if isinstance(exc, KeyboardInterrupt):
        print("graphprune: interrupted", file=sys.stderr)
        return 130
    if isinstance(exc, CliError):
        print(f"graphprune: error: {one_line(exc.what)} — {one_line(exc.fix)}", file=sys.stderr)
        return USER_ERROR
    if is_user_error(exc):
        # NOTE: the first paragraph says what went wrong; later ones (fx's "While executing ...") are detail
        first = str(exc).strip().split("\n\n")[0]
        print(f"graphprune: error: {one_line(first)} — {_fix_for(exc)}", file=sys.stderr)
        return USER_ERROR
    print(f"graphprune: internal error (a graphprune bug, please report it): {type(exc).__name__}: "
          f"{one_line(exc, 300)} — rerun with --debug for the traceback", file=sys.stderr)
    return BUG
