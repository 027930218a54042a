"""Engine.tick and Engine.tick_many from Python (bind_prediction.cpp, bind_engine.cpp).

Engine.tick is a raw vectorcall method returning a C-type Prediction (an
owned record, reused from a free list); tick_many runs a frame's ticks of
several streams into one structured array. Both must give exactly what the
C++ engine computed, as Engine.replay reports it.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path

import numpy as np
import pytest

import tmn
from tmn.testing import random_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tmn.Model:
    folder = random_model(tmp_path_factory.mktemp("pytick") / "b", system="B", weight_scale=0.3)
    return tmn.load(folder)


def frames(n: int, streams: int) -> tuple[np.ndarray, ...]:
    """n frames of `streams` streams, row-major by frame: (t, x, y, vx, vy, stream)."""
    i = np.arange(n * streams)
    s = i % streams
    t = 1.0 + (i // streams) / 1000.0
    x, y = 2 * np.sin(1.1 * t + s), np.cos(0.9 * t) + s
    return t, x, y, 2.2 * np.cos(1.1 * t + s), -0.9 * np.sin(0.9 * t), s.astype(np.uint64)


def test_tick_returns_what_the_engine_computed_as_replay_reports_it(model: tmn.Model) -> None:
    t, x, y, vx, vy, s = frames(300, 3)
    ref = tmn.Engine(model).replay(t, x, y, vx, vy, s)
    e = tmn.Engine(model)
    for i in range(len(t)):
        p = e.tick(t[i], x[i], y[i], vx[i], vy[i], stream=int(s[i]))
        assert p.status == tmn.Status.ok and p.verdict == tmn.Verdict(ref.verdict[i])
        assert p.stream == s[i] and p.t == t[i] and p.t_grid == ref.t_grid[i]
        np.testing.assert_array_equal(p.path, ref.paths[i])
        np.testing.assert_array_equal(p.radius, ref.radius[i])
        assert p.work == ref.work[i] and p.blend == ref.blend[i]
        for got, want in ((p.d2, ref.d2[i]), (p.cert_error, ref.cert[i])):
            assert got == want or (math.isnan(got) and math.isnan(want))
    assert p.path.shape == (e.horizons, 2) and p.path.dtype == np.float64
    assert p.radius.dtype == np.float32
    assert set(p.stage_ns) == set(tmn.STAGES) and p.stages_timed and p.total_ns > 0
    assert isinstance(p.origin, tuple) and len(p.origin) == 2 and p.h0 > 0 and p.dt > 0
    assert not p.restarted
    # the point query, positional or by keyword, exact at a horizon
    dt = p.t_grid - p.t + p.h0
    assert p.at(dt) == p.at(dt=dt) == tuple(p.path[0])
    assert math.isnan(p.at(-1.0)[0])


def test_the_radius_and_its_point_query_come_through(tmp_path: Path) -> None:
    e = tmn.Engine(None)  # the built-in model has an uncertainty calibration
    t, x, y, vx, vy, _ = frames(400, 1)
    scale = np.asarray(e.model.config["normalisation"]["output_scale"])
    for i in range(len(t)):
        p = e.tick(t[i], x[i] * scale[0], y[i] * scale[1], vx[i] * scale[0], vy[i] * scale[1])
    assert p.verdict != tmn.Verdict.warming and np.isfinite(p.radius).all()
    dt = p.t_grid - p.t + 2 * p.h0
    assert p.radius_at(dt) == p.radius_at(dt=dt) == p.radius[1]


def test_each_prediction_is_its_own_record(model: tmn.Model) -> None:
    e = tmn.Engine(model)
    t, x, y, vx, vy, _ = frames(400, 1)
    kept = [e.tick(t[i], x[i], y[i], vx[i], vy[i]) for i in range(len(t))]
    paths = [p.path for p in kept]
    for i in range(len(t)):  # later ticks (and the free list's reuse) changed nothing
        np.testing.assert_array_equal(kept[i].path, paths[i])
        assert kept[i].t == t[i]
    assert len({id(p) for p in kept}) == len(kept)
    del kept
    gc.collect()
    p, q = (e.tick(t[-1] + k * 1e-3, 0.1, 0.2, 0.0, 0.0) for k in (1, 2))
    assert p is not q and p.t != q.t


def test_tick_takes_positional_or_keyword_arguments_of_any_real_type(model: tmn.Model) -> None:
    e = tmn.Engine(model)
    a = e.tick(1.0, 0.5, 0.25, stream=3)                     # position only
    b = e.tick(t=1.001, x=0.5, y=0.25, vx=0.0, vy=0.0, stream=np.uint64(3))
    c = e.tick(np.float32(1.002), 1, np.float64(0.25), None, None, 3)
    assert a.stream == b.stream == c.stream == 3
    assert e.tick(1.0, 0.0, 0.0, stream=2**64 - 1).stream == 2**64 - 1


@pytest.mark.parametrize("args,kwargs,error,match", [
    ((1.0, 0.0), {}, TypeError, "missing required argument 'y'"),
    ((1.0, 0.0, 0.0, 0.0, 0.0, 1, 7), {}, TypeError, "at most 6 arguments"),
    ((1.0, 0.0, 0.0), {"z": 1.0}, TypeError, "unexpected keyword argument 'z'"),
    ((1.0, 0.0, 0.0), {"t": 2.0}, TypeError, "multiple values for argument 't'"),
    ((1.0, 0.0, 0.0, 1.0), {}, ValueError, "give both vx and vy"),
    ((1.0, 0.0, 0.0), {"vy": 1.0}, ValueError, "give both vx and vy"),
    ((1.0, "x", 0.0), {}, TypeError, "must be real number"),
    ((1.0, 0.0, 0.0), {"stream": -1}, TypeError, r"stream must be an integer in \[0, 2\^64\)"),
    ((1.0, 0.0, 0.0), {"stream": 2**64}, TypeError, r"stream must be an integer"),
    ((1.0, 0.0, 0.0), {"stream": 1.5}, TypeError, "integer"),
])
def test_bad_arguments_are_refused_before_the_engine_runs(
        model: tmn.Model, args: tuple, kwargs: dict, error: type, match: str) -> None:
    e = tmn.Engine(model)
    with pytest.raises(error, match=match):
        e.tick(*args, **kwargs)
    assert e.stream_count == 0


def test_a_refused_tick_raises_tick_error_with_its_status(model: tmn.Model) -> None:
    e = tmn.Engine(model)
    e.tick(1.0, 0.0, 0.0, stream=4)
    with pytest.raises(tmn.TickError, match="time_not_increasing: tick t=1.0 on stream 4") as err:
        e.tick(1.0, 0.0, 0.0, stream=4)
    assert err.value.status == tmn.Status.time_not_increasing


def test_a_prediction_is_made_only_by_the_engine_and_reads_well(model: tmn.Model) -> None:
    with pytest.raises(TypeError):
        tmn.Prediction()
    p = tmn.Engine(model).tick(1.0, 0.5, 0.25, stream=9)
    assert isinstance(p, tmn.Prediction)
    assert repr(p).startswith("Prediction(stream=9, t=1.0, status=ok, verdict=warming")
    with pytest.raises(AttributeError):
        p.t = 2.0  # read-only


# --- tick_many ------------------------------------------------------------------

def test_tick_many_gives_each_row_what_tick_gives(model: tmn.Model) -> None:
    t, x, y, vx, vy, s = frames(200, 5)
    x = x.copy()
    x[37] = np.nan  # a bad tick mid-frame: its row says so, the others run
    e, ref = tmn.Engine(model), tmn.Engine(model)
    batches = [e.tick_many(t[f:f + 5], x[f:f + 5], y[f:f + 5], vx[f:f + 5], vy[f:f + 5],
                           s[f:f + 5]) for f in range(0, len(t), 5)]
    assert all(b.dtype == e.batch_dtype and len(b) == 5 for b in batches)
    rows = np.concatenate(batches)
    for i in range(len(t)):
        r = rows[i]
        try:
            p = ref.tick(t[i], x[i], y[i], vx[i], vy[i], stream=int(s[i]))
        except tmn.TickError as err:
            assert i == 37 and err.status == tmn.Status.non_finite
            assert r["status"] == int(tmn.Status.non_finite)
            assert r["verdict"] == tmn.NO_PREDICTION and np.isnan(r["path"]).all()
            assert np.isnan(r["radius"]).all() and np.isnan(r["t_grid"])
            continue
        assert r["status"] == int(tmn.Status.ok) and r["verdict"] == int(p.verdict)
        assert r["stream"] == p.stream and r["t"] == p.t and r["t_grid"] == p.t_grid
        assert r["dt"] == p.dt and tuple(r["origin"]) == p.origin
        np.testing.assert_array_equal(r["path"], p.path)
        np.testing.assert_array_equal(r["radius"], p.radius)
        assert r["work"] == p.work and r["blend"] == np.float32(p.blend)
        assert r["restarted"] == p.restarted and r["stages_timed"] == p.stages_timed
        for got, want in ((r["d2"], p.d2), (r["cert_error"], p.cert_error)):
            assert got == np.float32(want) or (np.isnan(got) and math.isnan(want))
    assert (rows["total_ns"][rows["status"] == 0] > 0).all()


def test_tick_many_without_velocity_or_stream_and_into_out(model: tmn.Model) -> None:
    t, x, y, _, _, _ = frames(50, 1)
    e, ref = tmn.Engine(model), tmn.Engine(model)
    out = np.zeros(len(t), e.batch_dtype)
    got = e.tick_many(t, x, y, out=out)
    assert got is out
    want = ref.replay(t, x, y)
    np.testing.assert_array_equal(out["path"], want.paths)
    assert (out["stream"] == 0).all()


@pytest.mark.parametrize("change,match", [
    ({"vx": np.zeros(4)}, "give both vx and vy"),
    ({"x": np.zeros(3)}, "same length"),
    ({"stream": np.array([1, 2, -3, 4])}, r"stream ids must be in \[0, 2\^64\)"),
    ({"stream": np.array([1.0, 2.0, 3.0, 4.0])}, "stream ids must be integers"),
    ({"stream": np.array([1, 2])}, "stream must have the same length"),
    ({"out": np.zeros(4)}, "out must be"),
    ({"out": np.zeros(3, dtype=tmn.Engine(None).batch_dtype)}, "out must be"),
])
def test_tick_many_refuses_bad_arrays(model: tmn.Model, change: dict, match: str) -> None:
    e = tmn.Engine(model)
    args = dict(t=1.0 + np.arange(4) * 1e-3, x=np.zeros(4), y=np.zeros(4))
    if "out" in change and change["out"].dtype.names:
        change = {"out": np.zeros(3, dtype=e.batch_dtype)}
    with pytest.raises(ValueError, match=match):
        e.tick_many(**{**args, **change})
    assert e.stream_count == 0


def test_batch_dtype_holds_k_horizons(tmp_path: Path) -> None:
    m = tmn.load(random_model(tmp_path / "k3", system="A", horizons_ms=[20.0, 40.0, 60.0]))
    d = tmn.Engine(m).batch_dtype
    assert d["path"].shape == (3, 2) and d["radius"].shape == (3,)
    assert d.itemsize % 8 == 0 and d.fields["path"][1] % 8 == 0
