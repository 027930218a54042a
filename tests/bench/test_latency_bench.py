"""``tmn-bench latency`` runs the engine and serve benchmarks end to end and
gathers them into one JSON, one markdown report and two plots.

Tiny sizes (``--quick`` with the smallest sizes of test_engine_bench.py and
test_serve_bench.py; client and servers on one core, so the spin modes are
skipped). No timing assertions: only that the numbers exist, come from the
right places and hang together.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import tmn
from tmn.testing import random_model
from tmn_bench import cli, latency
from tmn_bench.results import Target

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TICKS, REQUESTS = 4000, 100
PLAN = "full tick INT8 P99.9 <= 0.9 ms (plan budget)"


@dataclass(frozen=True)
class Run:
    """One ``tmn-bench latency`` invocation: exit code, JSON, report folder, stdout."""

    rc: int
    results: dict
    report: Path
    stdout: str


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_model(tmp_path_factory.mktemp("m") / "B", system="B", seed=3,
                        weight_scale=0.3)


@pytest.fixture(scope="module")
def run(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    base = tmp_path_factory.mktemp("latency")
    core = str(min(os.sched_getaffinity(0)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.main(["latency", "--model", str(model), "--quick", "--ticks", str(TICKS),
                         "--requests", str(REQUESTS), "--server-core", core, "--client-core",
                         core, "--json",
                         str(base / "latency.json"), "--report", str(base / "report")])
    results = json.loads((base / "latency.json").read_text(encoding="utf-8"))
    return Run(rc, results, base / "report", out.getvalue())


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:len(PNG_SIGNATURE)] == PNG_SIGNATURE


def test_one_json_holds_both_benchmarks_on_the_same_model(run: Run, model: Path) -> None:
    assert run.rc == 0
    r = run.results
    assert r["benchmark"] == "latency" and r["schema_version"] == 1 and r["quick"] is True
    assert {"machine", "model", "engine", "serve", "ratios", "targets"} <= set(r)
    for key in ("cpu", "cores", "isa", "python", "versions", "tmn_git_sha", "date",
                "load_average", "load_average_end"):
        assert key in r["machine"]
    e, s = r["engine"], r["serve"]
    assert e["benchmark"] == "engine" and s["benchmark"] == "serve"
    assert Path(e["model"]["path"]) == Path(s["model"]["path"]) == model.resolve()
    assert r["model"] == e["model"]
    # --ticks and --requests pass through; --quick sets the other sizes
    assert e["workload"]["ticks"] == TICKS and e["workload"]["bare_gru_steps"] == TICKS
    assert e["workload"]["python_calls"] == latency.QUICK_ENGINE["steps"]
    assert e["workload"]["torch_steps"] == latency.QUICK_ENGINE["torch_steps"]
    assert s["workload"]["requests"] == REQUESTS
    assert s["workload"]["warmup_requests"] == latency.QUICK_SERVE["warmup"]
    assert s["workload"]["throughput_seconds"] == latency.QUICK_SERVE["throughput_s"]
    for name in ("tmn", "echo", "naive"):
        assert s["servers"][name]["status"] == "ok", s["servers"][name]
        assert s["servers"][name]["round_trip_ns"]["n"] == REQUESTS


def test_ratios_are_the_prefixed_engine_and_serve_ratios_of_this_run(run: Run) -> None:
    r = run.results
    e, s, ra = r["engine"], r["serve"], r["ratios"]
    assert set(ra) == ({f"engine/{k}" for k in e["ratios"]} |
                       {f"serve/{k}" for k in s["ratios"]})
    assert all(ra[f"engine/{k}"] == v for k, v in e["ratios"].items())
    assert all(ra[f"serve/{k}"] == v for k, v in s["ratios"].items())
    i8, f32 = e["engine"]["int8"]["total_ns"], e["engine"]["fp32"]["total_ns"]
    for base in ("onnxruntime", "torch"):
        key = f"engine/{base}_p50_over_int8_tick_p50"
        if e[base]["status"] == "ok":
            assert ra[key] == pytest.approx(e[base]["step_ns"]["p50"] / i8["p50"])
        else:
            assert ra[key] is None
    assert ra["engine/int8_over_fp32_tick_p99.9"] == pytest.approx(i8["p99.9"] / f32["p99.9"])
    assert ra["engine/int8_tick_p50_over_bare_fp32_gru_p50"] == pytest.approx(
        i8["p50"] / e["bare_gru"]["fp32"]["step_ns"]["p50"])
    srv = s["servers"]
    for q in ("p50", "p99.9"):
        tmn_rt = srv["tmn"]["round_trip_ns"][q]
        assert ra[f"serve/tmn_over_naive_round_trip_{q}"] == pytest.approx(
            tmn_rt / srv["naive"]["round_trip_ns"][q])
        assert ra[f"serve/tmn_over_echo_round_trip_{q}"] == pytest.approx(
            tmn_rt / srv["echo"]["round_trip_ns"][q])

    def tps(name: str) -> float:
        return next(t["ticks_per_s"] for t in srv[name]["throughput"]
                    if (t["streams"], t["ticks_per_request"]) == (100, 10))

    assert ra["serve/tmn_over_naive_throughput_100_streams"] == pytest.approx(
        tps("tmn") / tps("naive"))
    assert ra["serve/tmn-spin_over_naive_round_trip_p50"] is None  # spin skipped: one core


def test_targets_are_the_engines_the_serves_and_the_plan_budget(run: Run) -> None:
    r = run.results
    names = [t["name"] for t in r["targets"]]
    assert names == ([t["name"] for t in r["engine"]["targets"]] +
                     [t["name"] for t in r["serve"]["targets"]] + [PLAN])
    assert len(set(names)) == len(names)
    for t in r["targets"]:
        assert t["status"] in ("MET", "MISSED", "SKIPPED")
        assert (t["value"] is None) == (t["status"] == "SKIPPED")
    plan = r["targets"][-1]
    p999 = r["engine"]["engine"]["int8"]["total_ns"]["p99.9"]
    assert plan["value"] == p999 > 0
    assert (plan["limit"], plan["op"], plan["unit"]) == (900_000.0, "<=", "ns")
    assert plan["status"] == ("MET" if p999 <= 900_000.0 else "MISSED")


def test_markdown_report_links_valid_plots_and_states_every_target(run: Run) -> None:
    md = (run.report / "latency.md").read_text(encoding="utf-8")
    for png in ("latency_stages.png", "serve_rtt.png"):
        assert _is_png(run.report / png), png
        assert f"]({png})" in md
    r = run.results
    assert "QUICK RUN" in md and r["machine"]["cpu"] in md
    for precision in ("INT8", "FP32"):
        assert f"**full tick {precision}**" in md
        for stage in tmn.STAGES:
            assert f"| {precision} {stage} |" in md
    for row in ("bare GRU step FP32", "Engine.tick from Python", "onnxruntime step",
                "PyTorch eager step", "| tmn |", "| echo |", "| naive |"):
        assert row in md, row
    assert all(f"| {k} |" in md for k in r["ratios"])
    lines = md.splitlines()
    for t in r["targets"]:
        assert any(f"| {t['name']} |" in line and f"**{t['status']}**" in line
                   for line in lines), t["name"]


def test_stdout_has_the_engine_and_serve_tables_and_the_quick_label(run: Run) -> None:
    assert "tmn-bench engine" in run.stdout and "tmn-bench serve:" in run.stdout
    assert latency.QUICK_NOTE in run.stdout
    assert PLAN in run.stdout


def test_skip_serve_runs_the_engine_only_and_says_so(run: Run, model: Path,
                                                      tmp_path: Path) -> None:
    out, rep = tmp_path / "engine_only.json", tmp_path / "report"
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        rc = cli.main(["latency", "--model", str(model), "--quick", "--ticks", str(TICKS),
                         "--skip-serve", "--strict", "--json", str(out), "--report", str(rep)])
    r = json.loads(out.read_text(encoding="utf-8"))
    assert r["serve"]["status"] == "skipped" and "--skip-serve" in r["serve"]["reason"]
    assert "serve benchmark SKIPPED" in stdout.getvalue()
    # the same targets and ratio keys as a full run: serve's n/a and SKIPPED, not dropped
    assert [t["name"] for t in r["targets"]] == [t["name"] for t in run.results["targets"]]
    assert set(r["ratios"]) == set(run.results["ratios"])
    serve_ratios = {k: v for k, v in r["ratios"].items() if k.startswith("serve/")}
    assert serve_ratios and all(v is None for v in serve_ratios.values())
    serve_names = {t["name"] for t in run.results["serve"]["targets"]}
    skipped = [t for t in r["targets"] if t["name"] in serve_names]
    assert skipped and all(t["status"] == "SKIPPED" and "--skip-serve" in t["note"]
                           for t in skipped)
    assert rc == 1  # --strict fails on a SKIPPED target as on a MISSED one, whatever was met
    assert r["targets"][-1]["value"] == r["engine"]["engine"]["int8"]["total_ns"]["p99.9"]
    md = (rep / "latency.md").read_text(encoding="utf-8")
    assert "**SKIPPED**: --skip-serve" in md and "serve_rtt.png" not in md
    assert _is_png(rep / "latency_stages.png") and not (rep / "serve_rtt.png").exists()


def test_strict_fails_on_a_skipped_target_even_when_all_others_are_met() -> None:
    """The rule every subcommand's --strict shares (cli._finish), without timing."""
    met = Target("a", 1.0, 2.0, "<=", "x", "measured", "issue 14")
    skipped = Target("b", None, 2.0, "<=", "x", "not measured", "issue 14")
    strict = argparse.Namespace(json=None, strict=True)
    assert cli._finish(None, [met], strict) == 0
    assert cli._finish(None, [met, skipped], strict) == 1
    assert cli._finish(None, [met, skipped], argparse.Namespace(json=None, strict=False)) == 0


def test_a_bad_model_folder_is_a_clear_error_before_any_measuring(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "never.json"
    assert cli.main(["latency", "--model", str(tmp_path / "nope"), "--json", str(out)]) == 2
    assert "--model: model folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["latency", "--model", str(tmp_path / "empty"), "--json", str(out)]) == 2
    assert "config.json: missing" in capsys.readouterr().err
    assert cli.main(["latency", "--server-core", "999", "--json", str(out)]) == 2
    assert "--server-core 999 is not usable" in capsys.readouterr().err
    assert not out.exists()


def test_the_latency_bench_imports_without_torch_onnxruntime_or_matplotlib() -> None:
    code = ("import sys, tmn_bench.latency, tmn_bench.cli; "
            "assert tmn_bench.cli.add_latency_command in tmn_bench.cli.COMMANDS; "
            "bad = [m for m in ('torch', 'onnxruntime', 'matplotlib') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), timeout=60)
    assert proc.returncode == 0
