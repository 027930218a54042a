"""Latency gates that CI runs (pytest-benchmark), robust on a noisy shared machine.

* The plan's budget: a full tick, ingest to actuation, at most 0.9 ms at
  P99.9. Measured inside C++ (per-tick TSC timing) over a replay, and also as
  the wall time of a Python ``engine.tick`` call, which adds the binding.
* Same-run ratios, measured interleaved so that a noisy neighbour slows both
  sides alike:
  - the engine's tick against onnxruntime's single step of the same model,
    both called from Python one step at a time, keeps a 3x margin (the
    target is 10x; both sides pay Python's call overhead, and the ratio
    measured 4.7-9.2x on 2-vCPU VMs, so 3x fails only a real regression);
  - System B's full tick (with the certified gate) stays within 3x System A's
    tick of the same size (measured 1.5-2x): a slower solver or gate fails it;
  - the full tick stays within 6x the bare GRU step it wraps (the target is
    4x, measured 3.2x): overhead creeping into ingest, prior or actuation
    fails it.
* Issue 15's paths, each a same-run ratio of medians over interleaved rounds:
  - the INT8 GRU step is not slower than the FP32 one (<= 1.1x; measured
    0.65x on AVX-512 VNNI, 0.83x on AVX2), and neither is the INT8 tick
    (<= 1.15x; measured 0.91x, 0.94x);
  - the INT8 tick stays within 3.5x the fast-math compute floor (the same
    GRU step in C++ built with -ffast-math; the target is 2x, measured
    2.3-2.6x), skipped without a C++ compiler;
  - a replay with timing off costs at most 2x the C++ tick per tick, output
    arrays included (measured 1.1x, by thread CPU time);
  - Engine.tick from Python stays within 3x the C++ tick (measured 1.4x), and
    tick_many on frames of 64 streams is cheaper per tick than tick() in a
    loop (<= 1.0x; measured 0.67x).

Absolute times are asserted only against the product's own 0.9 ms budget.
Regressions between commits: save a baseline with ``--benchmark-autosave`` and
compare with ``--benchmark-compare --benchmark-compare-fail=median:50%``
(bench/README.md, "CI latency gates").
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import tmn
from tmn.testing import random_model
from tmn_bench.targets import PLAN_BUDGET

BUDGET_NS = PLAN_BUDGET.limit  # the plan's P99.9 per tick (stated in tmn_bench.targets)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_model(tmp_path_factory.mktemp("perf") / "b", system="B", weight_scale=0.3)


@pytest.fixture(scope="module")
def model_a_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_model(tmp_path_factory.mktemp("perf") / "a", system="A", weight_scale=0.3)


def median_tick_ns(engine: tmn.Engine, cols: tuple[np.ndarray, ...]) -> float:
    """Median C++-timed full tick of one replay (the stream is reset afterwards)."""
    r = engine.replay(*cols)
    engine.reset(0)
    assert r.ok == len(cols[0]) and np.isfinite(r.paths).all()  # results consumed
    return float(np.median(r.total_ns))


def trajectory(n: int, rate_hz: float = 2000.0) -> tuple[np.ndarray, ...]:
    t = np.arange(n) / rate_hz
    x, y = 3 * np.sin(1.3 * t), 2 * np.cos(0.7 * t)
    return t, x, y, 3 * 1.3 * np.cos(1.3 * t), -2 * 0.7 * np.sin(0.7 * t)


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_full_tick_p999_is_within_the_plan_budget(benchmark, model_dir: Path,
                                                  precision: str) -> None:
    engine = tmn.Engine(model_dir, precision=precision)
    cols = trajectory(200_000)

    def run() -> tmn.Replay:
        r = engine.replay(*cols)
        engine.reset(0)  # the next round starts the stream again
        return r

    result = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert result.ok == len(cols[0])  # every tick answered, results consumed
    assert np.isfinite(result.paths).all()
    p999 = float(np.percentile(result.total_ns, 99.9))
    benchmark.extra_info["tick_p50_ns"] = float(np.percentile(result.total_ns, 50))
    benchmark.extra_info["tick_p999_ns"] = p999
    assert p999 <= BUDGET_NS


def test_python_tick_call_p999_is_within_the_plan_budget(benchmark, model_dir: Path) -> None:
    engine = tmn.Engine(model_dir)
    t, x, y, vx, vy = trajectory(20_000)
    ns = np.empty(len(t), dtype=np.int64)

    def run() -> float:
        checksum = 0.0
        for i in range(len(t)):
            a = time.perf_counter_ns()
            p = engine.tick(t[i], x[i], y[i], vx[i], vy[i], stream=1)
            ns[i] = time.perf_counter_ns() - a
            checksum += p.work
        engine.reset(1)
        return checksum

    assert benchmark.pedantic(run, rounds=2, iterations=1) > 0
    p999 = float(np.percentile(ns, 99.9))
    benchmark.extra_info["python_tick_p999_ns"] = p999
    assert p999 <= BUDGET_NS


def test_engine_tick_is_3x_faster_than_onnxruntime_step(benchmark, model_dir: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from tmn.onnx_graph import build_step_graph

    model = tmn.load(model_dir)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(build_step_graph(model).SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    engine = tmn.Engine(model)
    t, x, y, vx, vy = trajectory(5000)
    F = len(model.config["features"])
    z = np.zeros((1, F), np.float32)
    h = np.zeros((1, model.hidden), np.float32)

    def engine_steps() -> float:
        s = 0.0
        for i in range(len(t)):
            s += engine.tick(t[i], x[i], y[i], vx[i], vy[i], stream=2).path[0, 0]
        engine.reset(2)
        return s

    def ort_steps() -> float:
        nonlocal h
        s = 0.0
        for i in range(len(t)):
            z[0] = (vx[i], vy[i], x[i], y[i], vx[i], vy[i], x[i], y[i])[:F]  # the input's cost
            out, h = session.run(None, {"x": z, "h": h})
            s += float(out[0, 0])
        return s

    # interleave the two, several rounds, and compare each side's least disturbed round
    eng_s, ort_s = [], []
    for _ in range(7):
        a = time.perf_counter(); engine_steps(); eng_s.append(time.perf_counter() - a)
        a = time.perf_counter(); ort_steps(); ort_s.append(time.perf_counter() - a)
    benchmark.pedantic(engine_steps, rounds=1, iterations=1)
    ratio = float(min(ort_s) / min(eng_s))
    benchmark.extra_info["onnxruntime_over_engine"] = ratio
    assert ratio >= 3.0, f"engine tick only {ratio:.1f}x faster than onnxruntime's step"


def test_system_b_tick_is_within_3x_system_a_tick(benchmark, model_dir: Path,
                                                  model_a_dir: Path) -> None:
    a, b = tmn.Engine(model_a_dir), tmn.Engine(model_dir)
    cols = trajectory(50_000)
    ratios = []
    for _ in range(5):  # interleaved rounds; the median ratio
        ratios.append(median_tick_ns(b, cols) / median_tick_ns(a, cols))
    benchmark.pedantic(median_tick_ns, args=(b, cols), rounds=1, iterations=1)
    ratio = float(np.median(ratios))
    benchmark.extra_info["b_over_a_tick_p50"] = ratio
    assert ratio <= 3.0, f"System B's tick is {ratio:.2f}x System A's"


def test_full_tick_is_within_6x_the_bare_gru_step(benchmark, model_dir: Path) -> None:
    engine = tmn.Engine(model_dir, precision="fp32")
    cols = trajectory(50_000)
    ratios = []
    for _ in range(5):
        tick = median_tick_ns(engine, cols)
        ns, checksum = engine._core.time_network_steps(50_000)
        assert np.isfinite(checksum)  # the steps' output is consumed
        ratios.append(tick / float(np.median(ns)))
    benchmark.pedantic(median_tick_ns, args=(engine, cols), rounds=1, iterations=1)
    ratio = float(np.median(ratios))
    benchmark.extra_info["tick_over_bare_gru_p50"] = ratio
    assert ratio <= 6.0, f"the full tick is {ratio:.2f}x the bare GRU step"


# --- issue 15 -------------------------------------------------------------------

def interleaved_median_ratio(num, den, rounds: int = 5) -> float:
    """The median over ``rounds`` of num() / den(), the two run alternately."""
    return float(np.median([num() / den() for _ in range(rounds)]))


def test_int8_step_and_tick_are_not_slower_than_fp32(benchmark, model_dir: Path) -> None:
    i8, f32 = (tmn.Engine(model_dir, precision=p, timing="sampled") for p in ("int8", "fp32"))
    cols = trajectory(50_000)

    def bare(e: tmn.Engine) -> float:
        ns, checksum = e._core.time_network_steps(50_000)
        assert np.isfinite(checksum)  # the steps' output is consumed
        return float(np.median(ns))

    step = interleaved_median_ratio(lambda: bare(i8), lambda: bare(f32))
    tick = interleaved_median_ratio(lambda: median_tick_ns(i8, cols),
                                    lambda: median_tick_ns(f32, cols))
    benchmark.pedantic(median_tick_ns, args=(i8, cols), rounds=1, iterations=1)
    benchmark.extra_info.update(int8_over_fp32_step_p50=step, int8_over_fp32_tick_p50=tick)
    assert step <= 1.1, f"the INT8 GRU step is {step:.2f}x the FP32 one ({i8.isa})"
    assert tick <= 1.15, f"the INT8 tick is {tick:.2f}x the FP32 one ({i8.isa})"


def test_int8_tick_is_within_3_5x_the_fast_math_floor(benchmark, model_dir: Path) -> None:
    from tmn_bench.baselines import Reference
    from tmn_bench.baselines.fastmath_floor import FloorBench

    model = tmn.load(model_dir)
    engine = tmn.Engine(model, precision="int8", timing="sampled")
    z = np.random.default_rng(0).normal(size=(20_000, engine._core.features)).astype(np.float32)
    try:
        floor = FloorBench(model, z, Reference.of(tmn.Engine(model, precision="fp32"), z))
    except ImportError as e:
        pytest.skip(str(e))
    cols = trajectory(50_000)

    def floor_p50() -> float:
        floor.run_round(0, 1)
        return floor.summary().step_ns["p50"]

    ratio = interleaved_median_ratio(lambda: median_tick_ns(engine, cols), floor_p50)
    benchmark.pedantic(median_tick_ns, args=(engine, cols), rounds=1, iterations=1)
    benchmark.extra_info["int8_tick_over_floor_p50"] = ratio
    assert floor.summary().max_abs_h_diff_vs_engine_fp32 < 1e-4  # the same network
    assert ratio <= 3.5, f"the INT8 tick is {ratio:.2f}x the fast-math floor ({engine.isa})"


def test_replay_with_timing_off_costs_at_most_2x_the_tick(benchmark, model_dir: Path) -> None:
    timed = tmn.Engine(model_dir, timing="sampled")
    off = tmn.Engine(model_dir, timing="off")
    cols = trajectory(100_000)

    def replay_cpu_ns_per_tick() -> float:
        c0 = time.thread_time_ns()
        r = off.replay(*cols)
        ns = (time.thread_time_ns() - c0) / len(cols[0])
        off.reset(0)
        assert r.ok == len(cols[0]) and (r.total_ns == 0).all()  # consumed, untimed
        return ns

    ratio = interleaved_median_ratio(replay_cpu_ns_per_tick, lambda: median_tick_ns(timed, cols))
    benchmark.pedantic(replay_cpu_ns_per_tick, rounds=1, iterations=1)
    benchmark.extra_info["replay_off_over_tick_p50"] = ratio
    assert ratio <= 2.0, f"a replay tick with timing off costs {ratio:.2f}x the C++ tick"


def test_python_tick_and_tick_many_stay_close_to_the_cpp_tick(benchmark,
                                                              model_dir: Path) -> None:
    engine = tmn.Engine(model_dir)
    cols = trajectory(20_000)
    t, x, y, vx, vy = (a.tolist() for a in cols)
    S = 64  # a frame: one tick of each of S streams
    frames = [tuple(np.full(S, a) for a in row) + (np.arange(S, dtype=np.uint64),)
              for row in zip(*(c[:300] for c in cols))]
    out = np.zeros(S, engine.batch_dtype)

    def python_tick_ns() -> float:
        ns = np.empty(len(t), np.int64)
        for i in range(len(t)):
            a = time.perf_counter_ns()
            engine.tick(t[i], x[i], y[i], vx[i], vy[i], stream=1)
            ns[i] = time.perf_counter_ns() - a
        engine.reset(1)
        return float(np.median(ns))

    def tick_many_ns_per_tick() -> float:
        ns = np.empty(len(frames), np.int64)
        for i, f in enumerate(frames):
            a = time.perf_counter_ns()
            engine.tick_many(*f, out=out)
            ns[i] = time.perf_counter_ns() - a
        for s in range(S):
            engine.reset(s)
        assert (out["status"] == 0).all()  # consumed
        return float(np.median(ns)) / S

    cpp = tmn.Engine(model_dir)
    py_over_cpp = interleaved_median_ratio(python_tick_ns, lambda: median_tick_ns(cpp, cols))
    many_over_py = interleaved_median_ratio(tick_many_ns_per_tick, python_tick_ns)
    benchmark.pedantic(python_tick_ns, rounds=1, iterations=1)
    benchmark.extra_info.update(python_over_cpp_tick_p50=py_over_cpp,
                                tick_many_64_over_python_tick_p50=many_over_py)
    assert py_over_cpp <= 3.0, f"Engine.tick from Python is {py_over_cpp:.2f}x the C++ tick"
    assert many_over_py <= 1.0, f"tick_many costs {many_over_py:.2f}x tick() per tick"


def test_a_single_tick_request_spends_little_beyond_its_tick_in_the_daemon(
        benchmark, model_dir: Path) -> None:
    """Same-run ratio: tmn-serve's compute phase of a single-tick request (its
    tick, the reply record, the counters) over the engine's own tick time, both
    P50s of the same requests from the daemon's stats. The stats and live
    accuracy of a request's last tick are recorded after its reply is sent;
    recorded before (as until issue 15), the ratio was ~1.6 on the 2-vCPU VM."""
    import subprocess
    import sys

    import zmq

    from tmn.protocol import make_ticks

    with zmq.Context() as ctx:
        sock = ctx.socket(zmq.DEALER)
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        sock.close(linger=0)
    endpoint = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "tmn.serve", "--model", str(model_dir),
                             "--endpoint", endpoint, "--log-level", "WARNING", "--no-mlock"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        with tmn.Client(endpoint, timeout_s=30.0) as c:
            c.health()
            t, x, y, vx, vy = trajectory(3000)

            def run() -> dict:
                for i in range(len(t)):
                    c.ticks(make_ticks(t[i], x[i], y[i], vx[i], vy[i], 1), velocity=True)
                return c.stats()["stats"]["latency_ns"]

            lat = benchmark.pedantic(run, rounds=1, iterations=1)
        ratio = lat["server_compute"]["p50"] / lat["tick"]["p50"]
        benchmark.extra_info["compute_over_tick_p50"] = ratio
        assert ratio <= 1.45, lat
    finally:
        proc.terminate()
        proc.wait(timeout=20)
