"""``tmn-bench engine`` runs end to end and writes every number it promises.

No timing assertions: only that the numbers exist, are positive and hang
together. (bench/README.md describes them.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tmn
from tmn.testing import random_model
from tmn_bench import cli

REFERENCE = Path(__file__).resolve().parents[2] / "bench" / "reference" / "latency" / "latency.json"

PCT_KEYS = {"n", "p50", "p90", "p99", "p99.9", "max", "mean"}


def _check_percentiles(p: dict, n: int | None = None) -> None:
    assert PCT_KEYS <= set(p)
    assert 0 < p["p50"] <= p["p90"] <= p["p99"] <= p["p99.9"] <= p["max"]
    if n is not None:
        assert p["n"] == n


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "engine.json"
    rc = cli.main(["engine", "--ticks", "20000", "--steps", "2000", "--torch-steps", "1000",
                     "--json", str(out)])
    assert rc == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_engine_json_has_every_section(report: dict) -> None:
    assert report["benchmark"] == "engine"
    assert {"machine", "model", "workload", "engine", "python_tick", "bare_gru",
            "onnxruntime", "torch", "ratios", "targets"} <= set(report)
    m = report["machine"]
    for key in ("cpu", "cores", "isa", "clock_uses_tsc", "python", "versions", "tmn_git_sha",
                "date"):
        assert key in m
    assert m["isa"] in ("scalar", "avx2", "avx512")
    assert report["workload"]["ticks"] == 20000


def test_full_tick_percentiles_are_positive_for_each_precision_and_stage(report: dict) -> None:
    runs = [report["engine"]["fp32"], report["engine"]["int8"], report["timing_all"]]
    if report["avx2_int8"].get("status") != "skipped":
        runs.append(report["avx2_int8"])
    for e in runs:
        assert e["ticks"] == 20000 and e["ok"] == 20000
        assert 0 < e["timed_ticks"] <= e["ticks"]
        _check_percentiles(e["total_ns"], e["timed_ticks"])
        # sampled: the stages of about one tick in TIMING_SAMPLE_PERIOD; all: every tick's
        share = e["stage_timed_ticks"] / e["timed_ticks"]
        if e["timing"] == "all":
            assert share == 1.0
        else:
            assert e["timing"] == "sampled"
            assert 0.5 / tmn.engine.TIMING_SAMPLE_PERIOD < share < 2.0 / tmn.engine.TIMING_SAMPLE_PERIOD
        assert set(e["stage_ns"]) == set(tmn.STAGES)
        for stage in tmn.STAGES:
            p = e["stage_ns"][stage]
            assert p["n"] == e["stage_timed_ticks"] and p["p50"] >= 0 and p["max"] >= p["p50"]
        assert e["replay_ticks_per_s"] > 0
        assert sum(e["verdicts"].values()) == e["ticks"]
        assert isinstance(e["checksum"], float)


def test_replay_with_timing_off_and_tick_many_are_measured(report: dict) -> None:
    for precision in ("fp32", "int8"):
        o = report["replay_off"][precision]
        assert o["timing"] == "off" and o["ticks"] == 20000
        assert o["ticks_per_s"] > 0 and o["ticks_per_cpu_s"] > 0 and o["cpu_s"] > 0
    m = report["tick_many"]
    assert m["streams"] == 8 and m["frames"] == 2000 // 8
    _check_percentiles(m["call_ns"], m["frames"])
    assert m["per_tick_ns"]["p50"] == pytest.approx(m["call_ns"]["p50"] / 8)


def test_the_fast_math_floor_computes_the_same_network(report: dict) -> None:
    f = report["floor"]
    if f["status"] == "skipped":  # no C++ compiler here
        assert "compiler" in f["reason"] or "build" in f["reason"]
        return
    assert "-ffast-math" in f["config"]["flags"] and f["steps"] == 2000
    _check_percentiles(f["step_ns"], 2000)
    assert f["max_abs_h_diff_vs_engine_fp32"] < 1e-4
    assert report["ratios"]["int8_tick_p50_over_floor_p50"] > 0


def test_loading_the_floor_leaves_the_process_float_environment_alone() -> None:
    """The floor is compiled with -ffast-math; linked with it, GCC 12 adds
    crtfastmath.o, which turns on flush-to-zero and denormals-are-zero for the
    whole process: afterwards numpy, the engine and the gate saw subnormals as 0
    (a gate lambda just above 0 was refused as 0)."""
    import subprocess as sp

    code = """
import numpy as np, tmn
from tmn_bench.baselines import Reference
from tmn_bench.baselines.fastmath_floor import FloorBench
tiny = np.array([np.finfo(np.float32).smallest_subnormal])
assert tiny[0] != 0.0
m = tmn.load(); e = tmn.Engine(m, precision="fp32")
z = np.zeros((10, e._core.features), np.float32)
try:
    FloorBench(m, z, Reference.of(e, z))
except ImportError as err:
    print("skip", err); raise SystemExit(0)
