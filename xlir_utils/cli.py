"""What every command line of the kit shares (``python -m xlir_utils.training``, ``.reporting``
(``make figures``), ``.recipe_study`` (``make recipe-study``), ``.shard_encode``).

:func:`run` calls a command's ``main`` after applying ``XLIR_THREADS``
(:func:`xlir_utils.environment.apply_threads`, as the notebooks' first cell does), and turns the
kit's own errors (:class:`~xlir_utils.errors.XlirError`: a setting, missing data, a busy or
damaged file) into one line on stderr and exit code 2; ``XLIR_DEBUG=1`` prints the traceback
too. Any other exception is a bug and keeps its traceback.

::

    if __name__ == "__main__":
        sys.exit(run(main))
"""
from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from .errors import XlirError

EXIT_ERROR = 2  # an XlirError: the user can fix it (argparse uses 2 for a bad option too)
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a SIGINT
DEBUG_HINT = "(set XLIR_DEBUG=1 to see the traceback)"


def debug() -> bool:
    """True when ``XLIR_DEBUG`` asks for tracebacks (1, true, yes, on)."""
    return os.environ.get("XLIR_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def _report(message: str, exc: BaseException) -> None:
    if debug():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(message, file=sys.stderr)
    if not debug():
        print(DEBUG_HINT, file=sys.stderr)
    sys.stderr.flush()


def run(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> int:
    """Run a command line's ``main(argv)`` (default ``sys.argv[1:]``) and return its exit code:
    0, or 2 after an :class:`~xlir_utils.errors.XlirError` (``error: <message>`` on stderr),
    or 130 after Ctrl-C. ``XLIR_THREADS`` is applied first. ``argparse``'s own exits pass
    through; other exceptions propagate with their traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from .environment import apply_threads  # lazy: it imports torch

        apply_threads()
        main(args)
    except XlirError as exc:
        _report(f"error: {exc}", exc)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        _report("interrupted (Ctrl-C)", exc)
        return EXIT_INTERRUPTED
    return 0
