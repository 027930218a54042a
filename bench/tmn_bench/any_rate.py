"""The engine at any report rate (issue 11): the same motion sent at other rates.

The benchmark's motion (:mod:`tmn_bench.workload`) is sampled at the model's own
rate and at 125 Hz, 500 Hz and 8 kHz (the same streams: same seed, same
sinusoids, only the sampling differs), with velocity and position-only, and
replayed through the engine in INT8. Each answer's last path point (the
longest horizon) is scored against the noise-free position at ``t_grid + h_K``,
so every rate is judged against the same truth. Reported per rate: the P99
error, its ratio to the native rate's (same velocity mode), and the median tick
cost from the engine's own clock (a slow sensor's tick steps the network on
every grid point it passed).
"""

from __future__ import annotations

import numpy as np

import tmn
from tmn.model import Model
from tmn_bench.results import AnyRateRow
from tmn_bench.workload import Motion

RATES_HZ = (125.0, 500.0, 8000.0)
WARM_S = 0.2  # answers this soon after a stream's first tick are not scored


def _errors(model: Model, rate_hz: float, velocity: bool, seconds: float, streams: int,
            seed: int, scale: tuple[float, float],
            offset: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Errors of the longest horizon and the ticks' total_ns at one rate."""
    motion = Motion(streams, seed, scale, offset, rate_hz=rate_hz)
    ticks = motion.next(max(2, int(seconds * rate_hz)))
    vel = (ticks.vx, ticks.vy) if velocity else (None, None)
    r = tmn.Engine(model, precision="int8", max_streams=streams).replay(
        ticks.t, ticks.x, ticks.y, *vel, stream=ticks.stream)
    s = (ticks.stream - ticks.stream.min()).astype(np.int64)
    ok = (r.status == 0) & (r.t_grid - motion.t0[s] > WARM_S)
    truth = motion.position(r.t_grid[ok] + model.horizons_ms[-1] / 1e3, s[ok])
    return np.hypot(*(r.paths[ok, -1] - truth).T), r.total_ns[r.status == 0]


def any_rate(model: Model, seconds: float = 20.0, streams: int = 8, seed: int = 7,
             scale: tuple[float, float] = (1.0, 1.0),
             offset: tuple[float, float] = (0.0, 0.0)) -> list[AnyRateRow]:
    """The rows of the module docstring: native first, then RATES_HZ, with
    velocity and position-only."""
    native_hz = float(model.config["sample_rate_hz"])
    rows = []
    for velocity in (True, False):
        native = None
        for rate in (native_hz, *RATES_HZ):
            err, ns = _errors(model, rate, velocity, seconds, streams, seed, scale, offset)
            p99 = float(np.percentile(err, 99))
            native = native or p99
            rows.append(AnyRateRow(rate_hz=rate, velocity=velocity, ticks=int(ns.size),
                                   scored=int(err.size), p99_error=p99,
                                   p99_over_native=p99 / native,
                                   tick_ns_p50=float(np.median(ns))))
    return rows
