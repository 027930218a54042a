"""1,000,000 seeded mixed frames against a live daemon (issue 13, Build 3).

Valid tick batches of 64 interleaved streams, a quarter of them position-only
(kind 4: the engine derives the velocity), with refused ticks inside them
(NaN, Inf, huge finite values, t = 1e300, time going backwards), and between
them truncated, oversize and empty frames, wrong versions and kinds, random
bytes, unknown verbs and hostile JSON. Every request must be answered with
the right code, the daemon must not crash and must stop with exit code 0,
and the valid streams must be bit-identical to a clean run that never saw a
bad tick. ``TMN_MIXED_FRAMES`` changes the count (CI runs the full million).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, deque
from pathlib import Path

import numpy as np
import zmq
from serve_daemon import DaemonFactory
from test_serve import raw_socket, recv_frame

import tmn
from tmn.protocol import (ERROR_BODY, HEADER, KIND_ERROR, KIND_POINTS, KIND_POSITION_TICKS,
                          KIND_PREDICTIONS, KIND_TICKS, MAGIC, MAX_BATCH, TICK_DTYPE, VERSION,
                          decode_reply, make_ticks)

N_FRAMES = int(os.environ.get("TMN_MIXED_FRAMES", "1000000"))
SEED = 1313
STREAMS = 64
WINDOW = 64        # binary requests in flight
CHUNK = 20_000     # frames between two comparisons with the local engines
ST = {s.name: s.value for s in tmn.Status.__members__.values()}
FE = {"bad_magic": 1, "bad_version": 2, "bad_kind": 3, "bad_size": 4, "batch_too_large": 5,
      "empty_batch": 6}

HOSTILE_JSON = [
    (b'{"cmd": "fly"}', "unknown_command"),
    (b'{"cmd": "' + b"z" * 300 + b'"}', "unknown_command"),
    (b"{" * 3000, "bad_json"),
    (b'{"a": ' + b"[" * 3000 + b"]" * 3000 + b"}", "bad_json"),
    (b'{"cmd": "reset", "stream": ' + b"7" * 5000 + b"}", "bad_json"),
    (b'{"cmd": "reset", "stream": -3}', "bad_request"),
    (b'{\xff\xfe\xfd}', "bad_json"),
    (b'{"cmd": "health"}', None),  # answered normally
]


class Plan:
    """The seeded sequence: tick frames cut from one wire sequence of valid and
    refused ticks, interleaved with bad frames and JSON."""

    def __init__(self, rng: np.random.Generator, n_frames: int) -> None:
        self.rng = rng
        n_tick_frames = int(n_frames * 0.6)
        sizes = rng.integers(1, 9, n_tick_frames)
        n = int(sizes.sum())
        self.cuts = np.concatenate([[0], np.cumsum(sizes)])
        self.wire, self.expect, velocity_bad = self._wire(n)
        # a quarter of the tick frames position-only (kind 4), except those
        # holding a tick refused only for its velocity (which kind 4 ignores)
        frame = np.repeat(np.arange(n_tick_frames), sizes)
        position = rng.random(n_tick_frames) < 0.25
        position[np.unique(frame[velocity_bad])] = False
        self.position_frame = position
        self.velocity = ~position[frame]  # per tick
        kinds = np.full(n_frames, 0, np.int8)  # 0 ticks, 1 bad frame, 2 JSON
        kinds[n_tick_frames:] = 1
        kinds[n_tick_frames:n_tick_frames + max(1, n_frames // 200)] = 2
        rng.shuffle(kinds[1:])
        self.kinds = kinds

    def _wire(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """n ticks: valid round-robin over STREAMS smooth tracks, 1 in 12 replaced
        (after every stream has started) by a refused tick of a valid stream."""
        rng = self.rng
        per = -(-n // STREAMS) + 1
        ids = np.arange(STREAMS, dtype=np.uint64) + 7_000_000
        t0 = rng.uniform(1.0, 5.0, STREAMS)
        r = rng.uniform(0.5, 3.0, STREAMS)
        k = np.arange(per)[:, None]
        t = t0 + k / 2000.0 + 5e-5 * np.sin(k)  # jittered, still increasing
        w = 2 * np.pi * rng.uniform(0.2, 1.0, STREAMS)
        x, y = r * np.cos(w * t), r * np.sin(w * t)
        valid = make_ticks(t.ravel(), x.ravel(), y.ravel(), (-r * w * np.sin(w * t)).ravel(),
                           (r * w * np.cos(w * t)).ravel(), np.tile(ids, per))[:n]
        wire = valid.copy()
        expect = np.zeros(n, np.uint8)
        velocity_bad = np.zeros(n, bool)
        bad = np.zeros(n, bool)
        bad[STREAMS * 2:] = rng.random(n - STREAMS * 2) < 1 / 12
        keep = np.flatnonzero(~bad)
        wire[keep] = valid[:len(keep)]  # the valid ticks move on behind each refused one
        choice = rng.integers(0, 6, int(bad.sum()))
        for j, i in enumerate(np.flatnonzero(bad)):
            # a copy of the last valid tick (same stream, same t), then broken;
            # ingest checks finiteness, then ranges, then time order
            if expect[i - 1] == 0:
                last_valid = wire[i - 1]
            base = last_valid.copy()
            kind = choice[j]
            if kind == 0:
                base["x"], code = np.nan, "non_finite"
            elif kind == 1:
                base["vy"], code = -np.inf, "non_finite"
                velocity_bad[i] = True
            elif kind == 2:
                base["x"], base["vx"], code = 1.7e308, 1.7e308, "out_of_range"
            elif kind == 3:
                base["t"], code = 1e300, "out_of_range"
            elif kind == 4:
                base["y"], code = -1e41, "out_of_range"
            else:
                base["t"] -= 0.25  # backwards within its stream
                code = "time_not_increasing"
            wire[i], expect[i] = base, ST[code]
        return wire, expect, velocity_bad

    def bad_frame(self, seq: int) -> tuple[bytes, int, bool]:
        """(frame, expected code, whether the seq is echoed)."""
        rng = self.rng
        one = self.wire[:1]
        c = int(rng.integers(0, 8))
        if c == 0:
            n = int(rng.integers(1, 16))
            return bytes(rng.integers(0, 256, n, dtype=np.uint8)).replace(b"{", b"}"), 1, False
        if c == 1:
            body = bytes(rng.integers(0, 256, int(rng.integers(16, 400)), dtype=np.uint8))
            body = body.replace(b"{", b"}")
            return (b"X" + body[1:] if body[:4] != b"TMN1" else body), 1, False
        if c == 2:
            v = int(rng.integers(0, 65535))
            v += v >= VERSION  # any version but this server's
            return HEADER.pack(MAGIC, v, KIND_TICKS, 1, seq) + one.tobytes(), 2, True
        if c == 3:
            k = int(rng.choice([0, KIND_PREDICTIONS, KIND_ERROR, KIND_POINTS, 999]))  # not a request
            return HEADER.pack(MAGIC, VERSION, k, 1, seq) + one.tobytes(), 3, True
        if c == 4:  # truncated
            full = HEADER.pack(MAGIC, VERSION, KIND_TICKS, 3, seq) + np.repeat(one, 3).tobytes()
            return full[:int(rng.integers(16, len(full)))], 4, True
        if c == 5:  # trailing bytes
            return (HEADER.pack(MAGIC, VERSION, KIND_TICKS, 1, seq) + one.tobytes() + b"\0" *
                    int(rng.integers(1, 47))), 4, True
        if c == 6:
            return HEADER.pack(MAGIC, VERSION, KIND_TICKS, 0, seq), 6, True
        return (HEADER.pack(MAGIC, VERSION, KIND_TICKS, MAX_BATCH + 1, seq) +
                np.repeat(one, MAX_BATCH + 1).tobytes()), 5, True


def replay_kinds(engine: tmn.Engine, col: dict[str, np.ndarray], velocity: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """Engine.replay over runs of ticks with and without velocity, in order."""
    cut = np.concatenate([[0], np.flatnonzero(np.diff(velocity.astype(np.int8))) + 1,
                          [len(velocity)]])
    parts = []
    for a, b in zip(cut[:-1], cut[1:]):
        c = {f: v[a:b] for f, v in col.items()}
        vel = (c["vx"], c["vy"]) if velocity[a] else (None, None)
        parts.append(engine.replay(c["t"], c["x"], c["y"], *vel, c["stream"]))
    return {f: np.concatenate([getattr(r, f) for r in parts])
            for f in ("paths", "status", "verdict", "cert", "work")}


def test_a_million_mixed_frames_are_each_answered_right_and_streams_stay_exact(
        serve: DaemonFactory, models: dict[str, Path]) -> None:
    d = serve(models["B"], "--max-streams", "256")
    plan = Plan(np.random.default_rng(SEED), N_FRAMES)
    served = tmn.Engine(models["B"], max_streams=256)  # the daemon's answers
    clean = tmn.Engine(models["B"], max_streams=256)   # a run that never sees a bad tick
    tick_frame = 0
    pending: deque = deque()   # ("ticks", a, b, seq) or ("error", code, seq, echoed)
    buf_rec: list[np.ndarray] = []
    buf_rng: list[tuple[int, int]] = []
    want_frames: Counter = Counter()
    json_errors: Counter = Counter()
    t_start = time.monotonic()

    def check_chunk() -> None:
        if not buf_rec:
            return
        rec = np.concatenate(buf_rec)
        a, b = buf_rng[0][0], buf_rng[-1][1]
        wire, expect = plan.wire[a:b], plan.expect[a:b]
        np.testing.assert_array_equal(rec["status"], expect)
        np.testing.assert_array_equal(rec["stream"], wire["stream"])
        velocity = plan.velocity[a:b]
        col = {f: np.ascontiguousarray(wire[f]) for f in ("t", "x", "y", "vx", "vy", "stream")}
        ref = replay_kinds(served, col, velocity)
        np.testing.assert_array_equal(rec["status"], ref["status"])
        np.testing.assert_array_equal(rec["path"], ref["paths"])
        np.testing.assert_array_equal(rec["verdict"], ref["verdict"])
        np.testing.assert_array_equal(rec["cert_error"], ref["cert"])
        np.testing.assert_array_equal(rec["work"], ref["work"])
        ok = expect == 0
        v = {f: np.ascontiguousarray(wire[f][ok]) for f in col}
        cl = replay_kinds(clean, v, velocity[ok])
        assert (cl["status"] == 0).all()
        np.testing.assert_array_equal(rec["path"][ok], cl["paths"])
        assert np.isnan(rec["path"][~ok]).all()
        buf_rec.clear()
        buf_rng.clear()

    def take_reply(sock: zmq.Socket) -> None:
        frame = recv_frame(sock)
        kind = pending.popleft()
        magic, version, k, count, seq = HEADER.unpack_from(frame)
        assert (magic, version) == (MAGIC, VERSION)
        if kind[0] == "ticks":
            _, a, b, want_seq = kind
            assert k == KIND_PREDICTIONS and seq == want_seq and count == b - a, (kind, k)
            buf_rec.append(decode_reply(frame).records)
            buf_rng.append((a, b))
        else:
            _, code, want_seq, echoed = kind
            assert k == KIND_ERROR, (kind, frame[:24])
            got, _, _ = ERROR_BODY.unpack_from(frame, HEADER.size)
            assert got == code and seq == (want_seq if echoed else 0), (kind, got, seq)

    with raw_socket(d.endpoint) as s:
        for i, kind in enumerate(plan.kinds):
            seq = i & 0xFFFFFFFF
            if kind == 2:  # JSON: drain, then one synchronous round trip
                while pending:
                    take_reply(s)
                payload, error = HOSTILE_JSON[i % len(HOSTILE_JSON)]
                s.send(payload)
                reply = json.loads(recv_frame(s))
                assert reply.get("error") == error and reply["ok"] == (error is None), reply
                if error:
                    json_errors[error] += 1
                continue
            if kind == 0:
                a, b = int(plan.cuts[tick_frame]), int(plan.cuts[tick_frame + 1])
                tick_frame += 1
                kind_ = KIND_POSITION_TICKS if plan.position_frame[tick_frame - 1] else KIND_TICKS
                s.send(HEADER.pack(MAGIC, VERSION, kind_, b - a, seq) +
                       plan.wire[a:b].tobytes(), copy=False)
                pending.append(("ticks", a, b, seq))
            else:
                frame, code, echoed = plan.bad_frame(seq)
                s.send(frame, copy=False)
                pending.append(("error", code, seq, echoed))
                want_frames[code] += 1
            while len(pending) >= WINDOW:
                take_reply(s)
            if i % CHUNK == 0 and not pending:
                check_chunk()
        while pending:
            take_reply(s)
        assert not s.poll(200), "a request got more than one reply"
    check_chunk()
    took = time.monotonic() - t_start
    with d.client() as c:
        st = c.stats()["stats"]
    names = {v: k for k, v in FE.items()}
    for code, n in want_frames.items():
        assert st["frame_errors"][names[code]] == n, (names[code], st["frame_errors"])
    sent = plan.expect[:plan.cuts[tick_frame]]
    for name, value in ST.items():
        if value:
            assert st["tick_errors"][name] == int((sent == value).sum()), name
    assert st["control_errors"] == dict(json_errors)
    assert st["dropped_replies"] == 0
    print(f"{N_FRAMES} mixed frames ({tick_frame} tick frames, "
          f"{int(plan.position_frame[:tick_frame].sum())} of them position-only, "
          f"{int(plan.cuts[tick_frame])} ticks, {sum(want_frames.values())} bad frames, "
          f"{sum(json_errors.values())} bad JSON) in {took:.1f} s")
    assert d.terminate() == 0
