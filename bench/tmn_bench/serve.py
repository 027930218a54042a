"""``tmn-bench serve``: tmn-serve against the echo floor and a naive server, in one run.

    tmn-bench serve [--model DIR] [--requests N] [--json OUT]
                    [--server-core C --client-core C]

Every server runs as its own process on the same loopback TCP transport, with
the same model and the same client (bench/README.md explains every number):

* ``tmn``        ``tmn-serve --core S`` (blocking: the loop sleeps in zmq_poll)
* ``tmn-spin``   ``tmn-serve --core S --spin`` (busy-polls; only when S is not the client's core)
* ``echo``       ``tmn-serve --echo --core S``: the same socket loop answering each
                 request with its own bytes, no engine; the floor (and ``echo-spin``)
* ``naive``      ``bench/naive_server.py``: pyzmq ROUTER + onnxruntime, one GRU step
                 per tick, network only (skipped, with the reason, outside a checkout)

For each: round trips of single-tick requests from a synchronous DEALER
(``time.perf_counter_ns``), the server's own receive→send latency from its
``stats``, and the throughput of pipelined batched requests for 1, 10 and 100
streams with the server-side latency of that run. Each measurement gets a
fresh server process, so the server's histograms hold that measurement only.
Then ratios, and the targets as MET, MISSED or SKIPPED.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

import tmn
from tmn import benchutil as bu
from tmn.protocol import (HEADER, KIND_PREDICTIONS, KIND_TICKS, MAGIC, MAX_BATCH, TICK_DTYPE,
                          VERSION, prediction_dtype)

SCHEMA_VERSION = 1
STARTUP_TIMEOUT_S = 60.0   # import + model load + bind, on a busy machine
STOP_TIMEOUT_S = 20.0
REPLY_TIMEOUT_MS = 10_000  # any single reply; a server that stalls longer has failed
RATE_HZ = 2000.0
NAIVE_SCRIPT = Path("bench") / "naive_server.py"


# ---------------------------------------------------------------------------
# CLI


def add_serve_command(sub: Any) -> None:
    """Register ``tmn-bench serve``."""
    p = sub.add_parser(
        "serve", help="tmn-serve round trips and throughput vs the echo floor and a naive "
        "pyzmq+onnxruntime server",
        description="Round-trip latency of single-tick requests, server-side receive-to-send "
        "latency and pipelined throughput (1, 10, 100 streams) of tmn-serve (blocking and "
        "--spin), tmn-serve --echo (the floor) and bench/naive_server.py, each a separate "
        "process pinned to a core; ratios and targets.")
    p.add_argument("--model", type=Path, default=None,
                   help="model folder (default: the built-in model, else a random System B "
                   "model written to a temporary folder)")
    p.add_argument("--requests", type=bu.positive_int, default=20_000,
                   help="timed single-tick round trips per server (default 20000)")
    p.add_argument("--warmup", type=int, default=2_000,
                   help="untimed round trips before them (default 2000)")
    p.add_argument("--throughput-seconds", type=bu.positive_float, default=1.5,
                   help="length of each throughput run (default 1.5 s)")
    p.add_argument("--in-flight", type=bu.positive_int, default=16,
                   help="requests kept in flight in the throughput runs (default 16)")
    p.add_argument("--batch", type=bu.positive_int, default=10,
                   help="ticks per request in the throughput runs with more streams than "
                   "this; requests cycle over the streams (default 10)")
    p.add_argument("--server-core", type=int, default=None,
                   help="CPU of the servers' loops (default: the last usable CPU)")
    p.add_argument("--client-core", type=int, default=None,
                   help="CPU of the benchmark client (default: the first usable CPU)")
    p.add_argument("--naive-script", type=Path, default=None,
                   help=f"the naive server (default: {NAIVE_SCRIPT} of the checkout)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic motion")
    p.add_argument("--json", type=Path, default=None, metavar="OUT",
                   help="also write every number to this JSON file")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 if any target is MISSED")
    p.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    """Run ``tmn-bench serve``: measure, print the table, write the JSON."""
    try:
        layout = core_layout(args.server_core, args.client_core)
        if args.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
        if args.batch > MAX_BATCH:
            raise ValueError(f"--batch must be <= {MAX_BATCH}, got {args.batch}")
    except ValueError as e:
        print(f"tmn-bench serve: {e}", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        try:
            folder, source = stack.enter_context(_model_folder(args.model))
        except (FileNotFoundError, tmn.ModelFormatError) as e:
            print(f"tmn-bench serve: cannot use the model: {e}", file=sys.stderr)
            return 2
        results = run_serve_bench(
            folder, source, layout=layout, requests=args.requests, warmup=args.warmup,
            throughput_s=args.throughput_seconds, in_flight=args.in_flight, batch=args.batch,
            naive_script=find_naive_script(args.naive_script), seed=args.seed, log=_log)
    print(format_serve_report(results))
    if args.json is not None:
        from tmn.bench import write_json

        write_json(results, args.json)
        print(f"\nwrote {args.json}")
    failed = [n for n, srv in results["servers"].items() if srv["status"] == "failed"]
    if failed:
        print(f"tmn-bench serve: FAILED servers: {', '.join(failed)}", file=sys.stderr)
        return 1
    missed = [t for t in results["targets"] if t["status"] == "MISSED"]
    return 1 if (args.strict and missed) else 0


def _log(msg: str) -> None:
    print(f"[tmn-bench serve] {msg}", file=sys.stderr, flush=True)


@contextmanager
def _model_folder(path: Path | None) -> Iterator[tuple[Path, str]]:
    """The model folder to serve and a sentence saying where it came from."""
    if path is not None:
        tmn.load(path)  # refuse a bad model here, with the file and field, not in 5 servers
        yield Path(path).resolve(), f"given: {path}"
        return
    try:
        builtin = tmn.load()
    except (FileNotFoundError, tmn.ModelFormatError) as e:
        builtin, reason = None, str(e)
    if builtin is not None:
        yield Path(builtin.path), "built-in model"
        return
    from tmn.testing import random_model

    tmp = Path(tempfile.mkdtemp(prefix="tmn-bench-serve-model-"))
    try:
        folder = random_model(tmp / "random_B", system="B", seed=0)
        yield folder, (f"RANDOM System B model (tmn.testing.random_model, seed 0, temporary "
                       f"folder) because the built-in model is not usable: {reason}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def find_naive_script(given: Path | None) -> Path | None:
    """bench/naive_server.py: as given, else in the current directory's checkout,
    else in the checkout this package was imported from; None if absent."""
    if given is not None:
        return given if given.is_file() else None
    here = Path(__file__).resolve()
    for root in (Path.cwd(), *here.parents):
        candidate = root / NAIVE_SCRIPT
        if candidate.is_file():
            return candidate
    return None


# ---------------------------------------------------------------------------
# Cores


@dataclass(frozen=True)
class CoreLayout:
    """Which CPU the client and the servers' loops run on."""

    client: int
    server: int
    usable: tuple[int, ...]

    @property
    def spin_allowed(self) -> bool:
        """A spinning loop on the client's own core would starve the client."""
        return self.server != self.client

    def describe(self) -> str:
        shared = "the SAME core (spin modes skipped)" if not self.spin_allowed else "another core"
        return (f"client (this process, its ZeroMQ I/O thread included) pinned to CPU "
                f"{self.client}; every server's loop on CPU {self.server}, {shared} "
                f"(tmn-serve --core: the loop and, when blocking, libzmq's I/O thread; with "
                f"--spin the I/O thread is not pinned; tmn-serve's Python control thread is not "
                f"pinned; the naive server is one process pinned whole); usable CPUs: "
                f"{','.join(map(str, self.usable))}")

    def as_dict(self) -> dict[str, Any]:
        return {"client_core": self.client, "server_core": self.server,
                "usable_cores": list(self.usable), "spin_allowed": self.spin_allowed,
                "description": self.describe()}


