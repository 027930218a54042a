"""A fitted linear predictor: the classical anchor a learned model must beat.

Ridge regression from the recent path to the displacement at every horizon,
fitted on the train split of the data set under test (``tmn-bench accuracy``
fits it, it is never shipped). Chromium's pointer predictor is of this kind (a
least-squares fit to the last few points). For a tick i of a piece, per axis:

    features  f_l = p_{i - n_l} - p_i   for the lags n_l of LAGS_MS (0.5 ms to 128 ms,
                                         in samples at the model rate, clamped at the
                                         piece's first sample),
              f_v = v_i * 1 s            (the measured velocity, as a displacement)
    target    p_{i + n_k} - p_i          for every horizon k
    predict   p_i + sum_j W[j, k] f_j

One weight matrix ``W`` [F, K] serves both axes (the samples of x and y are
stacked), so the predictor is translation invariant and treats the axes alike,
as the networks' inputs do. ``W`` minimises the squared error plus
``RIDGE * trace(X^T X) / F * ||W||^2`` on standardised features, over the train
ticks past warming whose horizons lie inside their piece (at most
``MAX_FIT_TICKS`` of them, evenly spread).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tmn_train.pipeline import Pieces

LAGS_MS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
RIDGE = 1e-6          # relative ridge weight (numerical only: the fit is well posed)
MAX_FIT_TICKS = 400_000


@dataclass(frozen=True)
class RidgePredictor:
    """The fitted weights and the lags (in samples) they apply to."""

    lags: tuple[int, ...]
    weights: np.ndarray  # [len(lags) + 1, K]

    def features(self, pieces: Pieces, idx: np.ndarray) -> np.ndarray:
        """[m, 2, F]: the module docstring's features of ticks ``idx``, per axis."""
        first = pieces.offsets[pieces.tick_piece[idx]]
        here = pieces.pos[idx]
        cols = [pieces.pos[np.maximum(idx - lag, first)] - here for lag in self.lags]
        cols.append(pieces.vel[idx])
        return np.stack(cols, axis=-1)

    def predict(self, pieces: Pieces, idx: np.ndarray) -> np.ndarray:
        """[m, K, 2] predicted positions at every horizon for ticks ``idx``."""
        d = np.einsum("maf,fk->mka", self.features(pieces, idx), self.weights)
        return pieces.pos[idx][:, None, :] + d


def fit(train: Pieces, rate_hz: float, window_ticks: int,
        horizon_ticks: list[int]) -> RidgePredictor:
    """Fit on the train pieces' ticks past ``window_ticks`` of warming (module docstring)."""
    lags = tuple(sorted({max(1, int(round(ms * rate_hz / 1000.0))) for ms in LAGS_MS}))
    nk = np.asarray(horizon_ticks)
    piece = train.tick_piece
    i = np.arange(len(train.t))
    ok = (i - train.offsets[piece] >= window_ticks) & (i + nk[-1] < train.offsets[piece + 1])
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        raise ValueError("ridge baseline: no train tick has a window of history and every "
                         "horizon inside its piece")
    idx = idx[np.linspace(0, len(idx) - 1, min(len(idx), MAX_FIT_TICKS)).astype(np.int64)]
    model = RidgePredictor(lags, np.zeros((len(lags) + 1, len(nk))))
    x = model.features(train, idx)                               # [m, 2, F]
    y = train.pos[idx[:, None] + nk] - train.pos[idx][:, None]   # [m, K, 2]
    x = x.reshape(-1, x.shape[-1])                               # both axes as samples
    y = y.transpose(0, 2, 1).reshape(-1, len(nk))
    s = x.std(axis=0)
    s[s == 0] = 1.0
    xs = x / s
    gram = xs.T @ xs
    reg = RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
    w = np.linalg.solve(gram + reg, xs.T @ y)
    return RidgePredictor(lags, w / s[:, None])
