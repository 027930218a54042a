"""``tmn-bench accuracy`` end to end on tiny trained models and tiny data.

The tiny A and B runs (conftest.tiny_runs) are exported to artifacts and the
CLI runs in a subprocess, as a user runs it. Besides the output's shape, the
figures that can be recomputed independently are: the evaluated ticks, the
constant-velocity error (numpy on the recording) and the Kalman-only error
(``KalmanPrior.filter``, not the engine replay).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tmn
from tmn import _core
from tmn_train.config import from_saved
from tmn_train.export import export
from tmn_train.pipeline import split_streams
from tmn_train.sources import load_sources
from tmn_train.train import FINAL, load_final

DATA = "synth:0.75:3"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def artifacts(tiny_runs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    out = {}
    for system in ("A", "B"):
        cfg, ck = load_final(tiny_runs[system][0] / FINAL)
        out[system] = export(ck, cfg, root / system)
    return out


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tmn_bench.cli", "accuracy", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run(artifacts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
        ) -> tuple[dict, Path, subprocess.CompletedProcess[str]]:
    folder = tmp_path_factory.mktemp("accuracy")
    p = bench("--data", DATA, "--models", str(artifacts["A"]), str(artifacts["B"]),
              "--bootstrap", "50", "--json", str(folder / "acc.json"),
              "--report", str(folder / "report"))
    assert p.returncode == 0, p.stderr
    return json.loads((folder / "acc.json").read_text()), folder / "report", p


def test_reports_every_predictor_at_every_horizon(run) -> None:
    r, _, p = run
    assert r["benchmark"] == "accuracy" and r["machine"]["cpu"]
    assert [m["label"] for m in r["models"]] == ["A0", "B0"]
    (d,) = r["datasets"]
    assert d["data"] == DATA and d["split"] == "test" and d["headline_ms"] == 500.0
    assert set(d["predictors"]) == {"constant velocity", "Kalman only", "ridge", "A0 fp32",
                                    "A0 int8", "B0 fp32", "B0 int8"}
    for m in d["predictors"].values():
        for key in ("mse", "rmse", "p50", "p90", "p99", "p99.9", "max", "along_mean",
                    "along_rms", "cross_rms", "jitter"):
            assert len(m[key]) == 10 and np.isfinite(m[key]).all(), key
        assert m["p50"] <= m["p99"] and m["p99"][-1] <= m["max"][-1]
    assert set(d["gate"]) == {"B0 fp32", "B0 int8"}
    for k, g in d["gate"].items():
        assert g["switches"] >= 0
        if g["switches"] == 0:  # nothing left out: the same jitter
            assert g["jitter_without_switches"] == d["predictors"][k]["jitter"][-1]
    assert set(d["latency"]) == {"A0 fp32", "A0 int8", "B0 fp32", "B0 int8"}
    for who in ("A0", "B0"):
        mse = {p: d["predictors"][f"{who} {p}"]["mse"][-1] for p in ("int8", "fp32")}
        ratio = mse["int8"] / mse["fp32"]
        assert d["int8_over_fp32_mse"][who]["headline"] == pytest.approx(ratio)
    assert "B0 vs A0: P99 ratio" in p.stdout


def test_baselines_match_an_independent_computation(run) -> None:
    """Evaluated ticks, constant velocity and Kalman-only recomputed from the recording."""
    r, _, _ = run
    d = r["datasets"][0]
    cfg = from_saved(_config(r))
    pieces = [s for s in split_streams(load_sources([DATA], cfg), cfg)["test"]
              if len(s) >= cfg.ticks(cfg.window_ms) + cfg.horizon_ticks[-1] + 1]
    nk = np.asarray(cfg.horizon_ticks)
    hs = np.asarray(cfg.horizons_ms) / 1000.0
    cv, kal = [], []
    kf = _core.KalmanPrior(_core.KalmanParams(*(_kalman(r)[k] for k in ("q", "r_pos", "r_vel"))))
    for s in pieces:
        i = np.flatnonzero((s.t - s.t[0] >= cfg.window_ms / 1000.0)
                           & (np.arange(len(s)) + nk[-1] < len(s)))
        truth = s.pos[i[:, None] + nk]
        cv.append(np.linalg.norm(s.pos[i, None] + s.vel[i, None] * hs[:, None] - truth, axis=-1))
        st, _ = kf.filter(s.t, s.x, s.y, s.vx, s.vy)
        kal.append(np.linalg.norm(st[i, None, :2] + st[i, None, 2:] * hs[:, None] - truth,
                                  axis=-1))
    cv_e, kal_e = np.concatenate(cv), np.concatenate(kal)
    assert d["evaluated_ticks"] == len(cv_e) > 1000
    np.testing.assert_allclose(d["predictors"]["constant velocity"]["mse"],
                               np.mean(cv_e**2, axis=0), rtol=1e-12)
    np.testing.assert_allclose(d["predictors"]["Kalman only"]["p99"],
                               np.percentile(kal_e, 99, axis=0), rtol=1e-9)


def _config(r: dict) -> dict:
    from tmn import load

    return load(r["models"][0]["path"]).config["provenance"]["config"]


def _kalman(r: dict) -> dict:
    from tmn import load

    return load(r["models"][1]["path"]).config["kalman"]  # B0: Kalman-only's source


def test_statistics_targets_and_plan_criteria(run) -> None:
    r, _, _ = run
    d = r["datasets"][0]
    vs_a, vs_kalman, vs_ridge = d["comparisons"]
    assert (vs_a["new"], vs_a["base"]) == ("B0", "A0")
    assert vs_kalman["base"] == "Kalman only (B0's prior)"
    assert (vs_ridge["new"], vs_ridge["base"]) == ("B0", "ridge")
    assert vs_ridge["p99_ratio"] == pytest.approx(
        d["predictors"]["B0 int8"]["p99"][-1] / d["predictors"]["ridge"]["p99"][-1])
    for c in (vs_a, vs_kalman, vs_ridge):
        assert c["ticks"] == d["evaluated_ticks"] and c["blocks"] >= 3
        assert 0 <= c["per_tick"]["t_test_p"] <= 1 and 0 <= c["per_block"]["wilcoxon_p"] <= 1
        assert -1 <= c["cliffs_delta"] <= 1
        lo, hi = c["p99_ratio_ci95"]
        assert lo <= hi and c["bootstrap"]["resamples"] == 50
    assert vs_a["p99_ratio"] == pytest.approx(
        d["predictors"]["B0 int8"]["p99"][-1] / d["predictors"]["A0 int8"]["p99"][-1])
    assert vs_a["latency_p999_ratio"] == pytest.approx(
        d["latency"]["B0 int8"]["total_ns"]["p99.9"] / d["latency"]["A0 int8"]["total_ns"]["p99.9"])
    kinds = {t["kind"] for t in d["targets"]}
    fired = d["gate"]["B0 int8"]["fallback_win_rate"] is not None
    assert kinds == {"B / A P99 error @500 ms", "B better than A: paired p (block t-test)",
                     "B / Kalman-only MSE @500 ms", "B / ridge P99 error @500 ms",
                     "gate pass rate", "mean certificate error", "INT8 / FP32 MSE @500 ms",
                     "B / A jitter @500 ms",
                     "90 % radius coverage, lowest over the horizons",
                     "90 % radius coverage, highest over the horizons",
                     } | ({"gate fallback win rate"} if fired else set())
    # where the tail lives: per synthetic regime, each predictor's tail shares sum to 1
    assert set(d["groups"]) <= {"cv_ou", "reach", "orbit", "lissajous", "bounce"}
    assert len(d["groups"]) > 1
    for who in ("B0 int8", "A0 int8", "Kalman only", "ridge"):
        assert sum(g["tail_share"][who] for g in d["groups"].values()) == pytest.approx(1.0)
        assert max(g["p99"][who] for g in d["groups"].values()) >= \
            d["predictors"][who]["p99"][-1] * (1 - 1e-9)
    assert sum(g["ticks"] for g in d["groups"].values()) == d["evaluated_ticks"]
    for label in ("A0", "B0"):  # the tiny models are calibrated: their coverage is reported
        cov = d["coverage"][f"{label} int8"]
        assert len(cov) == len(d["horizons_ms"]) and all(0 < c <= 1 for c in cov)
        (low,) = [t for t in d["targets"] if t["kind"].endswith("lowest over the horizons")
                  and t["who"] == label]
        assert low["value"] == pytest.approx(min(cov))
    (jit,) = [t for t in d["targets"] if t["kind"] == "B / A jitter @500 ms"]
    assert jit["value"] == pytest.approx(d["predictors"]["B0 int8"]["jitter"][-1]
                                         / d["predictors"]["A0 int8"]["jitter"][-1])
    assert all(t["status"] in ("MET", "MISSED") for t in d["targets"])
    (pc,) = d["plan_criteria"]
    assert pc["criterion_1"]["status"] == ("MET" if vs_a["p99_ratio"] <= 0.85
                                           or vs_a["latency_p999_ratio"] <= 0.8 else "MISSED")
    assert {s["target"] for s in r["seed_summary"]} == kinds


def test_writes_the_markdown_report_and_the_plots(run) -> None:
    _, report, _ = run
    md = (report / "accuracy.md").read_text()
    for name in ("error_cdf_0.png", "error_vs_horizon_0.png", "latency_stages_0.png",
                 "trajectory_0.png"):
        assert (report / name).read_bytes()[:8] == PNG
        assert f"]({name})" in md
    for text in ("## Models", "## Summary over seeds", "### Statistics at 500 ms",
                 "### The plan's success criteria", "**machine**", "git `"):
        assert text in md


def test_refuses_what_it_cannot_evaluate(artifacts: dict[str, Path], tmp_path: Path) -> None:
    p = bench("--data", "nosuchfile.csv", "--models", str(artifacts["A"]))
    assert p.returncode == 2 and "nosuchfile.csv" in p.stderr
    p = bench("--data", DATA, "--models", str(tmp_path / "nomodel"))
    assert p.returncode == 2 and "nomodel" in p.stderr
    # 2 A and 3 B cannot be paired
    copies = []
    for name, src in (("A1", "A"), ("B1", "B"), ("B2", "B")):
        copies.append(shutil.copytree(artifacts[src], tmp_path / name))
    p = bench("--data", DATA, "--models", str(artifacts["A"]), str(copies[0]),
              str(artifacts["B"]), str(copies[1]), str(copies[2]))
    assert p.returncode == 2 and "2 System A and 3 System B" in p.stderr
    # an artifact without its training config
    bare = shutil.copytree(artifacts["B"], tmp_path / "bare")
    cfg = json.loads((bare / "config.json").read_text())
    del cfg["provenance"]["config"]
    (bare / "config.json").write_text(json.dumps(cfg))
    p = bench("--data", DATA, "--models", str(bare))
    assert p.returncode == 2 and "provenance.config is missing" in p.stderr


def test_interleaved_replay_answers_exactly_like_one_replay(artifacts: dict[str, Path]) -> None:
    """replay_all cuts the recording into slices and lets the engines take turns;
    the engines keep their streams between slices, so nothing changes but timing."""
    from tmn_bench.accuracy import evaluate

    entrants = evaluate.load_entrants([artifacts["A"], artifacts["B"]])
    h, _ = evaluate.held_out(DATA, evaluate.split_config(entrants), "test")
    runs = evaluate.replay_all(entrants, h, rounds=7)
    for e in entrants:
        for p in ("fp32", "int8"):
            eng = tmn.Engine(e.model, precision=p, max_streams=len(h.names))
            one = eng.replay(h.t, h.pos[:, 0], h.pos[:, 1], h.vel[:, 0], h.vel[:, 1],
                             h.tick_piece.astype(np.uint64), candidates=True)
            got = runs[e.label][p]
            assert got.ok == one.ok == len(h.t)
            for name in ("paths", "prior", "proposal", "verdict", "cert", "d2", "work"):
                assert getattr(got, name).tobytes() == getattr(one, name).tobytes(), name
            assert got.stage_ns.shape == one.stage_ns.shape


def _keys(d: object, at: str = "",
          named: tuple[str, ...] = ("predictors", "gate", "latency", "int8_over_fp32_mse",
                                    "coverage", "groups", "p99", "tail_share")
          ) -> set[str]:
    """Every key path of a JSON value (list items merged; the keys of the dicts by
    model or predictor name, which differ between runs, as "*")."""
    if isinstance(d, dict):
        out = set()
        for k, v in d.items():
            label = "*" if at.rsplit("/", 1)[-1] in named else k
            out |= {f"{at}/{label}"} | _keys(v, f"{at}/{label}", named)
        return out
    if isinstance(d, list):
        return set().union(*(_keys(x, f"{at}[]", named) for x in d if isinstance(x, dict)))
    return set()


def test_the_json_keeps_the_keys_of_the_reference_reports(run) -> None:
    """The typed results write exactly the keys the checked-in reference reports
    have (bench/README.md documents them)."""
    r, _, _ = run
    ref = Path(__file__).resolve().parents[2] / "bench" / "reference" / "accuracy-synth"
    want = _keys(json.loads((ref / "accuracy.json").read_text(encoding="utf-8")))
    got = _keys(r)
    for new in ("/datasets[]/coverage", "/datasets[]/groups"):  # later than the reference
        if new not in want:  # reports (both default to empty)
            got = {k for k in got if not k.startswith(new)}
    assert got == want


def test_models_are_compared_with_their_baselines_one_to_one(artifacts: dict[str, Path],
                                                            tmp_path: Path) -> None:
    """--baseline (issue 10): a B trained with active selection against the uniform B."""
    from tmn_train.train import fit

    from train_helpers import tiny_config

    out = tmp_path / "active"
    fit(tiny_config("B", "active_selection.enabled=true", "epochs=2"), [DATA], out, [0],
        log=lambda m: None)
    cfg, ck = load_final(out / FINAL)
    active = export(ck, cfg, tmp_path / "active-model")
    p = bench("--data", DATA, "--models", str(active), "--baseline", str(artifacts["B"]),
              "--bootstrap", "20", "--json", str(tmp_path / "acc.json"))
    assert p.returncode == 0, p.stderr
    r = json.loads((tmp_path / "acc.json").read_text())
    assert [m["label"] for m in r["models"]] == ["B0", "B0 baseline"]
    d = r["datasets"][0]
    (c,) = d["comparisons"]
    assert (c["new"], c["base"]) == ("B0", "B0 baseline")
    assert c["p99_ratio"] == pytest.approx(d["predictors"]["B0 int8"]["p99"][-1]
                                           / d["predictors"]["B0 baseline int8"]["p99"][-1])
    issue10 = {t["kind"]: t for t in d["targets"] if t["source"] == "issue 10"}
    assert set(issue10) == {"model / baseline P99 error @500 ms (active / uniform)",
                            "model better than baseline: paired p (block t-test)",
                            "selection time / training time"}
    assert 0 < issue10["selection time / training time"]["value"] < 1
    assert d["plan_criteria"] == []  # the plan's criteria are B against A
    p = bench("--data", DATA, "--models", str(active), "--baseline", str(artifacts["A"]))
    assert p.returncode == 2 and "its baseline" in p.stderr and "System A" in p.stderr
    p = bench("--data", DATA, "--models", str(active), "--baseline", str(artifacts["B"]),
              str(artifacts["B"]))
    assert p.returncode == 2 and "one baseline per model" in p.stderr
