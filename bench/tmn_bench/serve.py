"""``tmn-bench serve``: tmn-serve against the echo floor and a naive server, in one run.

Every server runs as its own process on the same loopback TCP transport, with
the same model and the same client (bench/README.md explains every number):

* ``tmn``        ``tmn-serve --core S`` (blocking: the loop sleeps in zmq_poll)
* ``tmn-spin``   ``tmn-serve --core S --spin`` (busy-polls; only when S is not the client's core)
* ``echo``       ``tmn-serve --echo --core S``: the same socket loop answering each
                 request with its own bytes, no engine; the floor (and ``echo-spin``)
* ``naive``      ``tmn_bench.baselines.naive_server``: pyzmq ROUTER + onnxruntime, one
                 GRU step per tick, network only (skipped, with the reason, without
                 onnxruntime)

For each: round trips of single-tick requests from a synchronous DEALER
(``time.perf_counter_ns``), the server's own receive→send latency from its
``stats``, and the throughput of pipelined batched requests for 1, 10 and 100
streams with the server-side latency of that run. Each measurement gets a
fresh server process, so the server's histograms hold that measurement only.
Then ratios, and the targets (tmn_bench.targets) as MET, MISSED or SKIPPED.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

import tmn
from tmn.protocol import (HEADER, KIND_PREDICTIONS, KIND_TICKS, MAGIC, MAX_BATCH, TICK_DTYPE,
                          VERSION, prediction_dtype)
from tmn_bench.common import Log, gc_paused, load_average, machine_info, model_scale, quiet
from tmn_bench.report import QUANTILES, format_us, format_value, load_text, target_lines
from tmn_bench.results import (Layout, ModeRatios, Percentiles, ScaleResult, ScaleRun,
                               ServedModel, ServeRatios, ServerNotRun, ServerRun, ServeResult,
                               ServeWorkload, ShardedClientRun, ThroughputCase, ThroughputRun,
                               ratio, to_json)
from tmn_bench.targets import scale_targets, serve_targets
from tmn_bench.workload import Motion

STARTUP_TIMEOUT_S = 60.0   # import + model load + bind, on a busy machine
STOP_TIMEOUT_S = 20.0
REPLY_TIMEOUT_MS = 10_000  # any single reply; a server that stalls longer has failed
NAIVE_MODULE = "tmn_bench.baselines.naive_server"
MODES = ("tmn", "tmn-spin")  # the tmn-serve modes that have targets


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

    def result(self) -> Layout:
        return Layout(self.client, self.server, list(self.usable), self.spin_allowed,
                      self.describe())


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
            "naive": "tmn_bench.baselines.naive_server: pyzmq ROUTER + onnxruntime step per "
                     "tick, NETWORK ONLY (no Kalman prior, no gate)",
        }[self.name]

    def argv(self, model: Path, endpoint: str, core: int, naive: list[str]) -> list[str]:
        """The command line of this server (``naive``: how to start the naive server)."""
        if self.kind == "naive":
            return [*naive, "--model", str(model), "--endpoint", endpoint, "--core", str(core)]
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


def echo_of(mode: str) -> str:
    """The echo floor of a tmn-serve mode (the same loop mode)."""
    return "echo-spin" if mode.endswith("-spin") else "echo"


def naive_command(script: Path | None) -> list[str]:
    """How to start the naive server: ``python SCRIPT`` when a script is given,
    else the packaged module. A given script that is not a file raises ValueError."""
    if script is None:
        return [sys.executable, "-m", NAIVE_MODULE]
    if not Path(script).is_file():
        raise ValueError(f"--naive-script {script}: no such file")
    return [sys.executable, str(script)]


class ServerError(RuntimeError):
    """A server did not start, did not answer, or did not stop cleanly."""


def _free_tcp_endpoint() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class ServerProcess:
    """A server subprocess on a free loopback port; ``with`` starts it and waits
    (bounded) for ``health``, and stops it with SIGTERM (killed if it hangs)."""

    def __init__(self, argv_for: Callable[[str], list[str]], ctx: zmq.Context,
                 endpoint: Callable[[], str] | None = None) -> None:
        self._argv_for = argv_for
        self._endpoint = endpoint or _free_tcp_endpoint
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
            self.endpoint = self._endpoint()
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

    def server_latency(self) -> Percentiles | None:
        """The server's own receive→send histogram (ns) from ``stats`` (None if empty)."""
        return server_percentiles(self._latency().get("server"))

    def server_phases(self) -> dict[str, float] | None:
        """P50 (ns) of tmn-serve's request phases and of its engine's tick, from
        ``stats`` (docs/protocol.md); None for a server without them."""
        lat = self._latency()
        p50 = {k: float(lat[k]["p50"]) for k in PHASES if (lat.get(k) or {}).get("count")}
        return p50 or None

    def _latency(self) -> dict[str, Any]:
        return self.control({"cmd": "stats"}).get("stats", {}).get("latency_ns", {})

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


