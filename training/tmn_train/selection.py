"""Active selection: which training windows each pass draws (docs/active-selection.md).

Every ``refresh_every`` epochs (after ``warmup_epochs`` uniform ones) the
:class:`Selector`

1. streams the model over every training window, no gradient, in the lanes of
   a uniform pass, and keeps each window's **error** (the MSE term of the loss,
   output units) and the GRU's hidden state at its end;
2. embeds every window (``embedding``: :func:`motion_features`, fixed, so its
   graph is built once; or ``hidden``, the hidden states, rebuilt each time) and
   links each to its ``k`` nearest neighbours (:func:`knn_csr`, symmetrised);
3. scores the windows with a personalised PageRank whose restart is
   proportional to their errors, by the C++ forward push
   (``tmn._core.PushGraph``, certified to ``eps`` in L1);
4. mixes the scores with a uniform ``floor``: ``w = (1 - floor) pi + floor / N``.

Each pass then draws **runs** of ``run_windows`` consecutive windows of one
piece, with replacement and in proportion to the summed ``w`` of their
windows, until it holds as many windows as a uniform pass (so both make the
same number of optimiser steps), and hands them to :func:`tmn_train.pipeline.lanes`
as its chains. Within a run the hidden state carries from window to window;
where a lane moves to another run, ``lanes`` resets it and that window is
burn-in, as at any jump. The time it all takes is kept apart from training
(``seconds``) and logged at every refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from tmn import _core
from tmn_train.config import ActiveSelection, Config
from tmn_train.models import MicroGru
from tmn_train.pipeline import SplitArrays, lanes, targets

# motion_features: the window is cut into this many segments, whose mean
# velocities (noise averaged over W / SEGMENTS ticks) give speed, acceleration
# and turning; features that are heavy-tailed are log-compressed.
SEGMENTS = 8
MOTION_FEATURES = ("log mean speed", "log end speed", "speed variation", "log mean acceleration",
                   "log max acceleration", "end tangential acceleration", "log turning rate",
                   "straightness")


def _log_ratio(x: np.ndarray) -> np.ndarray:
    """``log1p(x / median(x))`` (x >= 0): scale-free and tail-compressed."""
    med = float(np.median(x))
    return np.log1p(x / med) if med > 0 else np.log1p(x)


def _standardise(f: np.ndarray) -> np.ndarray:
    sd = f.std(axis=0)
    return (f - f.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def motion_features(a: SplitArrays, starts: np.ndarray, cfg: Config) -> np.ndarray:
    """[N, len(MOTION_FEATURES)] standardised, translation- and rotation-invariant
    motion features of the windows that start at the flat tick indices ``starts``
    (measured velocity and position over the window only: nothing from its future)."""
    w = cfg.ticks(cfg.window_ms)
    seg = max(w // SEGMENTS, 1)
    n_seg = w // seg
    dt = seg / cfg.sample_rate_hz
    idx = starts[:, None] + np.arange(n_seg * seg)
    v = a.vel[idx].reshape(len(starts), n_seg, seg, 2).mean(axis=2)       # [N, S, 2]
    speed = np.linalg.norm(v, axis=-1)                                      # [N, S]
    acc = np.linalg.norm(np.diff(v, axis=1), axis=-1) / dt                  # [N, S - 1]
    cross = v[:, :-1, 0] * v[:, 1:, 1] - v[:, :-1, 1] * v[:, 1:, 0]
    dot = np.sum(v[:, :-1] * v[:, 1:], axis=-1)
    turn = np.abs(np.arctan2(cross, dot)) / dt                              # rad/s
    step = np.linalg.norm(np.diff(a.pos[idx], axis=1), axis=-1).sum(axis=1)
    chord = np.linalg.norm(a.pos[idx[:, -1]] - a.pos[idx[:, 0]], axis=-1)
    tangential = (speed[:, -1] - speed[:, -2]) / dt if n_seg > 1 else np.zeros(len(starts))
    t_scale = float(np.median(np.abs(tangential))) or 1.0
    f = np.stack([
        _log_ratio(speed.mean(axis=1)),
        _log_ratio(speed[:, -1]),
        speed.std(axis=1) / np.maximum(speed.mean(axis=1), 1e-12),
        _log_ratio(acc.mean(axis=1)) if n_seg > 1 else np.zeros(len(starts)),
        _log_ratio(acc.max(axis=1)) if n_seg > 1 else np.zeros(len(starts)),
        np.sign(tangential) * np.log1p(np.abs(tangential) / t_scale),
        _log_ratio((turn * speed[:, 1:]).sum(axis=1) / np.maximum(speed[:, 1:].sum(axis=1), 1e-12))
        if n_seg > 1 else np.zeros(len(starts)),
        chord / np.maximum(step, 1e-12),
    ], axis=1)
    return _standardise(f)


def knn_csr(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, indices) of the symmetrised kNN graph of the rows of ``x``: u
    and v are linked (weight 1, both ways) when either is among the other's ``k``
    nearest (Euclidean); no self loops. scikit-learn's exact search
    (docs/active-selection.md says why not an approximate one)."""
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    k = min(k, n - 1)
    if k < 1:  # a single window: no edge, its walk restarts on itself
        return np.zeros(n + 1, np.int64), np.zeros(0, np.int64)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    own = idx == np.arange(n)[:, None]
    own[~own.any(axis=1), -1] = True          # duplicates can push a point off its own list
    nbr = idx[~own].reshape(n, k)
    rows = np.repeat(np.arange(n), k)
    keys = np.unique(np.concatenate([rows * n + nbr.ravel(), nbr.ravel() * n + rows]))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(keys // n, minlength=n))])
    return indptr.astype(np.int64), (keys % n).astype(np.int64)


def pagerank_weights(graph: _core.PushGraph, error: np.ndarray, sel: ActiveSelection
                     ) -> tuple[np.ndarray, dict]:
    """``(1 - floor) pi + floor / N`` with pi the personalised PageRank of the windows,
    restarting in proportion to ``error`` (uniformly if every error is zero)."""
    n = len(error)
    restart = error if float(error.sum()) > 0 else np.ones(n)
    r = graph.pagerank(np.arange(n, dtype=np.int64), restart, sel.damping, sel.eps, sel.budget)
    pi = np.zeros(n)
    pi[r["nodes"]] = r["estimate"]
    pi /= pi.sum()
    return (1.0 - sel.floor) * pi + sel.floor / n, r


def runs(chains: list[np.ndarray], run_windows: int) -> list[np.ndarray]:
    """Every chain cut into consecutive runs of ``run_windows`` windows (the last
    run of a chain may be shorter), as positions in the concatenated chains."""
    out, at = [], 0
    for c in chains:
        out += [np.arange(at + i, at + min(i + run_windows, len(c)))
                for i in range(0, len(c), run_windows)]
        at += len(c)
    return out


def draw_runs(run_list: list[np.ndarray], weights: np.ndarray, total: int,
              rng: np.random.Generator) -> list[np.ndarray]:
    """Runs drawn with replacement, each with probability proportional to the sum
    of its windows' ``weights``, until they hold ``total`` windows (the last one
    cut short)."""
    p = np.array([weights[r].sum() for r in run_list])
    lengths = np.array([len(r) for r in run_list])
    picked = rng.choice(len(run_list), size=int(np.ceil(total / lengths.min())) + 1, p=p / p.sum())
    count = np.searchsorted(np.cumsum(lengths[picked]), total) + 1
    out = [run_list[i] for i in picked[:count]]
    out[-1] = out[-1][:len(out[-1]) - (int(lengths[picked[:count]].sum()) - total)]
    return out


@torch.no_grad()
def window_errors(model: MicroGru, a: SplitArrays, starts: np.ndarray, chains: list[np.ndarray],
                  cfg: Config, scale: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(error [N], hidden state at the window's end [N, H]) of every window in
    ``starts`` (sorted), streamed in the lanes of one uniform pass. A window
    where its lane restarts runs from a zero state; it takes the error of the
    next window of its chain (which carries on from it) when there is one."""
    w = cfg.ticks(cfg.window_ms)
    start, reset, valid = lanes(chains, cfg.batch, w, rng)
    err = np.zeros(len(starts))
    hidden = np.zeros((len(starts), cfg.micro_gru.hidden), np.float32)
    cold = np.zeros(len(starts), bool)
    h = torch.zeros(1, start.shape[0], cfg.micro_gru.hidden)
    for j in range(start.shape[1]):
        h = h * torch.from_numpy(~reset[:, j]).to(h.dtype)[None, :, None]
        idx = start[:, j, None] + np.arange(w)
        y, h = model(torch.from_numpy(a.z[idx]), h)
        tgt = targets(a, idx, cfg, scale)
        e = ((y.numpy().reshape(tgt.shape) - tgt) ** 2).mean(axis=(1, 2, 3))
        v = valid[:, j]
        at = np.searchsorted(starts, start[v, j])
        err[at], hidden[at], cold[at] = e[v], h[0].numpy()[v], reset[v, j]
    nxt = np.minimum(np.arange(len(starts)) + 1, len(starts) - 1)
    follows = (starts[nxt] == starts + w) & ~cold[nxt]
    err[cold & follows] = err[nxt][cold & follows]
    return err, hidden


class Selector:
    """The sampler of the streaming-lane trainer (module docstring): refresh it at
    the start of every epoch, then pass it to :func:`tmn_train.pipeline.lanes`."""

    def __init__(self, cfg: Config, a: SplitArrays, chains: list[np.ndarray],
                 scale: np.ndarray, seed: int, log: Callable[[str], None] = print) -> None:
        assert cfg.active_selection is not None
        self.cfg, self.sel, self.a, self.scale, self.seed, self.log = (
            cfg, cfg.active_selection, a, scale, seed, log)
        self.chains = [c for c in chains if len(c)]
        self.starts = np.concatenate(self.chains)
        self.runs = runs(self.chains, self.sel.run_windows)
        self.graph: _core.PushGraph | None = None
        self.weights: np.ndarray | None = None  # None: draw uniformly (warm-up)
        self.seconds = 0.0                       # all selection time so far

    def due(self, epoch: int) -> bool:
        """Whether ``epoch`` (1-based) refreshes: after the warm-up, every
        ``refresh_every`` epochs, and at once when a resumed run has no scores yet."""
        past = epoch - self.sel.warmup_epochs - 1
        return past >= 0 and (self.weights is None or past % self.sel.refresh_every == 0)

    def refresh(self, epoch: int, model: MicroGru) -> None:
        """Recompute the errors, the graph (if its embedding moves) and the weights
        when :meth:`due` (the time goes to ``seconds``)."""
        if not self.due(epoch):
            return
        t = [time.perf_counter()]
        err, hidden = window_errors(model, self.a, self.starts, self.chains, self.cfg,
                                    self.scale, np.random.default_rng((self.seed, epoch)))
        t.append(time.perf_counter())
        if self.graph is None or self.sel.embedding == "hidden":
            emb = (hidden.astype(np.float64) if self.sel.embedding == "hidden"
                   else motion_features(self.a, self.starts, self.cfg))
            self.graph = _core.PushGraph(*knn_csr(emb, self.sel.k))
        t.append(time.perf_counter())
        self.weights, r = pagerank_weights(self.graph, err, self.sel)
        t.append(time.perf_counter())
        self.seconds += t[-1] - t[0]
        top = np.sort(self.weights)[::-1][:max(len(err) // 10, 1)].sum()
        self.log(f"selection epoch {epoch}: {len(err)} windows, errors {t[1] - t[0]:.2f}s, "
                 f"graph {t[2] - t[1]:.2f}s, pagerank {t[3] - t[2]:.3f}s (work {r['work']}, "
                 f"L1 bound {r['error_bound']:.3g}{'' if r['certified'] else ' UNCERTIFIED'}); "
                 f"top 10% of windows hold {top:.2f} of the draws")

    def __call__(self, chains: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """The chains of one pass: the trainer's own during the warm-up, else
        drawn runs of as many windows in all (module docstring)."""
        if self.weights is None:
            return chains
        t0 = time.perf_counter()
        picked = draw_runs(self.runs, self.weights, len(self.starts), rng)
        out = [self.starts[r] for r in picked]
        self.seconds += time.perf_counter() - t0
        return out


def epoch_plans(selector: Selector | None, chains: list[np.ndarray], cfg: Config,
                rng: np.random.Generator, epoch: int, model: MicroGru
                ) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], float]:
    """The lanes of the ``data.passes`` passes of one epoch (uniform without a
    selector), and the seconds the selection took for them."""
    before = selector.seconds if selector is not None else 0.0
    if selector is not None:
        selector.refresh(epoch, model)
    w = cfg.ticks(cfg.window_ms)
    plans = [lanes(chains, cfg.batch, w, rng, selector) for _ in range(cfg.data.passes)]
    return plans, (selector.seconds - before if selector is not None else 0.0)


def selector_for(cfg: Config, a: SplitArrays, chains: list[np.ndarray], scale: np.ndarray,
                 seed: int, log: Callable[[str], None] = print) -> Selector | None:
    """The :class:`Selector` of a run, or None when active selection is off."""
    if cfg.active_selection is None or not cfg.active_selection.enabled:
        return None
    return Selector(cfg, a, chains, scale, seed, log)
