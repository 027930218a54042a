"""The wire format in numpy (docs/protocol.md is normative).

Binary frames are little-endian: a 16-byte header, then fixed-size records.
A request carries a batch of ticks; the reply carries one prediction per tick,
in order, or an error. A request with a point query (``at=dt``) is answered
with one point per tick instead: the predicted position dt seconds after the
tick. Control messages are JSON objects. The codes and limits come from the
C++ definitions (cpp/include/tmn/protocol.hpp) through tmn._core.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from tmn import _core

MAGIC = _core.WIRE_MAGIC  # b"TMN1"
VERSION = _core.WIRE_VERSION
_K = _core.FrameKind
KIND_TICKS, KIND_PREDICTIONS, KIND_ERROR, KIND_POSITION_TICKS = (int(k) for k in (
    _K.ticks, _K.predictions, _K.error, _K.position_ticks))
KIND_POINT_TICKS, KIND_POINT_POSITION_TICKS, KIND_POINTS = (int(k) for k in (
    _K.point_ticks, _K.point_position_ticks, _K.points))
MAX_BATCH = _core.MAX_BATCH

HEADER = struct.Struct("<IHHII")  # magic, version, kind, count, seq
PREDICTION_INFO = struct.Struct("<HHI")  # horizons, record_bytes, reserved
ERROR_BODY = struct.Struct("<HHI")  # code, message_bytes, reserved
POINT_QUERY = struct.Struct("<d")  # dt, seconds after each tick

TICK_DTYPE = np.dtype([("stream", "<u8"), ("t", "<f8"), ("x", "<f8"), ("y", "<f8"),
                       ("vx", "<f8"), ("vy", "<f8")])

#: code -> name of every frame error (tmn._core.FrameError)
FRAME_ERRORS = {int(e): name for name, e in _core.FrameError.__members__.items()}


def prediction_dtype(horizons: int) -> np.dtype:
    """The record of one prediction for a model with ``horizons`` horizons."""
    return np.dtype([
        ("stream", "<u8"), ("t", "<f8"), ("status", "u1"), ("verdict", "u1"), ("flags", "u1"),
        ("reserved", "u1"), ("work", "<u4"), ("d2", "<f4"), ("cert_error", "<f4"),
        ("total_ns", "<u4"), ("stage_ns", "<u4", (len(_core.STAGES),)), ("t_grid", "<f8"),
        ("path", "<f8", (horizons, 2)), ("radius", "<f4", (horizons,)),
    ])


#: The record of one point (a reply to a point query).
POINT_DTYPE = np.dtype([
    ("stream", "<u8"), ("t", "<f8"), ("status", "u1"), ("verdict", "u1"), ("flags", "u1"),
    ("reserved", "u1"), ("radius", "<f4"), ("x", "<f8"), ("y", "<f8"), ("total_ns", "<u4"),
    ("reserved2", "<u4"),
])


class ProtocolError(RuntimeError):
    """The server answered with an error frame, or a frame could not be read."""

    def __init__(self, code: int | str, message: str, seq: int = 0) -> None:
        name = FRAME_ERRORS.get(code, str(code)) if isinstance(code, int) else code
        super().__init__(f"{name}: {message}")
        self.code = name
        self.seq = seq


def encode_ticks(ticks: np.ndarray, seq: int = 0, velocity: bool = True,
                 at: float | None = None) -> bytes:
    """A tick-batch frame from a TICK_DTYPE array (1 to MAX_BATCH records);
    ``velocity=False`` sends them as position-only ticks (their vx, vy are ignored
    and the engine differentiates the positions). With ``at`` (seconds, > 0) the
    reply holds, per tick, only the predicted point ``at`` seconds after it."""
    ticks = np.ascontiguousarray(ticks, dtype=TICK_DTYPE)
    if at is None:
        kind, query = (KIND_TICKS if velocity else KIND_POSITION_TICKS), b""
    else:
        if not 0 < at < 1e300:
            raise ValueError(f"at must be a positive, finite number of seconds, got {at!r}")
        kind = KIND_POINT_TICKS if velocity else KIND_POINT_POSITION_TICKS
        query = POINT_QUERY.pack(at)
    return (HEADER.pack(MAGIC, VERSION, kind, len(ticks), seq & 0xFFFFFFFF) + query
            + ticks.tobytes())


def make_ticks(t: np.ndarray, x: np.ndarray, y: np.ndarray, vx: np.ndarray | None = None,
               vy: np.ndarray | None = None, stream: np.ndarray | int = 0) -> np.ndarray:
    """A TICK_DTYPE array from columns (``stream`` may be one id for all); without
    ``vx``, ``vy`` they are 0 (send such ticks with ``velocity=False``)."""
    if (vx is None) != (vy is None):
        raise ValueError("give both vx and vy, or neither")
    out = np.empty(len(np.atleast_1d(t)), dtype=TICK_DTYPE)
    out["stream"], out["t"], out["x"], out["y"] = stream, t, x, y
    out["vx"], out["vy"] = (0.0, 0.0) if vx is None else (vx, vy)
    return out


@dataclass(frozen=True)
class Predictions:
    """A decoded reply: ``records`` has prediction_dtype(horizons), or POINT_DTYPE
    for a point query's reply (then ``horizons`` is 0)."""

    seq: int
    horizons: int
    records: np.ndarray


def decode_reply(frame: bytes) -> Predictions:
    """Decode a reply frame; raises ProtocolError for an error frame or garbage."""
    if len(frame) < HEADER.size:
        raise ProtocolError("bad_size", f"reply of {len(frame)} bytes is shorter than a header")
    magic, version, kind, count, seq = HEADER.unpack_from(frame)
    if magic != MAGIC or version != VERSION:
        raise ProtocolError("bad_magic", f"reply is not a tmn v{VERSION} frame")
    if kind == KIND_ERROR:
        code, n, _ = ERROR_BODY.unpack_from(frame, HEADER.size)
        start = HEADER.size + ERROR_BODY.size
        raise ProtocolError(code, frame[start:start + n].decode("utf-8", "replace"), seq)
    if kind == KIND_POINTS:
        if len(frame) != HEADER.size + count * POINT_DTYPE.itemsize:
            raise ProtocolError("bad_size", "points frame length does not match its header")
        return Predictions(seq=seq, horizons=0, records=np.frombuffer(
            frame, dtype=POINT_DTYPE, count=count, offset=HEADER.size))
    if kind != KIND_PREDICTIONS:
        raise ProtocolError("bad_kind", f"unexpected reply kind {kind}")
    horizons, record_bytes, _ = PREDICTION_INFO.unpack_from(frame, HEADER.size)
    dtype = prediction_dtype(horizons)
    start = HEADER.size + PREDICTION_INFO.size
    if record_bytes != dtype.itemsize or len(frame) != start + count * dtype.itemsize:
        raise ProtocolError("bad_size", "prediction frame length does not match its header")
    records = np.frombuffer(frame, dtype=dtype, count=count, offset=start)
    return Predictions(seq=seq, horizons=horizons, records=records)
