"""Hostile values and hostile models, in process (issue 13's defects 1, 2, 4, 5, 9, 10, 11).

Every case here once crashed, wedged or lied: a tick of huge finite values
came back "ok" with an infinite path and corrupted the live-accuracy
histogram, a huge input left the FP32 GRU's hidden state NaN, a model with
eps = 1e-300 and budget = 2^53 spun forever, a float32 certificate sat below
the proved bound, and a hostile config.json raised RecursionError or OSError
out of tmn.load. Each test shows the defended behaviour.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import tmn
from tmn import _core
from tmn.testing import random_model

COLUMNS = ("t", "x", "y", "vx", "vy")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    return {"B": random_model(root / "B", system="B", seed=5, weight_scale=0.3),
            "A": random_model(root / "A", system="A", seed=6, weight_scale=0.3)}


def track(n: int, t0: float = 1.0) -> np.ndarray:
    """(n, 5) rows t, x, y, vx, vy of a unit circle at 2 kHz."""
    t = t0 + np.arange(n) / 2000.0
    w = 2 * np.pi * 0.5
    return np.stack([t, np.cos(w * t), np.sin(w * t), -w * np.sin(w * t), w * np.cos(w * t)], 1)


def replay(e: tmn.Engine, rows: np.ndarray) -> tmn.Replay:
    return e.replay(*(np.ascontiguousarray(rows[:, i]) for i in range(5)))


# ---------------------------------------------------------------------------
# input ranges


def test_input_ranges_follow_the_normalisation_and_the_absolute_bounds(models) -> None:
    """Positions are no feature (any place is fine) but are bounded in absolute
    value; velocities, given or implied by a jump, within INPUT_SIGMAS of the
    training velocity's RMS (features 0 and 1, vx and vy)."""
    m = tmn.load(models["B"])
    r = _core.input_ranges(m.spec())
    assert r["t"] == (-_core.MAX_ABS_TIME_S, _core.MAX_ABS_TIME_S)
    n = m.config["normalisation"]
    for i, f in enumerate(("x", "y")):
        limit = _core.MAX_ABS_OUTPUT_UNITS * n["output_scale"][i]
        assert r[f] == (-limit, limit), f
        reach = _core.INPUT_SIGMAS * n["std"][i]
        assert r["v" + f] == (-reach, reach), f


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("bad", [
    pytest.param({"x": 1.7e308, "vx": 1.7e308}, id="x_vx_1.7e308"),
    pytest.param({"x": 1e41, "y": -1e41}, id="x_1e41_y_-1e41"),
    pytest.param({"x": 1e30}, id="x_1e30"),
    pytest.param({"vx": 1e300}, id="vx_1e300"),
    pytest.param({"t": 1e300}, id="t_1e300"),
    pytest.param({"vy": -_core.INPUT_SIGMAS * 1.0001}, id="vy_just_outside"),
])
def test_a_tick_outside_its_range_is_out_of_range_and_invisible(
        models, precision: str, bad: dict[str, float]) -> None:
    """Defects 1 and 9: refused with its own status, and every later output is
    bit-identical to a run that never saw it (no NaN hidden state, no
    corrupted prior)."""
    rows = track(600)
    hostile = rows[300].copy()
    for f, v in bad.items():
        hostile[COLUMNS.index(f)] = v
    wire = np.concatenate([rows[:300], [hostile], rows[300:]])
    e = tmn.Engine(models["B"], precision=precision)
    got = replay(e, wire)
    assert got.status[300] == tmn.Status.out_of_range.value
    assert np.isnan(got.paths[300]).all()
    clean = replay(tmn.Engine(models["B"], precision=precision), rows)
    keep = np.arange(len(wire)) != 300
    np.testing.assert_array_equal(got.paths[keep], clean.paths)
    np.testing.assert_array_equal(got.verdict[keep], clean.verdict)
    assert np.isfinite(clean.paths).all()
    with pytest.raises(tmn.TickError) as info:
        e.tick(*hostile, stream=99)
    assert info.value.status == tmn.Status.out_of_range
    assert e.stream_count == 1  # the refused new stream was never created


