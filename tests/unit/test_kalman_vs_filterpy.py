"""The C++ KalmanPrior equals filterpy's full 4x4 KalmanFilter.

The C++ filter stores state (px, py, vx, vy) and one 2x2 covariance block
(p_pp, p_pv, p_vv) shared by both axes (kalman.hpp explains why that is
exact). filterpy runs the general 4x4 filter with state (x, y, vx, vy):

  F(dt) = [[I2, dt I2], [0, I2]]
  Q(dt) = q [[dt^3/3 I2, dt^2/2 I2], [dt^2/2 I2, dt I2]]
        = filterpy.common.Q_continuous_white_noise(2, dt, q, block_size=2,
                                                   order_by_dim=False)
  H = I4, R = diag(r_pos, r_pos, r_vel, r_vel), x0 = z0, P0 = R,

with the Joseph-form update that both use.
"""

from __future__ import annotations

import numpy as np
import pytest
from filterpy.common import Q_continuous_white_noise
from filterpy.kalman import KalmanFilter

from tmn import _core

PARAMS = [
    pytest.param((10.0, 1e-4, 1e-2), id="default-model"),
    pytest.param((2.5e4, 0.25, 400.0), id="noisy-pixels"),
    pytest.param((0.0, 1e-2, 1.0), id="no-process-noise"),
    pytest.param((1e-3, 1e-6, 1e-4), id="near-deterministic"),
]
N = 3000
REL = 1e-6


def dt_stream(rng: np.random.Generator, n: int) -> np.ndarray:
    """dt jittered +-30 % around 0.5 ms, with a few large gaps."""
    dt = 0.0005 * (1.0 + rng.uniform(-0.3, 0.3, size=n - 1))
    gaps = rng.choice(n - 1, size=8, replace=False)
    dt[gaps] = [0.004, 0.02, 0.05, 0.1, 0.25, 0.7, 2.0, 1e-6]
    return dt


def recording(seed: int, n: int = N) -> tuple[np.ndarray, ...]:
    """(t, x, y, vx, vy): a curved motion in data units with measurement noise."""
    rng = np.random.default_rng(seed)
    t = 100.0 + np.concatenate([[0.0], np.cumsum(dt_stream(rng, n))])
    x = 500 + 200 * np.sin(1.3 * t) + rng.normal(scale=0.5, size=n)
    y = -80 + 120 * np.cos(0.7 * t) + rng.normal(scale=0.5, size=n)
    vx = 260 * np.cos(1.3 * t) + rng.normal(scale=20, size=n)
    vy = -84 * np.sin(0.7 * t) + rng.normal(scale=20, size=n)
    return t, x, y, vx, vy


def F(dt: float) -> np.ndarray:
    f = np.eye(4)
    f[0, 2] = f[1, 3] = dt
    return f


def Q(dt: float, q: float) -> np.ndarray:
    return q * np.block([[dt**3 / 3 * np.eye(2), dt**2 / 2 * np.eye(2)],
                         [dt**2 / 2 * np.eye(2), dt * np.eye(2)]])


