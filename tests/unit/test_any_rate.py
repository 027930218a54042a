"""Real sensors: position-only ticks and any report rate (cpp/include/tmn/ingest.hpp).

The model runs on its own grid. Ticks at any rate, with or without velocity,
are interpolated onto it exactly as training resamples a recording
(``tmn._core.resample``), so a replay of the sensor's own ticks answers, at
every tick, what a replay of the resampled grid answers at the newest grid
sample that tick reached.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tmn
from tmn import _core
from tmn.testing import random_model
from tmn_train.data import to_streams

RATE = 2000.0


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rate")
    norm = {"mean": [0.0] * 8, "std": [300.0, 300.0, 250.0, 250.0, 300.0, 300.0, 1.0, 1.0],
            "output_scale": [20.0, 20.0]}
    return {s: random_model(root / s, system=s, seed=3,
                            normalisation={k: v[:4] if k != "output_scale" and s == "A" else v
                                           for k, v in norm.items()})
            for s in ("A", "B")}


def motion(rate_hz: float, seconds: float = 3.0, jitter: float = 0.0,
           seed: int = 0) -> tuple[np.ndarray, ...]:
    """A smooth 2-D motion sampled at rate_hz (optionally jittered): t, x, y, vx, vy."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    t = 5.0 + (np.arange(n) + rng.uniform(-jitter, jitter, n)) / rate_hz
    x = 300 * np.sin(1.7 * t) + 80 * np.sin(5.3 * t)
    y = 200 * np.cos(1.1 * t) + 60 * np.sin(4.1 * t + 1)
    return t, x, y, 510 * np.cos(1.7 * t) + 424 * np.cos(5.3 * t), \
        -220 * np.sin(1.1 * t) + 246 * np.cos(4.1 * t + 1)


def grid_of(model: tmn.Model, t: np.ndarray, x: np.ndarray, y: np.ndarray,
            vx: np.ndarray | None = None, vy: np.ndarray | None = None) -> np.ndarray:
    return np.array(_core.resample(model.spec().ingest, t, x, y, vx, vy))  # [5, n]


@pytest.mark.parametrize("system", ["A", "B"])
@pytest.mark.parametrize("rate_hz,jitter", [(125.0, 0.0), (500.0, 0.1), (RATE, 0.0),
                                            (8000.0, 0.2)])
@pytest.mark.parametrize("velocity", [True, False], ids=["with-velocity", "position-only"])
def test_ticks_at_any_rate_answer_what_their_resampled_grid_answers(
        models, system: str, rate_hz: float, jitter: float, velocity: bool) -> None:
    model = tmn.load(models[system])
    t, x, y, vx, vy = motion(rate_hz, jitter=jitter)
    v = (vx, vy) if velocity else (None, None)
    r = tmn.Engine(model, precision="fp32").replay(t, x, y, *v)
    assert (r.status == 0).all()
    grid = grid_of(model, t, x, y, *v)
    # the grid as ticks (with the velocity ingest gave it): one step per tick
    g = tmn.Engine(model, precision="fp32").replay(*grid)
    assert np.array_equal(g.t_grid, grid[0])
    at = np.searchsorted(grid[0], r.t_grid)
    assert np.array_equal(grid[0][at], r.t_grid)  # every answer is anchored on the grid
    assert (r.t_grid <= t).all() and (t - r.t_grid < 1.0 / RATE + 1e-12).all()
    np.testing.assert_allclose(r.paths, g.paths[at], rtol=0, atol=1e-9 * np.abs(g.paths).max())
    assert np.array_equal(r.verdict, g.verdict[at])


def test_a_position_only_recording_is_the_grid_training_builds(tmp_path: Path) -> None:
    """Training's loaders (tmn_train.data.to_streams) and the engine share the grid and
    the differentiator: the stream training builds from a t, x, y file is the grid."""
    model = tmn.load(random_model(tmp_path / "m", system="B"))
    t, x, y, _, _ = motion(250.0)
    (stream,) = to_streams({"t": t, "x": x, "y": y}, "rec", model.spec().ingest, 0.1)
    grid = grid_of(model, t, x, y)
    for got, want in zip((stream.t, stream.x, stream.y, stream.vx, stream.vy), grid):
        assert np.array_equal(got, want)


