"""Text, markdown and PNG output shared by the ``tmn-bench`` reports: the one
printer of targets (:func:`target_lines` for the terminal, :func:`targets_table`
for markdown), number formats, tables, the machine section and plots.

numpy only at import time. :func:`pyplot` imports matplotlib (non-interactive
Agg backend) when a report draws its first plot; tmn-bench depends on it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tmn
from tmn_bench.results import STATUSES, Machine, Target

QUANTILES = tuple(name for name, _ in tmn.PERCENTILES)  # "p50", ..., "p99.9" (from C++)
COLUMNS = (*QUANTILES, "max")                            # a latency table's columns
HEADERS = tuple(c.upper() if c in QUANTILES else c for c in COLUMNS)  # "P50", ..., "max"


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only, no screen)."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("plots need matplotlib: pip install matplotlib "
                          "(or pass no --report)") from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG (150 dpi), close it, and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    pyplot().close(fig)
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are formatted with :func:`cell`."""
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def cell(v: Any) -> str:
    """One table cell: None as "n/a", floats with 4 significant digits."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if v != 0 and (abs(v) >= 1e12 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v).replace("|", "\\|")


def load_text(v: list[float] | None) -> str:
    """A load average triple as "0.93/0.74/0.31" (n/a where there is none)."""
    return "n/a" if not v else "/".join(f"{x:.2f}" for x in v)


def machine_section(m: Machine) -> str:
    """The "where and with what" block every markdown report starts with."""
    versions = ", ".join(f"{k} {val}" for k, val in sorted(m.versions.items()) if val)
    return "\n".join([
        f"- **machine**: {m.cpu}, {m.cores} cores ({m.cores_usable} usable), "
        f"AVX2 {cell(m.cpu_avx2)}, AVX-512 {cell(m.cpu_avx512f)}; kernels `{m.isa}`; "
        f"TSC clock {cell(m.clock_uses_tsc)}",
        f"- **platform**: {m.platform}, Python {m.python}",
        f"- **software**: tmn {m.tmn_version} (git `{m.tmn_git_sha}`); {versions}",
        f"- **date**: {m.date}; load average at start {load_text(m.load_average)} "
        "(1/5/15 min)",
        f"- **command**: `{command_line(m.argv)}`",
    ])


def command_line(argv: Sequence[str]) -> str:
    """The command as a user would type it: ``python -m tmn_bench.cli`` and the
    ``tmn-bench`` script both read as ``tmn-bench``."""
    if not argv:
        return "n/a"
    first = Path(argv[0])
    cli = first.name == "tmn-bench" or (first.name == "cli.py" and first.parent.name == "tmn_bench")
    return " ".join(["tmn-bench" if cli else argv[0], *argv[1:]])


# ---------------------------------------------------------------------------
# Numbers and targets


def format_ns(v: float | None) -> str:
    """A latency in nanoseconds for a table: whole ns with thousands separators."""
    return "-" if v is None else f"{v:,.0f}"


def format_us(v: float | None) -> str:
    """Nanoseconds shown as microseconds with one decimal."""
    return "-" if v is None or not math.isfinite(v) else f"{v / 1e3:,.1f}"


def format_value(v: float | None, unit: str) -> str:
    """A figure with its unit, as the text reports print them."""
    if v is None or not math.isfinite(v):
        return "n/a"
    if unit == "ticks/s":
        return f"{v / 1e6:.2f} M ticks/s"
    if unit == "x":
        return f"{v:.2f}x"
    if unit == "ns":
        return f"{v:,.0f} ns"
    return f"{v:.4g}" + (f" {unit}" if unit else "")


def target_lines(targets: Sequence[Target], indent: str = "    ") -> list[str]:
    """One line per target: ``[STATUS ] name  value op limit  (note)``."""
    width = max((len(t.name) for t in targets), default=0)
    out = []
    for t in targets:
        cmp = f"{format_value(t.value, t.unit)} {t.op} {format_value(t.limit, t.unit)}"
        note = f"  ({t.note})" if t.note else ""
        out.append(f"{indent}[{t.status:<7}] {t.name:<{width}}  {cmp}{note}")
    return out


def count_text(targets: Sequence[Target]) -> str:
    """ "17 MET, 8 MISSED, 0 SKIPPED (of 25)" """
    c = Counter(t.status for t in targets)
    return ", ".join(f"{c[s]} {s}" for s in STATUSES) + f" (of {len(targets)})"


def targets_table(targets: Sequence[Target]) -> str:
    """MET / MISSED / SKIPPED rows, with where each target is stated."""
    rows = [[f"**{t.status}**", t.name, t.value, f"{t.op} {cell(t.limit)}", t.unit, t.note,
             t.source] for t in targets]
    return table(["status", "target", "value", "limit", "unit", "note", "stated in"], rows)
