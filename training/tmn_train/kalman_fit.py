"""Fit the Kalman prior's q, r_pos and r_vel on the training split.

The filter itself is the engine's (``tmn._core.KalmanPrior.filter``); this
module only chooses its parameters:

1. **Measurement noise, from the data.** For white noise e on a smooth signal
   sampled at 2 kHz, the second difference of position has variance
   ``6 r_pos`` and the first difference of velocity ``2 r_vel`` (the signal's
   own contribution is negligible at that rate). We use the robust variance
   ``(1.4826 MAD)^2`` so that bounces and reach onsets do not count as noise,
   and floor both at a tiny fraction of the signal variance (noise-free data
   such as LASA would otherwise give zero, which the engine refuses).
2. **Process noise q, by grid search**: the q (then a factor on each r) that
   minimises the prior path's mean squared error over all horizons,
   ``mean ||p_{i+n_k} - (p̂_i + v̂_i h_k)||^2``, on non-warming training ticks.
   That is the quantity B's residual and the gate's fallback depend on.
"""

from __future__ import annotations

import numpy as np

from tmn import _core
from tmn_train.config import Config
from tmn_train.data import Stream

MAX_TICKS = 300_000  # the search uses at most this many training ticks


def _robust_var(d: np.ndarray) -> float:
    d = d[np.isfinite(d)]
    if d.size == 0:
        return 0.0
    mad = np.median(np.abs(d - np.median(d)))
    return float((1.4826 * mad) ** 2)


def noise_estimates(streams: list[Stream]) -> tuple[float, float]:
    d2p = np.concatenate([np.diff(s.pos, n=2, axis=0).ravel() for s in streams if len(s) > 2])
    d1v = np.concatenate([np.diff(s.vel, n=1, axis=0).ravel() for s in streams if len(s) > 1])
    pos_var = float(np.var(np.concatenate([s.pos.ravel() for s in streams])))
    vel_var = float(np.var(np.concatenate([s.vel.ravel() for s in streams])))
    r_pos = max(_robust_var(d2p) / 6.0, 1e-10 * pos_var, 1e-12)
    r_vel = max(_robust_var(d1v) / 2.0, 1e-10 * vel_var, 1e-12)
    return r_pos, r_vel


def _sample(streams: list[Stream], cfg: Config) -> list[Stream]:
    """Evenly spread pieces (or parts of them) totalling at most MAX_TICKS."""
    total = sum(len(s) for s in streams)
    if total <= MAX_TICKS:
        return streams
    frac = MAX_TICKS / total
    need = cfg.ticks(cfg.window_ms) + cfg.horizon_ticks[-1] + 1
    out = []
    for s in streams:
        m = max(need, int(len(s) * frac))
        if len(s) >= need:
            out.append(s.slice(0, min(m, len(s))))
    return out


def prior_mse(streams: list[Stream], cfg: Config, q: float, r_pos: float, r_vel: float) -> float:
    kp = _core.KalmanPrior(_core.KalmanParams(q, r_pos, r_vel))
    h = np.asarray(cfg.horizons_ms) / 1000.0
    nk = np.asarray(cfg.horizon_ticks)
    w = cfg.ticks(cfg.window_ms)
    se, count = 0.0, 0
    for s in streams:
        n = len(s)
        if n <= nk[-1] + w:
            continue
        state, _ = kp.filter(s.t, s.x, s.y, s.vx, s.vy)
        state = np.asarray(state)
        i = np.arange(w, n - nk[-1])
        pred = state[i, None, :2] + state[i, None, 2:] * h[:, None]   # [m, K, 2]
        err = s.pos[i[:, None] + nk] - pred
        se += float(np.sum(err * err))
        count += err.shape[0] * err.shape[1]
    return se / max(count, 1)


def tune_kalman(train: list[Stream], cfg: Config, log=print) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """q, r_pos, r_vel for the engine's prior (module docstring), with the search trace."""
    if not cfg.kalman.tune:
        return {"q": float(cfg.kalman.q), "r_pos": float(cfg.kalman.r_pos),  # type: ignore[arg-type]
                "r_vel": float(cfg.kalman.r_vel), "method": "fixed in config"}
    sample = _sample(train, cfg)
    r_pos, r_vel = noise_estimates(train)
    best = (np.inf, 0.0)
    for e in np.arange(-6.0, 13.0, 1.0):  # absolute grid, 1e-6 .. 1e12 (units^2/s^3)
        m = prior_mse(sample, cfg, 10.0**e, r_pos, r_vel)
        best = min(best, (m, e))
    e0 = best[1]
    for e in e0 + np.arange(-0.75, 0.76, 0.25):
        m = prior_mse(sample, cfg, 10.0**e, r_pos, r_vel)
        best = min(best, (m, e))
    q = float(10.0 ** best[1])
    f_best = (best[0], 1.0)
    for f in (0.1, 0.3, 3.0, 10.0):
        f_best = min(f_best, (prior_mse(sample, cfg, q, r_pos * f, r_vel), f))
    r_pos *= f_best[1]
    f_best = (f_best[0], 1.0)
    for f in (0.1, 0.3, 3.0, 10.0):
        f_best = min(f_best, (prior_mse(sample, cfg, q, r_pos, r_vel * f), f))
    r_vel *= f_best[1]
    out = {"q": q, "r_pos": float(r_pos), "r_vel": float(r_vel),
           "prior_mse": float(f_best[0]),
           "method": "r from robust difference variances, q and r factors by grid search "
                     "on the train split (prior path MSE over all horizons)"}
    log(f"kalman: q={q:.4g} r_pos={r_pos:.4g} r_vel={r_vel:.4g} "
        f"(train prior-path MSE {f_best[0]:.4g})")
    return out
