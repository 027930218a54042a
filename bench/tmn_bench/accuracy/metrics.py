"""The accuracy benchmark's own metrics of predicted paths, per horizon (numpy only),
beside the held-out scoring that training shares (``tmn_train.scoring``: errors,
their distribution, jitter, the gate's pass rate).

Every function takes plain arrays, so each metric can be checked by hand on a
few numbers (tests/bench/test_accuracy_metrics.py). ``pred`` and ``truth`` are
``[m, K, 2]`` as in ``tmn_train.scoring``.

* **along-track / cross-track**: the error split along the true direction of
  motion at the target time and across it. ``tangent[i, k]`` is that
  direction (any length; :func:`tangents` computes it from the recording).
  ``along > 0`` means the prediction is ahead of the truth, ``< 0`` behind
  (lag). Ticks whose tangent is shorter than ``min_speed_fraction`` of the
  median tangent length are left out: at rest the direction is noise.
* **gate summary** (System B): the gate's rates, its fallbacks and whether the
  fallback was right where it fired.
"""

from __future__ import annotations

import numpy as np

import tmn
from tmn_bench.results import GateSummary, TrackSummary
from tmn_train.scoring import gate_rates

FALLBACKS = (int(tmn.Verdict.fallback_implausible), int(tmn.Verdict.fallback_uncertified))

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


def track_summary(along: np.ndarray, cross: np.ndarray) -> TrackSummary:
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
    return TrackSummary(**out)


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
                 e_network: np.ndarray, switches: int, jitter_without_switches: float
                 ) -> GateSummary:
    """System B's gate over the evaluated ticks.

    ``verdict`` and ``cert`` are per tick; ``e_prior`` and ``e_network`` the
    headline-horizon errors of the Kalman prior and of the network's own path
    (before the gate); ``switches`` and ``jitter_without_switches`` are
    computed by the caller (:func:`gate_switches`).

    * ``pass_rate``, ``cert_mean``, ``cert_max``: ``tmn_train.scoring.gate_rates``;
    * ``fallbacks``: ticks per fallback verdict, by name;
    * ``fallback_win_rate``: among fallbacks, the share where the prior's
      error is smaller than the network's (the fallback was right), with
      ``fallback_mse_prior`` and ``fallback_mse_network`` over the same
      ticks; None when the gate never fell back.
    """
    verdict = np.asarray(verdict)
    fell = np.isin(verdict, FALLBACKS)
    win = mse_prior = mse_net = None
    if fell.any():
        ep, en = np.asarray(e_prior)[fell], np.asarray(e_network)[fell]
        win = float(np.mean(ep < en))
        mse_prior, mse_net = float(np.mean(ep * ep)), float(np.mean(en * en))
    return GateSummary(
        ticks=int(len(verdict)), **gate_rates(verdict, cert),
        fallbacks={tmn.VERDICT_NAMES[v]: int((verdict == v).sum()) for v in FALLBACKS},
        fallback_win_rate=win, fallback_mse_prior=mse_prior, fallback_mse_network=mse_net,
        switches=switches, jitter_without_switches=jitter_without_switches)
