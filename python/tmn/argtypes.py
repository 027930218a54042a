"""argparse value types shared by tmn-serve and tmn-client: a bad value is a
usage error (exit 2, one line), never a traceback later."""

from __future__ import annotations

import argparse
import math
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
