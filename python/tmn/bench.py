"""``tmn-bench``: the benchmark CLI (bench/README.md explains every number).

    tmn-bench engine [--model DIR] [--ticks N] [--json OUT] [--isa auto]

``engine`` measures, in one run and on one model:

1. the full five-stage tick per precision (fp32, int8), timed inside C++ by
   ``Engine.replay`` over a synthetic 2 kHz multi-stream recording: P50, P90,
   P99, P99.9 and max of the total and of each stage, and replay ticks/s;
2. ``Engine.tick`` called from Python, timed with ``time.perf_counter_ns``;
3. the bare GRU step in C++ (``time_network_steps``), the "physical limit";
4. onnxruntime and PyTorch eager running the same single step (skipped, with
   the reason, when the package is missing);

then prints ratios and checks the stated targets, MET or MISSED. All of them
are measured in interleaved rounds (see "The engine benchmark" below).

``serve`` (:mod:`tmn.bench_serve`) benchmarks tmn-serve, and ``latency``
(:mod:`tmn.bench_latency`) runs ``engine`` and ``serve`` on one model and
gathers them into one JSON and one markdown report. ``accuracy``
(:mod:`tmn.bench_accuracy`) scores A, B and the baselines on held-out data.

Each benchmark is a subcommand registered in :data:`COMMANDS`; a new one adds
an ``add_*_command(subparsers)`` function there. This module imports neither
torch nor onnxruntime at import time, and the PyTorch baseline lives in
``tmn_train.torch_baseline``: the runtime package works without them.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import tmn
from tmn import benchutil as bu
from tmn.bench_accuracy import add_accuracy_command
from tmn.bench_latency import add_latency_command
from tmn.bench_serve import add_serve_command
from tmn.engine import STAGES
from tmn.model import Model, ModelFormatError

SCHEMA_VERSION = 1
PRECISIONS = ("fp32", "int8")
ROUNDS = 20    # every bench runs in this many slices, taking turns with the others
WARMUP = 2_000  # untimed calls before every timed loop


# ---------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tmn-bench``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


def build_parser() -> argparse.ArgumentParser:
    """The ``tmn-bench`` parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="tmn-bench", description="Benchmarks of the tmn engine against baselines, "
        "in the same run. See bench/README.md.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def add_engine_command(sub: Any) -> None:
    """Register ``tmn-bench engine``."""
    p = sub.add_parser(
        "engine", help="full tick latency vs bare GRU, onnxruntime and PyTorch eager",
        description="Latency of the full five-stage tick (fp32 and int8), of Engine.tick "
        "from Python and of the bare GRU step, against onnxruntime and PyTorch eager on "
        "the same model; ratios and targets.")
    p.add_argument("--model", type=Path, default=None,
                   help="model folder (default: the built-in model, else a random System B "
                   "model written to a temporary folder)")
    p.add_argument("--ticks", type=bu.positive_int, default=1_000_000,
                   help="ticks replayed per precision, and bare GRU steps (default 1000000)")
    p.add_argument("--streams", type=bu.positive_int, default=8,
                   help="interleaved streams in the replayed recording (default 8)")
    p.add_argument("--steps", type=bu.positive_int, default=100_000,
                   help="Python Engine.tick calls and onnxruntime steps (default 100000)")
    p.add_argument("--torch-steps", type=bu.positive_int, default=50_000,
                   help="PyTorch eager steps (default 50000)")
    p.add_argument("--isa", default="auto", choices=["auto", "scalar", "avx2", "avx512"],
                   help="GRU kernel instruction set (default: the best this CPU has)")
    p.add_argument("--rounds", type=bu.positive_int, default=ROUNDS,
                   help=f"interleaved rounds the measurements are split into (default {ROUNDS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic recording")
    p.add_argument("--json", type=Path, default=None, metavar="OUT",
                   help="also write every number to this JSON file")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 if any target is MISSED")
    p.set_defaults(func=engine_command)


