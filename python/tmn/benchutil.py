"""Shared pieces of the ``tmn-bench`` benchmarks: percentiles, the machine's
name, a synthetic tick workload and MET/MISSED target checks.

numpy only. Nothing here imports torch or onnxruntime; :func:`package_versions`
asks for their versions without importing them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

# A file only a tmn checkout has (git_sha).
TMN_CHECKOUT_MARK = "cpp/include/tmn/engine.hpp"

# The percentiles every benchmark reports (DESIGN.md: "never only means").
PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0),
                                              ("p99.9", 99.9))


def percentiles(samples: np.ndarray) -> dict[str, float]:
    """``{"n", "p50", "p90", "p99", "p99.9", "max", "mean"}`` of ``samples``
    (nanoseconds, any numeric dtype). Percentiles interpolate linearly between
    order statistics (numpy's default); an empty input raises ``ValueError``."""
    a = np.asarray(samples, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("no samples")
    qs = np.percentile(a, [q for _, q in PERCENTILES])
    out: dict[str, float] = {"n": int(a.size)}
    out.update({name: float(v) for (name, _), v in zip(PERCENTILES, qs)})
    out["max"] = float(a.max())
    out["mean"] = float(a.mean())
    return out


# ---------------------------------------------------------------------------
# The machine


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> set[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def package_versions(names: tuple[str, ...] = ("numpy", "scipy", "matplotlib", "onnxruntime",
                                                "onnx", "torch", "pyzmq")
                     ) -> dict[str, str | None]:
    """Installed versions (None if not installed), read from package metadata so
    that nothing heavy gets imported."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_sha(start: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` of the tmn checkout that holds ``start`` (default:
    this package's source, following symlinks, then the current directory), with
    ``-dirty`` if the work tree has changes or files git does not track yet (they
    may be the code that ran). A repository that is not a tmn checkout does not
    count (an installed package can live inside someone else's repository, such
    as pyenv's); ``"unknown"`` when no tmn checkout is found or without git."""
    places = [Path(start)] if start is not None else [Path(__file__).resolve().parent,
                                                      Path.cwd()]
    for where in places:
        try:
            top = subprocess.run(["git", "-C", str(where), "rev-parse", "--show-toplevel"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
            if not top or not (Path(top) / TMN_CHECKOUT_MARK).is_file():
                continue
            sha = subprocess.run(["git", "-C", top, "rev-parse", "HEAD"], capture_output=True,
                                 text=True, timeout=10, check=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", top, "status", "--porcelain"],
                                   capture_output=True, text=True, timeout=10,
                                   check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if sha:
            return sha + ("-dirty" if dirty else "")
    return "unknown"


def machine_info(isa: str | None = None) -> dict[str, Any]:
    """Everything needed to name the machine a number was measured on."""
    from tmn import _core

    flags = cpu_flags()
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "cpu_avx2": "avx2" in flags,
        "cpu_avx512f": "avx512f" in flags,
        "isa": isa if isa is not None else _core.best_isa().name,
        "clock_uses_tsc": bool(_core.clock_uses_tsc()),
        "load_average": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "versions": package_versions(),
        "tmn_version": _tmn_version(),
        "tmn_git_sha": git_sha(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none). A
    load near or above the core count means other work shared the CPUs."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _tmn_version() -> str:
    try:
        return metadata.version("tmn")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------
# The workload


@dataclass(frozen=True)
class TickStreams:
    """Interleaved ticks of several streams, in arrival order (one row per tick)."""

    t: np.ndarray       # seconds, strictly increasing within each stream
    x: np.ndarray
    y: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    stream: np.ndarray  # uint64 stream ids
    rate_hz: float

    def __len__(self) -> int:
        return int(self.t.size)

    def of_stream(self, sid: int) -> TickStreams:
        """The ticks of one stream, in order."""
        m = self.stream == sid
        return TickStreams(self.t[m], self.x[m], self.y[m], self.vx[m], self.vy[m],
                           self.stream[m], self.rate_hz)


def synthetic_ticks(n_ticks: int, streams: int = 8, rate_hz: float = 2000.0, seed: int = 0,
                    position_scale: tuple[float, float] = (1.0, 1.0),
                    position_offset: tuple[float, float] = (0.0, 0.0),
                    first_stream: int = 0) -> TickStreams:
    """A realistic sensor recording: ``streams`` interleaved 2-D motions sampled
    at ``rate_hz`` with ±5 % timing jitter, ``n_ticks`` rows in total.

    Each stream moves along a sum of three sinusoids per axis (0.2-3 Hz, like
    hand, gaze or vehicle motion) plus a slow drift, in units of
    ``position_scale`` around ``position_offset``. Velocities are the exact
    derivative plus 1 % noise; positions carry 0.1 % noise. Streams share a
    clock and arrive round-robin, so a replay interleaves them as a server would.
    """
    if n_ticks < 1 or streams < 1:
        raise ValueError("need at least one tick and one stream")
    rng = np.random.default_rng(seed)
    per = -(-n_ticks // streams)  # ceil
    dt = 1.0 / rate_hz
    i = np.arange(per, dtype=np.float64)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("t", "x", "y", "vx", "vy")}
    for s in range(streams):
        t = rng.uniform(0.0, 10.0) + (i + rng.uniform(-0.05, 0.05, per)) * dt
        cols["t"].append(t)
        for axis, (vkey, scale, off) in zip(("x", "y"), zip(("vx", "vy"), position_scale,
                                                               position_offset)):
            amp = rng.uniform(0.1, 0.5, 3) * scale
            w = 2.0 * np.pi * rng.uniform(0.2, 3.0, 3)
            ph = rng.uniform(0.0, 2.0 * np.pi, 3)
            drift = rng.normal(0.0, 0.05) * scale
            arg = w[:, None] * t[None, :] + ph[:, None]
            pos = off + drift * t + (amp[:, None] * np.sin(arg)).sum(axis=0)
            vel = drift + (amp[:, None] * w[:, None] * np.cos(arg)).sum(axis=0)
            vel_scale = float(np.abs(vel).mean()) + 1e-12
            cols[axis].append(pos + rng.normal(0.0, 1e-3 * scale, per))
            cols[vkey].append(vel + rng.normal(0.0, 1e-2 * vel_scale, per))
    # round-robin arrival: row r is tick r // streams of stream r % streams
    out = {k: np.stack(v, axis=1).ravel()[:n_ticks].copy() for k, v in cols.items()}
    sid = np.tile(np.arange(first_stream, first_stream + streams, dtype=np.uint64), per)
    return TickStreams(out["t"], out["x"], out["y"], out["vx"], out["vy"],
                       sid[:n_ticks].copy(), float(rate_hz))


# ---------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class Target:
    """A stated performance target and whether this run met it."""

    name: str
    value: float | None   # None when it could not be measured
    limit: float
    op: str               # "<=" or ">="
    unit: str = ""
    note: str = ""        # why it was skipped, or what was compared

    @property
    def status(self) -> str:
        """``MET``, ``MISSED`` or ``SKIPPED``."""
        if self.value is None or not np.isfinite(self.value):
            return "SKIPPED"
        ok = self.value <= self.limit if self.op == "<=" else self.value >= self.limit
        return "MET" if ok else "MISSED"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, status included."""
        return {"name": self.name, "value": self.value, "limit": self.limit, "op": self.op,
                "unit": self.unit, "status": self.status, "note": self.note}


def ratio(num: float | None, den: float | None) -> float | None:
    """``num / den``, or None when either is missing or ``den`` is not positive."""
    if num is None or den is None or not den > 0:
        return None
    return float(num) / float(den)


def format_ns(v: float | None) -> str:
    """A latency in nanoseconds for a table: whole ns with thousands separators."""
    return "-" if v is None else f"{v:,.0f}"


# ---------------------------------------------------------------------------
# Command-line value types shared by the tmn-bench subcommands


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``1_000_000`` allowed)."""
    v = int(text.replace("_", ""))
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return v


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    v = int(text.replace("_", ""))
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return v
