"""The Kalman tuner: noise from the sensor's own samples, q bounded around the
data's moment match (tmn_train.kalman_fit)."""

from __future__ import annotations

import numpy as np

from tmn import _core
from tmn_train.config import Config
from tmn_train.data import to_streams
from tmn_train.kalman_fit import moment_q, noise_estimates, tune_kalman


GRID500 = _core.IngestParams(500.0, 8, 0.032)


def recording(rate_hz: float, sigma_p: float, sigma_v: float | None, seconds: float = 60.0,
              seed: int = 0) -> dict[str, np.ndarray]:
    """Smooth motion (two sinusoids per axis) sampled at rate_hz with white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    x = 200 * np.sin(1.3 * t) + 80 * np.sin(3.1 * t + 1)
    y = 150 * np.cos(0.9 * t) + 60 * np.sin(2.3 * t)
    cols = {"t": t, "x": x + rng.normal(0, sigma_p, t.size), "y": y + rng.normal(0, sigma_p, t.size)}
    if sigma_v is not None:
        vx = 260 * np.cos(1.3 * t) + 248 * np.cos(3.1 * t + 1)
        vy = -135 * np.sin(0.9 * t) + 138 * np.cos(2.3 * t)
        cols["vx"] = vx + rng.normal(0, sigma_v, t.size)
        cols["vy"] = vy + rng.normal(0, sigma_v, t.size)
    return cols


def test_noise_of_a_50_hz_sensor_is_estimated_from_its_samples_not_the_resampled_grid() -> None:
    # 50 Hz positions resampled to a 500 Hz model grid: the grid is straight
    # between samples, and the old estimate from its differences collapsed to ~0
    cfg = Config(sample_rate_hz=500.0)
    streams = to_streams(recording(50.0, 2.0, None), "rec", GRID500, 0.1)
    r_pos, _ = noise_estimates(streams)
    assert 0.8 * 4.0 <= r_pos <= 1.25 * 4.0
    k = tune_kalman(streams, cfg, log=lambda m: None)
    assert k["r_pos"] >= 4.0 / 3 * 0.8  # a factor of 1/3 at most, never a collapse


def test_measured_velocity_noise_comes_from_the_native_velocity_samples() -> None:
    streams = to_streams(recording(100.0, 1.0, 10.0), "rec", GRID500, 0.1)
    r_pos, r_vel = noise_estimates(streams)
    assert 0.8 <= r_pos <= 1.25
    assert 80.0 <= r_vel <= 125.0


def test_q_stays_within_its_bounds_around_the_moment_match_and_the_unbounded_fit_is_reported(
) -> None:
    cfg = Config(sample_rate_hz=500.0)
    streams = to_streams(recording(100.0, 1.0, 10.0), "rec", GRID500, 0.1)
    k = tune_kalman(streams, cfg, log=lambda m: None)
    q_m = moment_q(streams, cfg, noise_estimates(streams)[0])
    assert k["q_moment"] == q_m
    assert q_m / 10 <= k["q"] <= q_m * 10
    assert set(k["unbounded"]) == {"q", "prior_mse", "outside_bounds"}
    assert k["unbounded"]["outside_bounds"] == (not q_m / 10 <= k["unbounded"]["q"] <= q_m * 10)


def test_moment_match_recovers_the_density_of_white_noise_acceleration() -> None:
    # integrated white noise: velocity a random walk with increments of variance q dt
    rate, q = 500.0, 2.0e5
    rng = np.random.default_rng(1)
    n = int(120 * rate)
    v = np.cumsum(rng.normal(0, np.sqrt(q / rate), (n, 2)), axis=0)
    p = np.cumsum(v, axis=0) / rate
    t = np.arange(n) / rate
    streams = to_streams({"t": t, "x": p[:, 0], "y": p[:, 1], "vx": v[:, 0], "vy": v[:, 1]},
                         "rw", GRID500, 0.1)
    got = moment_q(streams, Config(sample_rate_hz=rate), 0.0)
    assert 0.85 * q <= got <= 1.15 * q
