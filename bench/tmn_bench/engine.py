"""``tmn-bench engine``: the full tick against the bare GRU step, onnxruntime and
PyTorch eager, in one run on one model (bench/README.md explains every number).

It measures:

1. the full five-stage tick per precision (fp32, int8), timed inside C++ by
   ``Engine.replay`` over a synthetic 2 kHz multi-stream recording with the
   engine's timing "sampled" (every tick's total, the stages of one tick in
   16): P50, P90, P99, P99.9 and max of the total and of each stage, and
   replay ticks/s; the INT8 tick again with timing "all" (what timing every
   stage costs) and on the AVX2 kernels; replay throughput with timing "off";
2. ``Engine.tick`` called from Python, timed with ``time.perf_counter_ns``,
   and ``Engine.tick_many`` on frames of one tick per stream;
3. the bare GRU step in C++ (``time_network_steps``), and the fast-math
   compute floor: the same step in plain C++ built with -ffast-math;
4. onnxruntime and PyTorch eager running the same single step (skipped, with
   the reason, when the package is missing);

all in interleaved rounds (tmn_bench.common); then, after the rounds, the
same motion sent at other report rates (tmn_bench.any_rate); then the ratios
and the targets (tmn_bench.targets). Neither torch nor onnxruntime is imported here.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

import tmn
from tmn import _core
from tmn.model import Model
from tmn_bench import report
from tmn_bench.any_rate import any_rate
from tmn_bench.baselines import Reference
from tmn_bench.common import (ROUNDS, WARMUP, Log, gc_paused, load_average, machine_info,
                              model_scale, quiet, round_slice)
from tmn_bench.report import COLUMNS, HEADERS, format_ns, format_value, load_text, target_lines
from tmn_bench.results import (BareGru, BaselineStep, EngineModel, EngineRatios, EngineResult,
                               EngineWorkload, FloorStep, OnnxRuntimeStep, Percentiles,
                               PythonTick, ReplayThroughput, Skipped, TickLatency, TickMany,
                               ratio, to_json)
from tmn_bench.targets import engine_targets
from tmn_bench.workload import DESCRIPTION, TickStreams, synthetic_ticks

PRECISIONS = ("fp32", "int8")
WARM_STREAM = 1 << 40  # the warm-up streams' ids, forgotten before measuring
TIMING = "sampled"  # the timing of the headline replays (every tick's total, 2 clock reads)


def warm_up(engine: tmn.Engine) -> None:
    """A throwaway recording on streams of their own, then forget them."""
    warm = synthetic_ticks(WARMUP, streams=2, seed=12345, first_stream=WARM_STREAM)
    engine.replay(*warm.columns(), warm.stream)
    for sid in (WARM_STREAM, WARM_STREAM + 1):
        engine.reset(sid)


class ReplayBench:
    """The full tick: ``Engine.replay`` over the recording, timed inside C++.

    Percentiles cover the ticks that ran all five stages: status ok and past
    warm-up (a warming tick skips the gate); the stage percentiles, those of
    them whose stages were timed. The replay wall clock covers every tick,
    output arrays included. The checksum consumes every path and certificate.
    """

    def __init__(self, engine: tmn.Engine, w: TickStreams) -> None:
        self.engine, self.w = engine, w
        warm_up(engine)
        n = len(w)
        self.total = np.empty(n, np.uint32)
        self.stages = np.empty((n, len(tmn.STAGES)), np.uint32)
        self.status = np.empty(n, np.uint8)
        self.verdict = np.empty(n, np.uint8)
        self.work = np.empty(n, np.uint32)
        self.wall_ns, self.ok, self.checksum = 0, 0, 0.0

    def run_round(self, r: int, rounds: int) -> None:
        """Replay this round's slice of the recording (streams continue across rounds)."""
        w = self.w
        s = slice(*round_slice(len(w), r, rounds))
        t0 = time.perf_counter_ns()
        out = self.engine.replay(w.t[s], w.x[s], w.y[s], w.vx[s], w.vy[s], w.stream[s])
        self.wall_ns += time.perf_counter_ns() - t0
        self.ok += out.ok
        self.checksum += float(np.nansum(out.paths)) + float(np.nansum(out.cert))
        self.total[s], self.stages[s], self.work[s] = out.total_ns, out.stage_ns, out.work
        self.status[s], self.verdict[s] = out.status, out.verdict

    def summary(self) -> TickLatency:
        """Percentiles of the total and of every stage, verdicts, throughput, checksum."""
        n = self.total.size
        timed = (self.status == int(tmn.Status.ok)) & (self.verdict != int(tmn.Verdict.warming))
        staged = timed & self.stages.any(axis=1)  # Replay.stages_timed
        if not staged.any():
            raise RuntimeError("no tick ran all five stages with its stages timed; is the "
                               "recording shorter than the model's window?")
        values, counts = np.unique(self.verdict, return_counts=True)
        return TickLatency(
            precision=self.engine.precision, isa=self.engine.isa, timing=self.engine.timing,
            ticks=n, ok=int(self.ok), timed_ticks=int(timed.sum()),
            stage_timed_ticks=int(staged.sum()),
            verdicts={tmn.VERDICT_NAMES[int(v)]: int(c) for v, c in zip(values, counts)},
            total_ns=Percentiles.of(self.total[timed]),
            stage_ns={name: Percentiles.of(self.stages[staged, i])
                      for i, name in enumerate(tmn.STAGES)},
            gate_work=Percentiles.of(self.work[timed]),
            replay_wall_s=self.wall_ns / 1e9, replay_ticks_per_s=n / (self.wall_ns / 1e9),
            checksum=self.checksum)


