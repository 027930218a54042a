"""Held-out scoring through the C++ engine: the one path that training's own
evaluation (``tmn_train.evaluation``) and ``tmn-bench accuracy`` both use.

Every number comes from ``tmn.Engine.replay`` (DESIGN.md: "The reported
accuracy comes from the C++ engine replaying held-out streams, not from
PyTorch's evaluation"). Each piece is replayed as its own engine stream, so
the engine's warming and restart rules apply as they would live. Every
function takes plain arrays, so each metric can be checked by hand on a few
numbers (tests/training/test_scoring.py). Conventions:

* the **evaluated ticks** are those where every replay made a prediction and
  is past warming, and every horizon lies inside the piece;
* ``pred`` and ``truth`` are ``[m, K, 2]``: at the m evaluated ticks, the
  predicted point and the measured position at each of the K horizons, in
  data units. ``truth[i, k]`` is the recording's position ``h_k`` after tick i;
* **error**: the Euclidean distance ``|pred - truth|``, ``[m, K]``;
* **jitter**: the tick-to-tick change of the predicted point beyond the true
  motion, RMS over consecutive evaluated ticks of one piece,
  ``|(P_i - P_{i-1}) - (T_i - T_{i-1})|``;
* **constant velocity**: ``p_i + v_i h_k`` from the measured tick (no engine
  maths: what a caller without tmn would do).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

import tmn
from tmn.engine import NO_PREDICTION
from tmn_train.pipeline import Pieces

PASS = int(tmn.Verdict.pass_)
WARMING = int(tmn.Verdict.warming)


def engine_for(model: tmn.Model, pieces: Pieces, precision: str) -> tmn.Engine:
    """An engine with a stream for every piece."""
    return tmn.Engine(model, precision=precision, max_streams=max(pieces.pieces, 1))


def replay(model: tmn.Model, pieces: Pieces, precision: str = "fp32",
           candidates: bool = False) -> tmn.Replay:
    """Replay every piece through the C++ engine, one stream per piece
    (``candidates``: also every tick's prior and network path)."""
    p = pieces
    return engine_for(model, p, precision).replay(
        p.t, p.pos[:, 0], p.pos[:, 1], p.vel[:, 0], p.vel[:, 1],
        p.tick_piece.astype(np.uint64), candidates=candidates)


@dataclass(frozen=True)
class Evaluated:
    """The evaluated ticks of some replays of the same pieces."""

    idx: np.ndarray    # [m] flat tick indices
    piece: np.ndarray  # [m] the piece of each
    truth: np.ndarray  # [m, K, 2] the measured position at each horizon


def evaluated_ticks(pieces: Pieces, horizon_ticks: list[int],
                    replays: Iterable[tmn.Replay]) -> Evaluated:
    """The ticks every replay answered past warming, with every horizon
    (``horizon_ticks``, in samples) inside the piece (module docstring)."""
    nk = np.asarray(horizon_ticks)
    piece = pieces.tick_piece
    ok = np.arange(len(pieces.t)) + nk[-1] < pieces.offsets[piece + 1]
    for r in replays:
        ok &= (r.verdict != WARMING) & (r.verdict != NO_PREDICTION)
    idx = np.flatnonzero(ok)
    return Evaluated(idx, piece[idx], pieces.pos[idx[:, None] + nk[None, :]])


def errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``[m, K]`` Euclidean errors of ``pred`` against ``truth`` (both ``[m, K, 2]``)."""
    return np.linalg.norm(np.asarray(pred) - np.asarray(truth), axis=-1)


def distribution(e: np.ndarray) -> dict[str, list[float]]:
    """Per horizon (columns of ``e``, ``[m, K]``): ``mse`` (mean squared error),
    ``rmse``, the error percentiles of :data:`tmn.PERCENTILES` and ``max``."""
    e = np.asarray(e, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] == 0:
        raise ValueError(f"need a non-empty [m, K] error array, got shape {e.shape}")
    mse = np.mean(e * e, axis=0)
    return {"mse": mse.tolist(), "rmse": np.sqrt(mse).tolist(), **tmn.percentiles(e, axis=0)}


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


def path_metrics(pred: np.ndarray, ev: Evaluated) -> dict[str, list[float]]:
    """:func:`distribution` of the errors of ``pred`` (``[m, K, 2]``, at the
    evaluated ticks) and its ``jitter``, per horizon."""
    return {**distribution(errors(pred, ev.truth)),
            "jitter": jitter(pred, ev.truth, ev.idx, ev.piece)}


def constant_velocity(pieces: Pieces, ev: Evaluated, horizons_ms: list[float]) -> np.ndarray:
    """``[m, K, 2]`` the constant-velocity baseline at the evaluated ticks."""
    h = np.asarray(horizons_ms) / 1000.0
    return pieces.pos[ev.idx, None, :] + pieces.vel[ev.idx, None, :] * h[None, :, None]


def coverage(radius: np.ndarray, e: np.ndarray) -> list[float]:
    """Per horizon, the share of errors ``e`` ``[m, K]`` within ``radius`` ``[m, K]``
    (the uncertainty radius, tmn_train.uncertainty; a NaN radius covers nothing)."""
    return np.mean(np.asarray(e) <= np.asarray(radius), axis=0).tolist()


def gate_rates(verdict: np.ndarray, cert: np.ndarray) -> dict[str, float]:
    """System B's gate over some ticks: ``pass_rate`` (share of pass verdicts)
    and ``cert_mean``, ``cert_max`` (the certificate over passes, output units;
    NaN without a pass)."""
    verdict = np.asarray(verdict)
    passed = verdict == PASS
    certs = np.asarray(cert, dtype=np.float64)[passed]
    return {"pass_rate": float(passed.mean()) if len(verdict) else float("nan"),
            "cert_mean": float(certs.mean()) if len(certs) else float("nan"),
            "cert_max": float(certs.max()) if len(certs) else float("nan")}


def mse_ratio(new: dict[str, list[float]], base: dict[str, list[float]]) -> dict[str, float]:
    """``new`` / ``base`` MSE (two :func:`distribution` results): at the headline
    (farthest) horizon and averaged over horizons; NaN where ``base`` is 0."""
    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    return {"headline": ratio(new["mse"][-1], base["mse"][-1]),
            "all_horizons": ratio(float(np.mean(new["mse"])), float(np.mean(base["mse"])))}