@pytest.mark.parametrize("jump", [1e4, 1e6, 1e8])
def test_a_jump_no_sensor_makes_is_out_of_range_but_a_new_stream_may_start_anywhere(
        models, jump: float) -> None:
    """The displacement from the previous tick implies a velocity, which has the
    velocity's range (a tick at 1e30 once corrupted the prior for 2.5 s); a new
    stream, or one after a gap that restarts it, starts anywhere."""
    rows = track(600)
    hostile = rows[300].copy()
    hostile[1] += jump
    wire = np.concatenate([rows[:300], [hostile], rows[300:]])
    got = replay(tmn.Engine(models["B"]), wire)
    assert got.status[300] == tmn.Status.out_of_range.value
    clean = replay(tmn.Engine(models["B"]), rows)
    np.testing.assert_array_equal(got.paths[np.arange(len(wire)) != 300], clean.paths)
    e = tmn.Engine(models["B"])
    assert e.tick(*hostile, stream=5).status == tmn.Status.ok
    gap = hostile.copy()
    gap[0] += 1.0  # after max_gap: the stream restarts, so the jump is fine
    gap[1] += jump
    p = e.tick(*gap, stream=5)
    assert p.status == tmn.Status.ok and p.restarted


def test_the_edge_of_the_range_is_accepted(models) -> None:
    e = tmn.Engine(models["A"])
    r = _core.input_ranges(e.model.spec())
    p = e.tick(1.0, r["x"][1], r["y"][0], r["vx"][1], r["vy"][0])
    assert p.status == tmn.Status.ok and np.isfinite(p.path).all()


def test_a_non_finite_path_is_refused_and_the_stream_put_back(tmp_path: Path) -> None:
    """Defect 9's last line of defence: whatever the inputs, "ok" never carries a
    non-finite path. An A model whose head overflows (output_scale 1e308, bias
    10) gets non_finite_output once warm, and the stream is left as it was: the
    same tick is refused the same way again instead of as time_not_increasing."""
    spec = tmn.load(random_model(tmp_path / "A", system="A", seed=1, window_ms=0)).spec()
    spec.output_scale = [1e308, 1e308]
    spec.tensors = {**spec.tensors, "b_out": np.full(len(spec.tensors["b_out"]), 10.0, np.float32)}
    e = _core.Engine(spec, _core.Precision.fp32, 4, _core.Isa.scalar)
    for _ in range(2):
        with pytest.raises(_core.TickError) as info:
            e.tick(1.0, 0.5, 0.5, 0.0, 0.0, 7)
        assert info.value.status == _core.Status.non_finite_output
    assert e.stream_count == 0
    out = e.replay(np.array([1.0, 2.0]), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2))
    assert list(out["status"]) == [_core.Status.non_finite_output.value] * 2


# ---------------------------------------------------------------------------
# the histogram behind live accuracy


def test_an_infinite_value_lands_in_the_overflow_bucket() -> None:
    """Defect 1: +inf went through frexp into a negative bucket index and wrote
    before the buffer (ASan: heap-buffer-overflow)."""
    h = _core.Histogram(1e-6, 40, 16)
    for v in (math.inf, 1.7e308, 1e300, 0.5):
        h.record(v)
    counts = h.bucket_counts()
    assert counts[-1] == 3 and sum(counts) == 4 and h.count == 4
    assert h.percentile(100.0) == h.max == 1.7e308  # the largest finite value seen


# ---------------------------------------------------------------------------
# hostile models


def hostile_config(tmp_path: Path, **changes: object) -> Path:
    return random_model(tmp_path / "m", system="B", seed=2, **changes)


@pytest.mark.parametrize("changes,field", [
    ({"gate": {"eps": 1e-300, "budget": 2**53, "lambda": 0.1, "threshold": 1.0}}, "gate.eps"),
    ({"gate": {"eps": 0.02, "budget": 2**53, "lambda": 0.1, "threshold": 1.0}}, "gate.budget"),
    ({"kalman": {"q": 1e300, "r_pos": 1e-4, "r_vel": 1e-2}}, "kalman.q"),
    ({"kalman": {"q": 1.0, "r_pos": 1e-300, "r_vel": 1e-2}}, "kalman.r_pos"),
    ({"horizons_ms": [1e300 * (k + 1) for k in range(3)]}, "horizons_ms"),
    ({"horizons_ms": [10_000.0 * (k + 1) for k in range(7)]}, "horizons_ms"),
])
def test_a_model_outside_the_engines_bounds_is_refused_at_load(
        tmp_path: Path, changes: dict, field: str) -> None:
    """Defects 4 and 9: such a model loaded, then wedged the loop (eps/budget) or
    answered "ok" with infinite paths (q)."""
    folder = hostile_config(tmp_path, **changes)
    with pytest.raises(tmn.ModelFormatError, match=f"'{field}'"):
        tmn.load(folder)


