"""tmn_bench.accuracy.stats against scipy.stats and hand-computed values on known cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from tmn_bench.accuracy import stats


def test_cohens_d_with_the_pooled_standard_deviation() -> None:
    assert stats.cohens_d(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])) == -3.0
    # unequal sizes: s_pooled^2 = (2 * 1 + 1 * 2) / 3
    x, y = np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0])
    assert stats.cohens_d(x, y) == pytest.approx(1.0 / math.sqrt(4.0 / 3.0))


def test_cohens_dz_of_the_paired_differences() -> None:
    # d = 1, 2, 4: mean 7/3, sd sqrt(7/3)
    dz = stats.cohens_dz(np.array([1.0, 2.0, 4.0]), np.zeros(3))
    assert dz == pytest.approx((7.0 / 3.0) / math.sqrt(7.0 / 3.0))


def test_cliffs_delta_equals_counting_every_pair() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 40).astype(float)  # ties on purpose
    y = rng.integers(1, 7, 30).astype(float)
    gt = sum(a > b for a, b in itertools.product(x, y))
    lt = sum(a < b for a, b in itertools.product(x, y))
    assert stats.cliffs_delta(x, y) == pytest.approx((gt - lt) / (len(x) * len(y)))
    assert stats.cliffs_delta(np.array([5.0, 6.0]), np.array([1.0, 2.0])) == 1.0


def test_blocks_number_stretches_within_each_piece() -> None:
    idx = np.array([0, 1, 2, 3, 10, 11, 14])
    got = stats.blocks(idx, np.array([0, 10, 20]), size=2)
    np.testing.assert_array_equal(got, [0, 0, 1, 1, 2, 2, 3])


def test_compare_matches_scipy_on_ticks_and_on_block_means() -> None:
    rng = np.random.default_rng(1)
    base = np.abs(rng.normal(10, 3, 600))
    new = base * 0.8 + np.abs(rng.normal(0, 1, 600))
    block = np.repeat(np.arange(30), 20)
    c = stats.compare(base, new, block, resamples=200, seed=3)
    assert c.per_tick.t_test_p == sps.ttest_rel(new, base).pvalue
    assert c.per_tick.wilcoxon_p == sps.wilcoxon(new, base).pvalue
    assert c.per_tick.mann_whitney_p == sps.mannwhitneyu(new, base).pvalue
    mb = (base**2).reshape(30, 20).mean(axis=1)
    mn = (new**2).reshape(30, 20).mean(axis=1)
    assert c.per_block.t_test_p == pytest.approx(sps.ttest_rel(mn, mb).pvalue, rel=1e-9)
    assert c.per_block.wilcoxon_p == pytest.approx(sps.wilcoxon(mn, mb).pvalue, rel=1e-9)
    # one-sided: new lower; it halves the two-sided p when the mean difference is negative
    assert c.per_block.t_test_p_new_lower == pytest.approx(c.per_block.t_test_p / 2)
    assert c.blocks == 30 and c.ticks == 600
    assert c.p99_ratio == np.percentile(new, 99) / np.percentile(base, 99)
    assert c.mse_ratio == pytest.approx(np.mean(new**2) / np.mean(base**2))
    lo, hi = c.mse_ratio_ci95
    assert lo < c.mse_ratio < hi and hi - lo < 0.2
    assert c.cohens_d < 0 and c.cliffs_delta < 0  # new is smaller


def test_bootstrap_interval_of_an_exact_scaling_is_a_point() -> None:
    rng = np.random.default_rng(2)
    base = np.abs(rng.normal(5, 2, 500))
    c = stats.compare(base, 0.5 * base, np.repeat(np.arange(25), 20), resamples=100)
    assert c.p99_ratio == pytest.approx(0.5)
    assert c.p99_ratio_ci95 == pytest.approx([0.5, 0.5])
    assert c.mse_ratio_ci95 == pytest.approx([0.25, 0.25])


def test_block_bootstrap_resamples_whole_blocks() -> None:
    block = np.array([2, 2, 0, 1, 1, 1, 0, 2])  # blocks need not be contiguous
    where = np.arange(8.0)
    sizes = {b: int((block == b).sum()) for b in range(3)}
    seen = []

    def check(b: np.ndarray, pos: np.ndarray) -> float:
        ids, counts = np.unique(b, return_counts=True)
        for i, n in zip(ids, counts):
            assert n % sizes[int(i)] == 0  # only whole blocks, possibly repeated
            members = sorted(set(pos[b == i]))
            assert members == sorted(where[block == i])  # every tick of the block
        seen.append(len(b))
        return 0.0

    ci = stats.block_bootstrap(block.astype(float), where, block, {"x": check}, resamples=50)
    assert ci == {"x": [0.0, 0.0]} and len(seen) == 50


def test_compare_refuses_unpaired_input() -> None:
    with pytest.raises(ValueError, match="equal"):
        stats.compare(np.ones(5), np.ones(4), np.zeros(5, int))
