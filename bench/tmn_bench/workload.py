"""The one synthetic workload of the benchmarks: smooth multi-stream 2-D motion.

:class:`Motion` makes ``streams`` interleaved sensor streams chunk by chunk, so
a run of any length continues every stream (the serve benchmark asks for more
until its time is up); :func:`synthetic_ticks` is a fixed-length recording of
it (the engine benchmark, the naive server's test). numpy only.

Each stream moves along a sum of three sinusoids per axis (0.2-3 Hz, like
hand, gaze or vehicle motion) plus a slow drift, in units of ``scale``
around ``offset``, sampled at ``rate_hz`` with +-5 % timing jitter (``jitter``) around
the grid ``t_0 + n / rate_hz``. Positions
carry 0.1 % noise; velocities are the exact derivative plus 1 % noise. The
streams share a clock and arrive round-robin, as a server would see them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tmn.protocol import make_ticks

DESCRIPTION = ("interleaved 2-D motions, 3 sinusoids (0.2-3 Hz) + drift per axis, 2 kHz with "
               "+-5% jitter, 0.1% position / 1% velocity noise, scaled by the model's "
               "normalisation")


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

    def rows(self, s: slice) -> TickStreams:
        """The rows ``s`` (copies)."""
        return TickStreams(*(a[s].copy() for a in self.columns()), self.stream[s].copy(),
                           self.rate_hz)

    def columns(self) -> tuple[np.ndarray, ...]:
        """(t, x, y, vx, vy), what ``Engine.replay`` takes before the stream ids."""
        return self.t, self.x, self.y, self.vx, self.vy

    def wire(self) -> np.ndarray:
        """The rows as protocol tick records (``tmn.protocol.TICK_DTYPE``)."""
        return make_ticks(*self.columns(), self.stream)


class Motion:
    """The motion of the module docstring for ``streams`` streams (ids from
    ``first_stream`` up), made chunk by chunk: each :meth:`next` continues them."""

    def __init__(self, streams: int, seed: int = 0, scale: tuple[float, float] = (1.0, 1.0),
                 offset: tuple[float, float] = (0.0, 0.0), rate_hz: float = 2000.0,
                 first_stream: int = 0, jitter: float = 0.05) -> None:
        if streams < 1:
            raise ValueError("need at least one stream")
        rng = np.random.default_rng(seed)
        sc = np.asarray(scale, np.float64)[None, :, None]
        self.amp = rng.uniform(0.1, 0.5, (streams, 2, 3)) * sc          # per stream, axis
        self.w = 2.0 * np.pi * rng.uniform(0.2, 3.0, (streams, 2, 3))
        self.phase = rng.uniform(0.0, 2.0 * np.pi, (streams, 2, 3))
        self.drift = rng.normal(0.0, 0.05, (streams, 2)) * sc[..., 0]
        self.t0 = rng.uniform(0.0, 10.0, streams)
        self.offset = np.asarray(offset, np.float64)
        # noise: 0.1 % of the scale on positions, 1 % of the typical speed on velocities
        self.pos_noise = 1e-3 * np.asarray(scale, np.float64)
        self.vel_noise = 1e-2 * (np.sqrt(0.5 * ((self.amp * self.w) ** 2).sum(-1))
                                 + np.abs(self.drift))
        self.ids = np.arange(first_stream, first_stream + streams, dtype=np.uint64)
        self.rate_hz, self.rng, self.row, self.jitter = float(rate_hz), rng, 0, float(jitter)

    @property
    def streams(self) -> int:
        return len(self.ids)

    def position(self, t: np.ndarray, index: np.ndarray) -> np.ndarray:
        """The noise-free (x, y) of stream number ``index`` (0-based, not its id)
        at times ``t``: (n, 2)."""
        arg = self.w[index] * t[:, None, None] + self.phase[index]              # (n, 2, 3)
        return (self.offset + self.drift[index] * t[:, None]
                + (self.amp[index] * np.sin(arg)).sum(-1))

    def next(self, n: int) -> TickStreams:
        """The next ``n`` ticks of every stream, round-robin: ``n * streams`` rows."""
        S, rng = self.streams, self.rng
        i = self.row + np.arange(n, dtype=np.float64)
        self.row += n
        j = rng.uniform(-self.jitter, self.jitter, (n, S)) if self.jitter else 0.0
        t = self.t0[None, :] + (i[:, None] + j) / self.rate_hz
        arg = self.w[None] * t[:, :, None, None] + self.phase[None]            # (n, S, 2, 3)
        pos = (self.offset + self.drift[None] * t[..., None]
               + (self.amp[None] * np.sin(arg)).sum(-1))                      # (n, S, 2)
        vel = self.drift[None] + (self.amp[None] * self.w[None] * np.cos(arg)).sum(-1)
        pos = pos + rng.normal(0.0, 1.0, pos.shape) * self.pos_noise
        vel = vel + rng.normal(0.0, 1.0, vel.shape) * self.vel_noise[None]
        return TickStreams(t.ravel(), pos[..., 0].ravel(), pos[..., 1].ravel(),
                           vel[..., 0].ravel(), vel[..., 1].ravel(), np.tile(self.ids, n),
                           self.rate_hz)


def synthetic_ticks(n_ticks: int, streams: int = 8, rate_hz: float = 2000.0, seed: int = 0,
                    scale: tuple[float, float] = (1.0, 1.0),
                    offset: tuple[float, float] = (0.0, 0.0),
                    first_stream: int = 0, jitter: float = 0.05) -> TickStreams:
    """``n_ticks`` rows of :class:`Motion` (the last round may cover only some streams)."""
    if n_ticks < 1:
        raise ValueError("need at least one tick")
    m = Motion(streams, seed, scale, offset, rate_hz, first_stream, jitter)
    return m.next(-(-n_ticks // streams)).rows(slice(0, n_ticks))