# Subcommands, in the order `tmn-bench --help` lists them.
COMMANDS: tuple[Callable[[Any], None], ...] = (add_engine_command, add_serve_command,
                                               add_latency_command, add_accuracy_command)


def engine_command(args: argparse.Namespace) -> int:
    """Run ``tmn-bench engine``: measure, print the table, write the JSON."""
    if args.isa != "auto" and not tmn._core.isa_available(tmn.Isa.__members__[args.isa]):
        return _fail(f"--isa {args.isa} is not available on this CPU or in this build "
                     f"(best available: {tmn._core.best_isa().name})")
    if args.model is not None:
        try:
            tmn.load(args.model)
        except (FileNotFoundError, ModelFormatError) as e:
            return _fail(f"--model: {e}")
    with _resolved_model(args.model) as (model, source):
        results = run_engine_bench(model, source, ticks=args.ticks, streams=args.streams,
                                   steps=args.steps, torch_steps=args.torch_steps,
                                   isa=args.isa, seed=args.seed, rounds=args.rounds, log=_log)
    print(format_engine_report(results))
    if args.json is not None:
        write_json(results, args.json)
        print(f"\nwrote {args.json}")
    missed = [t for t in results["targets"] if t["status"] == "MISSED"]
    return 1 if (args.strict and missed) else 0


def _fail(msg: str) -> int:
    print(f"tmn-bench: error: {msg}", file=sys.stderr)
    return 2


def _log(msg: str) -> None:
    print(f"[tmn-bench] {msg}", file=sys.stderr, flush=True)


