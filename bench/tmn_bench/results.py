"""Typed results: every figure of every ``tmn-bench`` JSON is a field of one of
these dataclasses (bench/README.md explains each figure).

The benchmarks build them, the targets (:mod:`tmn_bench.targets`) and the
reports read their attributes, and :func:`to_json` writes them. A figure that
is renamed or missing is therefore an ``AttributeError`` or a ``TypeError``
where it is made or read, not a silent SKIPPED. JSON keys are the field names
except where a field says otherwise (``metadata={"json": "p99.9"}``); a field
with ``metadata={"flatten": True}`` writes its own keys into its parent's; a
field marked :data:`OPTIONAL` (a later addition, with an empty default) is
written only when it is not empty, so results from before it still read back
and write back unchanged; and a result with a ``json()`` method writes what
that returns (and reads it back with its ``read_json`` class method).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

import tmn

SCHEMA_VERSION = 1


def key(name: str) -> dict[str, Any]:
    """Field metadata: the JSON key of a field whose name cannot be an identifier."""
    return {"json": name}


FLAT: dict[str, Any] = {"flatten": True}
OPTIONAL: dict[str, Any] = {"optional": True}


def to_json(obj: Any) -> Any:
    """JSON-ready data (dicts, lists, numbers, strings) of a result."""
    if hasattr(obj, "json") and dataclasses.is_dataclass(obj):
        return to_json(obj.json())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            v = to_json(getattr(obj, f.name))
            if f.metadata.get("optional") and not v:
                continue
            if f.metadata.get("flatten"):
                out.update(v)
            else:
                out[f.metadata.get("json", f.name)] = v
        if isinstance(obj, Target):
            out["status"] = obj.status
        return out
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"not a result: {type(obj).__name__}")


class ResultFormatError(ValueError):
    """A results JSON does not hold the result it should; names the JSON path."""


T = TypeVar("T")


def from_json(cls: type[T], data: Any, where: str = "$") -> T:
    """The result ``cls`` that :func:`to_json` wrote as ``data``: the reverse
    of it, checked. A missing or mistyped figure raises
    :class:`ResultFormatError` naming its JSON path (``$.datasets[0].gate``);
    keys no field reads (a target's ``status``) are ignored. A result with a
    ``json()`` method is read by its ``read_json(data, where)``."""
    return _decode(cls, data, where)


def _decode(tp: Any, v: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return v
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        problems = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _decode(arg, v, where)
            except ResultFormatError as e:
                problems.append(str(e))
        raise ResultFormatError("; ".join(problems))
    if origin is list:
        if not isinstance(v, list):
            raise ResultFormatError(f"{where}: must be a list, got {type(v).__name__}")
        return [_decode(args[0], x, f"{where}[{i}]") for i, x in enumerate(v)]
    if origin is dict:
        if not isinstance(v, dict):
            raise ResultFormatError(f"{where}: must be an object, got {type(v).__name__}")
        return {k: _decode(args[1], x, f"{where}.{k}") for k, x in v.items()}
    if dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, v, where, None)
    ok = (isinstance(v, (int, float)) and not isinstance(v, bool)) if tp is float else \
        (isinstance(v, int) and not isinstance(v, bool)) if tp is int else isinstance(v, tp)
    if not ok:
        raise ResultFormatError(f"{where}: must be {tp.__name__}, got {v!r:.60}")
    return float(v) if tp is float else v


def _json_keys(cls: Any) -> set[str]:
    """The keys a dataclass writes itself, its flattened dataclasses' included."""
    hints = typing.get_type_hints(cls)
    out: set[str] = set()
    for f in dataclasses.fields(cls):
        if not f.metadata.get("flatten"):
            out.add(f.metadata.get("json", f.name))
        elif dataclasses.is_dataclass(hints[f.name]):
            out |= _json_keys(hints[f.name])
    return out


def _decode_dataclass(cls: Any, v: Any, where: str, taken: set[str] | None) -> Any:
    if hasattr(cls, "json"):
        return cls.read_json(v, where)
    if not isinstance(v, dict):
        raise ResultFormatError(f"{where}: must be an object, got {type(v).__name__}")
    taken = _json_keys(cls) if taken is None else taken
    hints, kwargs = typing.get_type_hints(cls), {}
    for f in dataclasses.fields(cls):
        tp, name = hints[f.name], f.metadata.get("json", f.name)
        if f.metadata.get("flatten") and dataclasses.is_dataclass(tp):
            kwargs[f.name] = _decode_dataclass(tp, v, where, taken)
        elif f.metadata.get("flatten"):  # a dict: every key no field takes
            rest = {k: x for k, x in v.items() if k not in taken and k != "status"}
            kwargs[f.name] = _decode(tp, rest, where)
        elif name in v:
            kwargs[f.name] = _decode(tp, v[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ResultFormatError(f"{where}.{name}: missing")
    return cls(**kwargs)


# ---------------------------------------------------------------------------
# Shared pieces


@dataclass(frozen=True)
class Percentiles:
    """``n``, the :data:`tmn.PERCENTILES` (``p["p99.9"]``), ``max`` and ``mean`` of
    some samples (nanoseconds, unless said otherwise)."""

    n: int
    at: dict[str, float] = field(metadata=FLAT)
    max: float
    mean: float

    @classmethod
    def of(cls, samples: Any) -> Percentiles:
        """Of ``samples`` (any numeric array); an empty one raises ``ValueError``."""
        a = np.asarray(samples, dtype=np.float64).ravel()
        q = tmn.percentiles(a)
        return cls(int(a.size), {name: q[name] for name, _ in tmn.PERCENTILES}, q["max"],
                   float(a.mean()))

    def __getitem__(self, name: str) -> float:
        """A percentile by its report name (``"p50"`` ... ``"p99.9"``) or ``"max"``."""
        return self.max if name == "max" else self.at[name]


@dataclass(frozen=True)
class Skipped:
    """A measurement that did not run, and why."""

    reason: str
    status: str = "skipped"


@dataclass(frozen=True)
class Machine:
    """Everything needed to name the machine a number was measured on."""

    cpu: str
    cores: int | None
    cores_usable: int | None
    cpu_avx2: bool
    cpu_avx512f: bool
    isa: str
    clock_uses_tsc: bool
    load_average: list[float] | None
    platform: str
    python: str
    python_implementation: str
    versions: dict[str, str | None]
    tmn_version: str
    tmn_git_sha: str
    date: str
    argv: list[str]
    load_average_end: list[float] | None = None


@dataclass(frozen=True, kw_only=True)
class BenchmarkResult:
    """What every benchmark's result holds first: the benchmark that wrote it
    (its ``tmn-bench`` subcommand, given by the module that builds the result),
    the schema of its figures and the machine they were measured on. These
    fields are keyword-only."""

    benchmark: str
    schema_version: int = SCHEMA_VERSION
    machine: Machine


@dataclass(frozen=True)
class ModelInfo:
    """The model a benchmark ran."""

    source: str       # where it came from: given, built-in, or a random model and why
    path: str
    system: str
    hidden: int
    horizons: int
    horizons_ms: list[float]


@dataclass(frozen=True)
class EngineModel(ModelInfo):
    """With the artifact's provenance."""

    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServedModel(ModelInfo):
    """With the precision tmn-serve serves."""

    precision: str = "int8"


STATUSES = ("MET", "MISSED", "SKIPPED")
#: A target's comparison of its value with its limit.
OPS: dict[str, Any] = {"<=": lambda v, lim: v <= lim, ">=": lambda v, lim: v >= lim,
                       "<": lambda v, lim: v < lim, ">": lambda v, lim: v > lim}


@dataclass(frozen=True)
class Target:
    """A stated target and whether this run met it. ``value`` None means it
    could not be measured (SKIPPED): then ``note`` must say why."""

    name: str
    value: float | None
    limit: float
    op: str               # "<=", ">=", "<" or ">"
    unit: str
    note: str             # what was compared, or why it was skipped
    source: str           # where the target is stated (tmn_bench.targets)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"target {self.name!r}: op must be one of {', '.join(OPS)}, "
                             f"got {self.op!r}")
        if self.status == "SKIPPED" and not self.note:
            raise ValueError(f"target {self.name!r} is SKIPPED without a reason")

    @property
    def status(self) -> str:
        """``MET``, ``MISSED`` or ``SKIPPED``."""
        if self.value is None or not math.isfinite(self.value):
            return "SKIPPED"
        return "MET" if OPS[self.op](self.value, self.limit) else "MISSED"


@dataclass(frozen=True)
class SeedTarget(Target):
    """An accuracy target of one model or pair: ``kind`` is the target, ``who``
    the seed (so seeds can be summarised per kind)."""

    kind: str = ""
    who: str = ""


def ratio(num: float | None, den: float | None) -> float | None:
    """``num / den``, or None when either is missing or ``den`` is not positive."""
    if num is None or den is None or not den > 0:
        return None
    return float(num) / float(den)


def not_met(targets: list[Target]) -> list[Target]:
    """The targets that are MISSED or SKIPPED (what ``--strict`` fails on)."""
    return [t for t in targets if t.status != "MET"]


# ---------------------------------------------------------------------------
# tmn-bench engine


@dataclass(frozen=True)
class EngineWorkload:
    """What ``tmn-bench engine`` replayed and called (tmn_bench.workload)."""

    ticks: int
    streams: int
    rate_hz: float
    seed: int
    python_calls: int
    onnxruntime_steps: int
    torch_steps: int
    bare_gru_steps: int
    rounds: int
    description: str


@dataclass(frozen=True)
class TickLatency:
    """The full tick of one precision, timed inside C++ by Engine.replay with the
    engine's ``timing`` (total_ns of every tick; stage_ns of the ticks whose
    stages were timed: all of them with "all", about one in 16 with
    "sampled")."""

    precision: str
    isa: str
    timing: str
    ticks: int
    ok: int
    timed_ticks: int
    stage_timed_ticks: int
    verdicts: dict[str, int]
    total_ns: Percentiles
    stage_ns: dict[str, Percentiles]
    gate_work: Percentiles        # touched nonzeros per tick
    replay_wall_s: float
    replay_ticks_per_s: float
    checksum: float


@dataclass(frozen=True)
class ReplayThroughput:
    """Engine.replay of the whole recording with the engine's timing off: ticks
    per second of wall clock (output arrays included) and of the replaying
    thread's CPU time (what a loaded machine does not take away)."""

    precision: str
    isa: str
    timing: str
    ticks: int
    wall_s: float
    ticks_per_s: float
    cpu_s: float
    ticks_per_cpu_s: float    # issue 15's target: the CPU the replay got, not the machine's load
    checksum: float


@dataclass(frozen=True)
class AnyRateRow:
    """The same motion sent at one report rate (tmn_bench.any_rate): the P99
    error of the longest horizon, its ratio to the model's own rate (same
    velocity mode), and the tick's median cost from the engine's clock."""

    rate_hz: float
    velocity: bool            # False: position-only ticks
    ticks: int
    scored: int               # answers scored (warmed up)
    p99_error: float
    p99_over_native: float
    tick_ns_p50: float


@dataclass(frozen=True)
class TickMany:
    """``Engine.tick_many`` from Python on frames of one tick per stream, timed
    with perf_counter_ns around each call (into a preallocated ``out``)."""

    precision: str
    streams: int              # ticks per call
    frames: int
    call_ns: Percentiles
    per_tick_ns: Percentiles  # call_ns / streams
    checksum: float


@dataclass(frozen=True)
class PythonTick:
    """``Engine.tick`` called from Python, and the timer's own cost."""

    precision: str
    calls: int
    call_ns: Percentiles
    timer_floor_ns: Percentiles
    checksum: float


@dataclass(frozen=True)
class BareGru:
    """The bare GRU step and head in C++, timed like a stage."""

    precision: str
    isa: str
    steps: int
    step_ns: Percentiles
    checksum: float


@dataclass(frozen=True)
class BaselineStep:
    """A baseline's single step, called from Python, and how far its result is
    from the engine's FP32 network over the same steps."""

    version: str
    steps: int
    config: dict[str, Any]
    step_ns: Percentiles
    checksum: float
    max_abs_h_diff_vs_engine_fp32: float
    mean_abs_y0_diff_vs_engine_fp32: float
    status: str = "ok"


@dataclass(frozen=True)
class FloorStep(BaselineStep):
    """The fast-math compute floor: the same GRU step and head in plain C++ built
    with -ffast-math by the bench (``config`` holds the flags), timed in C++
    with the engine's clock."""


@dataclass(frozen=True)
class OnnxRuntimeStep(BaselineStep):
    providers: list[str] = field(default_factory=list)
    run_floor_ns: Percentiles | None = None  # the per-call floor (Identity graph)


@dataclass(frozen=True)
class EngineRatios:
    """The same-run ratios of bench/README.md (None where a baseline was skipped)."""

    onnxruntime_p50_over_int8_tick_p50: float | None
    onnxruntime_p50_over_python_tick_p50: float | None
    torch_p50_over_int8_tick_p50: float | None
    torch_p50_over_fp32_tick_p50: float | None
    torch_p50_over_python_tick_p50: float | None
    int8_tick_p50_over_bare_fp32_gru_p50: float | None
    int8_tick_p50_over_bare_int8_gru_p50: float | None
    int8_over_fp32_tick_p50: float | None
    int8_over_fp32_tick_p99_9: float | None = field(metadata=key("int8_over_fp32_tick_p99.9"))
    # issue 15: against the fast-math floor, the INT8 step, the cost of timing
    int8_tick_p50_over_floor_p50: float | None = None
    avx2_int8_tick_p50_over_floor_p50: float | None = None
    bare_int8_gru_p50_over_floor_p50: float | None = None
    bare_fp32_gru_p50_over_floor_p50: float | None = None
    bare_int8_over_bare_fp32_gru_p50: float | None = None
    timing_all_over_sampled_int8_tick_p50: float | None = None
    tick_many_per_tick_p50_over_python_tick_p50: float | None = None


@dataclass(frozen=True)
class EngineResult(BenchmarkResult):
    """Everything ``tmn-bench engine`` measured."""

    model: EngineModel
    workload: EngineWorkload
    engine: dict[str, TickLatency]         # by precision
    python_tick: PythonTick
    bare_gru: dict[str, BareGru]           # by precision
    onnxruntime: OnnxRuntimeStep | Skipped
    torch: BaselineStep | Skipped
    ratios: EngineRatios
    targets: list[Target]
    # issue 15
    timing_all: TickLatency                # INT8 with every stage of every tick timed
    avx2_int8: TickLatency | Skipped       # INT8 on the AVX2 kernels
    replay_off: dict[str, ReplayThroughput]  # by precision, timing off
    tick_many: TickMany
    floor: FloorStep | Skipped             # the fast-math compute floor
    any_rate: list[AnyRateRow]             # issue 11: the same motion at other rates


# ---------------------------------------------------------------------------
# tmn-bench serve


@dataclass(frozen=True)
class Layout:
    """Which CPU the client and the servers' loops ran on."""

    client_core: int
    server_core: int
    usable_cores: list[int]
    spin_allowed: bool
    description: str


@dataclass(frozen=True)
class ThroughputCase:
    """A throughput case: how many streams, and how many ticks each request
    carries (consecutive ticks of the round-robin stream order)."""

    streams: int
    ticks_per_request: int  # <= tmn.protocol.MAX_BATCH


@dataclass(frozen=True)
class ServeWorkload:
    """What every server is put through, in words and sizes."""

    transport: str
    round_trip: str
    requests: int
    warmup_requests: int
    throughput: str
    throughput_seconds: float
    in_flight: int
    throughput_cases: list[ThroughputCase]
    motion: str
    seed: int


@dataclass(frozen=True)
class ThroughputRun:
    """Pipelined requests of one case for a fixed time, on a fresh server."""

    case: ThroughputCase = field(metadata=FLAT)
    requests: int
    ticks: int
    error_replies: int
    seconds: float
    ticks_per_s: float | None
    server_side_ns: Percentiles | None
    exit_code: int | None


@dataclass(frozen=True)
class ServerRun:
    """One server that ran: round trips, its own latency, throughput."""

    description: str
    argv: list[str]
    health_model: dict[str, Any] | None
    requests: int
    warmup: int
    bad_replies: int
    round_trip_ns: Percentiles
    server_side_ns: Percentiles | None
    exit_code: int | None
    throughput: list[ThroughputRun]
    status: str = "ok"
    # the round trips' P50 per phase of tmn-serve's stats (tmn_bench.serve.PHASES)
    server_phases_ns: dict[str, float] | None = field(default=None, metadata=OPTIONAL)

    def throughput_of(self, case: ThroughputCase) -> ThroughputRun:
        """The throughput run of one case (KeyError if it did not run)."""
        for t in self.throughput:
            if t.case == case:
                return t
        raise KeyError(f"no throughput run for {case}")


@dataclass(frozen=True)
class ServerNotRun:
    """A server that was skipped (and why) or failed (with its log tail)."""

    status: str           # "skipped" or "failed"
    description: str
    reason: str


@dataclass(frozen=True)
class ModeRatios:
    """One tmn-serve mode against the naive server and the echo floor of its mode."""

    over_naive_round_trip_p50: float | None
    over_naive_round_trip_p99_9: float | None
    over_echo_round_trip_p50: float | None
    over_echo_round_trip_p99_9: float | None
    over_naive_throughput: float | None


@dataclass(frozen=True)
class ServeRatios:
    """Per tmn mode; written as ``<mode>_over_naive_round_trip_p50``,
    ``<mode>_over_<echo>_round_trip_p99.9``, ``<mode>_over_naive_throughput_<S>_streams``."""

    modes: dict[str, ModeRatios]
    echo_of: dict[str, str]
    headline_streams: int

    def json(self) -> dict[str, float | None]:
        """The flat ``{key: ratio}`` of the docstring (also the latency report's keys)."""
        out: dict[str, float | None] = {}
        for m, r in self.modes.items():
            for q, naive, echo in (("p50", r.over_naive_round_trip_p50, r.over_echo_round_trip_p50),
                                   ("p99.9", r.over_naive_round_trip_p99_9,
                                    r.over_echo_round_trip_p99_9)):
                out[f"{m}_over_naive_round_trip_{q}"] = naive
                out[f"{m}_over_{self.echo_of[m]}_round_trip_{q}"] = echo
            out[f"{m}_over_naive_throughput_{self.headline_streams}_streams"] = (
                r.over_naive_throughput)
        return out

    @classmethod
    def read_json(cls, data: Any, where: str) -> ServeRatios:
        """The reverse of :meth:`json`: the modes are the ``<mode>`` of the
        ``<mode>_over_naive_round_trip_p50`` keys; a key it does not explain is
        an error."""
        ratios = _decode(dict[str, float | None], data, where)
        modes: dict[str, ModeRatios] = {}
        echo_of: dict[str, str] = {}
        streams = 0
        for m in [k.removesuffix("_over_naive_round_trip_p50") for k in ratios
                  if k.endswith("_over_naive_round_trip_p50")]:
            mine = {k[len(m) + len("_over_"):]: v for k, v in ratios.items()
                    if k.startswith(f"{m}_over_")}
            echoes = [k.removesuffix("_round_trip_p50") for k in mine
                      if k.endswith("_round_trip_p50") and k != "naive_round_trip_p50"]
            found = [re.fullmatch(r"naive_throughput_(\d+)_streams", k) for k in mine]
            headline = [int(x.group(1)) for x in found if x]
            if len(echoes) != 1 or len(headline) != 1:
                raise ResultFormatError(f"{where}: mode {m}: needs one echo floor and one "
                                        f"throughput ratio, got {sorted(mine)}")
            echo_of[m], streams = echoes[0], headline[0]
            modes[m] = ModeRatios(*(mine.get(k) for k in (
                "naive_round_trip_p50", "naive_round_trip_p99.9", f"{echo_of[m]}_round_trip_p50",
                f"{echo_of[m]}_round_trip_p99.9", f"naive_throughput_{streams}_streams")))
        result = cls(modes, echo_of, streams)
        if result.json() != ratios:
            raise ResultFormatError(f"{where}: keys not understood: "
                                    f"{sorted(set(ratios) ^ set(result.json()))}")
        return result


@dataclass(frozen=True)
class ScaleRun:
    """``tmn-serve --cores`` with ``loops`` loops: batched requests pipelined on
    one DEALER per loop endpoint, each loop with streams of its own."""

    loops: int
    cores: list[int]
    streams_per_loop: int
    ticks_per_request: int
    in_flight_per_loop: int
    requests: int
    ticks: int
    error_replies: int
    seconds: float
    ticks_per_s: float | None
    server_side_ns: Percentiles | None   # every loop's requests (the daemon's merged stats)
    clean: bool                          # no loop shares a CPU with the client
    note: str


@dataclass(frozen=True)
class ShardedClientRun:
    """``tmn.Client`` given every loop's endpoint: batches over many streams split on
    the ring, pipelined, the replies put back together (what the client costs)."""

    loops: int
    streams: int
    ticks_per_request: int
    in_flight: int
    ticks: int
    seconds: float
    ticks_per_s: float | None


@dataclass(frozen=True)
class ScaleResult:
    """Throughput on 1 and 2 loops, and the sharded client (issue 15)."""

    runs: list[ScaleRun]
    sharded_client: ShardedClientRun | None
    two_over_one: float | None   # throughput of 2 loops / 1 loop, same run


@dataclass(frozen=True)
class ServeResult(BenchmarkResult):
    """Everything ``tmn-bench serve`` measured."""

    model: ServedModel
    layout: Layout
    workload: ServeWorkload
    servers: dict[str, ServerRun | ServerNotRun]
    ratios: ServeRatios
    targets: list[Target]
    scale: ScaleResult | None = field(default=None, metadata=OPTIONAL)

    def failed(self) -> list[str]:
        """Names of the servers that did not start, stalled or were refused."""
        return [n for n, s in self.servers.items() if s.status == "failed"]


# ---------------------------------------------------------------------------
# tmn-bench latency


@dataclass(frozen=True)
class LatencyResult(BenchmarkResult):
    """``tmn-bench latency``: the engine and serve results of one run, gathered."""

    quick: bool
    model: EngineModel
    engine: EngineResult
    serve: ServeResult | Skipped
    ratios: dict[str, float | None]   # engine/<key> and serve/<key>
    targets: list[Target]


# ---------------------------------------------------------------------------
# tmn-bench pagerank


@dataclass(frozen=True)
class PushWorkload:
    """The graphs and the solve of ``tmn-bench pagerank``."""

    graph: str
    k: int
    alpha: float
    eps: float
    restart_nodes: int
    restart: str
    budget: int
    repeats: int
    seed: int


@dataclass(frozen=True)
class PushAtSize:
    """The forward push on the graph of one size (the same solve ``repeats`` times)."""

    n: int
    edges: int              # stored entries of the CSR (both directions)
    graph_seconds: float    # building the graph and the PushGraph, not timed below
    work: int               # touched entries, the machine-independent cost
    pushes: int
    support: int            # nodes touched
    rounds: int             # threshold rounds
    error_bound: float      # the certificate on the L1 error
    certified: bool
    solve_ns: Percentiles   # wall clock of PushGraph.pagerank from Python


@dataclass(frozen=True)
class PushComparison:
    """The push, networkx.pagerank and a scipy power iteration at the same L1
    accuracy on one graph; errors are L1 against a power iteration to 1e-14."""

    n: int
    eps: float
    push_error: float
    push_error_bound: float
    push_seconds: float          # P50 of the solves at this size
    networkx_tol: float          # networkx's tol (per node), which certifies eps
    networkx_error: float
    networkx_seconds: float      # median of the runs, graph already built
    networkx_graph_seconds: float
    scipy_power_error: float
    scipy_power_seconds: float
    networkx_over_push: float
    scipy_power_over_push: float


@dataclass(frozen=True)
class PushResult(BenchmarkResult):
    """Everything ``tmn-bench pagerank`` measured."""

    workload: PushWorkload
    sizes: list[PushAtSize]
    work_max_over_min: float
    comparison: PushComparison
    targets: list[Target]


# ---------------------------------------------------------------------------
# tmn-bench accuracy


@dataclass(frozen=True)
class ErrorDistribution:
    """Per horizon: MSE, RMSE, the :data:`tmn.PERCENTILES` and max of the error."""

    mse: list[float]
    rmse: list[float]
    at: dict[str, list[float]] = field(metadata=FLAT)
    max: list[float]

    @classmethod
    def of(cls, d: dict[str, list[float]]) -> ErrorDistribution:
        """From ``tmn_train.scoring.distribution``'s dict (every key used)."""
        names = [n for n, _ in tmn.PERCENTILES]
        if set(d) != {"mse", "rmse", "max", *names}:
            raise KeyError(f"unexpected distribution keys {sorted(d)}")
        return cls(d["mse"], d["rmse"], {n: d[n] for n in names}, d["max"])

    def __getitem__(self, name: str) -> list[float]:
        """A percentile row by its report name (``"p99"``), or ``"max"``."""
        return self.max if name == "max" else self.at[name]


@dataclass(frozen=True)
class TrackSummary:
    """Per horizon, over the ticks with a direction of motion (tmn_bench.accuracy.metrics)."""

    track_ticks: list[float]
    along_mean: list[float]
    along_rms: list[float]
    along_p99: list[float]
    cross_rms: list[float]
    cross_p99: list[float]


@dataclass(frozen=True)
class PredictorMetrics:
    """Every metric of one predictor, per horizon (JSON: one flat object)."""

    errors: ErrorDistribution = field(metadata=FLAT)
    track: TrackSummary = field(metadata=FLAT)
    jitter: list[float]


@dataclass(frozen=True)
class GroupTail:
    """Where the headline error's tail lives: one group of pieces (a synthetic
    regime, a LASA shape, a recording; tmn_bench.accuracy.evaluate.piece_group)."""

    ticks: int
    p99: dict[str, float]         # per predictor, P99 error at the headline horizon
    tail_share: dict[str, float]  # per predictor, its share of that predictor's
                                  # errors above its pooled P99 that lie in this group


@dataclass(frozen=True)
class GateSummary:
    """System B's gate on the evaluated ticks (tmn_bench.accuracy.metrics)."""

    ticks: int
    pass_rate: float
    cert_mean: float
    cert_max: float
    fallbacks: dict[str, int]              # by fallback verdict name
    fallback_win_rate: float | None
    fallback_mse_prior: float | None
    fallback_mse_network: float | None
    switches: int
    jitter_without_switches: float


@dataclass(frozen=True)
class LatencySummary:
    """Tick latency of one replay, past warming (C++ timing)."""

    total_ns: Percentiles
    stage_ns: dict[str, Percentiles]


@dataclass(frozen=True)
class MseRatio:
    """INT8 / FP32 MSE of one model: at the headline horizon and averaged over
    the horizons."""

    headline: float      # at the farthest horizon
    all_horizons: float  # mean MSE over the horizons, INT8 over FP32


@dataclass(frozen=True)
class PerTickTests:
    """Paired t, Wilcoxon and Mann-Whitney p-values over the ticks."""

    t_test_p: float        # paired t-test of the errors
    wilcoxon_p: float      # Wilcoxon signed-rank
    mann_whitney_p: float  # Mann-Whitney U (unpaired)


@dataclass(frozen=True)
class PerBlockTests:
    """The paired tests over per-block MSEs (None with fewer than 3 blocks)."""

    t_test_p: float | None
    t_test_p_new_lower: float | None
    wilcoxon_p: float | None
    cohens_dz: float | None


@dataclass(frozen=True)
class Bootstrap:
    """How the confidence intervals were resampled."""

    resamples: int  # 0: no interval (fewer than 2 blocks, or --bootstrap 0)
    unit: str       # "block" or "stream"
    seed: int


@dataclass(frozen=True)
class Comparison:
    """One predictor against another on the same ticks (tmn_bench.accuracy.stats)."""

    ticks: int
    blocks: int
    mse_base: float
    mse_new: float
    p99_base: float
    p99_new: float
    p99_ratio: float
    mse_ratio: float
    per_tick: PerTickTests
    cohens_d: float
    cohens_dz: float
    cliffs_delta: float
    per_block: PerBlockTests
    p99_ratio_ci95: list[float] | None
    mse_ratio_ci95: list[float] | None
    bootstrap: Bootstrap
    new: str = ""
    base: str = ""
    latency_p999_ratio: float | None = None  # B against A only


@dataclass(frozen=True)
class CriterionOne:
    """B's P99 <= 0.85x A's, or B's P99.9 tick latency <= 0.8x A's."""

    status: str                       # MET or MISSED
    p99_ratio: float                  # B / A at the headline horizon
    latency_p999_ratio: float | None  # B / A tick P99.9


@dataclass(frozen=True)
class CriterionTwo:
    """Gate pass rate >= 90 % with mean certificate <= 0.02."""

    status: str        # MET or MISSED
    pass_rate: float
    cert_mean: float   # output units


@dataclass(frozen=True)
class PlanCriteria:
    """The plan's success criteria for one (A, B) pair."""

    pair: str  # "B0 vs A0"
    criterion_1: CriterionOne
    criterion_2: CriterionTwo


@dataclass(frozen=True)
class DatasetResult:
    """Every metric, statistic and target of one ``--data`` source."""

    data: str
    split: str
    pieces: int
    ticks: int
    evaluated_ticks: int
    horizons_ms: list[float]
    headline_ms: float
    precision: str
    kalman_only_from: str
    predictors: dict[str, PredictorMetrics]
    gate: dict[str, GateSummary]
    latency: dict[str, LatencySummary]
    int8_over_fp32_mse: dict[str, MseRatio]
    comparisons: list[Comparison]
    targets: list[SeedTarget]
    plan_criteria: list[PlanCriteria]
    # per "label precision" of a model with an uncertainty radius: the share of
    # errors within it, per horizon
    coverage: dict[str, list[float]] = field(default_factory=dict, metadata=OPTIONAL)
    # per group of pieces (at most MAX_GROUPS of them; none for more), the tail
    groups: dict[str, GroupTail] = field(default_factory=dict, metadata=OPTIONAL)


@dataclass(frozen=True)
class AccuracySettings:
    """The options that shaped the statistics."""

    split: str
    precision: str
    bootstrap_resamples: int
    resample_by: str
    block_s: float
    seed: int
    tangent_half_width_ms: float


@dataclass(frozen=True)
class ModelEntry:
    """One model under test, labelled by system and training seed."""

    label: str
    path: str
    system: str
    seed: int | None
    trained_on: list[str] | None
    git_sha: str | None


@dataclass(frozen=True)
class SeedSummary:
    """One target kind on one data set, over the seeds."""

    data: str
    target: str
    limit: float
    op: str
    seeds: int
    met: int
    min: float | None
    mean: float | None
    max: float | None


@dataclass(frozen=True)
class AccuracyResult(BenchmarkResult):
    """Everything ``tmn-bench accuracy`` measured."""

    settings: AccuracySettings
    models: list[ModelEntry]
    datasets: list[DatasetResult]
    seed_summary: list[SeedSummary]

    def targets(self) -> list[Target]:
        """Every target of every data set."""
        return [t for d in self.datasets for t in d.targets]
