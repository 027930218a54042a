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
from tmn import bench
from tmn.testing import random_model

PCT_KEYS = {"n", "p50", "p90", "p99", "p99.9", "max", "mean"}


def _check_percentiles(p: dict, n: int | None = None) -> None:
    assert PCT_KEYS <= set(p)
    assert 0 < p["p50"] <= p["p90"] <= p["p99"] <= p["p99.9"] <= p["max"]
    if n is not None:
        assert p["n"] == n


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "engine.json"
    rc = bench.main(["engine", "--ticks", "20000", "--steps", "2000", "--torch-steps", "1000",
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
    for precision in ("fp32", "int8"):
        e = report["engine"][precision]
        assert e["ticks"] == 20000 and e["ok"] == 20000
        assert 0 < e["timed_ticks"] <= e["ticks"]
        _check_percentiles(e["total_ns"], e["timed_ticks"])
        assert set(e["stage_ns"]) == set(tmn.STAGES)
        for stage in tmn.STAGES:
            p = e["stage_ns"][stage]
            assert p["n"] == e["timed_ticks"] and p["p50"] >= 0 and p["max"] >= p["p50"]
        assert e["replay_ticks_per_s"] > 0
        assert sum(e["verdicts"].values()) == e["ticks"]
        assert isinstance(e["checksum"], float)


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


def test_every_target_has_a_verdict(report: dict) -> None:
    names = [t["name"] for t in report["targets"]]
    assert len(names) == len(set(names)) >= 8
    for t in report["targets"]:
        assert t["status"] in ("MET", "MISSED", "SKIPPED")
        assert (t["value"] is None) == (t["status"] == "SKIPPED")
    assert "int8_tick_p50_over_bare_fp32_gru_p50" in report["ratios"]


def test_an_explicit_model_folder_is_used(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = random_model(tmp_path / "m", system="A", hidden=8, seed=1)
    out = tmp_path / "a.json"
    assert bench.main(["engine", "--model", str(folder), "--ticks", "4000", "--steps", "300",
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
    assert bench.main(["engine", "--ticks", "4000", "--steps", "300", "--json", str(out)]) == 0
    r = json.loads(out.read_text(encoding="utf-8"))
    for name in ("torch", "onnxruntime"):
        assert r[name]["status"] == "skipped" and name in r[name]["reason"]
    targets = {t["name"]: t for t in r["targets"]}
    assert targets["onnxruntime P50 / INT8 tick P50"]["status"] == "SKIPPED"
    assert r["ratios"]["torch_p50_over_int8_tick_p50"] is None


def test_bad_model_folder_or_isa_is_a_clean_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    assert bench.main(["engine", "--model", str(tmp_path / "nope"), "--ticks", "10"]) == 2
    assert "model folder not found" in capsys.readouterr().err
    missing = [i for i in ("scalar", "avx2", "avx512")
               if not tmn._core.isa_available(tmn.Isa.__members__[i])]
    if missing:
        assert bench.main(["engine", "--isa", missing[0], "--ticks", "10"]) == 2
        assert "not available" in capsys.readouterr().err


def test_bench_module_does_not_import_torch_or_onnxruntime() -> None:
    code = ("import sys, tmn.bench, tmn.benchutil, tmn.onnx_graph; "
            "bad = [m for m in ('torch', 'onnxruntime', 'onnx') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), timeout=60)
    assert proc.returncode == 0


def test_git_sha_names_only_a_tmn_checkout(tmp_path: Path) -> None:
    """An installed package may sit inside another repository (pyenv is one): its
    commit is not tmn's. The checkout this test runs from is."""
    from tmn.benchutil import git_sha

    other = tmp_path / "other"
    other.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", "-C", str(other), *cmd], check=True, env=env)
    assert git_sha(other) == "unknown"
    assert git_sha(tmp_path) == "unknown"  # no repository at all
    repo = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    if head:  # running from a git checkout of tmn
        assert git_sha(repo / "tests").split("-")[0] == head