@contextmanager
def _resolved_model(path: Path | None) -> Iterator[tuple[Model, str]]:
    """The model to benchmark and a sentence saying where it came from."""
    if path is not None:
        yield tmn.load(path), f"given: {path}"
        return
    try:
        builtin: Model | None = tmn.load()
    except (FileNotFoundError, ModelFormatError) as e:
        builtin, reason = None, str(e)
    if builtin is not None:
        yield builtin, "built-in model"
        return
    from tmn.testing import random_model

    tmp = Path(tempfile.mkdtemp(prefix="tmn-bench-model-"))
    try:
        folder = random_model(tmp / "random_B", system="B", seed=0)
        yield tmn.load(folder), (f"RANDOM System B model (tmn.testing.random_model, seed 0, "
                                 f"temporary folder) because the built-in model is not "
                                 f"usable: {reason}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write ``results`` as indented JSON (via a temporary file and a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=_json_default) + "\n", encoding="utf-8")
    tmp.replace(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ---------------------------------------------------------------------------
# The engine benchmark
#
# Every measurement is a "bench" with a fixed number of samples, taken in
# ROUNDS slices. The benches take turns slice by slice (alternating the order
# every round), so a noisy neighbour on a shared machine slows all of them
# alike instead of whichever happened to run during the burst; the same-run
# ratios stay meaningful even when absolute numbers move.


def run_engine_bench(model: Model, source: str, *, ticks: int = 1_000_000, streams: int = 8,
                     steps: int = 100_000, torch_steps: int = 50_000, isa: str = "auto",
                     seed: int = 0, rounds: int = ROUNDS,
                     log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every measurement of ``tmn-bench engine``, as one JSON-ready dict."""
    norm = model.config["normalisation"]
    mean = np.asarray(norm["mean"], dtype=np.float64)
    std = np.asarray(norm["std"], dtype=np.float64)
    # positions in the model's own units, so z-scored features are O(1)
    scale = dict(position_scale=(float(std[0]), float(std[1])),
                 position_offset=(float(mean[0]), float(mean[1])))
    workload = bu.synthetic_ticks(ticks, streams=streams, seed=seed, **scale)
    single = bu.synthetic_ticks(max(steps, torch_steps), streams=1, seed=seed + 1, **scale)
    z = ((np.stack([single.x, single.y, single.vx, single.vy], axis=1) - mean) / std
         ).astype(np.float32)

    results: dict[str, Any] = {"benchmark": "engine", "schema_version": SCHEMA_VERSION}
    engines = {p: tmn.Engine(model, precision=p, isa=isa) for p in PRECISIONS}
    results["machine"] = bu.machine_info(isa=engines["int8"].isa)
    results["model"] = {
        "source": source, "path": str(model.path), "system": model.system,
        "hidden": model.hidden, "horizons": len(model.horizons_ms),
        "horizons_ms": model.horizons_ms,
        "provenance": model.config.get("provenance", {}),
    }
    rounds = max(1, min(rounds, ticks, steps, torch_steps))
    results["workload"] = {
        "ticks": len(workload), "streams": streams, "rate_hz": workload.rate_hz,
        "seed": seed, "python_calls": steps, "onnxruntime_steps": steps,
        "torch_steps": torch_steps, "bare_gru_steps": ticks, "rounds": rounds,
        "description": "interleaved 2-D motions, 3 sinusoids (0.2-3 Hz) + drift per axis, "
                       "2 kHz with +-5% jitter, 0.1% position / 1% velocity noise, scaled "
                       "by the model's normalisation",
    }

    log("computing the FP32 reference the baselines are checked against")
    ref = engine_reference(engines["fp32"], z)
    log("setting up and warming up every bench")
    benches: dict[str, Any] = {}
    for p in PRECISIONS:
        benches[f"replay_{p}"] = ReplayBench(engines[p], workload)
    benches["python_tick"] = PythonTickBench(tmn.Engine(model, precision="int8", isa=isa),
                                             single, steps)
    for p in PRECISIONS:
        benches[f"bare_{p}"] = BareGruBench(engines[p], ticks)
    skipped: dict[str, dict[str, Any]] = {}
    for name, make, n in (("onnxruntime", OnnxRuntimeBench, steps),
                          ("torch", _torch_bench, torch_steps)):
        try:
            benches[name] = make(model, z[:n], ref)
        except ImportError as e:
            skipped[name] = {"status": "skipped", "reason": f"{type(e).__name__}: {e}"}

    order = list(benches.values())
    log(f"measuring {', '.join(benches)} in {rounds} interleaved rounds")
    for r in range(rounds):
        for b in (order if r % 2 == 0 else order[::-1]):
            b.run_round(r, rounds)

    results["engine"] = {p: benches[f"replay_{p}"].summary() for p in PRECISIONS}
    results["python_tick"] = benches["python_tick"].summary()
    results["bare_gru"] = {p: benches[f"bare_{p}"].summary() for p in PRECISIONS}
    for name in ("onnxruntime", "torch"):
        results[name] = benches[name].summary() if name in benches else skipped[name]
    results["machine"]["load_average_end"] = bu.load_average()
    results["ratios"] = engine_ratios(results)
    results["targets"] = [t.as_dict() for t in engine_targets(results)]
    return results


def _round_slice(n: int, r: int, rounds: int) -> tuple[int, int]:
    """Samples [lo, hi) of round r when n samples are split into ``rounds`` slices."""
    return n * r // rounds, n * (r + 1) // rounds


class ReplayBench:
    """The full tick: ``Engine.replay`` over the recording, timed inside C++.

    Percentiles cover the ticks that ran all five stages: status ok and past
    warm-up (a warming tick skips the gate). The replay wall clock covers every
    tick, output arrays included. The checksum consumes every path and
    certificate.
    """

    def __init__(self, engine: tmn.Engine, w: bu.TickStreams) -> None:
        self.engine, self.w = engine, w
        warm = bu.synthetic_ticks(WARMUP, streams=2, seed=12345, first_stream=1 << 40)
        engine.replay(warm.t, warm.x, warm.y, warm.vx, warm.vy, warm.stream)
        for sid in (1 << 40, (1 << 40) + 1):  # forget the warm-up streams
            engine.reset(sid)
        n = len(w)
        self.total = np.empty(n, np.uint32)
        self.stages = np.empty((n, len(STAGES)), np.uint32)
        self.status = np.empty(n, np.uint8)
        self.verdict = np.empty(n, np.uint8)
        self.work = np.empty(n, np.uint32)
        self.wall_ns, self.ok, self.checksum = 0, 0, 0.0

    def run_round(self, r: int, rounds: int) -> None:
        """Replay this round's slice of the recording (streams continue across rounds)."""
        w = self.w
        s = slice(*_round_slice(len(w), r, rounds))
        t0 = time.perf_counter_ns()
        out = self.engine.replay(w.t[s], w.x[s], w.y[s], w.vx[s], w.vy[s], w.stream[s])
        self.wall_ns += time.perf_counter_ns() - t0
        self.ok += out.ok
        self.checksum += float(np.nansum(out.paths)) + float(np.nansum(out.cert))
        self.total[s], self.stages[s], self.work[s] = out.total_ns, out.stage_ns, out.work
        self.status[s], self.verdict[s] = out.status, out.verdict

    def summary(self) -> dict[str, Any]:
        """Percentiles of the total and of every stage, verdicts, throughput, checksum."""
        n = self.total.size
        timed = (self.status == int(tmn.Status.ok)) & (self.verdict != int(tmn.Verdict.warming))
        if not timed.any():
            raise RuntimeError("no tick ran all five stages; is the recording shorter than "
                               "the model's window?")
        names = {int(v): k.rstrip("_") for k, v in tmn.Verdict.__members__.items()}
        names[255] = "no_prediction"
        values, counts = np.unique(self.verdict, return_counts=True)
        return {
            "precision": self.engine.precision,
            "isa": self.engine.isa,
            "ticks": n,
            "ok": int(self.ok),
            "timed_ticks": int(timed.sum()),
            "verdicts": {names.get(int(v), str(int(v))): int(c) for v, c in zip(values, counts)},
            "total_ns": bu.percentiles(self.total[timed]),
            "stage_ns": {name: bu.percentiles(self.stages[timed, i])
                         for i, name in enumerate(STAGES)},
            "gate_work": bu.percentiles(self.work[timed]),  # touched nonzeros per tick
            "replay_wall_s": self.wall_ns / 1e9,
            "replay_ticks_per_s": n / (self.wall_ns / 1e9),
            "checksum": self.checksum,
        }


class BareGruBench:
    """The bare GRU step + head in C++, timed like a stage (``time_network_steps``)."""

    def __init__(self, engine: tmn.Engine, steps: int) -> None:
        self.engine, self.steps = engine, steps
        engine._core.time_network_steps(min(WARMUP * 10, steps))
        self.ns: list[np.ndarray] = []
        self.checksum = 0.0

    def run_round(self, r: int, rounds: int) -> None:
        lo, hi = _round_slice(self.steps, r, rounds)
        if hi > lo:
            ns, checksum = self.engine._core.time_network_steps(hi - lo)
            self.ns.append(ns)
            self.checksum += float(checksum)

    def summary(self) -> dict[str, Any]:
        return {"precision": self.engine.precision, "isa": self.engine.isa,
                "steps": self.steps, "step_ns": bu.percentiles(np.concatenate(self.ns)),
                "checksum": self.checksum}


class PythonTickBench:
    """``Engine.tick`` from Python, timed with perf_counter_ns around each call
    (GC paused during the loop). Also times the timer itself, the floor under
    every Python-side number."""

    def __init__(self, engine: tmn.Engine, w: bu.TickStreams, calls: int) -> None:
        self.engine, self.calls = engine, calls
        self.cols = [a[:calls].tolist() for a in (w.t, w.x, w.y, w.vx, w.vy)]
        t, x, y, vx, vy = self.cols
        for i in range(min(WARMUP, calls)):  # a throwaway stream, then forget it
            engine.tick(t[i], x[i], y[i], vx[i], vy[i], 1 << 40)
        engine.reset(1 << 40)
        self.ns = [0] * calls
        self.floor = [0] * calls
        self.checksum = 0

    def run_round(self, r: int, rounds: int) -> None:
        lo, hi = _round_slice(self.calls, r, rounds)
        pc, tick, ns, floor = time.perf_counter_ns, self.engine.tick, self.ns, self.floor
        t, x, y, vx, vy = self.cols
        acc = 0
        with _gc_paused():
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

    def summary(self) -> dict[str, Any]:
        return {"precision": self.engine.precision, "calls": self.calls,
                "call_ns": bu.percentiles(self.ns), "timer_floor_ns": bu.percentiles(self.floor),
                "checksum": self.checksum}


def engine_reference(engine: tmn.Engine, z: np.ndarray) -> dict[str, Any]:
    """The FP32 engine's hidden state after every step over ``z`` (so that a
    baseline of any length can be checked) and the running sum of y[0]."""
    H = engine._core.hidden
    h = np.zeros(H, np.float32)
    hs = np.empty((z.shape[0], H), np.float32)
    y0 = np.empty(z.shape[0], np.float64)
    step = engine._core.network_step
    for i in range(z.shape[0]):
        h, y = step(z[i], h)
        hs[i], y0[i] = h, y[0]
    return {"h": hs, "y0_cumsum": np.cumsum(y0)}


def _agreement(ref: dict[str, Any], n: int, h_last: np.ndarray, checksum: float
               ) -> dict[str, float]:
    """How far a baseline's result is from the engine's FP32 network over the same
    ``n`` steps: a wrongly configured baseline shows up here, not as a fast number."""
    return {"max_abs_h_diff_vs_engine_fp32": float(np.abs(ref["h"][n - 1] - h_last).max()),
            "mean_abs_y0_diff_vs_engine_fp32": abs(float(ref["y0_cumsum"][n - 1]) - checksum) / n}


class OnnxRuntimeBench:
    """onnxruntime on the same single-step graph: 1 intra-op and 1 inter-op
    thread, sequential execution, all graph optimisations, and io_binding on
    preallocated OrtValues; the h output is fed back by alternating two
    bindings that swap the two hidden-state buffers. Also measures the
    per-call floor: an Identity graph with the same options and binding.

    Raises ImportError (the bench is then skipped) without onnxruntime or onnx.
    """

    FLOOR_RUNS = 20_000

    def __init__(self, model: Model, z: np.ndarray, ref: dict[str, Any]) -> None:
        import onnxruntime as ort

        from tmn.onnx_graph import build_step_graph

        self.ort, self.z, self.ref = ort, z, ref
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(build_step_graph(model).SerializeToString(), so,
                                         providers=["CPUExecutionProvider"])
        H, O = model.hidden, 2 * len(model.horizons_ms)
        # CPU OrtValues from numpy share the numpy buffer: writing x feeds the next run
        self.x = np.zeros((1, 4), np.float32)
        self.h = [np.zeros((1, H), np.float32), np.zeros((1, H), np.float32)]
        self.y = np.zeros((1, O), np.float32)
        xv = ort.OrtValue.ortvalue_from_numpy(self.x)
        hv = [ort.OrtValue.ortvalue_from_numpy(a) for a in self.h]
        yv = ort.OrtValue.ortvalue_from_numpy(self.y)
        self.bindings = []
        for src in (0, 1):  # binding src reads h[src] and writes h[1 - src]
            b = self.sess.io_binding()
            b.bind_ortvalue_input("x", xv)
            b.bind_ortvalue_input("h", hv[src])
            b.bind_ortvalue_output("y", yv)
            b.bind_ortvalue_output("h_next", hv[1 - src])
            self.bindings.append(b)
        self.floor_sess, self.floor_binding = self._identity_session(so)
        for i in range(min(WARMUP, len(z))):  # warm up, then start from h = 0 again
            self.x[0] = z[i]
            self.sess.run_with_iobinding(self.bindings[i & 1])
            self.floor_sess.run_with_iobinding(self.floor_binding)
        self.h[0][...] = 0.0
        self.h[1][...] = 0.0
        self.ns = [0] * len(z)
        self.floor_runs = min(len(z), self.FLOOR_RUNS)
        self.floor_ns = [0] * self.floor_runs
        self.checksum = 0.0

    def _identity_session(self, so: Any) -> tuple[Any, Any]:
        from onnx import TensorProto, helper

        from tmn.onnx_graph import IR_VERSION, OPSET

        ort = self.ort
        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])], "identity",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        proto.ir_version = IR_VERSION
        sess = ort.InferenceSession(proto.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        self._floor_buffers = (np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32))
        b = sess.io_binding()
        b.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(self._floor_buffers[0]))
        b.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(self._floor_buffers[1]))
        return sess, b

    def run_round(self, r: int, rounds: int) -> None:
        lo, hi = _round_slice(len(self.z), r, rounds)
        pc, run = time.perf_counter_ns, self.sess.run_with_iobinding
        x, y, z, ns, bindings = self.x, self.y, self.z, self.ns, self.bindings
        acc = 0.0
        with _gc_paused():
            for i in range(lo, hi):
                x[0] = z[i]
                b = bindings[i & 1]
                t0 = pc()
                run(b)
                t1 = pc()
                ns[i] = t1 - t0
                acc += float(y[0, 0])
            f_lo, f_hi = _round_slice(self.floor_runs, r, rounds)
            frun, fb, fns = self.floor_sess.run_with_iobinding, self.floor_binding, self.floor_ns
            for i in range(f_lo, f_hi):
                t0 = pc()
                frun(fb)
                fns[i] = pc() - t0
        self.checksum += acc

    def summary(self) -> dict[str, Any]:
        n = len(self.z)
        h_last = self.h[n & 1][0]  # step i writes h[1 - (i & 1)]; the last step is i = n - 1
        return {"status": "ok", "version": self.ort.__version__, "steps": n,
                "providers": self.sess.get_providers(),
                "config": {"intra_op_num_threads": 1, "inter_op_num_threads": 1,
                           "execution_mode": "ORT_SEQUENTIAL",
                           "graph_optimization_level": "ORT_ENABLE_ALL",
                           "io_binding": "preallocated OrtValues, ping-pong h"},
                "step_ns": bu.percentiles(self.ns), "run_floor_ns": bu.percentiles(self.floor_ns),
                "checksum": self.checksum, **_agreement(self.ref, n, h_last, self.checksum)}


