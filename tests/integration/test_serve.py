"""tmn-serve end to end: a real daemon process, real ZeroMQ sockets, docs/protocol.md.

Every prediction the daemon sends is checked against a local ``tmn.Engine``
replaying the same ticks (same model, same precision, int8 by default): the
daemon runs that very engine, so the paths must agree bit for bit. Around
that: batching and pipelining, every error code with the daemon still
answering afterwards, the control plane (health, stats, reset, reload under
traffic), the PUB socket, startup errors, SIGTERM, the pidfile and the
tmn-client CLI. Every loop is bounded in count and time, every receive has a
timeout, and no test asserts an absolute timing.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from serve_daemon import (HORIZONS, REPLY_TIMEOUT_S, STOP_TIMEOUT_S, Daemon, DaemonFactory,
                      free_tcp_endpoint, running_daemons, serve_argv, short_ipc_endpoint,
                      start_daemon, tmn_client_argv)

import tmn
from tmn import _core
from tmn.protocol import (ERROR_BODY, HEADER, KIND_ERROR, KIND_POINT_TICKS, KIND_PREDICTIONS,
                          KIND_TICKS, MAGIC, MAX_BATCH, POINT_QUERY, PREDICTION_INFO,
                          TICK_DTYPE, VERSION, Predictions, ProtocolError, decode_reply,
                          encode_ticks, make_ticks, prediction_dtype)

WARMING, PASS, UNGATED, NO_PREDICTION = 3, 0, 4, 255
GATED_VERDICTS = {0, 1, 2}  # pass, fallback_implausible, fallback_uncertified
STATUS = {"ok": 0, "non_finite": 1, "time_not_increasing": 2, "capacity_exceeded": 3}
RATE_HZ = 2000.0
WINDOW_TICKS = 256  # window_ms 128 of random_model at 2 kHz


# ---------------------------------------------------------------------------
# helpers


_next_stream = itertools.count(1 << 20, 1000)


def new_streams(n: int = 1) -> list[int]:
    """Stream ids no other test of the session uses (the shared daemons keep state)."""
    assert n <= 1000
    base = next(_next_stream)
    return [base + i for i in range(n)]


def smooth_track(n: int, stream: int, t0: float = 1.0, seed: int = 0,
                 radius: float = 1.0) -> np.ndarray:
    """``n`` ticks of one stream at ~2 kHz (±5 % jitter) along a circle whose
    angular speed drifts slowly; velocities are the exact derivative."""
    rng = np.random.default_rng(seed)
    t = t0 + np.cumsum(np.full(n, 1.0 / RATE_HZ) * (1.0 + rng.uniform(-0.05, 0.05, n)))
    w = 2 * np.pi * (0.5 + 0.1 * np.sin(0.3 * t))                  # rad/s
    phase = 2 * np.pi * (0.5 * t - (0.1 / 0.3) * np.cos(0.3 * t))  # its integral
    x, y = radius * np.cos(phase), radius * np.sin(phase)
    return make_ticks(t, x, y, -radius * w * np.sin(phase), radius * w * np.cos(phase), stream)


def mixed_streams(n_ticks: int, streams: int, seed: int, first_stream: int) -> np.ndarray:
    """``streams`` smooth tracks (different circles, speeds and start times)
    interleaved round-robin, ``n_ticks`` in total, as a server sees them."""
    per = -(-n_ticks // streams)
    rng = np.random.default_rng(seed)
    tracks = []
    for i in range(streams):
        tr = smooth_track(per, first_stream + i, t0=rng.uniform(0.0, 10.0), seed=seed + i,
                          radius=rng.uniform(0.2, 2.0))
        tracks.append(tr)
    return np.stack(tracks, axis=1).ravel()[:n_ticks].copy()


def local_replay(model: Path, ticks: np.ndarray, precision: str = "int8") -> tmn.Replay:
    """What the daemon must answer: a fresh local engine replaying the same ticks."""
    engine = tmn.Engine(model, precision=precision, max_streams=4096)
    col = {k: np.ascontiguousarray(ticks[k]) for k in ("t", "x", "y", "vx", "vy", "stream")}
    return engine.replay(col["t"], col["x"], col["y"], col["vx"], col["vy"], col["stream"])


def assert_same_as_local(records: np.ndarray, ticks: np.ndarray, ref: tmn.Replay) -> None:
    """Records from the daemon equal the local engine's outputs, bit for bit."""
    assert len(records) == len(ticks) == len(ref.status)
    np.testing.assert_array_equal(records["stream"], ticks["stream"])
    np.testing.assert_array_equal(records["t"], ticks["t"])
    np.testing.assert_array_equal(records["status"], ref.status)
    np.testing.assert_array_equal(records["verdict"], ref.verdict)
    np.testing.assert_array_equal(records["work"], ref.work)
    np.testing.assert_array_equal(records["cert_error"], ref.cert.astype(np.float32))
    np.testing.assert_array_equal(records["d2"], ref.d2.astype(np.float32))
    # NaN where status != ok on both sides; otherwise identical doubles
    np.testing.assert_array_equal(records["path"], ref.paths)


@contextmanager
def raw_socket(endpoint: str, kind: int = zmq.DEALER) -> Iterator[zmq.Socket]:
    """A bare pyzmq socket (for frames tmn.Client would never send)."""
    sock = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        yield sock
    finally:
        sock.close(linger=0)


def recv_frame(sock: zmq.Socket, timeout_s: float = REPLY_TIMEOUT_S) -> bytes:
    """One frame, or fail the test after ``timeout_s``."""
    if not sock.poll(int(timeout_s * 1000), zmq.POLLIN):
        pytest.fail(f"no reply within {timeout_s} s")
    return sock.recv()


def decode_error(frame: bytes) -> tuple[int, int, str]:
    """(code, seq, message) of an error frame; fails on any other frame."""
    assert len(frame) >= HEADER.size + ERROR_BODY.size, frame
    magic, version, kind, count, seq = HEADER.unpack_from(frame)
    assert (magic, version, kind, count) == (MAGIC, VERSION, KIND_ERROR, 0), frame[:16]
    code, n, _ = ERROR_BODY.unpack_from(frame, HEADER.size)
    start = HEADER.size + ERROR_BODY.size
    assert len(frame) == start + n
    return code, seq, frame[start:].decode("utf-8")