def _norm(mean: float = 0.0, std: float = 1.0, scale: float = 1.0, i: int = 0) -> dict:
    """System B's normalisation with feature i's mean and std (and both output
    scales) changed."""
    m, sd = [0.0] * 8, [1.0] * 8
    m[i], sd[i] = mean, std
    return {"normalisation": {"mean": m, "std": sd, "output_scale": [scale, 1.0]}}


@pytest.mark.parametrize("changes,field", [
    ({"window_ms": 1e300}, "window_ms"),                 # only ever answered warming
    ({"window_ms": 60_001.0}, "window_ms"),
    ({"sample_rate_hz": 1e-300}, "sample_rate_hz"),      # no grid sample after the first
    ({"sample_rate_hz": 0.5, "max_gap_ms": 4000.0}, "sample_rate_hz"),
    ({"max_gap_ms": 0.1}, "max_gap_ms"),                 # ticks at 2 kHz always restarted
    (_norm(std=1e-320), "normalisation.std"),            # 1 / std is infinite
    (_norm(std=1e-10, i=6), "normalisation.std"),
    (_norm(std=1e10, i=1), "normalisation.std"),
    (_norm(mean=1e300, i=2), "normalisation.mean"),
    (_norm(scale=1e300), "normalisation.output_scale"),  # any finite position was in range
    (_norm(scale=1e-300), "normalisation.output_scale"),
])
def test_a_model_that_would_be_useless_is_refused_naming_its_file_and_field(
        tmp_path: Path, changes: dict, field: str) -> None:
    """The loader took values that left a model finite but useless: window_ms =
    1e300 (a model that only answers warming), a normalisation std of 1e-320.
    Each now has a bound (docs/model-format.md), refused by tmn.load and so by
    tmn.Engine and a reload, with the file and the field."""
    folder = random_model(tmp_path / "m", system="B", seed=2, **changes)
    for load in (tmn.load, tmn.Engine):
        with pytest.raises(tmn.ModelFormatError) as e:
            load(folder)
        assert str(folder / "config.json") in str(e.value) and f"'{field}'" in str(e.value)


def test_the_edges_of_the_usefulness_bounds_load(tmp_path: Path) -> None:
    for i, changes in enumerate([{"window_ms": 60_000.0}, {"sample_rate_hz": 1.0,
                                                            "max_gap_ms": 1000.0},
                                 {"max_gap_ms": 0.5}, _norm(std=1e-9, scale=1e9),
                                 _norm(std=1e9, mean=-1e9, scale=1e-9)]):
        tmn.Engine(random_model(tmp_path / f"m{i}", system="B", seed=2, **changes))


def test_the_engine_itself_refuses_a_spec_outside_its_bounds(models) -> None:
    """C++ checks the same bounds when a spec does not come from tmn.load."""
    spec = tmn.load(models["B"]).spec()
    for change in ({"eps": 1e-300}, {"budget": 2**53}):
        g = spec.gate
        spec.gate = _core.GateParams(change.get("eps", g.eps), change.get("budget", g.budget),
                                     g.lam, g.threshold)
        with pytest.raises(ValueError, match="gate"):
            _core.Engine(spec, _core.Precision.fp32, 4, _core.Isa.scalar)
        spec.gate = g
    spec.kalman = _core.KalmanParams(1e300, 1e-4, 1e-2)
    with pytest.raises(ValueError, match="kalman.q"):
        _core.Engine(spec, _core.Precision.fp32, 4, _core.Isa.scalar)


