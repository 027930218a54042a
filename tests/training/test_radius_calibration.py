"""The uncertainty radius's calibration (tmn_train.uncertainty): the fit covers
the quantile it is asked for, and follows how the error grows with speed; a fit
stores it in the artifact; ``tmn-train calibrate`` adds it to an existing one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tmn
from tmn.model import file_sha256
from tmn.testing import random_model
from tmn_train.config import from_saved
from tmn_train.export import export
from tmn_train.uncertainty import fit_radius, prior_speed


def heteroscedastic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Errors at 3 horizons whose spread grows with speed: sd_k = (k+1) sqrt(1 + (v/50)^2)."""
    rng = np.random.default_rng(seed)
    speed = rng.gamma(2.0, 40.0, n)
    sd = np.arange(1, 4)[None, :] * np.sqrt(1.0 + (speed[:, None] / 50.0) ** 2)
    e = np.linalg.norm(rng.normal(size=(n, 3, 2)), axis=-1) * sd
    return e, speed


def test_the_fit_covers_90_percent_overall_and_at_every_speed() -> None:
    e, speed = heteroscedastic(60_000, seed=1)
    c0, c1 = fit_radius(e, speed)
    assert (c0 > 0).all() and (c1 > 0).all()
    e2, s2 = heteroscedastic(60_000, seed=2)  # fresh data: the coverage holds
    covered = e2 <= np.sqrt(c0 + c1 * s2[:, None] ** 2)
    np.testing.assert_allclose(covered.mean(axis=0), 0.9, atol=0.01)
    for part in np.array_split(np.argsort(s2), 3):  # slow, medium, fast thirds
        np.testing.assert_allclose(covered[part].mean(axis=0), 0.9, atol=0.03)


def test_a_constant_radius_would_not_be_calibrated_by_speed() -> None:
    """The speed term earns its place: a radius without it covers the slow
    third far more than the fast one."""
    e, speed = heteroscedastic(60_000, seed=3)
    flat = np.quantile(e, 0.9, axis=0)
    thirds = [np.mean(e[p] <= flat, axis=0) for p in np.array_split(np.argsort(speed), 3)]
    assert (thirds[0] > 0.97).all() and (thirds[2] < 0.8).all()


def test_the_speed_is_read_back_from_the_prior_path() -> None:
    h = np.array([0.05, 0.1, 0.15])
    v = np.array([[3.0, 4.0], [0.0, -2.0]])
    prior = np.array([[1.0, 2.0]])[:, None, :] + v[:, None, :] * h[None, :, None]
    np.testing.assert_allclose(prior_speed(prior, h), [5.0, 2.0])


def test_a_fit_stores_a_calibrated_radius_and_reports_its_coverage(
        tiny_runs: dict[str, Any], tmp_path: Path) -> None:
    for system in ("A", "B"):
        _, ck = tiny_runs[system]
        u = ck["uncertainty"]
        assert len(u["radius_c0"]) == len(u["radius_c1"]) == from_saved(ck["config"]).K
        np.testing.assert_allclose(u["val_coverage"], 0.9, atol=0.01)
        model = tmn.load(export(ck, from_saved(ck["config"]), tmp_path / system))
        assert model.config["uncertainty"]["radius_c0"] == u["radius_c0"]
        test = ck["provenance"]["metrics"]["test"]
        assert all(0.0 < c <= 1.0 for c in test["int8"]["coverage"])


def test_tmn_train_calibrate_adds_the_radius_to_an_artifact(
        tiny_runs: dict[str, Any], tmp_path: Path) -> None:
    _, ck = tiny_runs["B"]
    folder = export(ck, from_saved(ck["config"]), tmp_path / "model")
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["uncertainty"]
    (folder / "config.json").write_text(json.dumps(cfg))
    weights = file_sha256(folder / "model.safetensors")
    r = subprocess.run([sys.executable, "-m", "tmn_train", "calibrate", str(folder)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    u = tmn.load(folder).config["uncertainty"]
    assert u["radius_c0"] == pytest.approx(ck["uncertainty"]["radius_c0"], rel=1e-9)
    assert u["data"] == ck["provenance"]["data"]
    assert file_sha256(folder / "model.safetensors") == weights


def test_calibrate_refuses_an_artifact_without_its_training_config(tmp_path: Path) -> None:
    folder = random_model(tmp_path / "m")
    r = subprocess.run([sys.executable, "-m", "tmn_train", "calibrate", str(folder)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "provenance.config is missing" in r.stderr
