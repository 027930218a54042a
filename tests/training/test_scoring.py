"""tmn_train.scoring, the held-out scoring path of training and tmn-bench
accuracy, against values computed by hand on a few numbers, and against the
engine on a tiny artifact."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import tmn
from tmn.testing import random_model
from tmn_train import scoring
from tmn_train.pipeline import Pieces


def test_errors_are_euclidean_distances_per_horizon() -> None:
    pred = np.array([[[3.0, 4.0], [1.0, 1.0]]])
    truth = np.array([[[0.0, 0.0], [1.0, 2.0]]])
    np.testing.assert_array_equal(scoring.errors(pred, truth), [[5.0, 1.0]])


def test_distribution_mse_percentiles_and_max() -> None:
    e = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 2.0]])
    d = scoring.distribution(e)
    assert d["mse"] == [7.5, 1.0]  # (1 + 4 + 9 + 16) / 4, 4 / 4
    assert d["rmse"] == [math.sqrt(7.5), 1.0]
    assert d["p50"] == [2.5, 0.0]  # linear between the order statistics
    assert d["p90"][0] == pytest.approx(3.7)  # 3 + 0.7 * (4 - 3)
    assert d["p99"][0] == pytest.approx(3.97)
    assert d["max"] == [4.0, 2.0]
    with pytest.raises(ValueError, match="non-empty"):
        scoring.distribution(np.zeros((0, 2)))


def test_jitter_uses_consecutive_ticks_of_one_piece_only() -> None:
    idx = np.array([5, 6, 7, 9, 10])
    piece = np.array([0, 0, 0, 0, 1])  # 9 -> 10 crosses into another piece
    p = np.array([0.0, 1.0, 3.0, 3.0, 100.0])
    t = np.array([0.0, 1.0, 1.0, 2.0, -50.0])
    pred = np.stack([p, np.zeros(5)], axis=1)[:, None, :]
    truth = np.stack([t, np.zeros(5)], axis=1)[:, None, :]
    # pairs (5,6): (1-0)-(1-0) = 0 and (6,7): (3-1)-(1-1) = 2 -> RMS sqrt(2)
    assert scoring.jitter(pred, truth, idx, piece) == [math.sqrt(2.0)]
    assert math.isnan(scoring.jitter(pred[:1], truth[:1], idx[:1], piece[:1])[0])


def test_gate_rates_are_over_passes_only() -> None:
    v = np.array([int(tmn.Verdict.pass_), int(tmn.Verdict.pass_),
                  int(tmn.Verdict.fallback_implausible), int(tmn.Verdict.warming)])
    g = scoring.gate_rates(v, np.array([0.01, 0.03, np.nan, np.nan]))
    assert g["pass_rate"] == 0.5
    assert g["cert_mean"] == pytest.approx(0.02) and g["cert_max"] == pytest.approx(0.03)
    assert math.isnan(scoring.gate_rates(v[2:], np.zeros(2))["cert_mean"])


def test_mse_ratio_at_the_headline_and_over_horizons() -> None:
    r = scoring.mse_ratio({"mse": [1.0, 3.0]}, {"mse": [2.0, 2.0]})
    assert r == {"headline": 1.5, "all_horizons": 1.0}
    assert math.isnan(scoring.mse_ratio({"mse": [1.0]}, {"mse": [0.0]})["headline"])


def test_evaluated_ticks_skip_warming_refused_ticks_and_piece_ends(tmp_path: Path) -> None:
    """Two pieces of 400 ticks at 2 kHz; warming is 128 ms (256 ticks), the
    farthest horizon 500 ms (1000 ticks) is too far, so use 3 horizons of 50 ms."""
    model = tmn.load(random_model(tmp_path / "m", system="A", horizons_ms=[50.0, 100.0, 150.0]))
    n = 400
    t = np.arange(n) / 2000.0
    pos = np.stack([np.sin(t), np.cos(t)], axis=1)
    vel = np.stack([np.cos(t), -np.sin(t)], axis=1)
    pieces = Pieces(["a", "b"], np.array([0, n, 2 * n]), np.r_[t, t + 10.0],
                    np.r_[pos, pos], np.r_[vel, vel])
    pieces.pos[5, 0] = np.nan  # a refused tick (non_finite) inside warming of piece a
    r = scoring.replay(model, pieces, "fp32")
    ev = scoring.evaluated_ticks(pieces, [100, 200, 300], [r])
    # past warming (t - t0 >= 0.128 s: index >= 256) and index + 300 inside the piece
    expect = [i for p in (0, n) for i in range(p + 256, p + n - 300)]
    assert ev.idx.tolist() == expect
    assert ev.piece.tolist() == [0] * (len(expect) // 2) + [1] * (len(expect) // 2)
    np.testing.assert_array_equal(ev.truth[:, 2], pieces.pos[ev.idx + 300])
    cv = scoring.constant_velocity(pieces, ev, [50.0, 100.0, 150.0])
    np.testing.assert_allclose(cv[:, 1], pieces.pos[ev.idx] + 0.1 * pieces.vel[ev.idx])