# tmn-serve's phases of a request's receive→send time and its engine's tick
PHASES = ("server_wait", "server_compute", "server_send", "tick")


def server_percentiles(h: dict[str, Any] | None) -> Percentiles | None:
    """A server's histogram from its ``stats`` (count, mean, the percentiles and
    max, as tmn-serve and the naive server report them); None when empty."""
    if not h or not h.get("count"):
        return None
    return Percentiles(int(h["count"]), {name: float(h[name]) for name, _ in tmn.PERCENTILES},
                       float(h["max"]), float(h["mean"]))


# ---------------------------------------------------------------------------
# Workload


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
        ticks = np.concatenate([self._carry, self.motion.next(rows).wire()])
        n = len(ticks) // self.batch
        self._carry = ticks[n * self.batch:]
        body = ticks[:n * self.batch].tobytes()
        size = self.batch * ticks.dtype.itemsize
        for k in range(n):
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            self._frames.append(HEADER.pack(MAGIC, VERSION, KIND_TICKS, self.batch, self._seq)
                                + body[k * size:(k + 1) * size])

    def next(self) -> bytes:
        """The next frame."""
        if not self._frames:
            self._refill()
        return self._frames.popleft()

    def take(self, n: int) -> list[bytes]:
        """The next ``n`` frames."""
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


@dataclass(frozen=True)
class RoundTrips:
    requests: int
    warmup: int
    bad_replies: int
    round_trip_ns: Percentiles


def measure_round_trips(sock: zmq.Socket, frames: list[bytes], warmup: int,
                        reply_bytes: int | None) -> RoundTrips:
    """Synchronous single-request round trips: perf_counter_ns around send+recv.
    ``reply_bytes`` is the expected reply length (None: the request's own, echo)."""
    pc = time.perf_counter_ns
    send, n = sock.send, len(frames)
    ns = [0] * n
    bad = 0
    with gc_paused():
        for i, f in enumerate(frames):
            t0 = pc()
            send(f)
            r = _recv(sock)
            t1 = pc()
            ns[i] = t1 - t0
            bad += len(r) != (len(f) if reply_bytes is None else reply_bytes)
    return RoundTrips(n - warmup, warmup, int(bad), Percentiles.of(ns[warmup:]))


@dataclass(frozen=True)
class Throughput:
    requests: int
    ticks: int
    error_replies: int
    seconds: float
    ticks_per_s: float | None


def _ticks_answered(reply: bytes, want_kind: int) -> int:
    """The ticks a reply answers: its count if of ``want_kind``, else 0 (an error)."""
    _m, _v, kind, count, _s = HEADER.unpack_from(reply)
    return count if kind == want_kind else 0


def measure_throughput(sock: zmq.Socket, source: FrameSource, seconds: float, in_flight: int,
                       echo: bool) -> Throughput:
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
    with gc_paused():
        t_start = pc()
        deadline = t_start + int(seconds * 1e9)
        for f in frames:
            send(f)
        sent = len(frames)
        nxt = source.next
        while received < sent:
            received += 1
            count = _ticks_answered(_recv(sock), want_kind)
            ticks += count
            errors += count == 0
            if pc() < deadline:
                send(nxt())
                sent += 1
        t_end = pc()
    seconds_run = (t_end - t_start) / 1e9
    return Throughput(received, ticks, errors, seconds_run,
                      ticks / seconds_run if seconds_run else None)


