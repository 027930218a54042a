"""One browser connection of the live demo: its bounded input and its predictions.

Contract. :meth:`Session.handle` takes one WebSocket message and returns the
reply to send, or None when the message was dropped by the rate limit and the
peer was already told so within the last second. It never raises for what a
peer sends.

* In: ``{"type": "ticks", "id": n, "ticks": [[t, x, y], ...]}``, position-only
  ticks with the pointer events' timestamps in seconds and positions in CSS
  pixels (1 px is one data unit); or ``{"type": "reset"}``.
* Out: ``{"type": "prediction", "id": n, "sources": {name: entry}, ...}``, the
  newest accepted tick's prediction from every source (see :class:`Sources`);
  ``{"type": "reset"}``; or ``{"type": "error", "message": ...}``.
* Bounds (:class:`Limits`): message size (also enforced by the socket),
  ticks per message, messages and ticks per second (token buckets), value
  ranges. Ticks the engine refuses (time not increasing, ...) are counted in
  the reply's ``refused``; they never change the stream's state.
* Cost: one ``Engine.replay`` per engine per message, in C++.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tmn import _core
from tmn.engine import VERDICT_NAMES, Engine, Replay, TickError
from tmn.model import Model
from tmn.version import __version__

_V = _core.Verdict
#: The page's colour for each verdict, keyed by the names tmn._core exports.
VERDICT_COLOURS: dict[str, str] = {
    VERDICT_NAMES[_V.pass_.value]: "#1a9850",
    VERDICT_NAMES[_V.fallback_implausible.value]: "#d73027",
    VERDICT_NAMES[_V.fallback_uncertified.value]: "#fc8d59",
    VERDICT_NAMES[_V.warming.value]: "#969696",
    VERDICT_NAMES[_V.ungated.value]: "#4575b4",
}
#: The dashed Kalman prior's colour.
PRIOR_COLOUR = "#762a83"
_STATUS_NAMES = {s.value: name for name, s in _core.Status.__members__.items()}
_OK = _core.Status.ok.value
_MAX_ID = 2**53  # an id the page's JavaScript numbers hold exactly


@dataclass(frozen=True)
class Limits:
    """What one browser connection may send. The page reads them from the hello."""

    max_message_bytes: int = 64 * 1024
    max_ticks_per_message: int = 512
    messages_per_s: float = 500.0   # sustained; a burst of a fifth of a second's worth
    ticks_per_s: float = 8000.0     # the fastest sensor DESIGN.md names (8 kHz)
    max_abs_position: float = 1e6   # CSS pixels
    max_clients: int = 8

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Limits.{name} must be a positive finite number, got {value!r}")


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        """Start full."""
        self.rate, self.burst, self._clock = rate, burst, clock
        self.tokens, self._last = burst, clock()

    def take(self, n: float) -> bool:
        """Take ``n`` tokens if there are that many; False (and take none) otherwise."""
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True


def _numbers(values: np.ndarray, digits: int = 2) -> list[float | None]:
    """A JSON-safe list: rounded, and None where a value is not finite."""
    return [round(float(v), digits) if math.isfinite(v) else None for v in values]


def source_entry(replay: Replay | Any, row: int) -> dict[str, Any]:
    """Row ``row`` of a replay as the page draws it: ``path`` ((K, 2) positions),
    ``verdict`` (its name) and, when the model has a calibrated uncertainty
    (docs/uncertainty.md) and the stream is past warming, ``radius`` (K values)."""
    entry: dict[str, Any] = {
        "path": [_numbers(p) for p in replay.paths[row]],
        "verdict": VERDICT_NAMES.get(int(replay.verdict[row]), "unknown"),
    }
    radius = np.asarray(replay.radius[row], dtype=np.float64).ravel()
    if np.isfinite(radius).any():  # a calibrated model past warming
        entry["radius"] = _numbers(radius)
    return entry


class Sources:
    """The engines every tick goes through: "B" (the served, gated path), "prior"
    (B's Kalman prior, the path a fallback serves: ``replay(candidates=True)``
    of the same engine) and "A" when an A model is given. One stream per
    connection in each engine; :meth:`open_stream` hands out the ids."""

    def __init__(self, model_b: Model, model_a: Model | None = None, precision: str = "int8",
                 max_streams: int = Limits.max_clients) -> None:
        """Build the engines; a model of the wrong system is a ValueError."""
        for flag, model, system in (("--model-b", model_b, "B"), ("--model-a", model_a, "A")):
            if model is not None and model.system != system:
                raise ValueError(f"{flag} needs a System {system} model; {model.path} is "
                                 f"System {model.system}")
        self.models = {"B": model_b, "A": model_a}
        self.b = Engine(model_b, precision, max_streams)
        self.a = Engine(model_a, precision, max_streams) if model_a is not None else None
        self._free = list(range(max_streams))[::-1]

    def open_stream(self) -> int | None:
        """A free stream id, or None when every one is in use."""
        return self._free.pop() if self._free else None

    def reset(self, stream: int) -> None:
        """Forget the stream in every engine (a stream with no tick yet is fine)."""
        for engine in (self.b, self.a):
            try:
                if engine is not None:
                    engine.reset(stream)
            except TickError:  # unknown_stream: it never had an accepted tick
                pass

    def close_stream(self, stream: int) -> None:
        """Forget the stream and give its id back."""
        self.reset(stream)
        self._free.append(stream)

    def describe(self) -> dict[str, dict[str, Any]]:
        """What the page shows about each source: label, model, horizons, colour
        (None: the verdict's) and whether the line is dashed."""
        b = self.models["B"]
        out = {"B": {"label": "B (gated)", "model": b.path.name, "horizons_ms": b.horizons_ms,
                     "colour": None, "dashed": False},
               "prior": {"label": "Kalman prior (B's)", "model": b.path.name,
                         "horizons_ms": b.horizons_ms, "colour": PRIOR_COLOUR, "dashed": True}}
        a = self.models["A"]
        if a is not None:
            out["A"] = {"label": "A", "model": a.path.name, "horizons_ms": a.horizons_ms,
                        "colour": VERDICT_COLOURS[VERDICT_NAMES[_V.ungated.value]],
                        "dashed": False}
        return out

    def predict(self, t: np.ndarray, x: np.ndarray, y: np.ndarray,
                stream: int) -> dict[str, Any]:
        """Run the ticks through every engine: ``sources`` (the newest accepted
        tick's entry per source), ``refused`` ({status name: count}, from B),
        ``t`` (that tick's time, or None) and ``engine_us`` (the engines' own
        timing of the ticks, summed)."""
        ids = np.full(len(t), stream, dtype=np.uint64)
        rb = self.b.replay(t, x, y, stream=ids, candidates=True)
        ok = np.flatnonzero(rb.status == _OK)
        sources: dict[str, Any] = {}
        engine_ns = int(rb.total_ns[ok].sum())
        if len(ok):
            sources["B"] = source_entry(rb, ok[-1])
            sources["prior"] = {"path": [_numbers(p) for p in rb.prior[ok[-1]]]}
        if self.a is not None:
            ra = self.a.replay(t, x, y, stream=ids)
            ok_a = np.flatnonzero(ra.status == _OK)
            engine_ns += int(ra.total_ns[ok_a].sum())
            if len(ok_a):
                sources["A"] = source_entry(ra, ok_a[-1])
        codes, counts = np.unique(rb.status[rb.status != _OK], return_counts=True)
        return {"sources": sources,
                "refused": {_STATUS_NAMES.get(int(c), str(c)): int(n) for c, n in zip(codes, counts)},
                "t": float(t[ok[-1]]) if len(ok) else None,
                "engine_us": round(engine_ns / 1e3, 1)}


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _error(message: str, seq: int | None = None) -> dict[str, Any]:
    return {"type": "error", "message": message, **({"id": seq} if seq is not None else {})}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Session:
    """One browser connection: its stream in every engine, its rate limits."""

    def __init__(self, sources: Sources, stream: int, limits: Limits = Limits(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Serve ``stream`` (from ``sources.open_stream()``) under ``limits``."""
        self.sources, self.stream, self.limits, self._clock = sources, stream, limits, clock
        self._messages = TokenBucket(limits.messages_per_s, limits.messages_per_s / 5, clock)
        self._ticks = TokenBucket(limits.ticks_per_s, limits.ticks_per_s, clock)
        self.dropped = 0
        self._last_drop_notice = -math.inf

    def hello(self) -> dict[str, Any]:
        """The first message to the page: the sources, the view modes, the verdict
        colours, the limits and the model's ``max_gap_ms`` (after that long
        without a tick the stream restarts and the page stops drawing)."""
        described = self.sources.describe()
        modes = [{"id": name, "label": d["label"], "draw": [name]} for name, d in described.items()]
        if "A" in described:
            modes.append({"id": "A+B", "label": "A + B", "draw": ["A", "B"]})
        return {"type": "hello", "version": __version__, "sources": described, "modes": modes,
                "verdict_colours": VERDICT_COLOURS, "limits": asdict(self.limits),
                "max_gap_ms": float(self.sources.models["B"].config["max_gap_ms"])}

    def _dropped(self, why: str) -> dict[str, Any] | None:
        self.dropped += 1
        now = self._clock()
        if now - self._last_drop_notice < 1.0:
            return None
        self._last_drop_notice = now
        return _error(f"rate limit: {why}; {self.dropped} message(s) dropped so far")

    def handle(self, message: str | bytes) -> dict[str, Any] | None:
        """The reply to one message (see the module's contract)."""
        if not self._messages.take(1):
            return self._dropped(f"more than {self.limits.messages_per_s:g} messages per second")
        if not isinstance(message, str):
            return _error("binary messages are not accepted: send JSON text")
        if len(message) > self.limits.max_message_bytes:
            return _error(f"message of {len(message)} characters is over the limit of "
                          f"{self.limits.max_message_bytes}")
        try:
            request = json.loads(message, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:
            return _error(f"bad JSON: {str(e)[:200]}")
        if not isinstance(request, dict):
            return _error(f"expected a JSON object, got {type(request).__name__}")
        kind = request.get("type")
        if kind == "ticks":
            return self._on_ticks(request)
        if kind == "reset":
            self.sources.reset(self.stream)
            return {"type": "reset"}
        return _error(f"unknown message type {_short(kind)}: expected 'ticks' or 'reset'")

    def _on_ticks(self, request: dict[str, Any]) -> dict[str, Any] | None:
        seq = request.get("id")
        if seq is not None and not (type(seq) is int and 0 <= seq <= _MAX_ID):
            return _error(f"'id' must be an integer in [0, 2^53], got {_short(seq)}")
        ticks, limit = request.get("ticks"), self.limits.max_ticks_per_message
        if not (isinstance(ticks, list) and 1 <= len(ticks) <= limit):
            return _error(f"'ticks' must be a list of 1 to {limit} [t, x, y] ticks", seq)
        for i, row in enumerate(ticks):
            if not (isinstance(row, list) and len(row) == 3
                    and all(type(v) in (int, float) for v in row)):
                return _error(f"tick {i} must be [t, x, y] with three numbers, got "
                              f"{_short(row)}", seq)
        try:
            arr = np.array(ticks, dtype=np.float64)
        except OverflowError:
            return _error("a tick holds a number too large for a float", seq)
        t, x, y = arr.T
        pos = self.limits.max_abs_position
        if not (np.all(np.isfinite(arr)) and np.all((t >= 0) & (t <= _core.MAX_ABS_TIME_S))
                and np.all(np.abs(arr[:, 1:]) <= pos)):
            return _error(f"ticks need 0 <= t <= {_core.MAX_ABS_TIME_S:g} s and |x|, |y| <= "
                          f"{pos:g} px, all finite", seq)
        if not self._ticks.take(len(ticks)):
            return self._dropped(f"more than {self.limits.ticks_per_s:g} ticks per second")
        return {"type": "prediction", "id": seq, **self.sources.predict(t, x, y, self.stream)}
