"""Statistics of one predictor against another on the same ticks (scipy.stats).

``base`` and ``new`` are per-tick errors (data units) of two predictors over
the same evaluated ticks, in the same order; ratios are ``new / base``, so a
ratio below 1 means the new predictor is better. :func:`compare` gives:

* per tick: a paired t-test and a Wilcoxon signed-rank test of the errors, and
  a Mann-Whitney U test (unpaired) of the two error samples;
* per block: the same paired t-test and Wilcoxon test on per-block MSEs, and
  the one-sided paired t-test that the new predictor's block MSE is lower.
  Consecutive ticks are strongly autocorrelated (a 2 kHz stream predicts
  almost the same path twice in a row), so per-tick p-values overstate the
  evidence; blocks of ``block_s`` seconds of one stream are closer to
  independent, and the verdicts use the block tests;
* effect sizes: Cohen's d (pooled standard deviation), Cohen's d_z (of the
  paired differences) and Cliff's delta ``P(new > base) - P(new < base)``;
* the P99 error ratio and the MSE ratio, each with a 95 % percentile bootstrap
  interval that resamples whole blocks (or whole streams) with replacement.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tmn_bench.results import Bootstrap, Comparison, PerBlockTests, PerTickTests


def cohens_d(x: np.ndarray, y: np.ndarray) -> float:
    """``(mean(x) - mean(y)) / s_pooled`` with the pooled sample standard deviation."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    nx, ny = len(x), len(y)
    pooled = ((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2)
    return float((x.mean() - y.mean()) / np.sqrt(pooled)) if pooled > 0 else float("nan")


def cohens_dz(x: np.ndarray, y: np.ndarray) -> float:
    """Paired effect size: ``mean(x - y) / sd(x - y)``."""
    d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    sd = d.std(ddof=1)
    return float(d.mean() / sd) if sd > 0 else float("nan")


def cliffs_delta(x: np.ndarray, y: np.ndarray) -> float:
    """``P(X > Y) - P(X < Y)`` over all pairs, from the Mann-Whitney U of x:
    ``2 U / (n_x n_y) - 1`` (ties count half, so they cancel)."""
    from scipy import stats

    u = stats.mannwhitneyu(x, y, alternative="two-sided").statistic
    return float(2.0 * u / (len(x) * len(y)) - 1.0)


def blocks(idx: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    """Block id of each evaluated flat tick index: its piece (``offsets`` as in
    SplitArrays) and ``size``-tick stretch inside the piece, renumbered 0..B-1."""
    idx = np.asarray(idx)
    piece = np.searchsorted(offsets, idx, side="right") - 1
    raw = piece.astype(np.int64) * (2**40) + (idx - offsets[piece]) // max(int(size), 1)
    return np.unique(raw, return_inverse=True)[1].ravel()


def block_bootstrap(base: np.ndarray, new: np.ndarray, block: np.ndarray,
                    statistics: dict[str, Callable[[np.ndarray, np.ndarray], float]],
                    resamples: int = 1000, seed: int = 0,
                    progress: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """95 % percentile intervals of each statistic ``f(base, new)``, resampling
    whole blocks with replacement (the same blocks for every statistic)."""
    order = np.argsort(block, kind="stable")
    b = np.asarray(block)[order]
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    lens = np.diff(np.r_[starts, len(b)])
    base, new = np.asarray(base)[order], np.asarray(new)[order]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in statistics}
    nb = len(starts)
    for r in range(resamples):
        pick = rng.integers(0, nb, nb)
        ln = lens[pick]
        # flat indices of the picked blocks, block after block
        idx = np.repeat(starts[pick] - np.r_[0, np.cumsum(ln)[:-1]], ln) + np.arange(ln.sum())
        for k, f in statistics.items():
            draws[k].append(f(base[idx], new[idx]))
        if progress is not None:
            progress(r)
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
            for k, v in draws.items()}


def p99_ratio(base: np.ndarray, new: np.ndarray) -> float:
    """``P99(new) / P99(base)``."""
    return float(np.percentile(new, 99) / np.percentile(base, 99))


def mse_ratio(base: np.ndarray, new: np.ndarray) -> float:
    """``mean(new^2) / mean(base^2)``."""
    return float(np.mean(np.square(new)) / np.mean(np.square(base)))


def compare(base: np.ndarray, new: np.ndarray, block: np.ndarray, resamples: int = 1000,
            seed: int = 0, unit: str = "block",
            progress: Callable[[int], None] | None = None) -> Comparison:
    """Everything of the module docstring for one pair of error vectors; ``block``
    holds ids 0..B-1 of the resampling unit (``unit``: "block" or "stream"). The
    caller names the pair (``Comparison.new``, ``.base``)."""
    from scipy import stats

    base, new = np.asarray(base, np.float64), np.asarray(new, np.float64)
    if base.shape != new.shape or base.ndim != 1 or len(base) < 2:
        raise ValueError(f"need two equal 1-D error vectors, got {base.shape} and {new.shape}")
    block = np.asarray(block)
    nb = int(block.max()) + 1
    cnt = np.bincount(block, minlength=nb)
    mb = np.bincount(block, base**2, nb) / cnt
    mn = np.bincount(block, new**2, nb) / cnt
    per_block = PerBlockTests(None, None, None, None)
    if nb >= 3 and np.any(mn != mb):
        per_block = PerBlockTests(
            float(stats.ttest_rel(mn, mb).pvalue),
            float(stats.ttest_rel(mn, mb, alternative="less").pvalue),
            float(stats.wilcoxon(mn, mb).pvalue), cohens_dz(mn, mb))
    ci = block_bootstrap(base, new, block, {"p99_ratio": p99_ratio, "mse_ratio": mse_ratio},
                         resamples, seed, progress) if nb >= 2 and resamples > 0 else {}
    return Comparison(
        ticks=int(len(base)), blocks=nb,
        mse_base=float(np.mean(base**2)), mse_new=float(np.mean(new**2)),
        p99_base=float(np.percentile(base, 99)), p99_new=float(np.percentile(new, 99)),
        p99_ratio=p99_ratio(base, new), mse_ratio=mse_ratio(base, new),
        per_tick=PerTickTests(
            float(stats.ttest_rel(new, base).pvalue), float(stats.wilcoxon(new, base).pvalue),
            float(stats.mannwhitneyu(new, base, alternative="two-sided").pvalue)),
        cohens_d=cohens_d(new, base), cohens_dz=cohens_dz(new, base),
        cliffs_delta=cliffs_delta(new, base), per_block=per_block,
        p99_ratio_ci95=ci.get("p99_ratio"), mse_ratio_ci95=ci.get("mse_ratio"),
        bootstrap=Bootstrap(resamples if ci else 0, unit, seed))