# ---------------------------------------------------------------------------
# The run


def throughput_cases(batch: int) -> list[ThroughputCase]:
    """1 and 10 streams with one tick of each per request, 100 streams in
    requests of ``batch`` ticks cycling over the streams, and 100 streams with
    one tick of each per request."""
    out: list[ThroughputCase] = []
    for streams, b in ((1, 1), (10, 10), (100, batch), (100, 100)):
        if ThroughputCase(streams, b) not in out:
            out.append(ThroughputCase(streams, b))
    return out


def headline_case(cases: list[ThroughputCase]) -> ThroughputCase:
    """The 100-stream case the throughput targets are stated for (the smaller batch)."""
    return min((c for c in cases if c.streams == 100), key=lambda c: c.ticks_per_request)


@dataclass(frozen=True)
class ServePlan:
    """What each server is put through (the options of ``tmn-bench serve``)."""

    model_dir: Path
    layout: CoreLayout
    naive: list[str]          # the naive server's command, before its options
    requests: int
    warmup: int
    throughput_s: float
    in_flight: int
    cases: list[ThroughputCase]
    reply_bytes: int          # a prediction reply to one tick
    scale: dict[str, tuple[float, float]]
    seed: int


def _not_run(spec: ServerSpec, plan: ServePlan) -> ServerNotRun | None:
    """Why ``spec`` cannot run here, or None."""
    if spec.spin and not plan.layout.spin_allowed:
        return ServerNotRun("skipped", spec.description, "the server core is the client's "
                            "core: a spinning loop would starve the client")
    if (spec.kind == "naive" and plan.naive[1:2] == ["-m"]
            and importlib.util.find_spec("onnxruntime") is None):
        return ServerNotRun("skipped", spec.description,
                            "onnxruntime is not installed (pip install onnxruntime)")
    return None


def run_serve_bench(model_dir: Path, source: str, *, layout: CoreLayout, requests: int = 20_000,
                    warmup: int = 2_000, throughput_s: float = 1.5, in_flight: int = 16,
                    batch: int = 10, naive_script: Path | None = None, seed: int = 0,
                    scale: bool = True, log: Log = quiet) -> ServeResult:
    """Every measurement of ``tmn-bench serve``."""
    model = tmn.load(model_dir)
    K = len(model.horizons_ms)
    plan = ServePlan(model_dir, layout, naive_command(naive_script), requests, warmup,
                     throughput_s, in_flight, throughput_cases(batch),
                     HEADER.size + 8 + prediction_dtype(K).itemsize, model_scale(model), seed)
    machine = machine_info()  # the load average before any server runs
    servers: dict[str, ServerRun | ServerNotRun] = {}
    ctx = zmq.Context(1)
    with pinned(layout.client):
        ctx.socket(zmq.PAIR).close()  # start the I/O thread now, on the client's core
    scaled = None
    try:
        for spec in SERVERS:
            servers[spec.name] = _not_run(spec, plan) or _bench_or_fail(spec, ctx, plan, log)
        if scale:
            try:
                scaled = measure_scale(ctx, plan, log)
            except ServerError as e:
                log(f"scale FAILED: {e}")
                servers["scale"] = ServerNotRun("failed", "tmn-serve --cores", str(e))
    finally:
        ctx.destroy(linger=0)
    run = servers.get("tmn")
    served_isa = ((run.health_model or {}).get("isa") if isinstance(run, ServerRun) else None)
    machine = dataclasses.replace(machine, isa=served_isa or machine.isa,  # what tmn-serve used
                                  load_average_end=load_average())
    ratios = serve_ratios(servers, headline_case(plan.cases))
    return ServeResult(
        benchmark="serve", machine=machine,
        model=ServedModel(source, str(model.path), model.system, model.hidden, K,
                          model.horizons_ms, "int8"),
        layout=layout.result(), workload=_workload(plan), servers=servers, ratios=ratios,
        targets=[*serve_targets(servers, ratios, headline_case(plan.cases)),
                 *scale_targets(servers, list(MODES), ratios.echo_of, scaled)],
        scale=scaled)