def tick_frame(ticks: np.ndarray, seq: int = 0, *, magic: int = MAGIC, version: int = VERSION,
               kind: int = KIND_TICKS, count: int | None = None, query: bytes = b"") -> bytes:
    """A tick frame whose header fields can lie (``query``: a point query's bytes)."""
    body = np.ascontiguousarray(ticks, dtype=TICK_DTYPE).tobytes()
    return (HEADER.pack(magic, version, kind, len(ticks) if count is None else count, seq)
            + query + body)


def stats(daemon: Daemon, **options: Any) -> dict[str, Any]:
    with daemon.client() as c:
        reply = c.stats(**options)
    assert reply["ok"], reply
    return reply["stats"]


def assert_still_answering(daemon: Daemon, model: Path) -> None:
    """A fresh stream gets a correct prediction and health says serving."""
    (sid,) = new_streams()
    ticks = smooth_track(3, sid)
    with daemon.client() as c:
        records = c.ticks(ticks).records
        h = c.health()
    assert_same_as_local(records, ticks, local_replay(model, ticks))
    assert h["ok"] and h["status"] == "serving"


def run_cli(argv: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                          stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------
# round trips


def test_health_names_the_served_model(daemon_b: Daemon, models: dict[str, Path]) -> None:
    with daemon_b.client() as c:
        h = c.health()
    assert h["ok"] is True and h["status"] == "serving"
    assert h["uptime_s"] >= 0 and isinstance(h["streams"], int)
    m = h["model"]
    assert Path(m["path"]) == models["B"]
    assert m["system"] == "B" and m["horizons_ms"] == HORIZONS["B"] and m["hidden"] == 32
    assert m["precision"] == "int8" and m["isa"] in ("scalar", "avx2", "avx512")
    assert len(m["sha256"]) == 64


def test_prediction_frame_layout_follows_the_protocol(daemon_b: Daemon) -> None:
    (sid,) = new_streams()
    ticks = smooth_track(5, sid)
    K = len(HORIZONS["B"])
    with raw_socket(daemon_b.endpoint) as s:
        s.send(encode_ticks(ticks, seq=0xDEADBEEF))
        frame = recv_frame(s)
    assert HEADER.unpack_from(frame) == (MAGIC, VERSION, KIND_PREDICTIONS, 5, 0xDEADBEEF)
    horizons, record_bytes, _ = PREDICTION_INFO.unpack_from(frame, HEADER.size)
    assert horizons == K and record_bytes == 64 + 20 * K  # path f64[K][2], radius f32[K]
    assert len(frame) == 16 + 8 + 5 * record_bytes
    rec = np.frombuffer(frame, prediction_dtype(K), offset=24)
    np.testing.assert_array_equal(rec["stream"], sid)
    np.testing.assert_array_equal(rec["t"], ticks["t"])
    assert rec["path"].shape == (5, K, 2)


def _stream_one_by_one(daemon: Daemon, ticks: np.ndarray) -> np.ndarray:
    """Synchronous single-tick round trips (tmn.Client.tick)."""
    out = []
    with daemon.client() as c:
        for r in ticks:
            p = c.ticks(np.array([r], dtype=TICK_DTYPE))
            assert p.records.shape == (1,)
            out.append(p.records[0])
    return np.array(out, dtype=out[0].dtype)


@pytest.mark.parametrize("system", ["B", "A"])
def test_round_trip_warms_then_predicts(system: str, daemon_b: Daemon, daemon_a: Daemon,
                                        models: dict[str, Path]) -> None:
    daemon = daemon_b if system == "B" else daemon_a
    K = len(HORIZONS[system])
    (sid,) = new_streams()
    ticks = smooth_track(WINDOW_TICKS + 100, sid)
    with daemon.client() as c:  # tmn.Client.tick: the simplest use
        first = c.tick(*(float(ticks[0][f]) for f in ("t", "x", "y", "vx", "vy")), stream=sid)
    assert first["path"].shape == (K, 2)
    rec = np.concatenate([[first], _stream_one_by_one(daemon, ticks[1:])])

    assert (rec["status"] == 0).all() and (rec["flags"] == 0).all()
    np.testing.assert_array_equal(rec["stream"], sid)
    np.testing.assert_array_equal(rec["t"], ticks["t"])
    assert np.isfinite(rec["path"]).all()
    v = rec["verdict"]
    n_warm = int(np.argmax(v != WARMING))
    assert (v[:n_warm] == WARMING).all(), "warming must be a prefix"
    assert abs(n_warm - WINDOW_TICKS) <= 16, n_warm  # one window_ms of sensor time
    after = PASS if system == "B" else UNGATED
    assert (v[n_warm:] == after).all(), np.unique(v[n_warm:])
    if system == "B":
        assert np.isfinite(rec["d2"][n_warm:]).all()
        assert (rec["cert_error"][n_warm:] >= 0).all() and (rec["work"][n_warm:] > 0).all()
    else:
        assert np.isnan(rec["d2"]).all() and (rec["work"] == 0).all()
    assert (rec["total_ns"] > 0).all()
    # the served predictions are the engine's, bit for bit
    assert_same_as_local(rec, ticks, local_replay(models[system], ticks))


def test_many_streams_in_mixed_batches_match_the_local_engine(
        daemon_b: Daemon, models: dict[str, Path]) -> None:
    ids = new_streams(200)
    ticks = mixed_streams(200 * (WINDOW_TICKS + 44), streams=200, seed=3, first_stream=ids[0])
    rng = np.random.default_rng(4)
    sizes = [1, MAX_BATCH, 7]
    while sum(sizes) < len(ticks):
        sizes.append(int(rng.integers(1, MAX_BATCH + 1)))
    bounds = np.minimum(np.cumsum([0] + sizes), len(ticks))
    bounds = bounds[np.concatenate([[True], np.diff(bounds) > 0])]
    records = []
    with daemon_b.client() as c:
        for a, b in zip(bounds[:-1], bounds[1:]):
            reply = c.ticks(ticks[a:b])
            assert reply.horizons == len(HORIZONS["B"]) and len(reply.records) == b - a
            records.append(reply.records)
    rec = np.concatenate(records)
    ref = local_replay(models["B"], ticks)
    assert_same_as_local(rec, ticks, ref)
    assert (rec["status"] == 0).all()
    assert (rec["verdict"] == PASS).sum() > 0 and (rec["verdict"] == WARMING).sum() > 0


def test_pipelined_requests_are_answered_in_order_with_their_seq(
        daemon_b: Daemon, models: dict[str, Path]) -> None:
    ids = new_streams(20)
    ticks = mixed_streams(20 * 300, streams=20, seed=5, first_stream=ids[0])
    rng = np.random.default_rng(6)
    cuts = np.unique(np.concatenate([[0, len(ticks)], rng.integers(1, len(ticks), 299)]))
    seqs = rng.choice(2**32, size=len(cuts) - 1, replace=False).astype(np.uint32)
    # SEND_HWM requests in flight: as many as the daemon queues to one peer that
    # does not read (docs/protocol.md, "Limits"); more may be answered `overloaded`
    window = _core.SEND_HWM
    replies = []
    with daemon_b.client() as c:
        for i, ((a, b), seq) in enumerate(zip(zip(cuts[:-1], cuts[1:]), seqs)):
            if i >= window:
                replies.append(c.recv())
            assert c.send(ticks[a:b], seq=int(seq)) == seq
        replies += [c.recv() for _ in range(len(seqs) - len(replies))]
        with pytest.raises(TimeoutError):  # exactly one reply per request
            c.recv(timeout_s=0.2)
    assert [r.seq for r in replies] == [int(s) for s in seqs]
    assert [len(r.records) for r in replies] == list(np.diff(cuts))
    assert_same_as_local(np.concatenate([r.records for r in replies]), ticks,
                         local_replay(models["B"], ticks))


def test_a_control_request_in_a_pipeline_gets_one_reply_and_ticks_stay_in_order(
        daemon_b: Daemon) -> None:
    """docs/protocol.md: every request gets exactly one reply; tick replies come in
    request order; a control reply, served off the tick path, may come later."""
    (sid,) = new_streams()
    # The daemon is paused (SIGSTOP) while every request is sent, so all of them
    # are queued when it reads the first: the order of the replies then depends
    # on the daemon alone, not on how the two processes happen to be scheduled.
    n = _core.SEND_HWM - 1  # with the health reply, as many as the daemon queues to a peer
    ticks = smooth_track(n, sid)
    with raw_socket(daemon_b.endpoint) as s:
        s.send(b'{"cmd": "health"}')  # connected and answering
        json.loads(recv_frame(s))
        os.kill(daemon_b.proc.pid, signal.SIGSTOP)
        try:
            s.send(encode_ticks(ticks[0:1], seq=0))
            s.send(b'{"cmd": "health"}')
            for i in range(1, n):
                s.send(encode_ticks(ticks[i:i + 1], seq=i))
            time.sleep(0.2)  # let our I/O thread hand everything to the kernel
        finally:
            os.kill(daemon_b.proc.pid, signal.SIGCONT)
        order = []
        for _ in range(n + 1):
            f = recv_frame(s)
            order.append("health" if f[:1] == b"{" else decode_reply(f).seq)
    assert order.count("health") == 1
    assert [o for o in order if o != "health"] == list(range(n))


def test_a_req_socket_works_too(daemon_b: Daemon, models: dict[str, Path]) -> None:
    (sid,) = new_streams()
    ticks = smooth_track(3, sid)
    with raw_socket(daemon_b.endpoint, zmq.REQ) as s:
        s.send(encode_ticks(ticks, seq=77))
        reply = decode_reply(recv_frame(s))
        assert reply.seq == 77
        assert_same_as_local(reply.records, ticks, local_replay(models["B"], ticks))
        s.send(b"\x00not a frame")  # an error reply keeps REQ's send/recv rhythm
        assert decode_error(recv_frame(s))[0] == 1
        s.send(b'{"cmd": "health"}')
        assert json.loads(recv_frame(s))["status"] == "serving"


# ---------------------------------------------------------------------------
# errors: each one answered, and the daemon still serving afterwards


def _one_tick() -> np.ndarray:
    (sid,) = new_streams()
    return smooth_track(1, sid)


FRAME_ERRORS = {
    # name: (frame builder, expected code, whether the seq is echoed)
    "short_frame": (lambda: b"\x00\x01\x02", 1, False),
    "bad_magic": (lambda: tick_frame(_one_tick(), 9, magic=0x12345678), 1, False),
    "bad_version": (lambda: tick_frame(_one_tick(), 9, version=VERSION + 1), 2, True),
    "version_1": (lambda: tick_frame(_one_tick(), 9, version=1), 2, True),
    "point_query_missing": (lambda: tick_frame(_one_tick(), 9, kind=KIND_POINT_TICKS), 4, True),
    "point_query_nan": (lambda: tick_frame(_one_tick(), 9, kind=KIND_POINT_TICKS,
                                           query=POINT_QUERY.pack(float("nan"))), 13, True),
    "point_query_negative": (lambda: tick_frame(_one_tick(), 9, kind=KIND_POINT_TICKS,
                                                query=POINT_QUERY.pack(-0.01)), 13, True),
    "bad_kind_predictions": (lambda: tick_frame(_one_tick(), 9, kind=KIND_PREDICTIONS), 3, True),
    "bad_kind_unknown": (lambda: tick_frame(_one_tick(), 9, kind=77), 3, True),
    "count_too_big_for_length": (lambda: tick_frame(_one_tick(), 9, count=2), 4, True),
    "trailing_byte": (lambda: tick_frame(_one_tick(), 9) + b"\x00", 4, True),
    "empty_batch": (lambda: HEADER.pack(MAGIC, VERSION, KIND_TICKS, 0, 9), 6, True),
    "batch_of_4097": (lambda: tick_frame(np.concatenate([_one_tick()] * (MAX_BATCH + 1)), 9),
                      5, True),
}
CODE_NAMES = {1: "bad_magic", 2: "bad_version", 3: "bad_kind", 4: "bad_size",
              5: "batch_too_large", 6: "empty_batch", 10: "bad_envelope", 13: "bad_query"}


@pytest.mark.parametrize("case", list(FRAME_ERRORS))
def test_bad_frame_gets_an_error_reply_and_the_daemon_goes_on(
        case: str, daemon_b: Daemon, models: dict[str, Path]) -> None:
    build, code, echoes_seq = FRAME_ERRORS[case]
    before = stats(daemon_b)["frame_errors"][CODE_NAMES[code]]
    with raw_socket(daemon_b.endpoint) as s:
        s.send(build())
        got_code, seq, message = decode_error(recv_frame(s))
        assert got_code == code and message
        assert seq == (9 if echoes_seq else 0)
        with pytest.raises(ProtocolError) as e:  # the client raises it with the code's name
            s.send(build())
            decode_reply(recv_frame(s))
        assert e.value.code == CODE_NAMES[code]
    assert stats(daemon_b)["frame_errors"][CODE_NAMES[code]] == before + 2
    assert_still_answering(daemon_b, models["B"])


@pytest.mark.parametrize("frames", [
    pytest.param(lambda t: [t, t], id="dealer_two_frames"),
    pytest.param(lambda t: [b"x", b"", t], id="dealer_three_frames"),
    pytest.param(lambda t: [t, b"", t, t], id="dealer_four_frames"),
    pytest.param(lambda t: [b""], id="empty_payload"),
    pytest.param(lambda t: [b"", b""], id="req_like_with_empty_payload"),
])
def test_bad_envelope_gets_bad_envelope(frames: Any, daemon_b: Daemon,
                                        models: dict[str, Path]) -> None:
    before = stats(daemon_b)["frame_errors"]["bad_envelope"]
    with raw_socket(daemon_b.endpoint) as s:
        s.send_multipart(frames(encode_ticks(_one_tick(), seq=5)))
        reply = s.recv_multipart() if s.poll(int(REPLY_TIMEOUT_S * 1000)) else pytest.fail(
            "no reply to a bad envelope")
        code, seq, _ = decode_error(reply[-1])
        assert (code, seq) == (10, 0)
    assert stats(daemon_b)["frame_errors"]["bad_envelope"] == before + 1
    assert_still_answering(daemon_b, models["B"])


@pytest.mark.parametrize("field,value", [("x", math.nan), ("y", math.inf), ("vx", -math.inf),
                                         ("vy", math.nan), ("t", math.nan), ("t", math.inf)])
def test_non_finite_tick_is_refused_and_leaves_the_stream_untouched(
        field: str, value: float, daemon_b: Daemon, models: dict[str, Path]) -> None:
    sid, other = new_streams(2)
    good = smooth_track(WINDOW_TICKS + 20, sid)
    other_ticks = smooth_track(4, other, seed=9)
    before = stats(daemon_b)["tick_errors"]["non_finite"]
    bad = good[-10].copy()
    bad[field] = value
    # the bad tick sits between good ticks of its own and another stream
    wire = np.concatenate([good[:-10], [bad], other_ticks[:2], good[-10:], other_ticks[2:]])
    with daemon_b.client() as c:
        rec = np.concatenate([c.ticks(wire[:-14]).records, c.ticks(wire[-14:]).records])
    i = len(good) - 10
    r = rec[i]
    assert r["status"] == STATUS["non_finite"] and r["verdict"] == NO_PREDICTION
    assert np.isnan(r["path"]).all()
    assert r["stream"] == sid
    np.testing.assert_array_equal(r["t"], bad["t"])
    # everything else equals a run that never saw the bad tick
    keep = np.ones(len(wire), bool)
    keep[i] = False
    assert_same_as_local(rec[keep], wire[keep], local_replay(models["B"], wire[keep]))
    assert stats(daemon_b)["tick_errors"]["non_finite"] == before + 1


@pytest.mark.parametrize("dt", [-0.001, 0.0, -1.0])
def test_time_going_backwards_is_refused_and_leaves_the_stream_untouched(
        dt: float, daemon_b: Daemon, models: dict[str, Path]) -> None:
    (sid,) = new_streams()
    good = smooth_track(WINDOW_TICKS + 10, sid)
    bad = good[-6].copy()
    bad["t"] = good[-7]["t"] + dt
    wire = np.concatenate([good[:-6], [bad], good[-6:]])
    before = stats(daemon_b)["tick_errors"]["time_not_increasing"]
    with daemon_b.client() as c:
        rec = c.ticks(wire).records
    i = len(good) - 6
    assert rec[i]["status"] == STATUS["time_not_increasing"]
    assert rec[i]["verdict"] == NO_PREDICTION and np.isnan(rec[i]["path"]).all()
    keep = np.arange(len(wire)) != i
    assert_same_as_local(rec[keep], wire[keep], local_replay(models["B"], wire[keep]))
    assert stats(daemon_b)["tick_errors"]["time_not_increasing"] == before + 1


def test_capacity_exceeded_until_a_stream_is_reset(serve: DaemonFactory,
                                                   models: dict[str, Path]) -> None:
    d = serve(models["B"], "--max-streams", "4", "--max-streams-per-client", "4")
    ids = new_streams(5)
    tracks = [smooth_track(3, s, seed=i) for i, s in enumerate(ids)]
    with d.client() as c:
        first = c.ticks(np.concatenate([t[:1] for t in tracks])).records
        assert list(first["status"]) == [0, 0, 0, 0, STATUS["capacity_exceeded"]]
        assert first[4]["verdict"] == NO_PREDICTION and np.isnan(first[4]["path"]).all()
        assert c.health()["streams"] == 4
        # the four held streams go on; the fifth is still refused
        second = c.ticks(np.concatenate([t[1:2] for t in tracks])).records
        assert list(second["status"]) == [0, 0, 0, 0, STATUS["capacity_exceeded"]]
        assert c.reset(ids[0]) == {"ok": True, "stream": ids[0]}
        third = c.ticks(tracks[4][2:3]).records
        assert third[0]["status"] == 0 and third[0]["verdict"] == WARMING
        s = c.stats()["stats"]
    assert s["tick_errors"]["capacity_exceeded"] == 2 and s["streams"] == 4
    # the held streams never noticed the refused one
    for i in (1, 2, 3):
        rec = np.array([first[i], second[i]])
        assert_same_as_local(rec, tracks[i][:2], local_replay(models["B"], tracks[i][:2]))


@pytest.mark.parametrize("payload,error", [
    (b'{"cmd": "health"', "bad_json"),
    (b'{"cmd": "health", }', "bad_json"),
    (b'{\xff\xfe}', "bad_json"),
    (b'{}', "unknown_command"),
    (b'{"cmd": "fly"}', "unknown_command"),
    (b'{"cmd": 3}', "unknown_command"),
    (b'{"cmd": "reset", "stream": 123456789012}', "unknown_stream"),
    (b'{"cmd": "reset", "stream": "x"}', "bad_request"),
    (b'{"cmd": "reset", "stream": -1}', "bad_request"),
    (b'{"cmd": "reset"}', "bad_request"),
    (b'{"cmd": "reload", "precision": "fp16"}', "bad_request"),
    (b'{"cmd": "reload", "model": "/nonexistent/tmn-model"}', "bad_request"),
])
def test_bad_control_request_gets_an_error_and_the_daemon_goes_on(
        payload: bytes, error: str, daemon_b: Daemon, models: dict[str, Path]) -> None:
    before = stats(daemon_b)["control_errors"].get(error, 0)
    with raw_socket(daemon_b.endpoint) as s:
        s.send(payload)
        reply = json.loads(recv_frame(s))
    assert reply["ok"] is False and reply["error"] == error and reply["message"], reply
    if b"/nonexistent" in payload:
        assert "/nonexistent/tmn-model" in reply["message"]
    assert stats(daemon_b)["control_errors"][error] == before + 1
    with daemon_b.client() as c:  # nothing was reloaded
        assert Path(c.health()["model"]["path"]) == models["B"]
    assert_still_answering(daemon_b, models["B"])


def test_reload_of_a_corrupt_model_is_refused_naming_the_file(
        daemon_b: Daemon, models: dict[str, Path], tmp_path: Path) -> None:
    bad = models["B"].parent / f"corrupt-{tmp_path.name}"  # under the model root
    shutil.copytree(models["B"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["hidden"] = "thirty-two"
    (bad / "config.json").write_text(json.dumps(cfg))
    with daemon_b.client() as c:
        reply = c.reload(str(bad))
        assert reply["ok"] is False and reply["error"] == "bad_request"
        assert "config.json" in reply["message"] and "hidden" in reply["message"]
        assert Path(c.health()["model"]["path"]) == models["B"]
    assert_still_answering(daemon_b, models["B"])


# ---------------------------------------------------------------------------
# control plane


def test_reset_makes_the_stream_start_over(daemon_b: Daemon, models: dict[str, Path]) -> None:
    (sid,) = new_streams()
    ticks = smooth_track(WINDOW_TICKS + 30, sid)
    with daemon_b.client() as c:
        before = c.ticks(ticks[:-5]).records
        assert before[-1]["verdict"] == PASS
        held = c.health()["streams"]
        assert c.reset(sid) == {"ok": True, "stream": sid}
        assert c.health()["streams"] == held - 1
        after = c.ticks(ticks[-5:]).records
        again = c.reset(sid)
        assert c.reset(sid + 999_999) ["error"] == "unknown_stream"
    assert again == {"ok": True, "stream": sid}
    # after the reset the stream is new: warming, and equal to a stream that
    # only ever saw these five ticks
    assert (after["verdict"] == WARMING).all()
    assert_same_as_local(after, ticks[-5:], local_replay(models["B"], ticks[-5:]))


def _segments(ks: list[int]) -> list[tuple[int, int]]:
    """[start, end) runs of equal values."""
    cuts = [0] + [i for i in range(1, len(ks)) if ks[i] != ks[i - 1]] + [len(ks)]
    return list(zip(cuts[:-1], cuts[1:]))


def test_reload_under_traffic_answers_every_request_with_exactly_one_model(
        serve: DaemonFactory, models: dict[str, Path]) -> None:
    """One thread pipelines tick batches without pause; another reloads A and B
    in turn. Every request is answered, none with an error; each reply is
    entirely one model's (K tells which), and the ticks between two reloads
    are exactly what a fresh engine of that model answers (streams start over)."""
    d = serve(models["B"])
    ids = new_streams(16)
    K = {s: len(h) for s, h in HORIZONS.items()}
    system_of = {v: k for k, v in K.items()}
    plan = ["A", "B", "A", "B", "A", "B"]
    max_batches, hard_deadline = 40_000, time.monotonic() + 60.0
    in_flight = 8
    sent: list[np.ndarray] = []
    replies: list[Predictions] = []
    errors: list[str] = []
    latest_k = {"k": K["B"]}
    stop = threading.Event()

    def pump() -> None:
        t = 1.0
        try:
            with d.client() as c:
                pending: deque[int] = deque()
                extra = 0
                while len(sent) < max_batches and time.monotonic() < hard_deadline:
                    if stop.is_set():
                        extra += 1
                        if extra > 50:  # some more traffic after the last reload
                            break
                    while len(pending) < in_flight:
                        batch = make_ticks(np.full(16, t), np.cos(t), np.sin(t), -np.sin(t),
                                           np.cos(t), np.array(ids, dtype=np.uint64))
                        t += 1.0 / RATE_HZ
                        pending.append(c.send(batch))
                        sent.append(batch)
                    try:
                        r = c.recv()
                    except ProtocolError as e:
                        errors.append(f"error reply: {e}")
                        pending.popleft()
                        continue
                    if r.seq != pending.popleft():
                        errors.append(f"reply out of order: seq {r.seq}")
                    replies.append(r)
                    latest_k["k"] = r.horizons
                while pending:
                    r = c.recv()
                    if r.seq != pending.popleft():
                        errors.append(f"reply out of order: seq {r.seq}")
                    replies.append(r)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(f"pump: {type(e).__name__}: {e}")

    reload_replies: list[dict[str, Any]] = []

    def reloader() -> None:
        try:
            with d.client() as c:
                for target in plan:
                    reload_replies.append(c.reload(str(models[target])))
                    deadline = time.monotonic() + 20.0
                    # wait until the traffic has seen this model, so every reload
                    # happens under traffic and is visible in the replies
                    while latest_k["k"] != K[target] and time.monotonic() < deadline:
                        time.sleep(0.002)
                    if latest_k["k"] != K[target]:
                        errors.append(f"model {target} never answered a tick after its reload")
                        return
        except Exception as e:  # noqa: BLE001
            errors.append(f"reloader: {type(e).__name__}: {e}")
        finally:
            stop.set()

    threads = [threading.Thread(target=pump), threading.Thread(target=reloader)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=90.0)
    assert not any(th.is_alive() for th in threads), "traffic or reload thread hung"
    assert not errors, errors[:5]
    assert len(replies) == len(sent), "every request gets exactly one reply"
    assert [r["ok"] for r in reload_replies] == [True] * len(plan), reload_replies
    assert [r["model"]["system"] for r in reload_replies] == plan

    ks = [r.horizons for r in replies]
    for r, batch in zip(replies, sent):
        assert r.horizons in system_of
        assert r.records.dtype == prediction_dtype(r.horizons)
        np.testing.assert_array_equal(r.records["stream"], batch["stream"])
        np.testing.assert_array_equal(r.records["t"], batch["t"])
        assert (r.records["status"] == 0).all()
        if system_of[r.horizons] == "A":
            assert set(r.records["verdict"]) <= {WARMING, UNGATED}
            assert np.isnan(r.records["d2"]).all()
        else:
            assert set(r.records["verdict"]) <= {WARMING} | GATED_VERDICTS
    segments = _segments(ks)
    assert [system_of[ks[a]] for a, _ in segments] == ["B"] + plan
    # between two reloads, the replies are a fresh engine of that model, bit for bit
    for a, b in segments:
        ticks = np.concatenate(sent[a:b])
        assert_same_as_local(np.concatenate([r.records for r in replies[a:b]]), ticks,
                             local_replay(models[system_of[ks[a]]], ticks))
    s = stats(d)
    assert s["reloads"] == len(plan) and s["dropped_replies"] == 0
    assert s["model"]["system"] == "B"


def test_reload_without_a_model_rereads_the_current_one_in_fp32(
        serve: DaemonFactory, models: dict[str, Path]) -> None:
    d = serve(models["A"])
    (sid,) = new_streams()
    ticks = smooth_track(WINDOW_TICKS + 10, sid)
    with d.client() as c:
        reply = c.reload(precision="fp32")
        assert reply["ok"] and reply["model"]["precision"] == "fp32"
        assert reply["model"]["system"] == "A"
        rec = c.ticks(ticks).records
    assert_same_as_local(rec, ticks, local_replay(models["A"], ticks, precision="fp32"))


# ---------------------------------------------------------------------------
# stats and live accuracy


@pytest.fixture(scope="module")
def streamed(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, Any]:
    """A private daemon fed 1.5 s of one smooth stream in batches of 50, plus one
    non-finite tick, one out-of-order tick, two bad frames and one bad control
    request; then its stats (with ``stream=`` and ``per_stream``)."""
    with running_daemons() as started:
        d = start_daemon(models["B"], log_dir=tmp_path_factory.mktemp("streamed"))
        started.append(d)
        (sid,) = new_streams()
        seconds = 1.5  # > 0.5 s of scored predictions at every horizon
        ticks = smooth_track(int(seconds * RATE_HZ), sid)
        bad_nan = ticks[100].copy()
        bad_nan["x"] = math.nan
        bad_back = ticks[200].copy()
        bad_back["t"] = ticks[150]["t"]
        with d.client() as c:
            n_batches = 0
            for a in range(0, len(ticks), 50):
                c.ticks(ticks[a:a + 50])
                n_batches += 1
                if a == 150:  # after tick 199: one non-finite and one out-of-order tick
                    c.ticks(np.array([bad_nan, bad_back], dtype=TICK_DTYPE))
                    n_batches += 1
        with raw_socket(d.endpoint) as s:
            for frame in (b"\x00junk", HEADER.pack(MAGIC, VERSION, KIND_TICKS, 0, 1)):
                s.send(frame)
                decode_error(recv_frame(s))
            s.send(b"{not json")
            assert json.loads(recv_frame(s))["error"] == "bad_json"
        st = stats(d, stream=sid, per_stream=True)
    return {"stats": st, "sid": sid, "ticks": ticks, "n_batches": n_batches,
            "ref": local_replay(models["B"], ticks)}


def test_stats_count_every_request_tick_error_and_verdict(streamed: dict[str, Any]) -> None:
    s, ref, n_batches = streamed["stats"], streamed["ref"], streamed["n_batches"]
    n = len(streamed["ticks"])
    assert s["batches"] == n_batches and s["ticks"] == n + 2 and s["ticks_ok"] == n
    assert s["messages"] >= n_batches + 3
    assert s["tick_errors"] == {"non_finite": 1, "time_not_increasing": 1,
                                "capacity_exceeded": 0, "unknown_stream": 0,
                                "out_of_range": 0, "non_finite_output": 0}
    fe = s["frame_errors"]
    assert fe["bad_magic"] == 1 and fe["empty_batch"] == 1
    assert sum(fe.values()) == 2
    assert s["control_errors"] == {"bad_json": 1}
    names = {0: "pass", 1: "fallback_implausible", 2: "fallback_uncertified", 3: "warming",
             4: "ungated"}
    assert s["verdicts"] == {names[v]: int((ref.verdict == v).sum()) for v in names}
    gated = sum(s["verdicts"][k] for k in ("pass", "fallback_implausible",
                                           "fallback_uncertified"))
    assert s["gate_pass_rate"] == pytest.approx(s["verdicts"]["pass"] / gated)
    passed = ref.verdict == PASS
    assert s["mean_cert_error"] == pytest.approx(float(ref.cert[passed].mean()), rel=1e-6)
    assert s["dropped_replies"] == 0 and s["dropped_pub"] == 0 and s["reloads"] == 0
    assert s["streams"] == 1 and s["evicted_streams"] == 0
    assert s["uptime_s"] > 0 and s["model"]["system"] == "B"


def test_stats_latency_covers_every_stage_the_tick_and_the_server(
        streamed: dict[str, Any]) -> None:
    lat = streamed["stats"]["latency_ns"]
    n = len(streamed["ticks"])
    phases = {f"server_{p}" for p in _core.SERVER_PHASES}
    assert set(lat) == {*tmn.STAGES, "tick", "server", *phases, "report_interval"}
    # one stream: every tick but its first has an interval since the previous one
    counts = {"server": streamed["n_batches"], "report_interval": n - 1,
              **dict.fromkeys(phases, streamed["n_batches"])}
    for name, h in lat.items():
        assert {"count", "mean", "p50", "p90", "p99", "p99.9", "max"} <= set(h), name
        assert h["count"] == counts.get(name, n), name
        assert 0 <= h["p50"] <= h["p90"] <= h["p99"] <= h["p99.9"] <= h["max"], name
        assert 0 <= h["mean"] <= h["max"], name
    assert lat["tick"]["p50"] > 0 and lat["server"]["p50"] > 0
    assert lat["server"]["p50"] >= lat["tick"]["p50"]  # a request holds >= one tick
    # a request's phases (waiting, computing, sending) add up to its server time
    assert sum(lat[p]["mean"] for p in phases) == pytest.approx(lat["server"]["mean"], rel=0.02)
    assert lat["server_compute"]["p50"] >= lat["tick"]["p50"]


def test_stats_report_the_process_and_per_stream_accuracy(streamed: dict[str, Any]) -> None:
    s = streamed["stats"]
    acc = s["live_accuracy"]
    assert [a["horizon_ms"] for a in acc] == HORIZONS["B"]
    assert all(a["count"] > 0 for a in acc)
    # one stream: its own accuracy is the overall one (per-stream histograms are
    # coarser, 4 buckets per octave, so their percentiles may sit ~19 % higher)
    assert list(s["per_stream_accuracy"]) == [str(streamed["sid"])]
    for mine in (s["stream_accuracy"], s["per_stream_accuracy"][str(streamed["sid"])]):
        assert len(mine) == len(acc)
        for a, b in zip(mine, acc):
            assert a["horizon_ms"] == b["horizon_ms"] and a["count"] == b["count"]
            assert a["mean"] == pytest.approx(b["mean"]) and a["max"] == b["max"]
            for q in ("p50", "p90", "p99", "p99.9"):
                assert a[q] == pytest.approx(b[q], rel=0.25), (q, a, b)
    p = s["process"]
    assert p["rss_bytes"] > 0 and p["cpu_user_s"] + p["cpu_system_s"] > 0
    assert p["threads"] >= 2


def _local_live_errors(ticks: np.ndarray, ref: tmn.Replay, horizons_ms: list[float]
                       ) -> list[np.ndarray]:
    """Per horizon: errors of every non-warming prediction whose horizon lies
    inside the recording, against the linearly interpolated truth."""
    t, x, y = ticks["t"], ticks["x"], ticks["y"]
    scored = (ref.status == 0) & (ref.verdict != WARMING)
    out = []
    for k, h in enumerate(horizons_ms):
        m = scored & (t + h / 1000.0 <= t[-1])
        tt = t[m] + h / 1000.0
        truth = np.stack([np.interp(tt, t, x), np.interp(tt, t, y)], axis=1)
        out.append(np.hypot(*(ref.paths[m, k] - truth).T))
    return out


def test_live_accuracy_scores_every_horizon_like_the_local_engine(
        streamed: dict[str, Any]) -> None:
    """One kept prediction per 10 ms of sensor time, scored at each horizon once
    the truth is there: the count follows from the stream's length, and the
    errors are those the same engine makes locally (roughly: a subsample)."""
    ticks = streamed["ticks"]
    local = _local_live_errors(ticks, streamed["ref"], HORIZONS["B"])
    t_scored = ticks["t"][-1] - ticks["t"][WINDOW_TICKS]  # sensor time after warm-up
    report = []
    for a, errs in zip(streamed["stats"]["live_accuracy"], local):
        expected_n = (t_scored - a["horizon_ms"] / 1e3) / 0.01
        report.append((a["horizon_ms"], a["count"], round(expected_n), a["mean"],
                       float(errs.mean())))
    bad = [r for r in report
           if abs(r[1] - r[2]) > 0.2 * r[2] + 3 or not 0.5 * r[4] <= r[3] <= 2.0 * r[4]]
    assert not bad, ("(horizon ms, count, expected count, served mean error, local mean "
                     f"error) off: {bad}")
    for a, errs in zip(streamed["stats"]["live_accuracy"], local):
        assert 0 <= a["p50"] <= a["p90"] <= a["p99"] <= a["p99.9"] <= a["max"]
        assert a["max"] <= 1.1 * errs.max() + 1e-9


# ---------------------------------------------------------------------------
# PUB socket


def _recv_pub(sub: zmq.Socket, timeout_s: float) -> list[bytes] | None:
    if not sub.poll(int(timeout_s * 1000), zmq.POLLIN):
        return None
    return sub.recv_multipart()


def test_pub_socket_publishes_each_stream_under_its_topic(serve: DaemonFactory,
                                                          models: dict[str, Path]) -> None:
    d = serve(models["B"], pub=True)
    assert d.pub is not None
    before, follow, after = new_streams(3)
    tracks = {s: smooth_track(300, s, seed=i) for i, s in enumerate((before, follow, after))}
    ctx = zmq.Context.instance()
    one, every = ctx.socket(zmq.SUB), ctx.socket(zmq.SUB)
    try:
        for sub, topic in ((one, struct.pack("<Q", follow)), (every, b"")):
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, topic)
            sub.connect(d.pub)
        with d.client() as c:
            # subscriptions travel asynchronously: probe with ticks of `follow`
            # until both subscribers hear one (bounded), then drain
            heard = {id(one): False, id(every): False}
            used = 0
            while not all(heard.values()) and used < 200:
                c.ticks(tracks[follow][used:used + 1])
                used += 1
                for sub in (one, every):
                    if _recv_pub(sub, 0.025) is not None:
                        heard[id(sub)] = True
            assert all(heard.values()), "subscribers never received a probe"
            for sub in (one, every):
                for _ in range(1000):
                    if _recv_pub(sub, 0.3) is None:
                        break
            # the measured part: 10 ticks of each of three streams, interleaved
            batch = np.concatenate([[tracks[s][used + i] for s in (before, follow, after)]
                                    for i in range(10)]).astype(TICK_DTYPE)
            reply = c.ticks(batch)
        got_one = [_recv_pub(one, REPLY_TIMEOUT_S) for _ in range(10)]
        got_every = [_recv_pub(every, REPLY_TIMEOUT_S) for _ in range(30)]
        assert None not in got_one and None not in got_every, "missing publications"
        assert _recv_pub(one, 0.3) is None and _recv_pub(every, 0.3) is None, "extra ones"
    finally:
        one.close(linger=0)
        every.close(linger=0)
    wanted = [i for i, r in enumerate(reply.records) if r["stream"] == follow]
    for msgs, rows in ((got_one, wanted), (got_every, list(range(30)))):
        for parts, i in zip(msgs, rows):
            assert parts is not None and len(parts) == 2
            topic, frame = parts
            rec = reply.records[i]
            assert topic == struct.pack("<Q", int(rec["stream"]))
            p = decode_reply(frame)
            assert p.seq == reply.seq and p.horizons == reply.horizons and len(p.records) == 1
            assert p.records[0].tobytes() == rec.tobytes()  # the very record of the reply
    assert stats(d)["dropped_pub"] == 0


# ---------------------------------------------------------------------------
# process life: SIGTERM, pidfile, startup errors


def test_sigterm_exits_0_logs_final_stats_and_removes_the_pidfile(
        serve: DaemonFactory, models: dict[str, Path], tmp_path: Path) -> None:
    pidfile = tmp_path / "tmn.pid"
    d = serve(models["B"], pidfile=pidfile)
    assert pidfile.read_text().strip() == str(d.proc.pid)
    (sid,) = new_streams()
    with d.client() as c:
        c.ticks(smooth_track(10, sid))
    assert d.terminate() == 0
    assert not pidfile.exists()
    log = d.log()
    assert "final stats:" in log, log
    final = json.loads(log.split("final stats:", 1)[1].strip().splitlines()[0])
    assert final["ticks"] == 10 and final["ticks_ok"] == 10
    assert sum(final["frame_errors"].values()) == 0


def test_sigint_also_exits_0(serve: DaemonFactory, models: dict[str, Path]) -> None:
    d = serve(models["A"])
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(timeout=STOP_TIMEOUT_S) == 0
    d.returncode = 0


def test_unavailable_core_is_refused_listing_the_valid_cores(models: dict[str, Path]) -> None:
    r = run_cli(serve_argv(models["B"], free_tcp_endpoint(), "--core", "999"))
    assert r.returncode != 0
    assert "999" in r.stderr and "valid cores" in r.stderr
    listed = r.stderr.split("valid cores", 1)[1]
    for core in os.sched_getaffinity(0):
        assert str(core) in listed


def test_port_in_use_is_refused_naming_the_endpoint(models: dict[str, Path]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        r = run_cli(serve_argv(models["B"], endpoint))
    assert r.returncode != 0
    assert endpoint in r.stderr, r.stderr


@pytest.mark.parametrize("damage", ["garbage_weights", "broken_config", "missing_folder"])
def test_corrupt_model_is_refused_naming_the_file(damage: str, models: dict[str, Path],
                                                  tmp_path: Path) -> None:
    folder = tmp_path / "model"
    if damage == "missing_folder":
        named = str(folder)
    else:
        shutil.copytree(models["B"], folder)
        if damage == "garbage_weights":
            (folder / "model.safetensors").write_bytes(b"\x00garbage" * 10)
            named = "model.safetensors"
        else:
            (folder / "config.json").write_text('{"format_version": ')
            named = "config.json"
    r = run_cli(serve_argv(folder, free_tcp_endpoint()))
    assert r.returncode != 0
    assert named in r.stderr, r.stderr


# ---------------------------------------------------------------------------
# tmn-client CLI against the daemon


def test_tmn_client_demo_shorter_than_a_horizon_says_nothing_was_scored(
        serve: DaemonFactory, tmp_path: Path) -> None:
    """0.5 s of demo scores no 500 ms prediction yet; it said so with a traceback."""
    d = serve(None, endpoint=short_ipc_endpoint(tmp_path))
    r = run_cli(tmn_client_argv() + ["--endpoint", d.endpoint, "demo", "--seconds", "0.5",
                                     "--rate", "max"])
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "live accuracy at 500 ms: no prediction scored yet (n=0)" in r.stdout, r.stdout


def test_tmn_client_cli_health_stats_replay_and_demo(serve: DaemonFactory,
                                                     models: dict[str, Path],
                                                     tmp_path: Path) -> None:
    d = serve(models["B"], endpoint=short_ipc_endpoint(tmp_path))
    cli = tmn_client_argv() + ["--endpoint", d.endpoint]

    r = run_cli(cli + ["health"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "serving"

    r = run_cli(cli + ["demo", "--seconds", "1", "--rate", "max"])
    assert r.returncode == 0, r.stderr
    assert "live accuracy at 500 ms" in r.stdout and "server-side latency" in r.stdout

    (sid,) = new_streams()
    rec = smooth_track(600, sid, t0=50.0)
    csv = tmp_path / "track.csv"
    rows = np.stack([rec[k] for k in ("t", "x", "y", "vx", "vy")] +
                    [rec["stream"].astype(np.float64)], axis=1)
    np.savetxt(csv, rows, delimiter=",", header="t,x,y,vx,vy,stream", comments="", fmt="%.17g")
    r = run_cli(cli + ["replay", str(csv), "--batch", "7"])
    assert r.returncode == 0, r.stderr
    assert "600 ticks in 86 requests" in r.stdout

    r = run_cli(cli + ["stats"])
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)["stats"]
    assert st["ticks_ok"] == 2000 + 600 and st["tick_errors"]["time_not_increasing"] == 0