def test_position_only_ticks_refuse_non_finite_positions_and_half_a_velocity(models) -> None:
    e = tmn.Engine(models["B"])
    first = e.tick(1.0, 10.0, 20.0, stream=1)
    assert first.status == tmn.Status.ok and first.t_grid == 1.0
    assert e.tick(1.0005, 10.1, 20.2, stream=1).status == tmn.Status.ok
    with pytest.raises(tmn.TickError) as info:
        e.tick(1.0015, float("nan"), 20.0, stream=1)
    assert info.value.status == tmn.Status.non_finite
    with pytest.raises(ValueError, match="both vx and vy"):
        e.tick(1.002, 1.0, 2.0, vx=3.0, stream=1)
    assert e.tick(1.002, 10.3, 20.5, stream=1).t_grid == pytest.approx(1.002)


def test_a_report_rate_that_changes_mid_stream_and_a_single_tick_are_fine(models) -> None:
    model = tmn.load(models["A"])
    t1, x1, y1, _, _ = motion(125.0, seconds=1.0)
    t2, x2, y2, _, _ = motion(1000.0, seconds=1.0)
    keep = t2 > t1[-1]
    t, x, y = (np.concatenate([a, b[keep]]) for a, b in ((t1, t2), (x1, x2), (y1, y2)))
    r = tmn.Engine(model).replay(t, x, y)
    assert (r.status == 0).all() and np.isfinite(r.paths).all()
    g = tmn.Engine(model).replay(*grid_of(model, t, x, y))
    grid_t = grid_of(model, t, x, y)[0]
    np.testing.assert_allclose(r.paths, g.paths[np.searchsorted(grid_t, r.t_grid)], atol=1e-6)
    one = tmn.Engine(model).replay(t[:1], x[:1], y[:1])
    assert one.ok == 1 and one.verdict[0] == int(tmn.Verdict.warming)


def test_ticks_faster_than_the_grid_answer_the_newest_grid_sample(models) -> None:
    """At 8 kHz, three ticks in four reach no new grid sample: their answer is the
    last grid sample's (the network does not step), anchored at its time."""
    e = tmn.Engine(models["B"], precision="fp32")
    t, x, y, vx, vy = motion(8000.0, seconds=0.5)
    r = e.replay(t, x, y, vx, vy)
    same = r.t_grid[1:] == r.t_grid[:-1]
    assert 0.7 < same.mean() < 0.8
    assert np.array_equal(r.paths[1:][same], r.paths[:-1][same])


def test_prediction_at_any_time_is_a_cubic_hermite_curve_through_the_path(models) -> None:
    """Prediction.at(dt): exact at the horizons, NaN outside (0, t_grid + h_K - t],
    and between them scipy's CubicHermiteSpline through the origin and the path
    points with Catmull-Rom slopes (the independent reference of the scheme)."""
    e = tmn.Engine(models["A"], precision="fp32")
    t, x, y, vx, vy = motion(3000.0, seconds=0.5)  # off the 2 kHz grid: t_grid < t
    p = None
    for row in zip(t, x, y, vx, vy):
        p = e.tick(*row, stream=9)
    assert p is not None and p.verdict == tmn.Verdict.ungated and p.t > p.t_grid
    K, lag = p.path.shape[0], p.t - p.t_grid
    for k in range(K):
        np.testing.assert_allclose(p.at((k + 1) * p.h0 - lag), p.path[k], rtol=0, atol=1e-9)
    assert np.isnan(p.at(0.0)).all() and np.isnan(p.at(K * p.h0 - lag + 1e-6)).all()
    dts = np.linspace(1e-4, K * p.h0 - lag, 300)
    got = np.array([p.at(dt) for dt in dts])
    want = hermite(p.h0, np.vstack([p.origin, p.path]))(dts + lag)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * np.abs(want).max())


