"""Recordings on disk: the one CSV/NPZ reader of tmn (numpy only).

A *recording* is a table with columns ``t`` (seconds), ``x``, ``y``, optional
``vx``, ``vy`` (data units per second; both or neither: without them the
engine differentiates the positions) and an optional ``stream`` column that
separates recordings in one file. ``tmn-client replay`` reads it with
:func:`read_table`, and so do the training package's loaders.

A recording is refused, with the file, column and row, when a required column
is missing, when a value is not a number or infinite, or when it has a NaN run
(mark a dropout by leaving its rows out: that is a gap).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

REQUIRED = ("t", "x", "y")


class DataError(ValueError):
    """A recording was refused; the message names the file, column and rows."""


# -- reading files ----------------------------------------------------------------

def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """Read a CSV (header row) or NPZ recording into named columns."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            cols = {k: np.asarray(z[k]) for k in z.files}
    elif path.suffix.lower() in (".csv", ".txt"):
        cols = _read_csv(path)
    else:
        raise DataError(f"{path}: unknown format '{path.suffix}' (use .csv or .npz)")
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} "
                        f"(have: {', '.join(sorted(cols)) or 'none'})")
    if ("vx" in cols) != ("vy" in cols):
        raise DataError(f"{path}: give both vx and vy, or neither")
    n = len(cols["t"])
    for k, v in cols.items():
        if v.ndim != 1 or len(v) != n:
            raise DataError(f"{path}: column '{k}' must be 1-D with {n} values")
    return cols


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{path}: empty file") from None
        rows = list(reader)
    cols: dict[str, list[str]] = {h: [] for h in header}
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise DataError(f"{path}: row {i + 2}: {len(row)} fields, header has {len(header)}")
        for h, v in zip(header, row):
            cols[h].append(v.strip())
    out: dict[str, np.ndarray] = {}
    for h, vals in cols.items():
        if h == "stream":
            out[h] = np.asarray(vals)
            continue
        try:
            out[h] = np.asarray([float(v) if v != "" else np.nan for v in vals], dtype=np.float64)
        except ValueError as e:
            raise DataError(f"{path}: column '{h}': not a number ({e})") from None
    return out


# -- checks -------------------------------------------------------------------------

def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) runs where mask is true."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def check_columns(cols: dict[str, np.ndarray], where: str, row_offset: int = 2) -> None:
    """Refuse NaN runs and non-finite values. ``row_offset`` maps index 0 to a file row."""
    for c in ("t", "x", "y", "vx", "vy"):
        if c not in cols:
            continue
        v = np.asarray(cols[c], dtype=np.float64)
        nan = np.isnan(v)
        if nan.any():
            runs = _runs(nan)
            a, b = runs[0]
            raise DataError(
                f"{where}: column '{c}': NaN run at rows {a + row_offset}..{b - 1 + row_offset} "
                f"({b - a} rows; {len(runs)} run(s), {int(nan.sum())} NaN values in all). "
                "Leave dropouts out of the file instead: a gap longer than max_gap_ms splits "
                "the stream")
        inf = ~np.isfinite(v)
        if inf.any():
            raise DataError(f"{where}: column '{c}': infinite value at row "
                            f"{int(np.flatnonzero(inf)[0]) + row_offset}")


def group_streams(cols: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(stream id, row indices) in order of first appearance; one stream if no column."""
    n = len(cols["t"])
    if "stream" not in cols:
        return [("0", np.arange(n))]
    ids = np.asarray(cols["stream"]).astype(str)
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)
    return [(ids[first[g]], np.flatnonzero(inverse == g)) for g in order]
