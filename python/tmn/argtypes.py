"""What the command lines share: a user's mistake is one line on stderr and
exit code 2, never a traceback. The argparse value types of tmn-serve and
tmn-client make a bad value a usage error at once; :func:`run_command` does
the same for the errors a command raises later (tmn-train, tmn-hub)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable


def bounded(kind: type[int] | type[float], lo: float,
            hi: float = math.inf) -> Callable[[str], int | float]:
    """A finite ``kind`` (int or float) in [lo, hi]."""
    def parse(text: str) -> int | float:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if not (math.isfinite(v) and lo <= v <= hi):
            raise argparse.ArgumentTypeError(f"must be in [{lo:g}, {hi:g}], got {text}")
        return v
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def run_command(prog: str, command: Callable[[], int],
                user_errors: tuple[type[Exception], ...]) -> int:
    """The exit code of ``command()``; one of ``user_errors`` is printed as
    ``PROG: error: MESSAGE`` on stderr instead, and exits 2."""
    try:
        return int(command())
    except user_errors as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