assert tiny[0] != 0.0, "denormals-are-zero is on after loading the floor"
print("ok")
"""
    proc = sp.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    if proc.stdout.startswith("skip"):
        pytest.skip(proc.stdout)


def test_python_call_and_bare_gru_percentiles_are_positive(report: dict) -> None:
    _check_percentiles(report["python_tick"]["call_ns"], 2000)
    for precision in ("fp32", "int8"):
        _check_percentiles(report["bare_gru"][precision]["step_ns"], 20000)


def test_baselines_are_measured_or_skipped_with_a_reason(report: dict) -> None:
    for name, steps in (("onnxruntime", 2000), ("torch", 1000)):
        b = report[name]
        if b["status"] == "skipped":
            assert b["reason"]
            continue
        assert b["status"] == "ok"
        _check_percentiles(b["step_ns"], steps)
        # a wrongly wired baseline would compute a different network
        assert b["max_abs_h_diff_vs_engine_fp32"] < 1e-4


def test_the_same_motion_at_other_report_rates_is_scored(report: dict) -> None:
    """Issue 11's bench row: native first, then 125 Hz, 500 Hz and 8 kHz, with
    velocity and position-only; a slower sensor steps more grid points a tick."""
    rows = report["any_rate"]
    assert [(a["rate_hz"], a["velocity"]) for a in rows] == [
        (2000.0, v) for v in (True,)] + [(r, True) for r in (125.0, 500.0, 8000.0)] + [
        (r, False) for r in (2000.0, 125.0, 500.0, 8000.0)]
    for a in rows:
        assert 0 < a["scored"] <= a["ticks"] and a["p99_error"] > 0 and a["tick_ns_p50"] > 0
    assert rows[0]["p99_over_native"] == rows[4]["p99_over_native"] == 1.0
    assert rows[1]["tick_ns_p50"] > rows[0]["tick_ns_p50"]  # 16 grid steps per tick
    any_rate = [t for t in report["targets"] if t["source"] == "issue 11"]
    assert len(any_rate) == 6 and all(t["status"] != "SKIPPED" for t in any_rate)


def test_every_target_has_a_verdict(report: dict) -> None:
    names = [t["name"] for t in report["targets"]]
    assert len(names) == len(set(names)) >= 14
    assert {t["source"] for t in report["targets"]} == {"issue 2", "issue 11", "issue 15"}
    for t in report["targets"]:
        assert t["status"] in ("MET", "MISSED", "SKIPPED")
        assert (t["value"] is None) == (t["status"] == "SKIPPED")
    assert "int8_tick_p50_over_bare_fp32_gru_p50" in report["ratios"]


def test_an_explicit_model_folder_is_used(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = random_model(tmp_path / "m", system="A", hidden=8, seed=1)
    out = tmp_path / "a.json"
    assert cli.main(["engine", "--model", str(folder), "--ticks", "4000", "--steps", "300",
                       "--torch-steps", "300", "--json", str(out)]) == 0
    r = json.loads(out.read_text(encoding="utf-8"))
    assert r["model"]["system"] == "A" and r["model"]["hidden"] == 8
    table = capsys.readouterr().out
    assert "full tick INT8" in table and ("MET" in table or "MISSED" in table)


def test_missing_baseline_packages_are_skipped_with_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    out = tmp_path / "s.json"
    assert cli.main(["engine", "--ticks", "4000", "--steps", "300", "--json", str(out)]) == 0
    r = json.loads(out.read_text(encoding="utf-8"))
    for name in ("torch", "onnxruntime"):
        assert r[name]["status"] == "skipped" and name in r[name]["reason"]
    targets = {t["name"]: t for t in r["targets"]}
    assert targets["onnxruntime P50 / INT8 tick P50"]["status"] == "SKIPPED"
    assert "onnxruntime" in targets["onnxruntime P50 / INT8 tick P50"]["note"]
    assert r["ratios"]["torch_p50_over_int8_tick_p50"] is None
    # --strict fails on a SKIPPED target as on a MISSED one
    assert cli.main(["engine", "--ticks", "4000", "--steps", "300", "--strict"]) == 1


def test_every_figure_keeps_the_documented_json_keys(report: dict) -> None:
    """The typed results write the keys bench/README.md documents: those of the
    checked-in reference run (bench/reference/latency), each target's source
    included. The model's provenance is the artifact's own record, not a figure
    of the bench."""
    def keys(d: object, at: str = "") -> set[str]:
        if at == "/model/provenance":
            return set()
        if isinstance(d, dict):
            return {f"{at}/{k}" for k in d} | {x for k, v in d.items()
                                                for x in keys(v, f"{at}/{k}")}
        if isinstance(d, list) and d and isinstance(d[0], dict):
            return keys(d[0], f"{at}[]")
        return set()

    old = keys(json.loads(REFERENCE.read_text(encoding="utf-8"))["engine"])
    assert keys(report) - old == set()
    assert old - keys(report) == set()
    assert all(t["source"].startswith("issue ") for t in report["targets"])


def test_bad_model_folder_or_isa_is_a_clean_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["engine", "--model", str(tmp_path / "nope"), "--ticks", "10"]) == 2
    assert "model folder not found" in capsys.readouterr().err
    missing = [i for i in ("scalar", "avx2", "avx512")
               if not tmn._core.isa_available(tmn.Isa.__members__[i])]
    if missing:
        assert cli.main(["engine", "--isa", missing[0], "--ticks", "10"]) == 2
        assert "not available" in capsys.readouterr().err


def test_bench_modules_do_not_import_torch_or_onnxruntime() -> None:
    code = ("import sys, tmn_bench.cli, tmn_bench.engine, tmn_bench.serve, tmn_bench.latency, "
            "tmn_bench.baselines.torch_eager, tmn_bench.baselines.onnxruntime_step, "
            "tmn.onnx_graph; "
            "bad = [m for m in ('torch', 'onnxruntime', 'onnx') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), timeout=60)
    assert proc.returncode == 0