def test_the_hermite_scheme_is_within_two_percent_of_a_step_on_a_circle() -> None:
    """The scheme's own error against a smooth truth between the knots: on a circle
    of radius 100 at 4 rad/s with 50 ms knots, at most 2 % of the knot spacing."""
    h0, K, r, w = 0.05, 10, 100.0, 4.0
    ts = h0 * np.arange(K + 1)
    curve = hermite(h0, np.stack([r * np.cos(w * ts), r * np.sin(w * ts)], axis=1))
    s = np.linspace(0.0, K * h0, 500)
    err = np.linalg.norm(curve(s) - np.stack([r * np.cos(w * s), r * np.sin(w * s)], 1), axis=1)
    assert err.max() <= 0.02 * r * w * h0


def hermite(h0: float, pts: np.ndarray):  # type: ignore[no-untyped-def]
    """scipy's cubic Hermite through pts (knot j at j h0) with Catmull-Rom slopes."""
    from scipy.interpolate import CubicHermiteSpline

    ts = np.arange(len(pts)) * h0
    lo, hi = np.maximum(np.arange(len(pts)) - 1, 0), np.minimum(np.arange(len(pts)) + 1,
                                                                len(pts) - 1)
    slopes = (pts[hi] - pts[lo]) / (ts[hi] - ts[lo])[:, None]
    return CubicHermiteSpline(ts, pts, slopes, axis=0)


def sensor_ticks(t: np.ndarray, x: np.ndarray, y: np.ndarray, vx: np.ndarray, vy: np.ndarray,
                 rate_hz: float) -> tuple[np.ndarray, ...]:
    """The 2 kHz motion as a sensor at rate_hz reports it: every n-th sample, or
    for a faster sensor the linear interpolation between samples."""
    if rate_hz <= RATE:
        idx = np.arange(0, len(t), int(round(RATE / rate_hz)))
        return t[idx], x[idx], y[idx], vx[idx], vy[idx]
    tt = np.linspace(t[0], t[-1], (len(t) - 1) * int(rate_hz / RATE) + 1)
    return (tt, *(np.interp(tt, t, a) for a in (x, y, vx, vy)))


def p99_at_500ms(rate_hz: float, velocity: bool) -> tuple[float, float]:
    """The built-in model's P99 error at 500 ms on unseen synthetic motion sent at
    rate_hz, scored at each answer's grid time against the true position, and the
    median tick time (ns, the engine's own clock) at that rate."""
    from tmn_train import synth

    model = tmn.load()
    errors, tick_ns = [], []
    for s in synth.generate(1.0, seed=99):
        tt, xx, yy, vx, vy = sensor_ticks(s.t, s.x, s.y, s.vx, s.vy, rate_hz)
        r = tmn.Engine(model, precision="int8").replay(tt, xx, yy, vx if velocity else None,
                                                       vy if velocity else None)
        n = np.rint((r.t_grid - s.t[0]) * RATE).astype(int) + int(0.5 * RATE)
        ok = (n < len(s.t)) & (r.t_grid - s.t[0] > 0.128)  # warmed, truth inside the stream
        p = r.paths[ok, -1]
        errors.append(np.hypot(p[:, 0] - s.x[n[ok]], p[:, 1] - s.y[n[ok]]))
        tick_ns.append(r.total_ns)
    return (float(np.percentile(np.concatenate(errors), 99)),
            float(np.median(np.concatenate(tick_ns))))


def test_the_built_in_model_is_as_accurate_at_125_500_and_8000_hz_as_at_its_own_rate() -> None:
    """Issue 11's target: P99 at 500 ms within 1.1x of native 2 kHz ticks (with
    velocity, and position-only against position-only). Prints the tick's median
    cost at each rate (docs/protocol.md quotes a run with ``pytest -s``)."""
    for velocity in (True, False):
        native, native_ns = p99_at_500ms(RATE, velocity)
        print(f"{RATE:g} Hz, velocity {velocity}: tick P50 {native_ns:.0f} ns")
        for rate in (125.0, 500.0, 8000.0) if velocity else (125.0,):
            p99, tick_ns = p99_at_500ms(rate, velocity)
            ratio = p99 / native
            print(f"{rate:g} Hz, velocity {velocity}: P99 / native {ratio:.3f}, "
                  f"tick P50 {tick_ns:.0f} ns")
            assert ratio <= 1.1, (rate, velocity, ratio)