def _workload(plan: ServePlan) -> ServeWorkload:
    return ServeWorkload(
        transport="ZeroMQ over TCP loopback (127.0.0.1), DEALER client, ROUTER servers",
        round_trip="one tick per request, synchronous (send, wait for the reply), one stream, "
                   "time.perf_counter_ns around send+recv, GC paused",
        requests=plan.requests, warmup_requests=plan.warmup,
        throughput="pipelined: in_flight requests outstanding, each answered request "
                   "replaced by the next until the time is up, then drained",
        throughput_seconds=plan.throughput_s, in_flight=plan.in_flight,
        throughput_cases=plan.cases,
        motion="smooth 2-D motion per stream (tmn_bench.workload): 3 sinusoids per axis "
               "(0.2-3 Hz) + drift, 2 kHz sensor time with +-5% jitter, in the model's units",
        seed=plan.seed)


def _bench_or_fail(spec: ServerSpec, ctx: zmq.Context, plan: ServePlan, log: Log
                   ) -> ServerRun | ServerNotRun:
    log(f"{spec.name}: {plan.requests:,} round trips, then throughput runs")
    try:
        return _bench_server(spec, ctx, plan)
    except ServerError as e:
        log(f"{spec.name} FAILED: {e}")
        return ServerNotRun("failed", spec.description, str(e))


def _bench_server(spec: ServerSpec, ctx: zmq.Context, plan: ServePlan) -> ServerRun:
    def argv_for(endpoint: str) -> list[str]:
        return spec.argv(plan.model_dir, endpoint, plan.layout.server, plan.naive)

    echo = spec.kind == "echo"
    client = plan.layout.client
    # 1. round trips, one fresh server
    frames = FrameSource(Motion(1, plan.seed, first_stream=1, **plan.scale), 1).take(
        plan.warmup + plan.requests)
    with ServerProcess(argv_for, ctx) as srv:
        argv = [Path(a).name if i == 0 else a for i, a in enumerate(srv.argv)]
        health_model = srv.health.get("model")
        with pinned(client), _dealer(ctx, srv.endpoint) as sock:
            rt = measure_round_trips(sock, frames, plan.warmup,
                                     None if echo else plan.reply_bytes)
        server_side, phases = srv.server_latency(), srv.server_phases()
        rc = srv.stop()
    # 2. throughput, one fresh server per case
    runs = []
    for case in plan.cases:
        motion = Motion(case.streams, plan.seed + case.streams, first_stream=1, **plan.scale)
        with ServerProcess(argv_for, ctx) as srv:
            with pinned(client), _dealer(ctx, srv.endpoint) as sock:
                tp = measure_throughput(sock, FrameSource(motion, case.ticks_per_request),
                                        plan.throughput_s, plan.in_flight, echo)
            side = srv.server_latency()
            runs.append(ThroughputRun(case, tp.requests, tp.ticks, tp.error_replies, tp.seconds,
                                      tp.ticks_per_s, side, srv.stop()))
    return ServerRun(spec.description, argv, health_model, rt.requests, rt.warmup,
                     rt.bad_replies, rt.round_trip_ns, server_side, rc, runs,
                     server_phases_ns=phases)


# ---------------------------------------------------------------------------
# Scale out: tmn-serve --cores, and the sharded client

SCALE_STREAMS = 100   # per loop
SCALE_BATCH = 100     # ticks per request


