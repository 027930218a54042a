"""The Python face of the C++ engine: ``tmn.Engine``, its ``Replay``, and the
percentiles every tmn report gives of its timings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tmn import _core
from tmn.model import Model, load

_PRECISIONS = {"fp32": _core.Precision.fp32, "int8": _core.Precision.int8}
#: The five stages in tick order (``Prediction.stage_ns``, ``Replay.stage_ns``).
STAGES: tuple[str, ...] = _core.STAGES
#: The verdict byte of a refused tick in a replay or on the wire (not a Verdict).
NO_PREDICTION: int = _core.NO_PREDICTION
#: The name of every verdict byte, NO_PREDICTION's ("no_prediction") included.
VERDICT_NAMES: dict[int, str] = _core.VERDICT_NAMES
#: The percentiles every report gives, as (name, p): P50, P90, P99, P99.9.
PERCENTILES: tuple[tuple[str, float], ...] = _core.PERCENTILES
DEFAULT_MAX_STREAMS = 1024  # tmn.Engine's and tmn-serve's stream table
#: What a tick times (engine.hpp, "Timing"): "all" (the default), "sampled", "off".
TIMINGS: tuple[str, ...] = tuple(_core.Timing.__members__)
#: With timing "sampled", the stages of one tick in this many are timed, on average.
TIMING_SAMPLE_PERIOD: int = _core.TIMING_SAMPLE_PERIOD


def percentiles(samples: Any, axis: int | None = None) -> dict[str, Any]:
    """The :data:`PERCENTILES` and the maximum of ``samples``, keyed ``"p50"``,
    ``"p90"``, ``"p99"``, ``"p99.9"`` and ``"max"``: floats, or with ``axis`` one
    list per key (a value per column). Percentiles interpolate linearly between
    order statistics (numpy's default). An empty input raises ``ValueError``."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    if axis is None:
        a = a.ravel()
    qs = np.percentile(a, [q for _, q in PERCENTILES], axis=0 if axis is None else axis)
    out = {name: q for (name, _), q in zip(PERCENTILES, qs)}
    out["max"] = a.max(axis=0 if axis is None else axis)
    return {k: (v.tolist() if axis is not None else float(v)) for k, v in out.items()}


#: A tick (or reset) was refused. ``status`` is the :class:`tmn.Status` code;
#: the stream's state is untouched. Raised from C++, so a good tick pays for
#: no Python frame.
TickError = _core.TickError


@dataclass(frozen=True)
class Replay:
    """Everything ``Engine.replay`` computed, one row per input tick.

    ``paths`` is (N, K, 2) in data units (NaN where ``status != ok``), point k
    of row i the prediction for ``t_grid[i] + h_k`` (the newest grid sample the
    tick reached); ``verdict`` holds :class:`tmn.Verdict` values
    (:data:`NO_PREDICTION` where there is no prediction); ``blend`` is B's
    weight of the certified path in the served one; ``stage_ns`` is (N, 5) in
    the order of :data:`STAGES` and ``total_ns`` (N,), as the engine's timing
    measured them: with timing "sampled" the rows of the ticks whose stages
    were not timed are all 0 (:attr:`stages_timed` marks the others), and with
    "off" every value is 0; ``radius`` (N, K) is each point's calibrated
    90 % error radius in data units (NaN while warming, for refused ticks, and
    for a model without an uncertainty calibration; docs/uncertainty.md).
    With ``candidates=True``, ``prior`` and ``proposal`` (N, K, 2) hold each
    tick's two candidate paths, whichever was served: the Kalman prior, and
    the network's own path (A: measured position + output; B: prior +
    residual, before the gate's projection). Otherwise they are None.
    """

    paths: np.ndarray
    status: np.ndarray
    verdict: np.ndarray
    cert: np.ndarray
    d2: np.ndarray
    blend: np.ndarray
    t_grid: np.ndarray
    work: np.ndarray
    stage_ns: np.ndarray
    total_ns: np.ndarray
    radius: np.ndarray
    ok: int
    prior: np.ndarray | None = None
    proposal: np.ndarray | None = None

    @property
    def stages_timed(self) -> np.ndarray:
        """(N,) bool: the rows of ``stage_ns`` that were measured (an ok tick's
        stages never all take 0 ns: the network step alone is longer than a
        clock quantum). All True with timing "all" on ok ticks, about one in
        :data:`TIMING_SAMPLE_PERIOD` with "sampled", none with "off"."""
        return self.stage_ns.any(axis=1)


def _resolve_timing(timing: str) -> _core.Timing:
    try:
        return _core.Timing.__members__[timing]
    except KeyError:
        raise ValueError(f"timing must be one of {', '.join(TIMINGS)}, got {timing!r}") from None


def _resolve_isa(isa: str) -> _core.Isa:
    if isa == "auto":
        return _core.best_isa()
    try:
        chosen = _core.Isa.__members__[isa]
    except KeyError:
        raise ValueError(f"isa must be 'auto', 'scalar', 'avx2' or 'avx512', got {isa!r}") from None
    if not _core.isa_available(chosen):
        raise ValueError(f"isa {isa!r} is not available on this CPU or in this build")
    return chosen


class Engine:
    """The five-stage tick engine for one model.

    Not thread-safe: use one Engine per thread. All memory is allocated here;
    ``tick`` and ``replay`` never allocate in C++.
    """

    def __init__(self, model: Model | str | Path | None = None, precision: str = "int8",
                 max_streams: int = DEFAULT_MAX_STREAMS, isa: str = "auto",
                 timing: str = "all") -> None:
        """Build the engine from a model (a :class:`Model`, a folder, or None for the
        built-in one), with ``precision`` "int8" or "fp32" and room for
        ``max_streams`` concurrent streams. ``timing`` chooses what each tick
        times (:attr:`timing`)."""
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be 'int8' or 'fp32', got {precision!r}")
        self.model = model if isinstance(model, Model) else load(model)
        self._core = _core.Engine(self.model.spec(), _PRECISIONS[precision], int(max_streams),
                                  _resolve_isa(isa), _resolve_timing(timing))
        self.precision = precision
        # Bind the C++ methods directly: no Python frame between caller and engine.
        self.tick = self._core.tick
        self.tick_many = self._core.tick_many
        self.reset = self._core.reset

    @property
    def isa(self) -> str:
        """Instruction set of the network kernels in use."""
        return self._core.isa.name

    @property
    def timing(self) -> str:
        """What each tick times: "all" (every tick's total and five stage times;
        the default), "sampled" (every tick's total, the stages of one tick in
        :data:`TIMING_SAMPLE_PERIOD`) or "off" (nothing: ``total_ns`` and
        ``stage_ns`` are 0). Each clock read costs about what a short stage
        measures (bench/README.md). Settable between ticks."""
        return self._core.timing.name

    @timing.setter
    def timing(self, timing: str) -> None:
        self._core.timing = _resolve_timing(timing)

    @property
    def horizons(self) -> int:
        """Number of prediction horizons K."""
        return self._core.horizons

    @property
    def stream_count(self) -> int:
        """Streams currently held."""
        return self._core.stream_count

    def tick(self, t: float, x: float, y: float, vx: float | None = None,
             vy: float | None = None, stream: int = 0) -> _core.Prediction:
        """Run one tick through all five stages; without ``vx``, ``vy`` (a
        position-only sensor) the engine differentiates the positions exactly as
        training does. Ticks may come at any rate: the model runs on its own grid.
        Raises :class:`TickError` on bad input; the stream's state is then untouched.

        The :class:`tmn.Prediction` is the caller's own record (a later tick
        never changes it): ``path``, ``radius``, ``verdict``, ``at(dt)``,
        ``radius_at(dt)`` and the rest are read from it on demand."""
        return self._core.tick(t, x, y, vx, vy, stream)  # replaced per instance in __init__

    def tick_many(self, t: Any, x: Any, y: Any, vx: Any = None, vy: Any = None,
                  stream: Any = None, out: np.ndarray | None = None) -> np.ndarray:
        """Run the ticks of one frame, several streams at once: ``t``, ``x``, ``y``
        (and ``vx``, ``vy`` together, or neither) are equal-length arrays,
        ``stream`` their stream ids (None: all on stream 0), run in order as
        :meth:`tick` would run them, in one call with the GIL released.

        Returns one row per tick in a structured array of :attr:`batch_dtype`:
        ``stream``, ``t``, ``t_grid``, ``dt``, ``origin`` (2), ``d2``,
        ``cert_error``, ``blend``, ``work``, ``total_ns``, ``stage_ns`` (5),
        ``status``, ``verdict``, ``restarted``, ``stages_timed``, ``path``
        (K, 2) and ``radius`` (K,), each as on a :class:`tmn.Prediction`. A bad
        tick does not raise: its row has its ``status``, ``verdict``
        :data:`NO_PREDICTION` and NaN values, and its stream is untouched.
        ``out`` (an array of ``len(t)`` rows of :attr:`batch_dtype`) is written
        in place of a new array."""
        return self._core.tick_many(t, x, y, vx, vy, stream, out)  # replaced in __init__

    @property
    def batch_dtype(self) -> np.dtype:
        """The numpy dtype of :meth:`tick_many`'s rows (defined in C++ for this K)."""
        return self._core.batch_dtype

    def replay(self, t: np.ndarray, x: np.ndarray, y: np.ndarray, vx: np.ndarray | None = None,
               vy: np.ndarray | None = None, stream: np.ndarray | None = None,
               candidates: bool = False) -> Replay:
        """Run a whole recording in C++ (GIL released); without ``vx``, ``vy`` the
        ticks are position-only. Bad ticks are reported in ``status`` and do not
        stop the replay. ``stream=None`` means stream 0. ``candidates=True`` also
        returns every tick's prior and network path (see :class:`Replay`)."""
        if stream is not None:
            ids = np.asarray(stream)
            if ids.dtype.kind not in "iu":
                raise ValueError(f"stream ids must be integers, got dtype {ids.dtype}")
            if ids.dtype.kind == "i" and ids.size and ids.min() < 0:
                raise ValueError("stream ids must be in [0, 2^64)")
            stream = ids.astype(np.uint64, copy=False)
        r = self._core.replay(t, x, y, vx, vy, stream, bool(candidates))
        return Replay(**r)

    def reset(self, stream: int) -> None:
        """Forget a stream's state. Raises :class:`TickError` (unknown_stream)."""
        self._core.reset(stream)  # replaced per instance in __init__

    def evict_idle(self, idle_s: float) -> int:
        """Forget streams with no accepted tick for ``idle_s`` seconds; returns how many."""
        if not idle_s >= 0:
            raise ValueError(f"idle_s must be >= 0, got {idle_s!r}")
        return self._core.evict_idle(idle_s)