def core_layout(server: int | None, client: int | None) -> CoreLayout:
    """Default: server loop on the last usable CPU, client on the first."""
    usable = tuple(sorted(os.sched_getaffinity(0)))
    for flag, core in (("--server-core", server), ("--client-core", client)):
        if core is not None and core not in usable:
            raise ValueError(f"{flag} {core} is not usable; usable CPUs: "
                             f"{', '.join(map(str, usable))}")
    return CoreLayout(client=usable[0] if client is None else client,
                      server=usable[-1] if server is None else server, usable=usable)


@contextmanager
def pinned(core: int) -> Iterator[None]:
    """Pin the calling thread (and threads it starts) to ``core`` for a while."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# ---------------------------------------------------------------------------
# Servers


@dataclass(frozen=True)
class ServerSpec:
    """One server configuration under test."""

    name: str
    kind: str          # "tmn", "echo" or "naive"
    spin: bool = False

    @property
    def description(self) -> str:
        return {
            "tmn": "tmn-serve, blocking loop (zmq_poll)",
            "tmn-spin": "tmn-serve --spin, busy-polling loop",
            "echo": "tmn-serve --echo: same loop, answers each request with its own bytes",
            "echo-spin": "tmn-serve --echo --spin",
            "naive": "bench/naive_server.py: pyzmq ROUTER + onnxruntime step per tick, "
                     "NETWORK ONLY (no Kalman prior, no gate)",
        }[self.name]

    def argv(self, model: Path, endpoint: str, core: int, naive_script: Path | None
             ) -> list[str]:
        if self.kind == "naive":
            assert naive_script is not None
            return [sys.executable, str(naive_script), "--model", str(model),
                    "--endpoint", endpoint, "--core", str(core)]
        argv = [sys.executable, "-m", "tmn.serve", "--model", str(model), "--endpoint",
                endpoint, "--core", str(core), "--log-level", "WARNING"]
        if self.spin:
            argv.append("--spin")
        if self.kind == "echo":
            argv.append("--echo")
        return argv


SERVERS = (ServerSpec("tmn", "tmn"), ServerSpec("echo", "echo"),
           ServerSpec("tmn-spin", "tmn", spin=True), ServerSpec("echo-spin", "echo", spin=True),
           ServerSpec("naive", "naive"))


class ServerError(RuntimeError):
    """A server did not start, did not answer, or did not stop cleanly."""


def _free_tcp_endpoint() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class ServerProcess:
    """A server subprocess on a free loopback port; ``with`` starts it and waits
    (bounded) for ``health``, and stops it with SIGTERM (killed if it hangs)."""

    def __init__(self, argv_for: Callable[[str], list[str]], ctx: zmq.Context) -> None:
        self._argv_for = argv_for
        self._ctx = ctx
        self.endpoint = ""
        self.argv: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()
        self.health: dict[str, Any] = {}

    def __enter__(self) -> ServerProcess:
        try:
            return self._start()
        except BaseException:
            self.stop()
            self._log.close()
            raise

    def _start(self) -> ServerProcess:
        for _attempt in range(3):  # a free port may be taken before the server binds it
            self.endpoint = _free_tcp_endpoint()
            self.argv = self._argv_for(self.endpoint)
            self._log.seek(0)
            self._log.truncate()
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                         stderr=self._log, stdin=subprocess.DEVNULL)
            reply = self._wait_healthy()
            if reply is not None:
                self.health = reply
                return self
            if "in use" not in self.log_tail():
                break
        raise ServerError(f"server did not start: {' '.join(self.argv)}\n{self.log_tail()}")

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log.close()

    def _wait_healthy(self) -> dict[str, Any] | None:
        assert self.proc is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.endpoint)
            sock.send(b'{"cmd": "health"}')  # queued until the server binds
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return None
                if sock.poll(200, zmq.POLLIN):
                    reply = json.loads(sock.recv())
                    if reply.get("ok"):
                        return reply
                    raise ServerError(f"unhealthy server: {reply}")
        finally:
            sock.close(linger=0)
        self._kill()
        raise ServerError(f"no health reply within {STARTUP_TIMEOUT_S} s: {' '.join(self.argv)}")

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """A JSON control request on a fresh socket (bounded wait)."""
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.endpoint)
            sock.send(json.dumps(request).encode())
            if not sock.poll(REPLY_TIMEOUT_MS, zmq.POLLIN):
                raise ServerError(f"no reply to {request} within {REPLY_TIMEOUT_MS} ms")
            return json.loads(sock.recv())
        finally:
            sock.close(linger=0)

    def server_latency(self) -> dict[str, Any] | None:
        """The server's own receive→send histogram (ns) from ``stats``."""
        s = self.control({"cmd": "stats"}).get("stats", {})
        lat = s.get("latency_ns", {}).get("server")
        return _hist(lat)

    def stop(self) -> int | None:
        """SIGTERM and a bounded wait; kill if it hangs. The exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._kill()
        return self.proc.returncode

    def _kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def log_tail(self, n: int = 2000) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-n:]


def _hist(h: dict[str, Any] | None) -> dict[str, Any] | None:
    """A server histogram dict in the benchutil.percentiles shape ("count" -> "n")."""
    if not h or not h.get("count"):
        return None
    out = {"n": int(h["count"])}
    for k in ("p50", "p90", "p99", "p99.9", "max", "mean"):
        if h.get(k) is not None:
            out[k] = float(h[k])
    return out


# ---------------------------------------------------------------------------
# Workload


class Motion:
    """Smooth 2-D motion for ``streams`` streams at 2 kHz (±5 % jitter), made
    chunk by chunk so a run of any length never restarts a stream: three
    sinusoids per axis (0.2-3 Hz), in the model's own units."""

    def __init__(self, streams: int, seed: int, scale: tuple[float, float],
                 offset: tuple[float, float], first_stream: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.streams = streams
        self.ids = np.arange(first_stream, first_stream + streams, dtype=np.uint64)
        self.amp = rng.uniform(0.1, 0.5, (streams, 2, 3)) * np.asarray(scale)[None, :, None]
        self.w = 2 * np.pi * rng.uniform(0.2, 3.0, (streams, 2, 3))
        self.ph = rng.uniform(0, 2 * np.pi, (streams, 2, 3))
        self.offset = np.asarray(offset, np.float64)
        self.t0 = 1.0 + rng.uniform(0, 1, streams)
        self.rng = rng
        self.row = 0  # ticks made per stream so far

    def rows(self, n: int) -> np.ndarray:
        """The next ``n`` ticks of every stream, round-robin (TICK_DTYPE, n × streams)."""
        i = self.row + np.arange(n, dtype=np.float64)
        self.row += n
        jitter = self.rng.uniform(-0.05, 0.05, (n, self.streams))
        t = self.t0[None, :] + (i[:, None] + jitter) / RATE_HZ           # (n, S)
        arg = self.w[None] * t[:, :, None, None] + self.ph[None]          # (n, S, 2, 3)
        pos = self.offset + (self.amp[None] * np.sin(arg)).sum(-1)        # (n, S, 2)
        vel = (self.amp[None] * self.w[None] * np.cos(arg)).sum(-1)
        out = np.empty((n, self.streams), TICK_DTYPE)
        out["stream"] = self.ids[None, :]
        out["t"] = t
        out["x"], out["y"] = pos[..., 0], pos[..., 1]
        out["vx"], out["vy"] = vel[..., 0], vel[..., 1]
        return out.ravel()


class FrameSource:
    """Tick-batch frames of ``batch`` consecutive ticks of a Motion, made in chunks."""

    def __init__(self, motion: Motion, batch: int, chunk_requests: int = 2048) -> None:
        if not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be in [1, {MAX_BATCH}]")
        self.motion, self.batch = motion, batch
        self.chunk_ticks = max(batch, chunk_requests * batch)
        self._carry = np.empty(0, TICK_DTYPE)
        self._frames: deque[bytes] = deque()
        self._seq = 0

    def _refill(self) -> None:
        need = self.chunk_ticks - len(self._carry)
        rows = -(-need // self.motion.streams)
        ticks = np.concatenate([self._carry, self.motion.rows(rows)])
        n = len(ticks) // self.batch
        self._carry = ticks[n * self.batch:]
        body = ticks[:n * self.batch].tobytes()
        size = self.batch * TICK_DTYPE.itemsize
        for k in range(n):
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            self._frames.append(HEADER.pack(MAGIC, VERSION, KIND_TICKS, self.batch, self._seq)
                                + body[k * size:(k + 1) * size])

    def next(self) -> bytes:
        if not self._frames:
            self._refill()
        return self._frames.popleft()

    def take(self, n: int) -> list[bytes]:
        return [self.next() for _ in range(n)]


def _recv(sock: zmq.Socket) -> bytes:
    try:
        return sock.recv()
    except zmq.Again:
        raise ServerError(f"no reply within {REPLY_TIMEOUT_MS} ms") from None


@contextmanager
def _dealer(ctx: zmq.Context, endpoint: str) -> Iterator[zmq.Socket]:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, REPLY_TIMEOUT_MS)
    sock.setsockopt(zmq.SNDTIMEO, REPLY_TIMEOUT_MS)
    sock.connect(endpoint)
    try:
        yield sock
    finally:
        sock.close(linger=0)


@contextmanager
def _gc_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def measure_round_trips(sock: zmq.Socket, frames: list[bytes], warmup: int,
                        reply_bytes: int | None) -> dict[str, Any]:
    """Synchronous single-request round trips: perf_counter_ns around send+recv.
    ``reply_bytes`` is the expected reply length (None: the request's own, echo)."""
    pc = time.perf_counter_ns
    send, n = sock.send, len(frames)
    ns = [0] * n
    bad = 0
    with _gc_paused():
        for i, f in enumerate(frames):
            t0 = pc()
            send(f)
            r = _recv(sock)
            t1 = pc()
            ns[i] = t1 - t0
            bad += len(r) != (len(f) if reply_bytes is None else reply_bytes)
    timed = np.asarray(ns[warmup:], np.int64)
    return {"requests": n - warmup, "warmup": warmup, "bad_replies": int(bad),
            "round_trip_ns": bu.percentiles(timed)}


def measure_throughput(sock: zmq.Socket, source: FrameSource, seconds: float, in_flight: int,
                       echo: bool) -> dict[str, Any]:
    """Keep ``in_flight`` requests outstanding for ``seconds``, then drain: answered
    ticks per second of wall clock (first send to last reply)."""
    pc = time.perf_counter_ns
    send = sock.send
    sent = received = ticks = errors = 0
    want_kind = KIND_TICKS if echo else KIND_PREDICTIONS
    for f in source.take(4 * in_flight):  # warm the path, untimed
        send(f)
        _recv(sock)
    frames = source.take(in_flight)
    with _gc_paused():
        t_start = pc()
        deadline = t_start + int(seconds * 1e9)
        for f in frames:
            send(f)
        sent = len(frames)
        nxt = source.next
        while received < sent:
            r = _recv(sock)
            received += 1
            _m, _v, kind, count, _s = HEADER.unpack_from(r)
            if kind == want_kind:
                ticks += count
            else:
                errors += 1
            if pc() < deadline:
                send(nxt())
                sent += 1
        t_end = pc()
    seconds_run = (t_end - t_start) / 1e9
    return {"requests": received, "ticks": ticks, "error_replies": errors,
            "seconds": seconds_run, "ticks_per_s": ticks / seconds_run if seconds_run else None}


# ---------------------------------------------------------------------------
# The run


def throughput_cases(batch: int) -> list[tuple[int, int]]:
    """(streams, ticks per request): 1 and 10 streams with one tick of each per
    request, 100 streams in requests of ``batch`` ticks cycling over the streams,
    and 100 streams with one tick of each per request."""
    cases = [(1, 1), (10, 10), (100, batch), (100, 100)]
    out: list[tuple[int, int]] = []
    for c in cases:
        if c not in out:
            out.append(c)
    return out


def run_serve_bench(model_dir: Path, source: str, *, layout: CoreLayout, requests: int = 20_000,
                    warmup: int = 2_000, throughput_s: float = 1.5, in_flight: int = 16,
                    batch: int = 10, naive_script: Path | None = None, seed: int = 0,
                    log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every measurement of ``tmn-bench serve``, as one JSON-ready dict."""
    model = tmn.load(model_dir)
    norm = model.config["normalisation"]
    scale = (float(norm["std"][0]), float(norm["std"][1]))
    offset = (float(norm["mean"][0]), float(norm["mean"][1]))
    K = len(model.horizons_ms)
    reply_bytes = HEADER.size + 8 + prediction_dtype(K).itemsize
    cases = throughput_cases(batch)

    results: dict[str, Any] = {"benchmark": "serve", "schema_version": SCHEMA_VERSION}
    results["machine"] = bu.machine_info()  # the load average before any server runs
    results["model"] = {"source": source, "path": str(model.path), "system": model.system,
                        "hidden": model.hidden, "horizons": K,
                        "horizons_ms": model.horizons_ms, "precision": "int8"}
    results["layout"] = layout.as_dict()
    results["workload"] = {
        "transport": "ZeroMQ over TCP loopback (127.0.0.1), DEALER client, ROUTER servers",
        "round_trip": "one tick per request, synchronous (send, wait for the reply), "
                      "one stream, time.perf_counter_ns around send+recv, GC paused",
        "requests": requests, "warmup_requests": warmup,
        "throughput": "pipelined: in_flight requests outstanding, each answered request "
                      "replaced by the next until the time is up, then drained",
        "throughput_seconds": throughput_s, "in_flight": in_flight,
        "throughput_cases": [{"streams": s, "ticks_per_request": b} for s, b in cases],
        "motion": "smooth 2-D motion per stream, 3 sinusoids per axis (0.2-3 Hz), 2 kHz "
                  "sensor time with +-5% jitter, in the model's units",
        "seed": seed,
    }

    servers: dict[str, Any] = {}
    ctx = zmq.Context(1)
    with pinned(layout.client):
        ctx.socket(zmq.PAIR).close()  # start the I/O thread now, on the client's core
    try:
        for spec in SERVERS:
            if spec.spin and not layout.spin_allowed:
                servers[spec.name] = {"status": "skipped", "description": spec.description,
                                      "reason": "the server core is the client's core: a "
                                      "spinning loop would starve the client"}
                continue
            if spec.kind == "naive" and naive_script is None:
                servers[spec.name] = {"status": "skipped", "description": spec.description,
                                      "reason": f"{NAIVE_SCRIPT} not found (run from the "
                                      "repository checkout or pass --naive-script)"}
                continue
            log(f"{spec.name}: {requests:,} round trips, then throughput runs")
            try:
                servers[spec.name] = _bench_server(
                    spec, ctx, model_dir, layout, naive_script, requests, warmup,
                    throughput_s, in_flight, cases, reply_bytes, scale, offset, seed)
            except ServerError as e:
                log(f"{spec.name} FAILED: {e}")
                servers[spec.name] = {"status": "failed", "description": spec.description,
                                      "reason": str(e)}
    finally:
        ctx.destroy(linger=0)
    results["servers"] = servers
    served_isa = (servers.get("tmn", {}).get("health_model") or {}).get("isa")
    if served_isa:  # what tmn-serve reported using (auto: the best this CPU has)
        results["machine"]["isa"] = served_isa
    results["machine"]["load_average_end"] = bu.load_average()
    results["ratios"] = serve_ratios(results)
    results["targets"] = [t.as_dict() for t in serve_targets(results)]
    return results


def _bench_server(spec: ServerSpec, ctx: zmq.Context, model_dir: Path, layout: CoreLayout,
                  naive_script: Path | None, requests: int, warmup: int, throughput_s: float,
                  in_flight: int, cases: list[tuple[int, int]], reply_bytes: int,
                  scale: tuple[float, float], offset: tuple[float, float], seed: int
                  ) -> dict[str, Any]:
    def argv_for(endpoint: str) -> list[str]:
        return spec.argv(model_dir, endpoint, layout.server, naive_script)

    echo = spec.kind == "echo"
    out: dict[str, Any] = {"status": "ok", "description": spec.description}
    # 1. round trips, one fresh server
    frames = FrameSource(Motion(1, seed, scale, offset), 1).take(warmup + requests)
    with ServerProcess(argv_for, ctx) as srv:
        out["argv"] = [Path(a).name if i == 0 else a for i, a in enumerate(srv.argv)]
        out["health_model"] = srv.health.get("model")
        with pinned(layout.client), _dealer(ctx, srv.endpoint) as sock:
            out.update(measure_round_trips(sock, frames, warmup,
                                           None if echo else reply_bytes))
        out["server_side_ns"] = srv.server_latency()
        rc = srv.stop()
    out["exit_code"] = rc
    # 2. throughput, one fresh server per case
    out["throughput"] = []
    for streams, b in cases:
        src = FrameSource(Motion(streams, seed + streams, scale, offset), b)
        with ServerProcess(argv_for, ctx) as srv:
            with pinned(layout.client), _dealer(ctx, srv.endpoint) as sock:
                run = measure_throughput(sock, src, throughput_s, in_flight, echo)
            run = {"streams": streams, "ticks_per_request": b, **run,
                   "server_side_ns": srv.server_latency()}
            run["exit_code"] = srv.stop()
        out["throughput"].append(run)
    return out


# ---------------------------------------------------------------------------
# Ratios, targets and the report


def _get(d: Any, *keys: Any) -> float | None:
    for k in keys:
        if isinstance(d, dict) and k in d:
            d = d[k]
        elif isinstance(d, list) and isinstance(k, tuple):
            d = next((x for x in d if (x["streams"], x["ticks_per_request"]) == k), None)
        else:
            return None
    return float(d) if isinstance(d, (int, float)) and not isinstance(d, bool) else None


def _echo_of(name: str) -> str:
    return "echo-spin" if name.endswith("-spin") else "echo"


def _headline_case(r: dict[str, Any]) -> tuple[int, int]:
    """The 100-stream case the throughput targets are stated for (the smaller batch)."""
    cases = [(c["streams"], c["ticks_per_request"]) for c in r["workload"]["throughput_cases"]]
    return min((c for c in cases if c[0] == 100), key=lambda c: c[1])


def serve_ratios(r: dict[str, Any]) -> dict[str, float | None]:
    """tmn over naive and over echo (same loop mode), at P50 and P99.9, and throughput."""
    s = r["servers"]
    case = _headline_case(r)
    out: dict[str, float | None] = {}
    for m in ("tmn", "tmn-spin"):
        for q in ("p50", "p99.9"):
            mine = _get(s, m, "round_trip_ns", q)
            out[f"{m}_over_naive_round_trip_{q}"] = bu.ratio(
                mine, _get(s, "naive", "round_trip_ns", q))
            out[f"{m}_over_{_echo_of(m)}_round_trip_{q}"] = bu.ratio(
                mine, _get(s, _echo_of(m), "round_trip_ns", q))
        out[f"{m}_over_naive_throughput_{case[0]}_streams"] = bu.ratio(
            _get(s, m, "throughput", case, "ticks_per_s"),
            _get(s, "naive", "throughput", case, "ticks_per_s"))
    return out


def serve_targets(r: dict[str, Any]) -> list[bu.Target]:
    """The stated targets for each tmn-serve mode, MET, MISSED or SKIPPED (never dropped)."""
    s, ra = r["servers"], r["ratios"]
    case = _headline_case(r)
    targets: list[bu.Target] = []
    for m in ("tmn", "tmn-spin"):
        skip = s.get(m, {}).get("reason", "")
        e = _echo_of(m)
        naive_skip = s.get("naive", {}).get("reason", "")
        targets += [
            bu.Target(f"{m}: server-side P99.9, single-tick requests",
                      _get(s, m, "server_side_ns", "p99.9"), 20_000.0, "<=", "ns",
                      skip or "tmn-serve's own receive->send histogram"),
            bu.Target(f"{m}: round trip P50 / naive P50",
                      ra.get(f"{m}_over_naive_round_trip_p50"), 0.6, "<=", "x",
                      skip or naive_skip),
            bu.Target(f"{m}: round trip P99.9 / naive P99.9",
                      ra.get(f"{m}_over_naive_round_trip_p99.9"), 0.6, "<=", "x",
                      skip or naive_skip),
            bu.Target(f"{m}: round trip P50 / {e} P50",
                      ra.get(f"{m}_over_{e}_round_trip_p50"), 1.3, "<=", "x", skip),
            bu.Target(f"{m}: round trip P99.9 / {e} P99.9",
                      ra.get(f"{m}_over_{e}_round_trip_p99.9"), 1.3, "<=", "x", skip),
            bu.Target(f"{m}: throughput, {case[0]} streams x {case[1]} ticks/request",
                      _get(s, m, "throughput", case, "ticks_per_s"), 200_000.0, ">=",
                      "ticks/s", skip),
            bu.Target(f"{m}: server-side P99.9 in that run",
                      _get(s, m, "throughput", case, "server_side_ns", "p99.9"), 50_000.0,
                      "<=", "ns", skip or "per request"),
            bu.Target(f"{m}: throughput / naive throughput, {case[0]} streams",
                      ra.get(f"{m}_over_naive_throughput_{case[0]}_streams"), 10.0, ">=", "x",
                      skip or naive_skip),
        ]
    return targets


def _us(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v / 1e3:,.1f}"


def _ratio_text(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def format_serve_report(r: dict[str, Any]) -> str:
    """The human-readable table of ``tmn-bench serve``."""
    m, mod, w = r["machine"], r["model"], r["workload"]
    lines = [
        "tmn-bench serve: tmn-serve vs the echo floor and a naive pyzmq+onnxruntime server",
        f"machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), "
        f"{m['platform']}, Python {m['python']}, tmn {m.get('tmn_git_sha', '?')}; load average "
        f"{m.get('load_average')} -> {m.get('load_average_end')}",
        f"model:   System {mod['system']}, hidden {mod['hidden']}, K={mod['horizons']} "
        f"({mod['source']}); tmn-serve serves int8 on {m['isa']} kernels",
        f"layout:  {r['layout']['description']}",
        f"transport: {w['transport']}",
        "",
        f"Round trip, one tick per request, synchronous, {w['requests']:,} requests after "
        f"{w['warmup_requests']:,} warm-up (us)",
        f"  {'server':<11}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>10}   "
        f"{'server-side recv->send: p50':>28}{'p99.9':>9}{'max':>10}",
    ]
    for name, s in r["servers"].items():
        if s.get("status") != "ok":
            lines.append(f"  {name:<11}{s.get('status', '?').upper()}: {s.get('reason', '')}")
            continue
        rt, ss = s["round_trip_ns"], s.get("server_side_ns") or {}
        lines.append(f"  {name:<11}" + "".join(f"{_us(rt[k]):>9}" for k in
                                               ("p50", "p90", "p99", "p99.9")) +
                     f"{_us(rt['max']):>10}   {_us(ss.get('p50')):>28}{_us(ss.get('p99.9')):>9}"
                     f"{_us(ss.get('max')):>10}")
    lines += ["", f"Throughput, pipelined ({w['in_flight']} requests in flight, "
              f"{w['throughput_seconds']:g} s per run, a fresh server per run)",
              f"  {'server':<11}{'streams':>8}{'ticks/req':>10}{'ticks/s':>13}"
              f"{'server-side p50':>17}{'p99.9':>9}{'max':>10} (us)"]
    for name, s in r["servers"].items():
        if s.get("status") != "ok":
            continue
        for t in s["throughput"]:
            ss = t.get("server_side_ns") or {}
            tps = t["ticks_per_s"]
            lines.append(f"  {name:<11}{t['streams']:>8}{t['ticks_per_request']:>10}"
                         f"{'-' if tps is None else f'{tps:,.0f}':>13}{_us(ss.get('p50')):>17}"
                         f"{_us(ss.get('p99.9')):>9}{_us(ss.get('max')):>10}"
                         + (f"  ({t['error_replies']} error replies!)"
                            if t["error_replies"] else ""))
    lines += ["", "Ratios"]
    for k, v in r["ratios"].items():
        lines.append(f"  {k:<48}{_ratio_text(v):>10}")
    lines += ["", "Targets"]
    for t in r["targets"]:
        v = t["value"]
        if v is None:
            shown = "-"
        elif t["unit"] == "ns":
            shown = f"{v / 1e3:,.1f} us"
        elif t["unit"] == "x":
            shown = f"{v:.2f}x"
        else:
            shown = f"{v:,.0f} {t['unit']}"
        limit = (f"{t['limit'] / 1e3:g} us" if t["unit"] == "ns" else
                 f"{t['limit']:g}x" if t["unit"] == "x" else f"{t['limit']:,.0f} {t['unit']}")
        lines.append(f"  {t['status']:<8}{t['name']:<58}{shown:>14} {t['op']} {limit}"
                     + (f"  ({t['note']})" if t["note"] and t["status"] == "SKIPPED" else ""))
    lines += ["", "Absolute times hold for this machine only; a shared VM's tails are noisy "
              "(see bench/README.md)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m tmn.bench_serve ...`` (the same as ``tmn-bench serve ...``)."""
    p = argparse.ArgumentParser(prog="tmn-bench")
    add_serve_command(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