def filterpy_run(params: tuple[float, float, float], t: np.ndarray, x: np.ndarray,
                 y: np.ndarray, vx: np.ndarray,
                 vy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """filterpy over the recording: (state[N,4], P[N,4,4])."""
    q, r_pos, r_vel = params
    kf = KalmanFilter(dim_x=4, dim_z=4)
    kf.H = np.eye(4)
    kf.R = np.diag([r_pos, r_pos, r_vel, r_vel])
    kf.x = np.array([[x[0]], [y[0]], [vx[0]], [vy[0]]])
    kf.P = kf.R.copy()
    states, covs = [kf.x[:, 0].copy()], [kf.P.copy()]
    for i in range(1, len(t)):
        dt = t[i] - t[i - 1]
        kf.predict(F=F(dt), Q=Q_continuous_white_noise(2, dt, q, block_size=2,
                                                       order_by_dim=False))
        kf.update(np.array([x[i], y[i], vx[i], vy[i]]))
        states.append(kf.x[:, 0].copy())
        covs.append(kf.P.copy())
    return np.array(states), np.array(covs)


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / |b| per column, with a floor of 1e-6 of the column's
    magnitude (velocities and p_pv pass through zero)."""
    floor = 1e-6 * np.abs(b).max(axis=0)
    return float((np.abs(a - b) / np.maximum(np.abs(b), floor)).max())


def test_our_process_noise_is_filterpys_continuous_white_noise() -> None:
    for dt in (1e-6, 0.0005, 0.1, 2.0):
        np.testing.assert_allclose(
            Q(dt, 3.7), Q_continuous_white_noise(2, dt, 3.7, block_size=2, order_by_dim=False),
            rtol=1e-15, atol=0)


@pytest.mark.parametrize("params", PARAMS)
def test_filter_state_and_covariance_match_filterpy_over_a_jittered_stream(
        params: tuple[float, float, float]) -> None:
    t, x, y, vx, vy = recording(seed=1)
    assert np.diff(t).max() >= 2.0 and np.diff(t).min() <= 1e-6  # gaps really there
    state, cov = _core.KalmanPrior(_core.KalmanParams(*params)).filter(t, x, y, vx, vy)
    ref_state, ref_P = filterpy_run(params, t, x, y, vx, vy)
    assert state.shape == (N, 4) and cov.shape == (N, 3)

    # filterpy's covariance really is two identical, uncoupled axis blocks
    P = ref_P
    scale = np.abs(P).max(axis=(1, 2))
    assert (np.abs(P[:, [0, 0, 1, 1], [1, 3, 0, 2]]).max(axis=1) <= 1e-12 * scale).all()
    np.testing.assert_allclose(P[:, 1, 1], P[:, 0, 0], rtol=1e-12)
    np.testing.assert_allclose(P[:, 1, 3], P[:, 0, 2], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(P[:, 3, 3], P[:, 2, 2], rtol=1e-12)

    ref_cov = np.stack([P[:, 0, 0], P[:, 0, 2], P[:, 2, 2]], axis=1)
    # filterpy's P is symmetric in (x, vx); the C++ shares one p_pv
    np.testing.assert_allclose(P[:, 2, 0], P[:, 0, 2], rtol=1e-9, atol=1e-12 * scale.max())
    s_err, c_err = rel_error(state, ref_state), rel_error(cov, ref_cov)
    assert s_err <= REL, f"state: max relative error {s_err:.3g}"
    assert c_err <= REL, f"covariance: max relative error {c_err:.3g}"


@pytest.mark.parametrize("params", PARAMS)
def test_init_and_step_agree_with_filter_and_filterpy(params: tuple[float, float, float]) -> None:
    t, x, y, vx, vy = recording(seed=2, n=600)
    kp = _core.KalmanPrior(_core.KalmanParams(*params))
    state, cov = kp.filter(t, x, y, vx, vy)
    ref_state, ref_P = filterpy_run(params, t, x, y, vx, vy)
    s = kp.init(t[0], x[0], y[0], vx[0], vy[0])
    q, r_pos, r_vel = params
    assert (s.px, s.py, s.vx, s.vy) == (x[0], y[0], vx[0], vy[0])
    assert (s.p_pp, s.p_pv, s.p_vv) == (r_pos, 0.0, r_vel)
    for i in range(1, len(t)):
        kp.step(s, t[i], x[i], y[i], vx[i], vy[i], t[i] - t[i - 1])
        got = np.array([s.px, s.py, s.vx, s.vy])
        # the same code path as filter(): bit for bit
        np.testing.assert_array_equal(got, state[i])
        np.testing.assert_array_equal([s.p_pp, s.p_pv, s.p_vv], cov[i])
        np.testing.assert_allclose(got, ref_state[i], rtol=REL,
                                   atol=REL * np.abs(ref_state[:, 2:]).max())
    assert rel_error(cov, np.stack([ref_P[:, 0, 0], ref_P[:, 0, 2], ref_P[:, 2, 2]], 1)) <= REL


def test_step_refuses_a_non_positive_dt() -> None:
    kp = _core.KalmanPrior(_core.KalmanParams(10.0, 1e-4, 1e-2))
    s = kp.init(0.0, 1.0, 2.0, 3.0, 4.0)
    for dt in (0.0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="dt must be positive"):
            kp.step(s, 1.0, 1.0, 2.0, 3.0, 4.0, dt)
    assert (s.px, s.p_pp) == (1.0, 1e-4)  # refused: state untouched


HORIZONS = np.array([0.05 * (k + 1) for k in range(10)] + [1e-4, 0.0137, 1.0, 3.0])


@pytest.mark.parametrize("params", PARAMS)
def test_extrapolation_equals_filterpys_predicted_position_covariance(
        params: tuple[float, float, float]) -> None:
    q = params[0]
    t, x, y, vx, vy = recording(seed=3)
    kp = _core.KalmanPrior(_core.KalmanParams(*params))
    state, cov = kp.filter(t, x, y, vx, vy)
    ref_state, ref_P = filterpy_run(params, t, x, y, vx, vy)
    checked = 0
    for i in range(0, N, 97):
        s = _core.KalmanState()
        s.px, s.py, s.vx, s.vy = state[i]
        s.p_pp, s.p_pv, s.p_vv = cov[i]
        rel, var = kp.extrapolate(s, HORIZONS)
        assert rel.shape == (2 * HORIZONS.size,) and var.shape == (HORIZONS.size,)
        # the mean: m_k - p = v h_k, which is filterpy's F(h) x minus x
        np.testing.assert_array_equal(rel[0::2], state[i, 2] * HORIZONS)
        np.testing.assert_array_equal(rel[1::2], state[i, 3] * HORIZONS)
        for k, h in enumerate(HORIZONS):
            x_pred = F(h) @ ref_state[i]
            np.testing.assert_allclose(rel[2 * k:2 * k + 2], x_pred[:2] - ref_state[i, :2],
                                       rtol=REL, atol=REL * np.abs(ref_state[:, 2:]).max() * h)
            P_pred = F(h) @ ref_P[i] @ F(h).T + Q(h, q)
            assert abs(var[k] - P_pred[0, 0]) <= REL * P_pred[0, 0], (i, h)
            assert abs(var[k] - P_pred[1, 1]) <= REL * P_pred[1, 1], (i, h)
            checked += 1
        # the stated formula, from the C++ block itself
        p_pp, p_pv, p_vv = cov[i]
        np.testing.assert_allclose(
            var, p_pp + 2 * HORIZONS * p_pv + HORIZONS**2 * p_vv + q * HORIZONS**3 / 3,
            rtol=1e-14)
    assert checked > 400
