"""Latency gates that CI runs (pytest-benchmark), robust on a noisy shared machine.

* The plan's budget: a full tick, ingest to actuation, at most 0.9 ms at
  P99.9. Measured inside C++ (per-tick TSC timing) over a replay, and also as
  the wall time of a Python ``engine.tick`` call, which adds the binding.
* Same-run ratios: the engine's tick against onnxruntime's single step of the
  same model, both called from Python one step at a time, must keep a 5x
  margin (the target is 10x; 5x tolerates a noisy neighbour).

Absolute times are asserted only against the product's own 0.9 ms budget.
Compare runs with ``pytest tests/performance --benchmark-autosave`` and
``--benchmark-compare`` (see bench/README.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import tmn
from tmn.testing import random_model

BUDGET_NS = 900_000  # the plan's P99.9 per tick


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_model(tmp_path_factory.mktemp("perf") / "b", system="B", weight_scale=0.3)


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


def test_engine_tick_is_5x_faster_than_onnxruntime_step(benchmark, model_dir: Path) -> None:
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
    z = np.zeros((1, 4), np.float32)
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
            z[0] = (x[i], y[i], vx[i], vy[i])
            out, h = session.run(None, {"x": z, "h": h})
            s += float(out[0, 0])
        return s

    # interleave the two, several rounds, and compare medians of per-round time
    eng_s, ort_s = [], []
    for _ in range(5):
        a = time.perf_counter(); engine_steps(); eng_s.append(time.perf_counter() - a)
        a = time.perf_counter(); ort_steps(); ort_s.append(time.perf_counter() - a)
    benchmark.pedantic(engine_steps, rounds=1, iterations=1)
    ratio = float(np.median(ort_s) / np.median(eng_s))
    benchmark.extra_info["onnxruntime_over_engine"] = ratio
    assert ratio >= 5.0, f"engine tick only {ratio:.1f}x faster than onnxruntime's step"
