"""The uncertainty radius in the engine (docs/uncertainty.md): each path point
k gets r_k = sqrt(c0_k + c1_k |v|^2), |v| the prior's posterior speed; NaN
while warming and for a model without a calibration; the loader and the engine
refuse calibrations that are not one non-negative pair per horizon, or that
could overflow float32 on a valid tick."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tmn
from tmn.testing import random_model

K = 10
C0 = [float(4.0 * (k + 1) ** 2) for k in range(K)]
C1 = [float(0.01 * (k + 1) ** 2) for k in range(K)]


def track(n: int, rate: float = 2000.0) -> tuple[np.ndarray, ...]:
    t = np.arange(n) / rate
    return t, 3.0 * np.sin(1.7 * t) + 2.0 * t, 2.0 * np.cos(0.9 * t)


@pytest.fixture(scope="module", params=["A", "B"])
def calibrated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_model(tmp_path_factory.mktemp("unc") / request.param, system=request.param,
                        weight_scale=0.3, uncertainty={"quantile": 0.9, "radius_c0": C0,
                                                       "radius_c1": C1})


def test_the_radius_is_sqrt_c0_plus_c1_speed_squared_from_the_prior(calibrated: Path) -> None:
    t, x, y = track(1500)
    r = tmn.Engine(calibrated).replay(t, x, y, candidates=True)
    past = r.verdict != int(tmn.Verdict.warming)
    assert past.sum() > 1000 and (~past).sum() > 100
    # the prior path is p + v h_k exactly: its slope is the posterior velocity
    h = np.arange(1, K + 1) * 0.05
    v = (r.prior[:, -1] - r.prior[:, 0]) / (h[-1] - h[0])
    want = np.sqrt(np.asarray(C0) + np.asarray(C1) * np.sum(v * v, axis=1)[:, None])
    np.testing.assert_allclose(r.radius[past], want[past], rtol=1e-6)
    assert np.isnan(r.radius[~past]).all()


def test_tick_and_replay_serve_the_same_radius(calibrated: Path) -> None:
    t, x, y = track(600)
    e = tmn.Engine(calibrated, precision="fp32")
    ticks = [e.tick(t[i], x[i], y[i], stream=4).radius for i in range(len(t))]
    r = tmn.Engine(calibrated, precision="fp32").replay(t, x, y)
    np.testing.assert_array_equal(np.asarray(ticks), r.radius)


def test_a_model_without_a_calibration_serves_nan(tmp_path: Path) -> None:
    t, x, y = track(800)
    r = tmn.Engine(random_model(tmp_path / "m", weight_scale=0.3)).replay(t, x, y)
    assert r.ok == len(t) and np.isnan(r.radius).all()


def test_radius_at_interpolates_linearly_from_zero_at_the_origin(calibrated: Path) -> None:
    t, x, y = track(800)
    e = tmn.Engine(calibrated)
    for i in range(len(t)):
        p = e.tick(t[i], x[i], y[i])
    h0, lead = p.h0, p.t - p.t_grid  # dt is counted from the tick, the path from t_grid
    assert p.radius_at(h0 - lead) == pytest.approx(p.radius[0], rel=1e-6)
    assert p.radius_at(3 * h0 - lead) == pytest.approx(p.radius[2], rel=1e-6)
    assert p.radius_at(2.5 * h0 - lead) == pytest.approx(0.5 * (p.radius[1] + p.radius[2]),
                                                         rel=1e-6)
    assert p.radius_at(0.5 * h0 - lead) == pytest.approx(0.5 * p.radius[0], rel=1e-6)
    assert np.isnan(p.radius_at(K * h0 - lead + 1e-3)) and np.isnan(p.radius_at(0.0))


@pytest.mark.parametrize("bad, field", [
    ({"radius_c0": C0[:-1], "radius_c1": C1}, "uncertainty.radius_c0"),
    ({"radius_c0": [-1.0] + C0[1:], "radius_c1": C1}, "uncertainty.radius_c0"),
    ({"radius_c0": [0.0] + C0[1:], "radius_c1": [0.0] + C1[1:]}, "uncertainty.radius_c0"),
    ({"radius_c0": C0, "radius_c1": [float("nan")] + C1[1:]}, "uncertainty.radius_c1"),
    ({"radius_c0": C0}, "uncertainty.radius_c1"),
    ({"quantile": 1.5, "radius_c0": C0, "radius_c1": C1}, "uncertainty.quantile"),
])
def test_the_loader_refuses_a_bad_calibration_naming_the_field(
        tmp_path: Path, bad: dict, field: str) -> None:
    folder = random_model(tmp_path / "m", weight_scale=0.3)
    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["uncertainty"] = {"quantile": 0.9, **bad}
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(tmn.ModelFormatError, match=field.replace(".", r"\.")) as e:
        tmn.load(folder)
    assert "config.json" in str(e.value)


def test_the_engine_refuses_a_radius_that_could_overflow(tmp_path: Path) -> None:
    spec = tmn.load(random_model(tmp_path / "m", weight_scale=0.3)).spec()
    spec.radius_c0, spec.radius_c1 = [1.0] * K, [1e300] * K
    with pytest.raises(ValueError, match="uncertainty"):
        tmn._core.Engine(spec, tmn._core.Precision.fp32, 4, tmn._core.Isa.scalar)
    spec.radius_c1 = [1.0] * (K - 1)
    with pytest.raises(ValueError, match="one per horizon"):
        tmn._core.Engine(spec, tmn._core.Precision.fp32, 4, tmn._core.Isa.scalar)
