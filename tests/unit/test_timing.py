"""What a tick times (engine.hpp, "Timing"): all, sampled or off.

The timing never changes a prediction; it only decides which clock reads a
tick makes and so which of ``total_ns`` and ``stage_ns`` hold measurements.
"""

from __future__ import annotations

import numpy as np
import pytest

import tmn
from tmn.engine import TIMING_SAMPLE_PERIOD, TIMINGS
from tmn.testing import random_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tmn.Model:
    return tmn.load(random_model(tmp_path_factory.mktemp("timing") / "b", system="B",
                                 weight_scale=0.3))


def recording(n: int = 4000, streams: int = 4) -> tuple[np.ndarray, ...]:
    i = np.arange(n)
    t = 1.0 + (i // streams) / 2000.0
    x, y = 3 * np.sin(1.3 * t + i % streams), 2 * np.cos(0.7 * t)
    return t, x, y, 3 * 1.3 * np.cos(1.3 * t + i % streams), -1.4 * np.sin(0.7 * t), \
        (i % streams).astype(np.uint64)


def replay(model: tmn.Model, timing: str) -> tmn.Replay:
    return tmn.Engine(model, timing=timing).replay(*recording())


def test_the_timings_are_exported_from_cpp_and_all_is_the_default(model: tmn.Model) -> None:
    assert TIMINGS == ("all", "sampled", "off")
    assert TIMING_SAMPLE_PERIOD == tmn._core.TIMING_SAMPLE_PERIOD > 1
    assert tmn.Engine(model).timing == "all"
    with pytest.raises(ValueError, match="timing must be one of"):
        tmn.Engine(model, timing="some")


def test_timing_never_changes_a_prediction(model: tmn.Model) -> None:
    runs = {t: replay(model, t) for t in TIMINGS}
    ref = runs["all"]
    assert ref.ok == len(ref.status)
    for timing, r in runs.items():
        for field in ("paths", "verdict", "cert", "d2", "blend", "t_grid", "work", "radius"):
            np.testing.assert_array_equal(getattr(r, field), getattr(ref, field),
                                          err_msg=f"{timing}: {field}")


def test_all_times_every_tick_and_every_stage(model: tmn.Model) -> None:
    r = replay(model, "all")
    assert (r.total_ns > 0).all() and r.stages_timed.all()
    assert (r.stage_ns.sum(axis=1) <= r.total_ns + len(tmn.STAGES)).all()  # rounding per stage


def test_sampled_times_every_total_and_the_stages_of_about_one_tick_in_the_period(
        model: tmn.Model) -> None:
    r = replay(model, "sampled")
    assert (r.total_ns > 0).all()
    timed = r.stages_timed
    share = timed.mean()
    assert 0.5 / TIMING_SAMPLE_PERIOD <= share <= 2.0 / TIMING_SAMPLE_PERIOD, share
    assert (r.stage_ns[~timed] == 0).all()
    # no periodic stream order aliases with the sampler: every stream gets sampled
    ids = recording()[5]
    assert set(ids[timed].tolist()) == set(ids.tolist())


def test_off_times_nothing(model: tmn.Model) -> None:
    r = replay(model, "off")
    assert (r.total_ns == 0).all() and (r.stage_ns == 0).all() and not r.stages_timed.any()


def test_a_prediction_says_whether_its_stages_were_timed(model: tmn.Model) -> None:
    e = tmn.Engine(model, timing="off")
    t, x, y, vx, vy, _ = recording(8, streams=1)
    p = e.tick(t[0], x[0], y[0], vx[0], vy[0])
    assert not p.stages_timed and p.total_ns == 0 and set(p.stage_ns.values()) == {0}
    e.timing = "all"  # settable between ticks
    assert e.timing == "all"
    p = e.tick(t[1], x[1], y[1], vx[1], vy[1])
    assert p.stages_timed and p.total_ns > 0 and sum(p.stage_ns.values()) > 0
    with pytest.raises(ValueError, match="timing must be one of"):
        e.timing = "never"


def test_a_refused_tick_reports_no_stage_times(model: tmn.Model) -> None:
    e = tmn.Engine(model, timing="all")
    r = e.replay(np.array([1.0, 0.5]), np.array([0.0, 0.0]), np.array([0.0, 0.0]))
    assert r.status[1] == int(tmn.Status.time_not_increasing)
    assert (r.stage_ns[1] == 0).all() and not r.stages_timed[1]