def measure_loops(socks: list[zmq.Socket], sources: list[FrameSource], seconds: float,
                  in_flight: int) -> Throughput:
    """``measure_throughput`` over several sockets at once: ``in_flight`` requests
    outstanding on each, replaced as answered, until the time is up; then drained."""
    pc = time.perf_counter_ns
    for sock, src in zip(socks, sources):  # warm the path, untimed
        for f in src.take(4 * in_flight):
            sock.send(f)
            _recv(sock)
    poller = zmq.Poller()
    for sock in socks:
        poller.register(sock, zmq.POLLIN)
    out = dict.fromkeys(socks, 0)
    received = ticks = errors = 0
    with gc_paused():
        t_start = pc()
        deadline = t_start + int(seconds * 1e9)
        for sock, src in zip(socks, sources):
            for f in src.take(in_flight):
                sock.send(f)
            out[sock] = in_flight
        source_of = dict(zip(socks, sources))
        while any(out.values()):
            ready = poller.poll(REPLY_TIMEOUT_MS)
            if not ready:
                raise ServerError(f"no reply within {REPLY_TIMEOUT_MS} ms")
            for sock, _ev in ready:
                while True:
                    try:
                        r = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    received += 1
                    count = _ticks_answered(r, KIND_PREDICTIONS)
                    ticks += count
                    errors += count == 0
                    if pc() < deadline:
                        sock.send(source_of[sock].next())
                    else:
                        out[sock] -= 1
        t_end = pc()
    seconds_run = (t_end - t_start) / 1e9
    return Throughput(received, ticks, errors, seconds_run,
                      ticks / seconds_run if seconds_run else None)


def _ipc_endpoint(folder: str) -> Callable[[], str]:
    count = iter(range(1_000_000))
    return lambda: f"ipc://{folder}/loops-{next(count)}"


def measure_scale(ctx: zmq.Context, plan: ServePlan, log: Log = quiet) -> ScaleResult:
    """Throughput of ``tmn-serve --cores`` with 1 and 2 loops (the last usable CPUs),
    a fresh daemon each, and of tmn.Client sharding over the 2 loops."""
    from tmn.serve import loop_endpoint

    usable = plan.layout.usable
    runs: list[ScaleRun] = []
    sharded = None
    with tempfile.TemporaryDirectory(prefix="tmn-bench-") as folder:
        for loops in (1, 2):
            cores = list(usable[-loops:]) if len(usable) >= loops else []
            if not cores:
                continue
            clean = plan.layout.client not in cores
            note = ("every loop on a CPU of its own, none the client's" if clean else
                    f"loops on CPUs {','.join(map(str, cores))} with the client on CPU "
                    f"{plan.layout.client}: {len(usable)} usable CPUs cannot hold the client "
                    f"and {loops} loops apart")
            log(f"scale: {loops} loop(s) on CPUs {cores}")

            def argv_for(endpoint: str, cores: list[int] = cores) -> list[str]:
                return [sys.executable, "-m", "tmn.serve", "--model", str(plan.model_dir),
                        "--endpoint", endpoint, "--cores", ",".join(map(str, cores)),
                        "--log-level", "WARNING"]

            with ServerProcess(argv_for, ctx, _ipc_endpoint(folder)) as srv:
                endpoints = [loop_endpoint(srv.endpoint, i) for i in range(loops)]
                sources = [FrameSource(Motion(SCALE_STREAMS, plan.seed + i,
                                              first_stream=1 + 100_000 * i, **plan.scale),
                                       SCALE_BATCH) for i in range(loops)]
                with pinned(plan.layout.client):
                    socks = [ctx.socket(zmq.DEALER) for _ in endpoints]
                    try:
                        for sock, ep in zip(socks, endpoints):
                            sock.setsockopt(zmq.LINGER, 0)
                            sock.setsockopt(zmq.RCVTIMEO, REPLY_TIMEOUT_MS)
                            sock.connect(ep)
                        tp = measure_loops(socks, sources, plan.throughput_s, plan.in_flight)
                    finally:
                        for sock in socks:
                            sock.close(linger=0)
                    if loops == 2:
                        sharded = _sharded_client(endpoints, ctx, plan)
                side = srv.server_latency()
                runs.append(ScaleRun(loops, cores, SCALE_STREAMS, SCALE_BATCH, plan.in_flight,
                                     tp.requests, tp.ticks, tp.error_replies, tp.seconds,
                                     tp.ticks_per_s, side, clean, note))
                srv.stop()
    by = {r.loops: r.ticks_per_s for r in runs}
    return ScaleResult(runs, sharded, ratio(by.get(2), by.get(1)))


