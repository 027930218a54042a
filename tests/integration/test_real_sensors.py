"""Real sensors through the daemon: position-only ticks (frame kind 4) at the
sensor's own rate, from tmn.Client and from ``tmn-client replay`` on a t, x, y
CSV, and the point at a given time (kinds 5/6); every answer equals the
in-process engine's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from serve_daemon import Daemon, tmn_client_argv

import tmn
from tmn.protocol import POINT_DTYPE, make_ticks
from tmn.testing import random_model

STREAM = 4242  # this module's stream ids start here


def hand(rate_hz: float, seconds: float = 1.5) -> tuple[np.ndarray, ...]:
    """A mouse-like motion sampled at rate_hz: t, x, y (no velocity)."""
    t = 2.0 + np.arange(int(seconds * rate_hz)) / rate_hz
    return t, 0.4 * np.sin(2.1 * t), 0.3 * np.cos(1.3 * t) + 0.1 * np.sin(6.0 * t)


def test_position_only_ticks_at_125_hz_are_answered_as_the_engine_answers(
        daemon_b: Daemon, models: dict[str, Path]) -> None:
    t, x, y = hand(125.0)
    local = tmn.Engine(models["B"]).replay(t, x, y)
    with daemon_b.client() as c:
        one = c.tick(float(t[0]), float(x[0]), float(y[0]), stream=STREAM)
        rest = c.ticks(make_ticks(t[1:], x[1:], y[1:], stream=STREAM), velocity=False).records
        # kind 4 ignores vx and vy: garbage in them changes nothing
        noisy = make_ticks(t, x, y, np.full_like(t, 1e30), np.full_like(t, -1e30), STREAM + 1)
        ignored = c.ticks(noisy, velocity=False).records
    got = np.concatenate([[one], rest])
    assert (got["status"] == 0).all()
    np.testing.assert_array_equal(got["path"], local.paths)
    np.testing.assert_array_equal(got["t_grid"], local.t_grid)
    np.testing.assert_array_equal(got["verdict"], local.verdict)
    np.testing.assert_array_equal(ignored["path"], local.paths)


def test_a_sensor_that_starts_sending_velocity_is_not_poisoned_by_its_position_only_ticks(
        daemon_b: Daemon) -> None:
    """Regression (found by libFuzzer): a position-only tick kept the peer's vx, vy
    as the stream's last velocity, and the next tick with velocity interpolated
    from them; NaN there made every later answer non_finite_output (and was
    undefined behaviour in the network)."""
    t, x, y = hand(125.0, seconds=0.6)
    vx, vy = np.gradient(x, t), np.gradient(y, t)
    half = len(t) // 2
    answers = []
    for sid, junk in ((STREAM + 10, np.nan), (STREAM + 11, 0.0)):
        with daemon_b.client() as c:
            first = make_ticks(t[:half], x[:half], y[:half], np.full(half, junk),
                               np.full(half, junk), sid)
            a = c.ticks(first, velocity=False).records
            b = c.ticks(make_ticks(t[half:], x[half:], y[half:], vx[half:], vy[half:], sid)).records
        answers.append(np.concatenate([a, b]))
    assert (answers[0]["status"] == 0).all(), np.unique(answers[0]["status"])
    assert np.isfinite(answers[0]["path"]).all()
    np.testing.assert_array_equal(answers[0]["path"], answers[1]["path"])


def test_tmn_client_replays_a_csv_without_velocity(daemon_b: Daemon, tmp_path: Path) -> None:
    t, x, y = hand(250.0)
    csv = tmp_path / "mouse.csv"
    np.savetxt(csv, np.column_stack([t, x, y, np.full(len(t), STREAM + 2)]), delimiter=",",
               header="t,x,y,stream", comments="", fmt=["%.9f", "%.9f", "%.9f", "%d"])
    r = subprocess.run([*tmn_client_argv(), "--endpoint", daemon_b.endpoint, "replay", str(csv),
                        "--batch", "50", "--print-every", "1000"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"{len(t)} ticks in {-(-len(t) // 50)} requests" in r.stdout


def test_stats_report_the_sensors_rate_and_warn_when_it_is_far_from_the_grid(
        serve, models: dict[str, Path]) -> None:
    daemon = serve(models["B"])
    t, x, y = hand(125.0, seconds=0.5)
    with daemon.client() as c:
        assert c.stats()["stats"]["report_rate"]["observed_hz"] is None
        c.ticks(make_ticks(t, x, y, stream=1), velocity=False)
        rate = c.stats()["stats"]["report_rate"]
    assert rate["model_hz"] == 2000.0
    assert 110.0 < rate["observed_hz"] < 140.0  # the histogram's buckets are ~4 % wide
    assert "125 Hz" in rate["warning"] or "Hz, the model's grid is 2000 Hz" in rate["warning"]


def test_a_point_query_answers_the_engines_point_and_radius_at_that_time(
        serve, tmp_path: Path) -> None:
    """Kinds 5/6 (a point query): each tick's answer is the local engine's
    Prediction.at(dt) and radius_at(dt), bit for bit, without the path; the full
    records of kinds 1/4 carry the radius of every path point."""
    c0 = [float(4.0 * (k + 1) ** 2) for k in range(10)]
    model = random_model(tmp_path / "m", system="B", weight_scale=0.3, uncertainty={
        "quantile": 0.9, "radius_c0": c0, "radius_c1": [1e-3 * c for c in c0]})
    daemon = serve(model)
    t, x, y = hand(125.0, seconds=0.8)
    dt = 1.0 / 60.0  # the next display frame
    engine = tmn.Engine(model)
    want = [engine.tick(t[i], x[i], y[i], stream=1) for i in range(len(t))]
    with daemon.client() as c:
        points = c.ticks(make_ticks(t, x, y, stream=1), velocity=False, at=dt).records
        full = c.ticks(make_ticks(t, x, y, stream=2), velocity=False).records
        one = c.tick(float(t[-1]) + 0.008, float(x[-1]), float(y[-1]), stream=1, at=dt)
    assert points.dtype == POINT_DTYPE and (points["status"] == 0).all()
    np.testing.assert_array_equal(points["x"], [p.at(dt)[0] for p in want])
    np.testing.assert_array_equal(points["y"], [p.at(dt)[1] for p in want])
    np.testing.assert_array_equal(points["radius"], np.float32([p.radius_at(dt) for p in want]))
    np.testing.assert_array_equal(full["radius"], np.stack([p.radius for p in want]))
    warm = points["verdict"] != int(tmn.Verdict.warming)
    assert warm.sum() > 50 and np.isfinite(points["radius"][warm]).all()
    assert np.isnan(points["radius"][~warm]).all() and np.isfinite(points["x"]).all()
    assert one["status"] == 0 and np.isfinite([one["x"], one["y"], one["radius"]]).all()


def test_position_only_ticks_with_bad_values_gaps_and_rate_changes_through_the_daemon(
        daemon_b: Daemon, models: dict[str, Path]) -> None:
    """Kind 4 through the daemon, as the engine answers it: a NaN position is
    refused (non_finite) and leaves the stream as it was; a single tick is
    answered; a gap longer than max_gap_ms restarts the stream; a sensor that
    changes its report rate mid-stream (125 Hz, then 1 kHz, then 60 Hz) is
    answered exactly as the local engine answers it."""
    t = np.concatenate([2.0 + np.arange(60) / 125.0, 2.5 + np.arange(300) / 1000.0,
                        2.81 + np.arange(30) / 60.0, 3.5 + np.arange(50) / 125.0])
    x, y = 0.4 * np.sin(2.1 * t), 0.3 * np.cos(1.3 * t)
    bad = x.copy()
    bad[[10, 200]] = np.nan  # refused, in two different rate regimes
    with daemon_b.client() as c:
        (single,) = c.ticks(make_ticks(t[:1], x[:1], y[:1], stream=STREAM + 20),
                            velocity=False).records
        got = c.ticks(make_ticks(t, bad, y, stream=STREAM + 21), velocity=False).records
    assert single["status"] == 0 and single["verdict"] == int(tmn.Verdict.warming)
    assert got["status"][10] == got["status"][200] == int(tmn.Status.non_finite)
    ok = np.isfinite(bad)
    local = tmn.Engine(models["B"]).replay(t[ok], x[ok], y[ok])
    np.testing.assert_array_equal(got["path"][ok], local.paths)
    np.testing.assert_array_equal(got["verdict"][ok], local.verdict)
    restarted = np.flatnonzero(got["flags"] & 1)
    assert list(restarted) == [390]  # 0.2 s without a tick: the stream starts again
    assert got["verdict"][390] == int(tmn.Verdict.warming)


def test_tmn_client_replay_refuses_a_csv_with_a_nan_position_in_one_line(
        daemon_b: Daemon, tmp_path: Path) -> None:
    t, x, y = hand(125.0, seconds=0.2)
    x[5] = np.nan
    csv = tmp_path / "nan.csv"
    np.savetxt(csv, np.column_stack([t, x, y]), delimiter=",", header="t,x,y", comments="")
    r = subprocess.run([*tmn_client_argv(), "--endpoint", daemon_b.endpoint, "replay", str(csv)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr  # tmn-client's error exit
    assert str(csv) in r.stderr and "NaN" in r.stderr, r.stderr
