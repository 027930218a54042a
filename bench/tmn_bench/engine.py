"""``tmn-bench engine``: the full tick against the bare GRU step, onnxruntime and
PyTorch eager, in one run on one model (bench/README.md explains every number).

It measures:

1. the full five-stage tick per precision (fp32, int8), timed inside C++ by
   ``Engine.replay`` over a synthetic 2 kHz multi-stream recording: P50, P90,
   P99, P99.9 and max of the total and of each stage, and replay ticks/s;
2. ``Engine.tick`` called from Python, timed with ``time.perf_counter_ns``;
3. the bare GRU step in C++ (``time_network_steps``), the "physical limit";
4. onnxruntime and PyTorch eager running the same single step (skipped, with
   the reason, when the package is missing);

all in interleaved rounds (tmn_bench.common), then the ratios and the
targets (tmn_bench.targets). Neither torch nor onnxruntime is imported here.
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
from tmn_bench.baselines import Reference
from tmn_bench.common import (ROUNDS, WARMUP, Log, gc_paused, load_average, machine_info,
                              model_scale, quiet, round_slice)
from tmn_bench.report import COLUMNS, HEADERS, format_ns, format_value, load_text, target_lines
from tmn_bench.results import (BareGru, BaselineStep, EngineModel, EngineRatios, EngineResult,
                               EngineWorkload, OnnxRuntimeStep, Percentiles, PythonTick,
                               Skipped, TickLatency, ratio, to_json)
from tmn_bench.targets import engine_targets
from tmn_bench.workload import DESCRIPTION, TickStreams, synthetic_ticks

PRECISIONS = ("fp32", "int8")
WARM_STREAM = 1 << 40  # the warm-up streams' ids, forgotten before measuring


class ReplayBench:
    """The full tick: ``Engine.replay`` over the recording, timed inside C++.

    Percentiles cover the ticks that ran all five stages: status ok and past
    warm-up (a warming tick skips the gate). The replay wall clock covers every
    tick, output arrays included. The checksum consumes every path and
    certificate.
    """

    def __init__(self, engine: tmn.Engine, w: TickStreams) -> None:
        self.engine, self.w = engine, w
        warm = synthetic_ticks(WARMUP, streams=2, seed=12345, first_stream=WARM_STREAM)
        engine.replay(*warm.columns(), warm.stream)
        for sid in (WARM_STREAM, WARM_STREAM + 1):
            engine.reset(sid)
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
        if not timed.any():
            raise RuntimeError("no tick ran all five stages; is the recording shorter than "
                               "the model's window?")
        values, counts = np.unique(self.verdict, return_counts=True)
        return TickLatency(
            precision=self.engine.precision, isa=self.engine.isa, ticks=n, ok=int(self.ok),
            timed_ticks=int(timed.sum()),
            verdicts={tmn.VERDICT_NAMES[int(v)]: int(c) for v, c in zip(values, counts)},
            total_ns=Percentiles.of(self.total[timed]),
            stage_ns={name: Percentiles.of(self.stages[timed, i])
                      for i, name in enumerate(tmn.STAGES)},
            gate_work=Percentiles.of(self.work[timed]),
            replay_wall_s=self.wall_ns / 1e9, replay_ticks_per_s=n / (self.wall_ns / 1e9),
            checksum=self.checksum)


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


def network_inputs(model: Model, single: TickStreams) -> np.ndarray:
    """The z-scored network inputs the engine makes of one stream: its grid
    (ingest.hpp), the features with the prior, normalised in float32 (what the
    baselines step through)."""
    spec = model.spec()
    grid = _core.resample(spec.ingest, *single.columns())
    raw = _core.grid_features(spec.ingest, spec.system, spec.kalman, *grid)[0]
    norm = model.config["normalisation"]
    return ((raw - np.asarray(norm["mean"])) * (1.0 / np.asarray(norm["std"]))).astype(np.float32)


def _benches(model: Model, workload: TickStreams, single: TickStreams, steps: int,
             torch_steps: int, isa: str, log: Log) -> tuple[dict[str, Any], dict[str, Skipped]]:
    """Every bench, set up and warmed up, and the baselines that were skipped."""
    engines = {p: tmn.Engine(model, precision=p, isa=isa) for p in PRECISIONS}
    z = network_inputs(model, single)
    log("computing the FP32 reference the baselines are checked against")
    ref = Reference.of(engines["fp32"], z)
    log("setting up and warming up every bench")
    benches: dict[str, Any] = {f"replay_{p}": ReplayBench(engines[p], workload)
                               for p in PRECISIONS}
    benches["python_tick"] = PythonTickBench(tmn.Engine(model, precision="int8", isa=isa),
                                             single, steps)
    for p in PRECISIONS:
        benches[f"bare_{p}"] = BareGruBench(engines[p], len(workload))
    skipped: dict[str, Skipped] = {}
    for name, make, n in (("onnxruntime", _onnxruntime_bench, steps),
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
    benches, skipped = _benches(model, workload, single, steps, torch_steps, isa, log)
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
           for name in ("onnxruntime", "torch")},
    }
    result = EngineResult(
        benchmark="engine", machine=dataclasses.replace(machine, load_average_end=load_average()),
        model=EngineModel(source, str(model.path), model.system, model.hidden,
                          len(model.horizons_ms), model.horizons_ms,
                          model.config.get("provenance", {})),
        workload=EngineWorkload(len(workload), streams, workload.rate_hz, seed, steps, steps,
                                torch_steps, ticks, rounds, DESCRIPTION),
        ratios=engine_ratios(**measured), targets=[], **measured)
    return dataclasses.replace(result, targets=engine_targets(result))


def _step_p50(b: BaselineStep | Skipped) -> float | None:
    return b.step_ns["p50"] if isinstance(b, BaselineStep) else None


def engine_ratios(engine: dict[str, TickLatency], python_tick: PythonTick,
                  bare_gru: dict[str, BareGru], onnxruntime: OnnxRuntimeStep | Skipped,
                  torch: BaselineStep | Skipped) -> EngineRatios:
    """The ratios the README explains (None where a baseline was skipped)."""
    i8, f32 = engine["int8"].total_ns, engine["fp32"].total_ns
    ort, pt, py = _step_p50(onnxruntime), _step_p50(torch), python_tick.call_ns["p50"]
    return EngineRatios(
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
    """The latency table: full tick and stages, bare step, Python tick, baselines."""
    out = []
    for p in ("int8", "fp32"):
        e = r.engine[p]
        out.append(Row(f"full tick {p.upper()} (C++ timing)", e.total_ns))
        out += [Row(s, e.stage_ns[s], parent=p.upper()) for s in tmn.STAGES]
    out += [Row(f"bare GRU step {p.upper()} (C++)", r.bare_gru[p].step_ns)
            for p in ("fp32", "int8")]
    out.append(Row("Engine.tick from Python (INT8)", r.python_tick.call_ns))
    out.append(Row("perf_counter_ns pair (timer floor)", r.python_tick.timer_floor_ns,
                   parent="Engine.tick"))
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
    out = ["", "  replay throughput (wall clock, output arrays included)"]
    for p in ("int8", "fp32"):
        e = r.engine[p]
        verdicts = ", ".join(f"{k} {c:,}" for k, c in sorted(e.verdicts.items()))
        out.append(f"    {p.upper():<5}{e.replay_ticks_per_s / 1e6:8.2f} M ticks/s   "
                   f"timed {e.timed_ticks:,} of {e.ticks:,} ticks; verdicts: {verdicts}")
        out.append(f"          gate work (touched nonzeros) P50 {e.gate_work['p50']:,.0f}, "
                   f"max {e.gate_work.max:,.0f}; checksum {e.checksum:.6g}")
    out += ["", "  baselines computed the same network? (vs engine FP32 network_step)"]
    for key, b in (("onnxruntime", r.onnxruntime), ("torch", r.torch)):
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
    out += ["", "  ratios"]
    out += [f"    {k:<42} {format_value(v, 'x')}" for k, v in to_json(r.ratios).items()]
    out += ["", "  targets", *target_lines(r.targets)]
    return "\n".join(out)
