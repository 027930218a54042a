"""Accuracy metrics of predicted paths, per horizon (numpy only).

Every function takes plain arrays, so each metric can be checked by hand on a
few numbers (tests/training/test_metrics.py). Conventions:

* ``pred`` and ``truth`` are ``[m, K, 2]``: at m evaluated ticks, the
  predicted point and the measured position at each of the K horizons, in
  data units. ``truth[i, k]`` is the recording's position ``h_k`` after tick i.
* **error**: the Euclidean distance ``|pred - truth|``, ``[m, K]``.
* **along-track / cross-track**: the error split along the true direction of
  motion at the target time and across it. ``tangent[i, k]`` is that
  direction (any length; :func:`tangents` computes it from the recording).
  ``along > 0`` means the prediction is ahead of the truth, ``< 0`` behind
  (lag). Ticks whose tangent is shorter than ``min_speed_fraction`` of the
  median tangent length are left out: at rest the direction is noise.
* **jitter**: the tick-to-tick change of the predicted point beyond the true
  motion, RMS over consecutive evaluated ticks of one stream,
  ``|(P_i - P_{i-1}) - (T_i - T_{i-1})|``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Error percentiles every report gives (name, percentile).
PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0),
                                              ("p99.9", 99.9))


def errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``[m, K]`` Euclidean errors of ``pred`` against ``truth`` (both ``[m, K, 2]``)."""
    return np.linalg.norm(np.asarray(pred) - np.asarray(truth), axis=-1)


def distribution(e: np.ndarray) -> dict[str, list[float]]:
    """Per horizon (columns of ``e``, ``[m, K]``): ``mse`` (mean squared error),
    ``rmse``, the error percentiles of :data:`PERCENTILES` and ``max``."""
    e = np.asarray(e, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] == 0:
        raise ValueError(f"need a non-empty [m, K] error array, got shape {e.shape}")
    mse = np.mean(e * e, axis=0)
    out: dict[str, list[float]] = {"mse": mse.tolist(), "rmse": np.sqrt(mse).tolist()}
    qs = np.percentile(e, [q for _, q in PERCENTILES], axis=0)
    for (name, _), row in zip(PERCENTILES, qs):
        out[name] = row.tolist()
    out["max"] = e.max(axis=0).tolist()
    return out