def _torch_bench(model: Model, z: np.ndarray, ref: dict[str, Any]) -> Any:
    """The PyTorch-eager baseline. It lives in tmn_train, the package that depends
    on torch, so the runtime package never imports torch; without tmn_train or
    torch this raises ImportError and the baseline is reported as skipped."""
    from tmn_train.torch_baseline import TorchBench

    return TorchBench(model, z, ref)


@contextmanager
def _gc_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# ---------------------------------------------------------------------------
# Ratios, targets and the report


def _p(d: dict[str, Any] | None, *keys: str) -> float | None:
    """Nested lookup that yields None for skipped baselines."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return float(d) if isinstance(d, (int, float)) else None


def engine_ratios(r: dict[str, Any]) -> dict[str, float | None]:
    """The ratios the README explains (None where a baseline was skipped)."""
    i8, f32 = r["engine"]["int8"]["total_ns"], r["engine"]["fp32"]["total_ns"]
    ort_p50 = _p(r, "onnxruntime", "step_ns", "p50")
    torch_p50 = _p(r, "torch", "step_ns", "p50")
    py_p50 = r["python_tick"]["call_ns"]["p50"]
    return {
        "onnxruntime_p50_over_int8_tick_p50": bu.ratio(ort_p50, i8["p50"]),
        "onnxruntime_p50_over_python_tick_p50": bu.ratio(ort_p50, py_p50),
        "torch_p50_over_int8_tick_p50": bu.ratio(torch_p50, i8["p50"]),
        "torch_p50_over_fp32_tick_p50": bu.ratio(torch_p50, f32["p50"]),
        "torch_p50_over_python_tick_p50": bu.ratio(torch_p50, py_p50),
        "int8_tick_p50_over_bare_fp32_gru_p50":
            bu.ratio(i8["p50"], r["bare_gru"]["fp32"]["step_ns"]["p50"]),
        "int8_tick_p50_over_bare_int8_gru_p50":
            bu.ratio(i8["p50"], r["bare_gru"]["int8"]["step_ns"]["p50"]),
        "int8_over_fp32_tick_p50": bu.ratio(i8["p50"], f32["p50"]),
        "int8_over_fp32_tick_p99.9": bu.ratio(i8["p99.9"], f32["p99.9"]),
    }


def engine_targets(r: dict[str, Any]) -> list[bu.Target]:
    """The engine's stated targets, each MET, MISSED or SKIPPED (never dropped)."""
    i8 = r["engine"]["int8"]
    ra = r["ratios"]
    sys_note = f"model is System {r['model']['system']}"
    ort_skip = r["onnxruntime"].get("reason", "")
    return [
        bu.Target("full tick INT8 P50", i8["total_ns"]["p50"], 500.0, "<=", "ns", sys_note),
        bu.Target("full tick INT8 P99.9", i8["total_ns"]["p99.9"], 2000.0, "<=", "ns", sys_note),
        bu.Target("onnxruntime P50 / INT8 tick P50", ra["onnxruntime_p50_over_int8_tick_p50"],
                  10.0, ">=", "x", ort_skip or "engine P50 >= 10x lower than onnxruntime"),
        bu.Target("INT8 tick P50 / bare FP32 GRU P50",
                  ra["int8_tick_p50_over_bare_fp32_gru_p50"], 4.0, "<=", "x",
                  "full tick within 4x the bare GRU step"),
        bu.Target("INT8 / FP32 tick P50", ra["int8_over_fp32_tick_p50"], 1.25, "<=", "x"),
        bu.Target("INT8 / FP32 tick P99.9", ra["int8_over_fp32_tick_p99.9"], 1.25, "<=", "x"),
        bu.Target("Engine.tick from Python P50", r["python_tick"]["call_ns"]["p50"], 2000.0,
                  "<=", "ns", "perf_counter_ns around each call, timer cost included"),
        bu.Target("INT8 replay throughput", i8["replay_ticks_per_s"], 2e6, ">=", "ticks/s",
                  "wall clock of Engine.replay, output arrays included"),
    ]


