"""The naive baseline for ``tmn-bench serve``: a plain pyzmq + onnxruntime server.

    python -m tmn_bench.baselines.naive_server --model DIR [--endpoint EP] [--core C]

What a competent engineer writes in an afternoon: a ZeroMQ ROUTER socket in
Python speaking the SAME wire protocol as tmn-serve (docs/protocol.md, frames
via ``tmn.protocol``), a dict of per-stream GRU hidden states, and one
onnxruntime step (1 thread) per tick on the model's own single-step graph
(``tmn.onnx_graph.build_step_graph``, the graph of ``model.onnx``).

It is the NETWORK-ONLY naive server: it runs no Kalman prior, no gate, no
warm-up, no resampling onto the model's grid and no stage timing. Its network
input is the engine's features (cpp/include/tmn/ingest.hpp) as far as they
need no prior: the tick's velocity and the position high-pass (an
exponential moving average per stream); a System B model's prior features get
the tick's velocity and a zero innovation. Every ok tick is answered with verdict
``ungated`` and the path ``position + head output x output_scale`` (System A's
reading of the head, also for a System B model), so its numbers are not
predictions a user should trust; they are the cost of the network plus the
socket loop in Python. It does validate what the protocol requires (frame
errors, finite values, increasing t, stream capacity), because skipping that
would flatter it. ``health`` and ``stats`` control requests work (``stats``
has the recv→send latency); other commands get ``unknown_command``.
SIGTERM/SIGINT stop it with exit code 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

import tmn
from tmn.engine import DEFAULT_MAX_STREAMS, NO_PREDICTION
from tmn.protocol import (ERROR_BODY, HEADER, KIND_ERROR, KIND_PREDICTIONS, KIND_TICKS, MAGIC,
                          MAX_BATCH, PREDICTION_INFO, TICK_DTYPE, VERSION, prediction_dtype)

DESCRIPTION = ("naive server (NETWORK ONLY: pyzmq ROUTER + onnxruntime GRU step per tick, "
               "1 thread; no Kalman prior, no gate, no warm-up; verdict 'ungated')")
UNGATED = int(tmn.Verdict.ungated)
OK, NON_FINITE, TIME_NOT_INCREASING, CAPACITY_EXCEEDED = (int(s) for s in (
    tmn.Status.ok, tmn.Status.non_finite, tmn.Status.time_not_increasing,
    tmn.Status.capacity_exceeded))
E = tmn._core.FrameError  # frame error codes
LATENCY_SAMPLES = 1 << 20  # ring of recv->send times (ns) for stats
TICK_RECORD = struct.Struct("<Qddddd")  # protocol.TICK_DTYPE
assert TICK_RECORD.size == TICK_DTYPE.itemsize


class NaiveServer:
    """One ROUTER socket, one onnxruntime session, a dict of streams."""

    def __init__(self, model_dir: Path, endpoint: str,
                 max_streams: int = DEFAULT_MAX_STREAMS) -> None:
        import onnxruntime as ort

        from tmn.onnx_graph import build_step_graph
        from tmn_bench.baselines.onnxruntime_step import session_options

        self.model = tmn.load(model_dir)
        cfg = self.model.config
        norm = cfg["normalisation"]
        self.mean = np.asarray(norm["mean"], np.float64)
        self.std = np.asarray(norm["std"], np.float64)
        self.out_scale = np.tile(np.asarray(norm["output_scale"], np.float64),
                                 len(self.model.horizons_ms))
        self.K = len(self.model.horizons_ms)
        self.H = self.model.hidden
        self.max_streams = max_streams

        self.session = ort.InferenceSession(build_step_graph(self.model).SerializeToString(),
                                            session_options(ort),
                                            providers=["CPUExecutionProvider"])
        # bound once; each tick copies its stream's h in and h_next out
        self.x = np.zeros((1, len(self.mean)), np.float32)
        self.h = np.zeros((1, self.H), np.float32)
        self.y = np.zeros((1, 2 * self.K), np.float32)
        self.h_next = np.zeros((1, self.H), np.float32)
        self.binding = self.session.io_binding()
        for name, arr, out in (("x", self.x, False), ("h", self.h, False), ("y", self.y, True),
                               ("h_next", self.h_next, True)):
            v = ort.OrtValue.ortvalue_from_numpy(arr)
            (self.binding.bind_ortvalue_output if out else self.binding.bind_ortvalue_input)(
                name, v)

        self.streams: dict[int, list[Any]] = {}  # id -> [h (H,), t_last, ema_x, ema_y]
        ingest = cfg["ingest"]
        self.tau = float(ingest["highpass_ms"]) / 1000.0
        self.alpha = 1.0 - math.exp(-1.0 / (float(cfg["sample_rate_hz"]) * self.tau))
        # the prediction record (protocol.prediction_dtype) as a struct
        self.record = struct.Struct(f"<QdBBBBIffI5Id{2 * self.K}d{self.K}f")  # ..., path, radius
        assert self.record.size == prediction_dtype(self.K).itemsize
        self.info = PREDICTION_INFO.pack(self.K, self.record.size, 0)
        self.nan_path = [math.nan] * (2 * self.K)
        self.nan_radius = [math.nan] * self.K  # no uncertainty calibration
        self.mean_l, self.std_l = self.mean.tolist(), self.std.tolist()
        self.out_scale_l = self.out_scale.tolist()
        self.counts = {"messages": 0, "batches": 0, "ticks": 0, "ticks_ok": 0,
                       "tick_errors": 0, "frame_errors": 0}
        self.latency = np.zeros(LATENCY_SAMPLES, np.int64)
        self.n_latency = 0
        self.started = time.monotonic()

        self.ctx = zmq.Context(1)
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        self.sock.setsockopt(zmq.RCVHWM, 100_000)
        self.sock.bind(endpoint)
        self.endpoint = endpoint

    # -- one request of ticks -----------------------------------------------

    def error(self, code: tmn._core.FrameError, seq: int, message: str) -> bytes:
        """An error frame, counted in stats."""
        self.counts["frame_errors"] += 1
        msg = message.encode()
        return HEADER.pack(MAGIC, VERSION, KIND_ERROR, 0, seq) + ERROR_BODY.pack(
            int(code), len(msg), 0) + msg

    def ticks(self, frame: bytes) -> bytes:
        """A tick-batch frame in, a prediction (or error) frame out."""
        if len(frame) < HEADER.size:
            return self.error(E.bad_magic, 0, "frame shorter than the 16-byte header")
        magic, version, kind, count, seq = HEADER.unpack_from(frame)
        if magic != MAGIC:
            return self.error(E.bad_magic, 0, "not a tmn frame: bad magic (and not JSON)")
        if version != VERSION:
            return self.error(E.bad_version, seq,
                              f"unsupported frame version; this server speaks {VERSION}")
        if kind != KIND_TICKS:
            return self.error(E.bad_kind, seq, "only tick batches (kind 1) are accepted")
        if count == 0:
            return self.error(E.empty_batch, seq, "a tick batch needs at least one tick")
        if count > MAX_BATCH:
            return self.error(E.batch_too_large, seq, f"more than {MAX_BATCH} ticks in one frame")
        if len(frame) != HEADER.size + count * TICK_DTYPE.itemsize:
            return self.error(E.bad_size, seq, "frame length != 16 + 48 * count")
        self.counts["batches"] += 1
        # Plain Python per tick (struct in, struct out): for the small requests a
        # latency-bound client sends, this beats numpy's per-call overhead.
        out = [HEADER.pack(MAGIC, VERSION, KIND_PREDICTIONS, count, seq), self.info]
        x, h, h_next, y = self.x, self.h, self.h_next, self.y
        run, binding, isfinite = self.session.run_with_iobinding, self.binding, math.isfinite
        m, sd, sc, K = self.mean_l, self.std_l, self.out_scale_l, self.K
        n_ok = 0
        for sid, t, px, py, vx, vy in TICK_RECORD.iter_unpack(frame[HEADER.size:]):
            status = OK
            if not (isfinite(t) and isfinite(px) and isfinite(py) and isfinite(vx)
                    and isfinite(vy)):
                status = NON_FINITE
            else:
                state = self.streams.get(sid)
                if state is None:
                    if len(self.streams) >= self.max_streams:
                        status = CAPACITY_EXCEEDED
                    else:
                        state = self.streams[sid] = [np.zeros(self.H, np.float32), -math.inf,
                                                     px, py]
                elif t <= state[1]:
                    status = TIME_NOT_INCREASING
            if status != OK:
                out.append(self.record.pack(sid, t, status, NO_PREDICTION, 0, 0, 0, math.nan,
                                            math.nan, 0, 0, 0, 0, 0, 0, math.nan,
                                            *self.nan_path, *self.nan_radius))
                continue
            state[2] += self.alpha * (px - state[2])  # the high-pass's moving average
            state[3] += self.alpha * (py - state[3])
            f = (vx, vy, (px - state[2]) / self.tau, (py - state[3]) / self.tau, vx, vy, 0.0, 0.0)
            x[0] = tuple((f[i] - m[i]) / sd[i] for i in range(len(m)))
            h[0] = state[0]
            run(binding)  # one GRU step + head: y, h_next
            state[0][:] = h_next[0]
            state[1] = t
            yl = y[0].tolist()
            path = [(px if i % 2 == 0 else py) + yl[i] * sc[i] for i in range(2 * K)]
            out.append(self.record.pack(sid, t, OK, UNGATED, 0, 0, 0, math.nan, math.nan,
                                        0, 0, 0, 0, 0, 0, t, *path, *self.nan_radius))
            n_ok += 1
        self.counts["ticks"] += count
        self.counts["ticks_ok"] += n_ok
        self.counts["tick_errors"] += count - n_ok
        return b"".join(out)

    def control(self, payload: bytes) -> bytes:
        try:
            req = json.loads(payload)
            cmd = req.get("cmd") if isinstance(req, dict) else None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return json.dumps({"ok": False, "error": "bad_json", "message": str(e)}).encode()
        if cmd == "health":
            reply: dict[str, Any] = {
                "ok": True, "status": "serving", "uptime_s": time.monotonic() - self.started,
                "streams": len(self.streams), "server": DESCRIPTION,
                "model": {"path": str(self.model.path), "system": self.model.system,
                          "horizons_ms": self.model.horizons_ms, "hidden": self.H,
                          "precision": "fp32", "isa": "onnxruntime"}}
        elif cmd == "stats":
            n = min(self.n_latency, LATENCY_SAMPLES)
            lat: dict[str, Any] = {"count": n}
            if n:  # the shape of tmn-serve's histogram stats
                a = self.latency[:n]
                lat.update({"mean": float(a.mean()), **tmn.percentiles(a)})
            reply = {"ok": True, "stats": {**self.counts, "streams": len(self.streams),
                                           "server": DESCRIPTION,
                                           "latency_ns": {"server": lat}}}
        else:
            reply = {"ok": False, "error": "unknown_command",
                     "message": f"the naive server knows health and stats, not {cmd!r}"}
        return json.dumps(reply).encode()

    def serve(self, stop: threading.Event) -> None:
        """Answer requests until ``stop`` is set (checked every 100 ms when idle)."""
        sock, pc = self.sock, time.perf_counter_ns
        while not stop.is_set():
            if not sock.poll(100, zmq.POLLIN):
                continue
            parts = sock.recv_multipart(copy=True)
            t0 = pc()
            self.counts["messages"] += 1
            envelope, payload = parts[:1], None
            if len(parts) == 2 and parts[1]:
                payload = parts[1]
            elif len(parts) == 3 and parts[1] == b"" and parts[2]:
                envelope, payload = parts[:2], parts[2]
            if payload is None:
                reply = self.error(E.bad_envelope, 0, "expected [identity, (empty,) payload]")
            elif payload[:1] == b"{":
                reply = self.control(payload)
            else:
                reply = self.ticks(payload)
                self.latency[self.n_latency % LATENCY_SAMPLES] = pc() - t0
                self.n_latency += 1
            sock.send_multipart(envelope + [reply], copy=False)

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tmn_bench.baselines.naive_server",
                                description=DESCRIPTION)
    p.add_argument("--model", type=Path, required=True, help="model folder")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5556")
    p.add_argument("--core", type=int, default=None, help="pin the process to this CPU")
    p.add_argument("--max-streams", type=int, default=DEFAULT_MAX_STREAMS)
    args = p.parse_args(argv)
    if args.core is not None:
        try:
            os.sched_setaffinity(0, {args.core})
        except OSError as e:
            print(f"naive_server: cannot pin to core {args.core}: {e}", file=sys.stderr)
            return 2
    try:
        server = NaiveServer(args.model, args.endpoint, args.max_streams)
    except (tmn.ModelFormatError, FileNotFoundError, zmq.ZMQError) as e:
        print(f"naive_server: cannot start: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    print(f"{DESCRIPTION}: model {args.model} (System {server.model.system}) on "
          f"{args.endpoint}", file=sys.stderr, flush=True)
    try:
        server.serve(stop)
    finally:
        server.close()
    print(f"naive_server: stopped; {json.dumps(server.counts)}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
