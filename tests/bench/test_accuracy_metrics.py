"""tmn_bench.accuracy.metrics (and the report's curves) against values computed
by hand on a few numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tmn
from tmn_bench.accuracy import metrics

PASS, IMPLAUSIBLE, UNCERTIFIED = (int(v) for v in (
    tmn.Verdict.pass_, tmn.Verdict.fallback_implausible, tmn.Verdict.fallback_uncertified))


def test_along_and_cross_track_signs_and_the_resting_cut() -> None:
    truth = np.zeros((4, 1, 2))
    pred = np.array([[[2.0, 1.0]], [[-1.0, -3.0]], [[5.0, 5.0]], [[1.0, 0.0]]])
    # moving +x, +x, standing still, moving +y but too slowly (0.01 < 5 % of median 1)
    tangent = np.array([[[1.0, 0.0]], [[2.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.01]]])
    along, cross = metrics.track_errors(pred, truth, tangent)
    np.testing.assert_array_equal(along[:2, 0], [2.0, -1.0])  # ahead, behind
    np.testing.assert_array_equal(cross[:2, 0], [1.0, -3.0])  # left of +x is +y
    assert np.isnan(along[2:]).all() and np.isnan(cross[2:]).all()
    s = metrics.track_summary(along, cross)
    assert s.track_ticks == [2.0]
    assert s.along_mean == [0.5]
    assert s.along_rms == [math.sqrt(2.5)]
    assert s.cross_rms == [math.sqrt(5.0)]
    assert s.along_p99[0] == pytest.approx(1.99)  # of |along| = 1, 2
    assert s.cross_p99[0] == pytest.approx(2.98)  # of |cross| = 1, 3


def test_a_tangent_turned_by_90_degrees_swaps_along_and_cross() -> None:
    truth = np.zeros((1, 1, 2))
    pred = np.array([[[2.0, 1.0]]])
    along, cross = metrics.track_errors(pred, truth, np.array([[[0.0, 3.0]]]))
    assert (along[0, 0], cross[0, 0]) == (1.0, -2.0)  # +y: ahead by 1, right by 2


def test_tangents_are_central_differences_clipped_to_the_piece() -> None:
    pos = np.stack([np.arange(10.0) ** 2, np.zeros(10)], axis=1)
    offsets = np.array([0, 5, 10])
    got = metrics.tangents(pos, offsets, np.array([2, 4, 5, 7]), half_width=2)
    # 2: pos[4]-pos[0] = 16; 4: pos[4]-pos[2] = 12; 5: pos[7]-pos[5] = 24; 7: pos[9]-pos[5] = 56
    np.testing.assert_array_equal(got[:, 0], [16.0, 12.0, 24.0, 56.0])


def test_gate_summary_pass_rate_certificates_and_fallback_wins() -> None:
    verdict = np.array([PASS, PASS, IMPLAUSIBLE, UNCERTIFIED])
    cert = np.array([0.01, 0.03, np.nan, np.nan], dtype=np.float32)
    e_prior = np.array([9.0, 9.0, 1.0, 5.0])
    e_net = np.array([0.0, 0.0, 2.0, 4.0])
    g = metrics.gate_summary(verdict, cert, e_prior, e_net, 2, 0.5)
    assert g.ticks == 4 and g.pass_rate == 0.5
    assert g.cert_mean == pytest.approx(0.02) and g.cert_max == pytest.approx(0.03)
    assert g.fallbacks == {"fallback_implausible": 1, "fallback_uncertified": 1}
    assert g.fallback_win_rate == 0.5  # 1 < 2 won, 5 < 4 lost
    assert g.fallback_mse_prior == 13.0 and g.fallback_mse_network == 10.0
    assert (g.switches, g.jitter_without_switches) == (2, 0.5)


def test_gate_summary_without_fallbacks_has_no_win_rate() -> None:
    g = metrics.gate_summary(np.zeros(3, int), np.full(3, 0.01), np.ones(3), np.ones(3), 0, 0.0)
    assert g.pass_rate == 1.0 and g.fallback_win_rate is None
    assert g.fallbacks == {"fallback_implausible": 0, "fallback_uncertified": 0}


def test_plot_curves_keep_the_extremes_and_the_shape() -> None:
    from tmn_bench.accuracy.report import cdf_points, exceedance_points

    v = np.arange(1.0, 10_001.0)[::-1]  # 1..10000, unsorted
    x, f = cdf_points(v, points=101)
    assert len(x) == 101 and (x[0], f[0]) == (1.0, 1e-4) and (x[-1], f[-1]) == (10_000.0, 1.0)
    np.testing.assert_allclose(f, x / 10_000)  # F(x) = x / n for 1..n
    x, s = exceedance_points(v, points=50)
    assert (x[0], s[0]) == (10_000.0, 1e-4) and (x[-1], s[-1]) == (1.0, 1.0)
    np.testing.assert_allclose(s, (10_001 - x) / 10_000)  # share >= x
    assert np.all(np.diff(s) > 0)


def test_gate_switches_count_verdict_changes_between_consecutive_ticks() -> None:
    verdict = np.array([0, 0, 1, 1, 0, 1, 0])
    idx = np.array([3, 4, 5, 6, 7, 9, 10])      # 7 -> 9 is not consecutive
    piece = np.array([0, 0, 0, 0, 0, 0, 1])     # 9 -> 10 crosses pieces
    np.testing.assert_array_equal(metrics.gate_switches(verdict, idx, piece),
                                  [False, False, True, False, True, False, False])