def test_the_gates_wall_clock_guard_stops_a_solve_that_cannot_finish() -> None:
    """Defect 4: a target just above the rounding floor is never met, so the
    solve used the whole budget (2^53 touched nonzeros: forever). The guard
    stops it after GATE_GUARD_NS, long before a huge budget."""
    K, budget = 10, 10**12
    prior = np.full(2 * K, 3e3)
    u = 2.0**-53  # the rounding term is at least gamma ||b||, about 3.6x that with ||A|| ||x||
    floor = 6 * u / (1 - 6 * u) * np.linalg.norm(prior)
    gate = _core.SolverGate(_core.GateParams(2 * floor, budget, 0.1, 1e30), horizons=K, dh=0.05,
                            guarded=True)
    r = gate.run(np.zeros(2 * K, np.float32), prior, np.ones(2 * K), np.zeros(2))
    assert not r["certified"] and r["verdict"] == _core.Verdict.fallback_uncertified
    assert _core.GATE_GUARD_WORK <= r["work"] < budget // 1000


def test_a_target_below_the_rounding_floor_stops_when_the_guard_starts() -> None:
    """Defect 5: huge values made every tick spend the whole budget."""
    K = 10
    gate = _core.SolverGate(_core.GateParams(0.02, 200_000, 0.1, 1e300), horizons=K, dh=0.05,
                            guarded=True)
    r = gate.run(np.zeros(2 * K, np.float32), np.full(2 * K, 1e16), np.full(2 * K, 1e-300),
                 np.array([1e17, 1e17]))
    assert r["verdict"] == _core.Verdict.fallback_uncertified
    assert r["work"] <= _core.GATE_GUARD_WORK + 2 * (5 * K - 6)  # one pass past the start


# ---------------------------------------------------------------------------
# the float32 certificate


def test_the_stored_certificate_is_never_below_the_proved_bound() -> None:
    """Defect 10: rounding to nearest put the float32 bound below the double in
    about half the ticks. Over many gate runs, rounding to nearest would be
    below for a good share; the stored one never is, and is the tightest float."""
    rng = np.random.default_rng(0)
    K = 10
    gate = _core.SolverGate(_core.GateParams(0.02, 200_000, 0.1, 1e30), horizons=K, dh=0.05)
    below_nearest = 0
    for _ in range(2000):
        r = gate.run(rng.normal(0, 0.3, 2 * K).astype(np.float32), rng.normal(0, 3, 2 * K),
                     np.ones(2 * K), rng.normal(0, 3, 2))
        bound, stored = r["error_bound"], r["cert_error"]
        assert stored >= bound
        assert float(np.nextafter(np.float32(stored), np.float32(-np.inf))) < bound
        below_nearest += float(np.float32(bound)) < bound
    assert below_nearest > 200  # the case the fix is about did occur
    for v in rng.uniform(0, 1, 10_000) * 10.0 ** rng.integers(-30, 30, 10_000):
        assert _core.bound_as_float(float(v)) >= v


# ---------------------------------------------------------------------------
# tmn.load never raises anything but ModelFormatError (or FileNotFoundError)


def _write_config(folder: Path, text: str) -> Path:
    (folder / "config.json").write_text(text)
    return folder


@pytest.mark.parametrize("kind", ["nested_2000", "int_5000_digits", "proc_self_mem",
                                  "two_megabytes", "not_utf8", "fifo"])
def test_a_hostile_config_is_a_model_format_error(models, tmp_path: Path, kind: str) -> None:
    """Defect 11 (and 2's reload crash): RecursionError, ValueError and OSError
    escaped tmn.load."""
    import shutil

    folder = tmp_path / kind
    shutil.copytree(models["B"], folder)
    cfg = folder / "config.json"
    if kind == "nested_2000":
        _write_config(folder, "[" * 2000 + "]" * 2000)
    elif kind == "int_5000_digits":
        good = json.loads(cfg.read_text())
        _write_config(folder, json.dumps(good).replace('"hidden": 32', '"hidden": ' + "9" * 5000))
    elif kind == "proc_self_mem":
        cfg.unlink()
        cfg.symlink_to("/proc/self/mem")
    elif kind == "two_megabytes":
        _write_config(folder, '{"pad": "' + "x" * (2 << 20) + '"}')
    elif kind == "not_utf8":
        cfg.write_bytes(b'{"\xff\xfe": 1}')
    else:
        cfg.unlink()
        os.mkfifo(cfg)  # is_file() is false: "missing", never a blocking read
    with pytest.raises(tmn.ModelFormatError, match="config.json"):
        tmn.load(folder)