def track_errors(pred: np.ndarray, truth: np.ndarray, tangent: np.ndarray,
                 min_speed_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Signed along-track and cross-track errors, ``[m, K]`` each, NaN where the
    tangent is too short (module docstring). Cross-track is positive to the
    left of the direction of motion."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    tg = np.asarray(tangent, dtype=np.float64)
    speed = np.linalg.norm(tg, axis=-1)
    moving = speed > 0
    cut = min_speed_fraction * (np.median(speed[moving]) if moving.any() else 0.0)
    ok = moving & (speed >= cut)
    u = np.where(ok[..., None], tg / np.where(ok, speed, 1.0)[..., None], np.nan)
    along = d[..., 0] * u[..., 0] + d[..., 1] * u[..., 1]
    cross = u[..., 0] * d[..., 1] - u[..., 1] * d[..., 0]
    return along, cross


def track_summary(along: np.ndarray, cross: np.ndarray) -> dict[str, list[float]]:
    """Per horizon, over the ticks with a direction: ``along_mean`` (bias; < 0 is
    lag), ``along_rms``, ``cross_rms``, ``along_p99`` and ``cross_p99`` (of the
    absolute values), and ``track_ticks`` (how many ticks had a direction)."""
    ok = np.isfinite(along)
    n = ok.sum(axis=0)
    out: dict[str, list[float]] = {"track_ticks": n.astype(float).tolist()}
    for name, f in (("along_mean", lambda a: float(np.mean(a))),
                    ("along_rms", lambda a: float(np.sqrt(np.mean(a * a)))),
                    ("along_p99", lambda a: float(np.percentile(np.abs(a), 99)))):
        out[name] = [f(along[ok[:, k], k]) if n[k] else float("nan")
                     for k in range(along.shape[1])]
    for name, f in (("cross_rms", lambda a: float(np.sqrt(np.mean(a * a)))),
                    ("cross_p99", lambda a: float(np.percentile(np.abs(a), 99)))):
        out[name] = [f(cross[ok[:, k], k]) if n[k] else float("nan")
                     for k in range(cross.shape[1])]
    return out


def jitter(pred: np.ndarray, truth: np.ndarray, idx: np.ndarray,
           piece: np.ndarray) -> list[float]:
    """Per horizon, the RMS over pairs of evaluated ticks that are consecutive
    (``idx`` differs by 1) in the same piece (``piece[i]`` of each evaluated tick)
    of ``|(pred_i - pred_{i-1}) - (truth_i - truth_{i-1})|``; NaN without pairs."""
    idx, piece = np.asarray(idx), np.asarray(piece)
    pair = np.flatnonzero((np.diff(idx) == 1) & (np.diff(piece) == 0)) + 1
    if len(pair) == 0:
        return [float("nan")] * np.asarray(pred).shape[1]
    d = (pred[pair] - pred[pair - 1]) - (truth[pair] - truth[pair - 1])
    return np.sqrt(np.mean(np.sum(d * d, axis=-1), axis=0)).tolist()


def gate_switches(verdict: np.ndarray, idx: np.ndarray, piece: np.ndarray) -> np.ndarray:
    """Mask of the evaluated ticks whose verdict differs from that of the tick just
    before (consecutive ``idx``, same piece): where the served path jumps between
    the network's and the prior."""
    v, idx, piece = np.asarray(verdict), np.asarray(idx), np.asarray(piece)
    return np.r_[False, (v[1:] != v[:-1]) & (np.diff(idx) == 1) & (np.diff(piece) == 0)]


def tangents(pos: np.ndarray, offsets: np.ndarray, target: np.ndarray,
             half_width: int) -> np.ndarray:
    """The direction of motion at flat tick indices ``target`` (any shape): the
    central difference ``pos[j + w] - pos[j - w]``, clipped to the piece of j
    (``offsets`` as in SplitArrays)."""
    target = np.asarray(target)
    piece = np.searchsorted(offsets, target, side="right") - 1
    lo, hi = offsets[piece], offsets[piece + 1] - 1
    a = np.clip(target - half_width, lo, hi)
    b = np.clip(target + half_width, lo, hi)
    return pos[b] - pos[a]


def gate_summary(verdict: np.ndarray, cert: np.ndarray, e_prior: np.ndarray,
                 e_network: np.ndarray, verdicts: dict[str, int]) -> dict[str, Any]:
    """System B's gate over the evaluated ticks.

    ``verdict`` and ``cert`` are per tick; ``e_prior`` and ``e_network`` the
    headline-horizon errors of the Kalman prior and of the network's own path
    (before the gate). ``verdicts`` maps names to codes (``pass``,
    ``fallback_implausible``, ``fallback_uncertified``).

    * ``pass_rate``: share of ticks whose verdict is pass;
    * ``cert_mean``, ``cert_max``: the certificate (output units) over passes;
    * ``fallbacks``: ticks per fallback verdict;
    * ``fallback_win_rate``: among fallbacks, the share where the prior's
      error is smaller than the network's (the fallback was right), with
      ``fallback_mse_prior`` and ``fallback_mse_network`` over the same
      ticks; None when the gate never fell back.
    """
    verdict = np.asarray(verdict)
    passed = verdict == verdicts["pass"]
    fell = (verdict == verdicts["fallback_implausible"]) | (
        verdict == verdicts["fallback_uncertified"])
    certs = np.asarray(cert, dtype=np.float64)[passed]
    out: dict[str, Any] = {
        "ticks": int(len(verdict)),
        "pass_rate": float(passed.mean()) if len(verdict) else float("nan"),
        "cert_mean": float(certs.mean()) if len(certs) else float("nan"),
        "cert_max": float(certs.max()) if len(certs) else float("nan"),
        "fallbacks": {name: int((verdict == verdicts[name]).sum())
                      for name in ("fallback_implausible", "fallback_uncertified")},
        "fallback_win_rate": None, "fallback_mse_prior": None, "fallback_mse_network": None,
    }
    if fell.any():
        ep, en = np.asarray(e_prior)[fell], np.asarray(e_network)[fell]
        out["fallback_win_rate"] = float(np.mean(ep < en))
        out["fallback_mse_prior"] = float(np.mean(ep * ep))
        out["fallback_mse_network"] = float(np.mean(en * en))
    return out
