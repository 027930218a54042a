"""Markdown and PNG output shared by the ``tmn-bench`` reports (``accuracy``,
``latency``).

numpy only at import time. :func:`pyplot` imports matplotlib (non-interactive
Agg backend) when a report draws its first plot; it is in the ``bench``
extra (``pip install "tmn[bench]"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only, no screen)."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("plots need matplotlib: pip install 'tmn[bench]' "
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


def machine_section(m: dict[str, Any]) -> str:
    """The "where and with what" block every report starts with
    (``m`` is :func:`tmn.benchutil.machine_info`)."""
    v = m.get("versions", {})
    versions = ", ".join(f"{k} {val}" for k, val in sorted(v.items()) if val)
    load = m.get("load_average")
    return "\n".join([
        f"- **machine**: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), "
        f"AVX2 {'yes' if m['cpu_avx2'] else 'no'}, AVX-512 "
        f"{'yes' if m['cpu_avx512f'] else 'no'}; kernels `{m['isa']}`; "
        f"TSC clock {'yes' if m['clock_uses_tsc'] else 'no'}",
        f"- **platform**: {m['platform']}, Python {m['python']}",
        f"- **software**: tmn {m['tmn_version']} (git `{m['tmn_git_sha']}`); {versions}",
        f"- **date**: {m['date']}; load average at start "
        f"{'/'.join(f'{x:.2f}' for x in load) if load else 'n/a'} (1/5/15 min)",
        f"- **command**: `{command_line(m.get('argv', []))}`",
    ])


def command_line(argv: Sequence[str]) -> str:
    """The command as a user would type it: ``python -m tmn.bench`` and the
    ``tmn-bench`` script both read as ``tmn-bench``."""
    if not argv:
        return "n/a"
    prog = "tmn-bench" if Path(argv[0]).name in ("tmn-bench", "bench.py") else argv[0]
    return " ".join([prog, *argv[1:]])


def targets_table(targets: Sequence[dict[str, Any]]) -> str:
    """MET / MISSED / SKIPPED rows of :class:`tmn.benchutil.Target` dicts."""
    rows = [[f"**{t['status']}**", t["name"], t["value"], f"{t['op']} {cell(t['limit'])}",
             t.get("unit", ""), t.get("note", "")] for t in targets]
    return table(["status", "target", "value", "limit", "unit", "note"], rows)
