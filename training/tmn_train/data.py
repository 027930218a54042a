"""Recordings in, uniform streams out.

A *recording* is a table with columns ``t`` (seconds), ``x``, ``y``, optional
``vx``, ``vy`` (data units per second) and an optional ``stream`` column that
separates recordings in one file. It becomes a list of :class:`Stream`:

1. **Check.** Every ``t`` is finite and strictly increasing within its stream
   (ties and reversals are refused with the row number), and no value is NaN
   (a NaN run is refused with its row range: mark a dropout by leaving the rows
   out, which is a gap).
2. **Split at gaps.** A gap longer than ``max_gap_ms`` ends a stream; the rest
   is a new stream, as the engine restarts a stream after such a gap.
3. **Resample** to ``sample_rate_hz`` on the grid ``t_n = t_0 + n / rate``
   (``n`` up to the last sample) by linear interpolation of x, y and (when
   present) vx, vy between the two neighbouring samples, and
4. **differentiate** when the file has no velocity: on the resampled grid,
   ``v_n`` is the least-squares slope of the last ``N = velocity_window``
   positions (a causal Savitzky-Golay differentiator of order 1)::

       v_n = sum_{j=0}^{N-1} w_j p_{n-N+1+j} * rate,   w_j = (j - (N-1)/2) / sum_i (i - (N-1)/2)^2

   with fewer samples (down to 2) at a stream start and ``v_0 = 0``.

   Both run in C++, in the engine's own ingest (``tmn._core.resample``,
   cpp/include/tmn/ingest.hpp): a live sensor at any rate, with or without
   velocity, gets exactly the grid and the velocity that training saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tmn import _core
from tmn.recording import DataError, check_columns, group_streams, read_table

__all__ = ["DataError", "Native", "Stream", "read_table", "split_at_gaps", "to_streams",
           "write_table"]


@dataclass
class Native:
    """A stream's samples as the sensor gave them, before resampling: ``t`` [n],
    ``pos`` [n, 2] and ``vel`` [n, 2] (None when the recording has no velocity).
    The Kalman tuner estimates the sensor's noise from these (kalman_fit)."""

    t: np.ndarray
    pos: np.ndarray
    vel: np.ndarray | None = None

    def between(self, t0: float, t1: float) -> Native:
        """The samples with ``t0 <= t <= t1``."""
        k = (self.t >= t0) & (self.t <= t1)
        return Native(self.t[k], self.pos[k], None if self.vel is None else self.vel[k])


@dataclass
class Stream:
    """One uninterrupted stream on a uniform grid at the model rate."""

    name: str
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    split: str | None = None  # "train" | "val" | "test" when the source fixes it
    meta: dict[str, str] = field(default_factory=dict)
    native: Native | None = None  # None: the grid is the sensor's own sampling

    def __len__(self) -> int:
        return len(self.t)

    @property
    def pos(self) -> np.ndarray:
        return np.stack([self.x, self.y], axis=1)

    @property
    def vel(self) -> np.ndarray:
        return np.stack([self.vx, self.vy], axis=1)

    def slice(self, a: int, b: int, split: str | None = None, suffix: str = "") -> Stream:
        native = None
        if self.native is not None and b > a:
            native = self.native.between(float(self.t[a]), float(self.t[b - 1]))
        return Stream(self.name + suffix, self.t[a:b], self.x[a:b], self.y[a:b], self.vx[a:b],
                      self.vy[a:b], split if split is not None else self.split, dict(self.meta),
                      native)


# -- gaps, resampling and velocity -------------------------------------------------

def split_at_gaps(t: np.ndarray, max_gap_s: float) -> list[tuple[int, int]]:
    """Half-open index ranges of pieces with no gap longer than ``max_gap_s``."""
    cuts = np.flatnonzero(np.diff(t) > max_gap_s) + 1
    bounds = np.concatenate([[0], cuts, [len(t)]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def to_streams(cols: dict[str, np.ndarray], name: str, ingest: _core.IngestParams,
               max_gap_s: float, min_samples: int = 2) -> list[Stream]:
    """Checked, gap-split streams on the model grid of ``ingest`` (its rate and
    differentiator) from one recording's columns."""
    check_columns(cols, name)
    has_v = "vx" in cols
    out: list[Stream] = []
    for sid, rows in group_streams(cols):
        t = np.asarray(cols["t"], dtype=np.float64)[rows]
        bad = np.flatnonzero(~(np.diff(t) > 0))
        if len(bad):
            i = int(rows[bad[0] + 1])
            raise DataError(f"{name}: stream '{sid}': t is not strictly increasing at row "
                            f"{i + 2} (t={t[bad[0] + 1]!r} after {t[bad[0]]!r})")
        vals = [np.asarray(cols[c], dtype=np.float64)[rows] for c in
                (("x", "y", "vx", "vy") if has_v else ("x", "y"))]
        for j, (a, b) in enumerate(split_at_gaps(t, max_gap_s)):
            if b - a < min_samples:
                continue
            grid, x, y, vx, vy = _core.resample(ingest, t[a:b], *[v[a:b] for v in vals])
            native = Native(t[a:b].copy(), np.stack([vals[0][a:b], vals[1][a:b]], axis=1),
                            np.stack([vals[2][a:b], vals[3][a:b]], axis=1) if has_v else None)
            out.append(Stream(f"{name}/{sid}/{j}", grid, x, y, vx, vy, native=native))
    return out


def write_table(path: str | Path, streams: list[Stream], ids: list[int] | None = None) -> Path:
    """Write streams as one recording (columns t, x, y, vx, vy, stream): .npz or .csv."""
    path = Path(path)
    ids = ids if ids is not None else list(range(len(streams)))
    cols = {
        "t": np.concatenate([s.t for s in streams]),
        "x": np.concatenate([s.x for s in streams]),
        "y": np.concatenate([s.y for s in streams]),
        "vx": np.concatenate([s.vx for s in streams]),
        "vy": np.concatenate([s.vy for s in streams]),
        "stream": np.concatenate([np.full(len(s), i, dtype=np.int64)
                                  for i, s in zip(ids, streams)]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npz":
        np.savez_compressed(path, **cols)
    elif path.suffix.lower() == ".csv":
        table = np.column_stack([cols[c] for c in ("t", "x", "y", "vx", "vy")] +
                                [cols["stream"].astype(np.float64)])
        np.savetxt(path, table, delimiter=",", header="t,x,y,vx,vy,stream", comments="",
                   fmt=["%.17g"] * 5 + ["%d"])
    else:
        raise DataError(f"{path}: unknown format '{path.suffix}' (use .csv or .npz)")
    return path