def _sharded_client(endpoints: list[str], ctx: zmq.Context, plan: ServePlan) -> ShardedClientRun:
    """tmn.Client over the loops: batches of SCALE_BATCH ticks over 2 x SCALE_STREAMS
    streams, split on the ring, ``in_flight`` batches pipelined."""
    motion = Motion(2 * SCALE_STREAMS, plan.seed + 7, first_stream=1, **plan.scale)
    src = motion.next(-(-SCALE_BATCH * 400 // motion.streams)).wire()
    batches = [src[i:i + SCALE_BATCH] for i in range(0, len(src) - SCALE_BATCH + 1, SCALE_BATCH)]
    with tmn.Client(endpoints, timeout_s=REPLY_TIMEOUT_MS / 1000, context=ctx) as c:
        for b in batches[:plan.in_flight]:  # warm, untimed (these streams start here)
            c.ticks(b)
        rest = batches[plan.in_flight:]
        pc = time.perf_counter_ns
        with gc_paused():
            t0 = pc()
            ticks = 0
            for i, b in enumerate(rest):
                c.send(b)
                if i >= plan.in_flight:
                    ticks += len(c.recv().records)
            for _ in range(min(plan.in_flight, len(rest))):
                ticks += len(c.recv().records)
            seconds = (pc() - t0) / 1e9
    return ShardedClientRun(len(endpoints), motion.streams, SCALE_BATCH, plan.in_flight, ticks,
                            seconds, ticks / seconds if seconds else None)


# ---------------------------------------------------------------------------
# Ratios and the report


def _round_trip(s: ServerRun | ServerNotRun | None, q: str) -> float | None:
    return s.round_trip_ns[q] if isinstance(s, ServerRun) else None


def _ticks_per_s(s: ServerRun | ServerNotRun | None, case: ThroughputCase) -> float | None:
    return s.throughput_of(case).ticks_per_s if isinstance(s, ServerRun) else None


def serve_ratios(servers: dict[str, ServerRun | ServerNotRun], case: ThroughputCase
                 ) -> ServeRatios:
    """Each tmn mode over naive and over the echo of its mode, at P50 and P99.9,
    and its throughput over naive's in the headline ``case``."""
    naive = servers.get("naive")
    modes = {}
    for m in MODES:
        mine, echo = servers.get(m), servers.get(echo_of(m))
        modes[m] = ModeRatios(
            ratio(_round_trip(mine, "p50"), _round_trip(naive, "p50")),
            ratio(_round_trip(mine, "p99.9"), _round_trip(naive, "p99.9")),
            ratio(_round_trip(mine, "p50"), _round_trip(echo, "p50")),
            ratio(_round_trip(mine, "p99.9"), _round_trip(echo, "p99.9")),
            ratio(_ticks_per_s(mine, case), _ticks_per_s(naive, case)))
    return ServeRatios(modes, {m: echo_of(m) for m in MODES}, case.streams)


def _report_header(r: ServeResult) -> list[str]:
    m, mod, w = r.machine, r.model, r.workload
    return [
        "tmn-bench serve: tmn-serve vs the echo floor and a naive pyzmq+onnxruntime server",
        f"machine: {m.cpu}, {m.cores} cores ({m.cores_usable} usable), {m.platform}, Python "
        f"{m.python}, tmn {m.tmn_git_sha}; load average {load_text(m.load_average)} -> "
        f"{load_text(m.load_average_end)}",
        f"model:   System {mod.system}, hidden {mod.hidden}, K={mod.horizons} ({mod.source}); "
        f"tmn-serve serves int8 on {m.isa} kernels",
        f"layout:  {r.layout.description}",
        f"transport: {w.transport}",
    ]


def _report_tables(r: ServeResult) -> list[str]:
    w = r.workload
    lines = ["", f"Round trip, one tick per request, synchronous, {w.requests:,} requests after "
             f"{w.warmup_requests:,} warm-up (us)",
             f"  {'server':<11}" + "".join(f"{q:>9}" for q in QUANTILES) + f"{'max':>10}   "
             f"{'server-side recv->send: p50':>28}{'p99.9':>9}{'max':>10}"]
    tp_lines = ["", f"Throughput, pipelined ({w.in_flight} requests in flight, "
                f"{w.throughput_seconds:g} s per run, a fresh server per run)",
                f"  {'server':<11}{'streams':>8}{'ticks/req':>10}{'ticks/s':>13}"
                f"{'server-side p50':>17}{'p99.9':>9}{'max':>10} (us)"]
    for name, s in r.servers.items():
        if isinstance(s, ServerNotRun):
            lines.append(f"  {name:<11}{s.status.upper()}: {s.reason}")
            continue
        rt, ss = s.round_trip_ns, s.server_side_ns
        lines.append(f"  {name:<11}" + "".join(f"{format_us(rt[k]):>9}" for k in QUANTILES)
                     + f"{format_us(rt.max):>10}   " + _side(ss, 28))
        for t in s.throughput:
            tps = "-" if t.ticks_per_s is None else f"{t.ticks_per_s:,.0f}"
            tp_lines.append(f"  {name:<11}{t.case.streams:>8}{t.case.ticks_per_request:>10}"
                            f"{tps:>13}" + _side(t.server_side_ns, 17)
                            + (f"  ({t.error_replies} error replies!)" if t.error_replies else ""))
    return lines + tp_lines


def _side(p: Percentiles | None, first: int) -> str:
    """Server-side P50, P99.9 and max in us (dashes without a histogram)."""
    v = [None] * 3 if p is None else [p["p50"], p["p99.9"], p.max]
    return f"{format_us(v[0]):>{first}}{format_us(v[1]):>9}{format_us(v[2]):>10}"


def _scale_lines(sc: ScaleResult | None) -> list[str]:
    """The scale-out table: throughput per number of loops, and the sharded client."""
    if sc is None:
        return []
    lines = ["", "Scale out: tmn-serve --cores, batched requests pipelined on one DEALER per "
             "loop, streams of its own per loop (a fresh daemon per row)",
             f"  {'loops':>5} {'cores':>7}{'ticks/req':>10}{'ticks/s':>13}"
             f"{'server-side p50':>17}{'p99.9':>9}{'max':>10} (us)  clean?"]
    for run in sc.runs:
        tps = "-" if run.ticks_per_s is None else f"{run.ticks_per_s:,.0f}"
        lines.append(f"  {run.loops:>5} {','.join(map(str, run.cores)):>7}"
                     f"{run.ticks_per_request:>10}{tps:>13}" + _side(run.server_side_ns, 17)
                     + f"  {'yes' if run.clean else 'NO: ' + run.note}")
    lines.append(f"  2 loops / 1 loop: {format_value(sc.two_over_one, 'x')}")
    c = sc.sharded_client
    if c is not None and c.ticks_per_s is not None:
        lines.append(f"  tmn.Client sharding {c.streams} streams over {c.loops} loops "
                     f"({c.ticks_per_request} ticks/request, {c.in_flight} in flight): "
                     f"{c.ticks_per_s:,.0f} ticks/s")
    return lines


def format_serve_report(r: ServeResult) -> str:
    """The human-readable table of ``tmn-bench serve``."""
    lines = _report_header(r) + _report_tables(r) + ["", "Ratios"]
    lines += [f"  {k:<48}{format_value(v, 'x'):>10}" for k, v in to_json(r.ratios).items()]
    lines += _scale_lines(r.scale)
    lines += ["", "Targets", *target_lines(r.targets, indent="  ")]
    lines += ["", "Absolute times hold for this machine only; a shared VM's tails are noisy "
              "(see bench/README.md)."]
    return "\n".join(lines)