def _row(label: str, p: dict[str, float] | None, extra: str = "") -> str:
    if p is None:
        return f"  {label:<34}{'skipped':>10}  {extra}"
    cells = [bu.format_ns(p[k]) for k in ("p50", "p90", "p99", "p99.9", "max")]
    return f"  {label:<34}{p['n']:>10,}" + "".join(f"{c:>11}" for c in cells) + (
        f"  {extra}" if extra else "")


def _load(v: list[float] | None) -> str:
    return "n/a" if not v else "/".join(f"{x:.2f}" for x in v)


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "ticks/s":
        return f"{v / 1e6:.2f} M ticks/s"
    if unit == "x":
        return f"{v:.2f}x"
    return f"{v:,.0f} {unit}"


def format_engine_report(r: dict[str, Any]) -> str:
    """The human-readable table of ``tmn-bench engine``."""
    m, mod, w = r["machine"], r["model"], r["workload"]
    v = m["versions"]
    out = [
        "tmn-bench engine",
        f"  machine : {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), "
        f"AVX2 {'yes' if m['cpu_avx2'] else 'no'}, AVX-512 {'yes' if m['cpu_avx512f'] else 'no'}",
        f"  kernels : isa {m['isa']}, TSC clock {'yes' if m['clock_uses_tsc'] else 'no'}",
        f"  software: Python {m['python']}, numpy {v.get('numpy')}, onnxruntime "
        f"{v.get('onnxruntime')}, torch {v.get('torch')}, tmn {m['tmn_version']} "
        f"({m['tmn_git_sha']})",
        f"  platform: {m['platform']}   date {m['date']}",
        f"  load    : {_load(m['load_average'])} at start (1/5/15 min), "
        f"{_load(m.get('load_average_end'))} at end",
        f"  model   : System {mod['system']}, H={mod['hidden']}, K={mod['horizons']} -- "
        f"{mod['source']}",
        f"  workload: {w['ticks']:,} ticks, {w['streams']} interleaved streams at "
        f"{w['rate_hz']:.0f} Hz (seed {w['seed']}); all benches interleaved in "
        f"{w['rounds']} rounds",
        "",
        f"  {'latency, ns':<34}{'n':>10}" + "".join(f"{h:>11}" for h in
                                                   ("P50", "P90", "P99", "P99.9", "max")),
    ]
    for p in ("int8", "fp32"):
        e = r["engine"][p]
        out.append(_row(f"full tick {p.upper()} (C++ timing)", e["total_ns"]))
        for s in STAGES:
            out.append(_row(f"  {s}", e["stage_ns"][s]))
    for p in ("fp32", "int8"):
        out.append(_row(f"bare GRU step {p.upper()} (C++)", r["bare_gru"][p]["step_ns"]))
    pt = r["python_tick"]
    out.append(_row("Engine.tick from Python (INT8)", pt["call_ns"]))
    out.append(_row("  perf_counter_ns pair (floor)", pt["timer_floor_ns"]))
    for key, label in (("onnxruntime", "onnxruntime step (Python)"),
                       ("torch", "PyTorch eager step (Python)")):
        b = r[key]
        if b.get("status") == "ok":
            out.append(_row(label, b["step_ns"]))
            if "run_floor_ns" in b:
                out.append(_row("  per-call floor (Identity graph)", b["run_floor_ns"]))
        else:
            out.append(_row(label, None, b.get("reason", "")))

    out += ["", "  replay throughput (wall clock, output arrays included)"]
    for p in ("int8", "fp32"):
        e = r["engine"][p]
        verdicts = ", ".join(f"{k} {c:,}" for k, c in sorted(e["verdicts"].items()))
        out.append(f"    {p.upper():<5}{e['replay_ticks_per_s'] / 1e6:8.2f} M ticks/s   "
                   f"timed {e['timed_ticks']:,} of {e['ticks']:,} ticks; verdicts: {verdicts}")
        out.append(f"          gate work (touched nonzeros) P50 {e['gate_work']['p50']:,.0f}, "
                   f"max {e['gate_work']['max']:,.0f}; checksum {e['checksum']:.6g}")

    out += ["", "  baselines computed the same network? (vs engine FP32 network_step)"]
    for key in ("onnxruntime", "torch"):
        b = r[key]
        if b.get("status") == "ok":
            out.append(f"    {key:<12} max|h diff| {b['max_abs_h_diff_vs_engine_fp32']:.2e}   "
                       f"mean|y0 diff| {b['mean_abs_y0_diff_vs_engine_fp32']:.2e}   "
                       f"({b['steps']:,} carried steps)")
        else:
            out.append(f"    {key:<12} skipped: {b.get('reason', '')}")

    out += ["", "  ratios"]
    for k, val in r["ratios"].items():
        out.append(f"    {k:<42} {_fmt(val, 'x')}")

    out += ["", "  targets"]
    for t in r["targets"]:
        cmp = f"{_fmt(t['value'], t['unit'])} {t['op']} {_fmt(t['limit'], t['unit'])}"
        note = f"  ({t['note']})" if t["note"] else ""
        out.append(f"    [{t['status']:<7}] {t['name']:<34} {cmp}{note}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