class ReplayThroughputBench:
    """``Engine.replay`` with the engine's timing off: ticks per second of wall
    clock (output arrays included) and of the thread's CPU time, a round's
    slice at a time (streams continue across rounds)."""

    def __init__(self, engine: tmn.Engine, w: TickStreams) -> None:
        self.engine, self.w = engine, w
        warm_up(engine)
        self.wall_ns = self.cpu_ns = 0
        self.checksum = 0.0

    def run_round(self, r: int, rounds: int) -> None:
        w = self.w
        s = slice(*round_slice(len(w), r, rounds))
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        out = self.engine.replay(w.t[s], w.x[s], w.y[s], w.vx[s], w.vy[s], w.stream[s])
        self.wall_ns += time.perf_counter_ns() - t0
        self.cpu_ns += time.thread_time_ns() - c0
        self.checksum += float(np.nansum(out.paths))

    def summary(self) -> ReplayThroughput:
        n, e = len(self.w), self.engine
        return ReplayThroughput(e.precision, e.isa, e.timing, n, self.wall_ns / 1e9,
                                n / (self.wall_ns / 1e9), self.cpu_ns / 1e9,
                                n / (max(self.cpu_ns, 1) / 1e9), self.checksum)


class TickManyBench:
    """``Engine.tick_many`` from Python, one call per frame of the recording (one
    tick of each of its streams), into a preallocated ``out``; perf_counter_ns
    around each call, GC paused."""

    def __init__(self, engine: tmn.Engine, w: TickStreams, streams: int, ticks: int) -> None:
        self.engine, self.S = engine, streams
        self.frames = max(1, min(ticks, len(w)) // self.S)
        n = self.frames * self.S
        self.cols = [np.ascontiguousarray(a[:n]) for a in (*w.columns(), w.stream)]
        warm_up(engine)
        self.out = np.zeros(self.S, engine.batch_dtype)
        self.ns = np.zeros(self.frames, np.int64)
        self.checksum = 0.0

    def run_round(self, r: int, rounds: int) -> None:
        lo, hi = round_slice(self.frames, r, rounds)
        pc, many, out, S, ns = time.perf_counter_ns, self.engine.tick_many, self.out, self.S, self.ns
        t, x, y, vx, vy, ids = self.cols
        acc = 0.0
        with gc_paused():
            for f in range(lo, hi):
                a, b = f * S, (f + 1) * S
                t0 = pc()
                many(t[a:b], x[a:b], y[a:b], vx[a:b], vy[a:b], ids[a:b], out)
                ns[f] = pc() - t0
                acc += float(out["path"][0, 0, 0])
        self.checksum += acc

    def summary(self) -> TickMany:
        return TickMany(self.engine.precision, self.S, self.frames, Percentiles.of(self.ns),
                        Percentiles.of(self.ns / self.S), self.checksum)


class BareGruBench:
    """The bare GRU step + head in C++, timed like a stage (``time_network_steps``)."""

    def __init__(self, engine: tmn.Engine, steps: int) -> None:
        self.engine, self.steps = engine, steps
        engine._core.time_network_steps(min(WARMUP * 10, steps))
        self.ns: list[np.ndarray] = []
        self.checksum = 0.0

    def run_round(self, r: int, rounds: int) -> None:
        lo, hi = round_slice(self.steps, r, rounds)
        if hi > lo:
            ns, checksum = self.engine._core.time_network_steps(hi - lo)
            self.ns.append(ns)
            self.checksum += float(checksum)

    def summary(self) -> BareGru:
        return BareGru(self.engine.precision, self.engine.isa, self.steps,
                       Percentiles.of(np.concatenate(self.ns)), self.checksum)


class PythonTickBench:
    """``Engine.tick`` from Python, timed with perf_counter_ns around each call
    (GC paused during the loop). Also times the timer itself, the floor under
    every Python-side number."""

    def __init__(self, engine: tmn.Engine, w: TickStreams, calls: int) -> None:
        self.engine, self.calls = engine, calls
        self.cols = [a[:calls].tolist() for a in w.columns()]
        t, x, y, vx, vy = self.cols
        for i in range(min(WARMUP, calls)):  # a throwaway stream, then forget it
            engine.tick(t[i], x[i], y[i], vx[i], vy[i], WARM_STREAM)
        engine.reset(WARM_STREAM)
        self.ns = [0] * calls
        self.floor = [0] * calls
        self.checksum = 0

    def run_round(self, r: int, rounds: int) -> None:
        lo, hi = round_slice(self.calls, r, rounds)
        pc, tick, ns, floor = time.perf_counter_ns, self.engine.tick, self.ns, self.floor
        t, x, y, vx, vy = self.cols
        acc = 0
        with gc_paused():
            for i in range(lo, hi):
                t0 = pc()
                floor[i] = pc() - t0
            for i in range(lo, hi):
                t0 = pc()
                p = tick(t[i], x[i], y[i], vx[i], vy[i])
                t1 = pc()
                ns[i] = t1 - t0
                acc += p.total_ns + p.work
        self.checksum += acc

    def summary(self) -> PythonTick:
        return PythonTick(self.engine.precision, self.calls, Percentiles.of(self.ns),
                          Percentiles.of(self.floor), float(self.checksum))


def _torch_bench(model: Model, z: np.ndarray, ref: Reference) -> Any:
    from tmn_bench.baselines.torch_eager import TorchBench

    return TorchBench(model, z, ref)


def _onnxruntime_bench(model: Model, z: np.ndarray, ref: Reference) -> Any:
    from tmn_bench.baselines.onnxruntime_step import OnnxRuntimeBench

    return OnnxRuntimeBench(model, z, ref)


def _floor_bench(model: Model, z: np.ndarray, ref: Reference) -> Any:
    from tmn_bench.baselines.fastmath_floor import FloorBench

    return FloorBench(model, z, ref)


def network_inputs(model: Model, single: TickStreams) -> np.ndarray:
    """The z-scored network inputs the engine makes of one stream: its grid
    (ingest.hpp), the features with the prior, normalised in float32 (what the
    baselines step through)."""
    spec = model.spec()
    grid = _core.resample(spec.ingest, *single.columns())
    raw = _core.grid_features(spec.ingest, spec.system, spec.kalman, *grid)[0]
    norm = model.config["normalisation"]
    return ((raw - np.asarray(norm["mean"])) * (1.0 / np.asarray(norm["std"]))).astype(np.float32)


def _benches(model: Model, workload: TickStreams, single: TickStreams, streams: int,
             steps: int, torch_steps: int, isa: str,
             log: Log) -> tuple[dict[str, Any], dict[str, Skipped]]:
    """Every bench, set up and warmed up, and the baselines that were skipped."""
    engines = {p: tmn.Engine(model, precision=p, isa=isa, timing=TIMING) for p in PRECISIONS}
    z = network_inputs(model, single)
    log("computing the FP32 reference the baselines are checked against")
    ref = Reference.of(engines["fp32"], z)
    log("setting up and warming up every bench")
    benches: dict[str, Any] = {f"replay_{p}": ReplayBench(engines[p], workload)
                               for p in PRECISIONS}
    benches["replay_timing_all"] = ReplayBench(
        tmn.Engine(model, precision="int8", isa=isa, timing="all"), workload)
    skipped: dict[str, Skipped] = {}
    if tmn._core.isa_available(tmn.Isa.avx2):
        benches["replay_avx2_int8"] = ReplayBench(
            tmn.Engine(model, precision="int8", isa="avx2", timing=TIMING), workload)
    else:
        skipped["replay_avx2_int8"] = Skipped("no AVX2 kernels on this CPU or in this build")
    for p in PRECISIONS:
        benches[f"replay_off_{p}"] = ReplayThroughputBench(
            tmn.Engine(model, precision=p, isa=isa, timing="off"), workload)
    benches["python_tick"] = PythonTickBench(tmn.Engine(model, precision="int8", isa=isa),
                                             single, steps)
    benches["tick_many"] = TickManyBench(tmn.Engine(model, precision="int8", isa=isa),
                                         workload, streams, steps)
    for p in PRECISIONS:
        benches[f"bare_{p}"] = BareGruBench(engines[p], len(workload))
    for name, make, n in (("floor", _floor_bench, steps),
                          ("onnxruntime", _onnxruntime_bench, steps),
                          ("torch", _torch_bench, torch_steps)):
        try:
            benches[name] = make(model, z[:n], ref)
        except ImportError as e:
            skipped[name] = Skipped(f"{type(e).__name__}: {e}")
    return benches, skipped


def run_engine_bench(model: Model, source: str, *, ticks: int = 1_000_000, streams: int = 8,
                     steps: int = 100_000, torch_steps: int = 50_000, isa: str = "auto",
                     seed: int = 0, rounds: int = ROUNDS, log: Log = quiet) -> EngineResult:
    """Every measurement of ``tmn-bench engine``."""
    scale = model_scale(model)
    workload = synthetic_ticks(ticks, streams=streams, seed=seed, **scale)
    single = synthetic_ticks(max(steps, torch_steps), streams=1, seed=seed + 1, **scale)
    machine = machine_info(isa=tmn.Engine(model, max_streams=1, isa=isa).isa)
    rounds = max(1, min(rounds, ticks, steps, torch_steps))
    benches, skipped = _benches(model, workload, single, streams, steps, torch_steps, isa, log)
    order = list(benches.values())
    log(f"measuring {', '.join(benches)} in {rounds} interleaved rounds")
    for r in range(rounds):
        for b in (order if r % 2 == 0 else order[::-1]):
            b.run_round(r, rounds)

    measured = {
        "engine": {p: benches[f"replay_{p}"].summary() for p in PRECISIONS},
        "python_tick": benches["python_tick"].summary(),
        "bare_gru": {p: benches[f"bare_{p}"].summary() for p in PRECISIONS},
        **{name: benches[name].summary() if name in benches else skipped[name]
           for name in ("onnxruntime", "torch", "floor")},
        "timing_all": benches["replay_timing_all"].summary(),
        "avx2_int8": (benches["replay_avx2_int8"].summary() if "replay_avx2_int8" in benches
                      else skipped["replay_avx2_int8"]),
        "replay_off": {p: benches[f"replay_off_{p}"].summary() for p in PRECISIONS},
        "tick_many": benches["tick_many"].summary(),
    }
    log("replaying the same motion at other report rates")
    seconds = ticks / streams / float(model.config["sample_rate_hz"])  # the workload's length
    any_rate_rows = any_rate(model, seconds=min(20.0, max(2.0, seconds)), streams=streams,
                             seed=seed, **scale)
    result = EngineResult(
        benchmark="engine", machine=dataclasses.replace(machine, load_average_end=load_average()),
        model=EngineModel(source, str(model.path), model.system, model.hidden,
                          len(model.horizons_ms), model.horizons_ms,
                          model.config.get("provenance", {})),
        workload=EngineWorkload(len(workload), streams, workload.rate_hz, seed, steps, steps,
                                torch_steps, ticks, rounds, DESCRIPTION),
        ratios=engine_ratios(**measured), targets=[], any_rate=any_rate_rows, **measured)
    return dataclasses.replace(result, targets=engine_targets(result))


def _step_p50(b: BaselineStep | Skipped) -> float | None:
    return b.step_ns["p50"] if isinstance(b, BaselineStep) else None


def engine_ratios(engine: dict[str, TickLatency], python_tick: PythonTick,
                  bare_gru: dict[str, BareGru], onnxruntime: OnnxRuntimeStep | Skipped,
                  torch: BaselineStep | Skipped, floor: FloorStep | Skipped,
                  timing_all: TickLatency, avx2_int8: TickLatency | Skipped,
                  replay_off: dict[str, ReplayThroughput], tick_many: TickMany) -> EngineRatios:
    """The ratios the README explains (None where a baseline was skipped)."""
    i8, f32 = engine["int8"].total_ns, engine["fp32"].total_ns
    ort, pt, py = _step_p50(onnxruntime), _step_p50(torch), python_tick.call_ns["p50"]
    fl = _step_p50(floor)
    bare8, bare32 = bare_gru["int8"].step_ns["p50"], bare_gru["fp32"].step_ns["p50"]
    avx2 = avx2_int8.total_ns["p50"] if isinstance(avx2_int8, TickLatency) else None
    return EngineRatios(
        int8_tick_p50_over_floor_p50=ratio(i8["p50"], fl),
        avx2_int8_tick_p50_over_floor_p50=ratio(avx2, fl),
        bare_int8_gru_p50_over_floor_p50=ratio(bare8, fl),
        bare_fp32_gru_p50_over_floor_p50=ratio(bare32, fl),
        bare_int8_over_bare_fp32_gru_p50=ratio(bare8, bare32),
        timing_all_over_sampled_int8_tick_p50=ratio(timing_all.total_ns["p50"], i8["p50"]),
        tick_many_per_tick_p50_over_python_tick_p50=ratio(tick_many.per_tick_ns["p50"], py),
        onnxruntime_p50_over_int8_tick_p50=ratio(ort, i8["p50"]),
        onnxruntime_p50_over_python_tick_p50=ratio(ort, py),
        torch_p50_over_int8_tick_p50=ratio(pt, i8["p50"]),
        torch_p50_over_fp32_tick_p50=ratio(pt, f32["p50"]),
        torch_p50_over_python_tick_p50=ratio(pt, py),
        int8_tick_p50_over_bare_fp32_gru_p50=ratio(i8["p50"], bare_gru["fp32"].step_ns["p50"]),
        int8_tick_p50_over_bare_int8_gru_p50=ratio(i8["p50"], bare_gru["int8"].step_ns["p50"]),
        int8_over_fp32_tick_p50=ratio(i8["p50"], f32["p50"]),
        int8_over_fp32_tick_p99_9=ratio(i8["p99.9"], f32["p99.9"]))


# ---------------------------------------------------------------------------
# The text report

@dataclass(frozen=True)
class Row:
    """A row of the latency table. ``parent`` names the row a sub-row belongs to
    (the text table indents it, the markdown table prefixes the parent)."""

    label: str
    p: Percentiles | None   # None: skipped, ``note`` says why
    note: str = ""
    parent: str = ""


def latency_rows(r: EngineResult) -> list[Row]:
    """The latency table: full tick and stages, bare step and the fast-math
    floor, Python tick and tick_many, baselines."""
    out = []
    for p in ("int8", "fp32"):
        e = r.engine[p]
        out.append(Row(f"full tick {p.upper()} (C++ timing)", e.total_ns))
        out += [Row(s, e.stage_ns[s], parent=p.upper()) for s in tmn.STAGES]
    out.append(Row("full tick INT8, timing all", r.timing_all.total_ns,
                   "every stage of every tick timed"))
    if isinstance(r.avx2_int8, Skipped):
        out.append(Row("full tick INT8, AVX2 kernels", None, r.avx2_int8.reason))
    else:
        out.append(Row("full tick INT8, AVX2 kernels", r.avx2_int8.total_ns))
    out += [Row(f"bare GRU step {p.upper()} (C++)", r.bare_gru[p].step_ns)
            for p in ("fp32", "int8")]
    if isinstance(r.floor, Skipped):
        out.append(Row("fast-math floor step (C++)", None, r.floor.reason))
    else:
        out.append(Row("fast-math floor step (C++)", r.floor.step_ns))
    out.append(Row("Engine.tick from Python (INT8)", r.python_tick.call_ns))
    out.append(Row("perf_counter_ns pair (timer floor)", r.python_tick.timer_floor_ns,
                   parent="Engine.tick"))
    out.append(Row(f"Engine.tick_many, per tick ({r.tick_many.streams} streams)",
                   r.tick_many.per_tick_ns))
    for b, label in ((r.onnxruntime, "onnxruntime step (Python)"),
                     (r.torch, "PyTorch eager step (Python)")):
        if isinstance(b, Skipped):
            out.append(Row(label, None, b.reason))
            continue
        out.append(Row(label, b.step_ns))
        if isinstance(b, OnnxRuntimeStep) and b.run_floor_ns is not None:
            out.append(Row("per-call floor (Identity graph)", b.run_floor_ns,
                           parent="onnxruntime"))
    return out


def _text_row(row: Row) -> str:
    label = f"  {row.label}" if row.parent else row.label
    if row.p is None:
        return f"  {label:<34}{'skipped':>10}  {row.note}"
    return f"  {label:<34}{row.p.n:>10,}" + "".join(f"{format_ns(row.p[k]):>11}" for k in COLUMNS)


def _header(r: EngineResult) -> list[str]:
    m, mod, w, v = r.machine, r.model, r.workload, r.machine.versions
    return [
        "tmn-bench engine",
        f"  machine : {m.cpu}, {m.cores} cores ({m.cores_usable} usable), "
        f"AVX2 {report.cell(m.cpu_avx2)}, AVX-512 {report.cell(m.cpu_avx512f)}",
        f"  kernels : isa {m.isa}, TSC clock {report.cell(m.clock_uses_tsc)}",
        f"  software: Python {m.python}, numpy {v.get('numpy')}, onnxruntime "
        f"{v.get('onnxruntime')}, torch {v.get('torch')}, tmn {m.tmn_version} ({m.tmn_git_sha})",
        f"  platform: {m.platform}   date {m.date}",
        f"  load    : {load_text(m.load_average)} at start (1/5/15 min), "
        f"{load_text(m.load_average_end)} at end",
        f"  model   : System {mod.system}, H={mod.hidden}, K={mod.horizons} -- {mod.source}",
        f"  workload: {w.ticks:,} ticks, {w.streams} interleaved streams at {w.rate_hz:.0f} Hz "
        f"(seed {w.seed}); all benches interleaved in {w.rounds} rounds",
        "",
    ]


def _throughput_and_agreement(r: EngineResult) -> list[str]:
    out = ["", f"  replay throughput (wall clock, output arrays included; timing {TIMING})"]
    for p in ("int8", "fp32"):
        e = r.engine[p]
        verdicts = ", ".join(f"{k} {c:,}" for k, c in sorted(e.verdicts.items()))
        out.append(f"    {p.upper():<5}{e.replay_ticks_per_s / 1e6:8.2f} M ticks/s   "
                   f"timed {e.timed_ticks:,} of {e.ticks:,} ticks, stages of "
                   f"{e.stage_timed_ticks:,}; verdicts: {verdicts}")
        out.append(f"          gate work (touched nonzeros) P50 {e.gate_work['p50']:,.0f}, "
                   f"max {e.gate_work.max:,.0f}; checksum {e.checksum:.6g}")
    out.append("  replay throughput, timing off (wall clock; thread CPU time)")
    for p in ("int8", "fp32"):
        o = r.replay_off[p]
        out.append(f"    {p.upper():<5}{o.ticks_per_s / 1e6:8.2f} M ticks/s   "
                   f"{o.ticks_per_cpu_s / 1e6:.2f} M ticks per CPU second")
    out += ["", "  baselines computed the same network? (vs engine FP32 network_step)"]
    for key, b in (("floor", r.floor), ("onnxruntime", r.onnxruntime), ("torch", r.torch)):
        if isinstance(b, Skipped):
            out.append(f"    {key:<12} skipped: {b.reason}")
        else:
            out.append(f"    {key:<12} max|h diff| {b.max_abs_h_diff_vs_engine_fp32:.2e}   "
                       f"mean|y0 diff| {b.mean_abs_y0_diff_vs_engine_fp32:.2e}   "
                       f"({b.steps:,} carried steps)")
    return out


def format_engine_report(r: EngineResult) -> str:
    """The human-readable table of ``tmn-bench engine``."""
    out = _header(r) + [f"  {'latency, ns':<34}{'n':>10}" + "".join(f"{h:>11}" for h in HEADERS)]
    out += [_text_row(row) for row in latency_rows(r)] + _throughput_and_agreement(r)
    out += ["", "  any report rate: the same motion at other rates (INT8, longest horizon)",
            f"    {'rate':>8}  {'sensor':<13}{'P99 error':>11}{'/ native':>10}{'tick P50':>10}"]
    out += [f"    {a.rate_hz:>6g} Hz  {'velocity' if a.velocity else 'position-only':<13}"
            f"{a.p99_error:>11.4g}{a.p99_over_native:>9.3f}x{format_ns(a.tick_ns_p50):>10}"
            for a in r.any_rate]
    out += ["", "  ratios"]
    out += [f"    {k:<42} {format_value(v, 'x')}" for k, v in to_json(r.ratios).items()]
    out += ["", "  targets", *target_lines(r.targets)]
    return "\n".join(out)
