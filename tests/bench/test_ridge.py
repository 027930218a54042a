"""The ridge baseline (tmn_bench.baselines.ridge): exact on motions its features
span, and the same weights as an independent least-squares solve."""

from __future__ import annotations

import numpy as np

from tmn_bench.baselines import ridge
from tmn_train.pipeline import Pieces

RATE, W, NK = 2000.0, 256, [100 * (k + 1) for k in range(10)]


def pieces(pos: np.ndarray, vel: np.ndarray, n_pieces: int = 3) -> Pieces:
    n = len(pos) // n_pieces
    cut = [(i * n, (i + 1) * n) for i in range(n_pieces)]
    offsets = np.array([0] + [b for _, b in cut], np.int64)
    return Pieces([f"p{i}" for i in range(n_pieces)], offsets, np.arange(offsets[-1]) / RATE,
                  np.concatenate([pos[a:b] for a, b in cut]),
                  np.concatenate([vel[a:b] for a, b in cut]))


def test_uniformly_accelerated_motion_is_predicted_exactly() -> None:
    # p = p0 + v0 t + a t^2 / 2: lag features span v and a, so the fit is exact up to
    # the relative ridge (1e-6 of the mean eigenvalue shrinks the small acceleration term)
    t = np.arange(30000) / RATE
    rng = np.random.default_rng(0)
    p0, v0, a = rng.normal(0, 100, 2), rng.normal(0, 300, 2), rng.normal(0, 50, 2)
    pos = p0 + v0 * t[:, None] + 0.5 * a * t[:, None] ** 2
    vel = v0 + a * t[:, None]
    p = pieces(pos, vel)
    fit = ridge.fit(p, RATE, W, NK)
    idx = np.arange(p.offsets[1] + W, p.offsets[2] - NK[-1])
    pred = fit.predict(p, idx)
    truth = p.pos[idx[:, None] + np.asarray(NK)]
    assert np.max(np.abs(pred - truth)) <= 1e-3 * np.max(np.abs(truth - p.pos[idx][:, None]))


def test_weights_match_an_independent_least_squares_solve() -> None:
    rng = np.random.default_rng(1)
    vel = np.cumsum(rng.normal(0, 20, (40000, 2)), axis=0)
    pos = np.cumsum(vel, axis=0) / RATE + rng.normal(0, 0.5, (40000, 2))
    p = pieces(pos, vel + rng.normal(0, 5, vel.shape))
    fit = ridge.fit(p, RATE, W, NK)
    # the same ticks and design built here, solved by numpy's lstsq
    nk = np.asarray(NK)
    idx = np.concatenate([np.arange(a + W, b - nk[-1]) for a, b in
                          zip(p.offsets[:-1], p.offsets[1:])])
    x = fit.features(p, idx).reshape(-1, len(fit.lags) + 1)
    y = (p.pos[idx[:, None] + nk] - p.pos[idx][:, None]).transpose(0, 2, 1).reshape(-1, len(nk))
    ref, *_ = np.linalg.lstsq(x, y, rcond=None)
    pred, pred_ref = x @ fit.weights, x @ ref
    assert np.sqrt(np.mean((pred - pred_ref) ** 2)) <= 1e-3 * np.sqrt(np.mean(y ** 2))
