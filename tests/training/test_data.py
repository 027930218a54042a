"""Recordings: checks with clear errors, gap splits, resampling, the differentiator,
the synthetic generator and the real-data adapters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tmn_train import config as config_mod
from tmn_train import synth
from tmn import _core
from tmn_train.data import DataError, read_table, to_streams, write_table
from tmn_train.sources import load_sources

REPO = Path(__file__).resolve().parents[2]
CFG = config_mod.load(REPO / "configs" / "B_temporal_solver.yaml")
GRID = _core.IngestParams(2000.0, 8, 0.032)


def reference_velocity(p: np.ndarray, rate: float, window: int) -> np.ndarray:
    """The causal least-squares slope of data.py's docstring, written out in numpy
    (an independent reference for the engine's differentiator)."""
    v = np.zeros_like(p)
    for i in range(1, len(p)):
        m = min(i + 1, window)
        j = np.arange(m) - (m - 1) / 2.0
        v[i] = rate * np.dot(j / np.sum(j * j), p[i - m + 1:i + 1])
    return v


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_a_missing_column_is_refused_with_its_name(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "r.csv", "t,x", ["0,1", "0.001,2"])
    with pytest.raises(DataError, match=r"missing column\(s\) y"):
        read_table(p)


def test_non_monotonic_time_is_refused_with_the_file_row(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "r.csv", "t,x,y", ["0,0,0", "0.001,1,1", "0.001,2,2", "0.002,3,3"])
    with pytest.raises(DataError, match="not strictly increasing at row 4"):
        to_streams(read_table(p), str(p), GRID, 0.1)


def test_a_nan_run_is_refused_with_its_rows(tmp_path: Path) -> None:
    rows = [f"{i * 0.001},{i},{i}" for i in range(10)]
    rows[4] = "0.004,nan,4"
    rows[5] = "0.005,,5"
    p = write_csv(tmp_path / "r.csv", "t,x,y", rows)
    with pytest.raises(DataError, match=r"column 'x': NaN run at rows 6\.\.7 \(2 rows"):
        to_streams(read_table(p), str(p), GRID, 0.1)


def test_a_gap_longer_than_the_limit_splits_a_stream_and_the_stream_column_separates() -> None:
    t = np.concatenate([np.arange(100) * 1e-3, 0.5 + np.arange(100) * 1e-3, np.arange(50) * 1e-3])
    cols = {"t": t, "x": np.arange(250.0), "y": np.zeros(250),
            "stream": np.array(["a"] * 200 + ["b"] * 50)}
    streams = to_streams(cols, "rec", GRID, max_gap_s=0.1)
    assert [s.name for s in streams] == ["rec/a/0", "rec/a/1", "rec/b/0"]
    assert [round(s.t[-1] - s.t[0], 6) for s in streams] == [0.099, 0.099, 0.049]


def test_resampling_interpolates_linearly_onto_the_model_grid() -> None:
    t = np.array([0.0, 0.001, 0.003])
    grid, x, _, vx, _ = _core.resample(GRID, t, np.array([0.0, 1.0, 5.0]), np.zeros(3),
                                       np.array([1.0, 2.0, 3.0]), np.zeros(3))
    assert np.allclose(grid, [0, 0.0005, 0.001, 0.0015, 0.002, 0.0025, 0.003])
    assert np.allclose(x, [0, 0.5, 1, 2, 3, 4, 5])
    assert np.allclose(vx, [1, 1.5, 2, 2.25, 2.5, 2.75, 3])


def test_resampling_of_an_irregular_recording_is_numpys_interpolation() -> None:
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.001, 0.02, 500))  # 50 to 1000 Hz, jittered
    x, y = rng.normal(0, 100, 500), rng.normal(0, 100, 500)
    grid, gx, gy, _, _ = _core.resample(GRID, t, x, y)
    assert grid[0] == t[0] and grid[-1] <= t[-1] < grid[-1] + 1 / 2000.0
    assert np.allclose(np.diff(grid), 1 / 2000.0)
    assert np.max(np.abs(gx - np.interp(grid, t, x))) <= 1e-9
    assert np.max(np.abs(gy - np.interp(grid, t, y))) <= 1e-9


def test_the_differentiator_is_the_causal_least_squares_slope() -> None:
    rate = 2000.0
    p = 3.0 + 250.0 * np.arange(200) / rate
    t = np.arange(200) / rate
    v = _core.resample(GRID, t, p, -p)[3]
    assert v[0] == 0.0 and np.allclose(v[1:], 250.0)
    q = p.copy()
    q[150:] += 100.0  # the future does not change the past
    assert np.array_equal(_core.resample(GRID, t, q, -q)[3][:150], v[:150])
    noisy = np.random.default_rng(1).normal(0, 5, 300)
    for window in (2, 3, 8, 17):
        got = _core.resample(_core.IngestParams(rate, window, 0.032), np.arange(300) / rate,
                             noisy, noisy)[3]
        assert np.max(np.abs(got - reference_velocity(noisy, rate, window))) <= 1e-9 * rate


def test_files_without_velocity_get_the_differentiator(tmp_path: Path) -> None:
    t = np.arange(400) / 1000.0
    p = tmp_path / "r.npz"
    np.savez(p, t=t, x=100.0 * t, y=-50.0 * t)
    (s,) = to_streams(read_table(p), str(p), GRID, 0.1)
    assert len(s) == 799
    assert np.allclose(s.vx[8:], 100.0) and np.allclose(s.vy[8:], -50.0)


def test_synthetic_data_is_seedable_covers_every_regime_and_round_trips_as_csv_and_npz(
        tmp_path: Path) -> None:
    a = synth.generate(0.5, seed=7, stream_s=5.0)
    b = synth.generate(0.5, seed=7, stream_s=5.0)
    c = synth.generate(0.5, seed=8, stream_s=5.0)
    assert all(np.array_equal(s.x, u.x) for s, u in zip(a, b))
    assert not np.array_equal(a[0].x, c[0].x)
    assert {s.meta["regime"] for s in a} == set(synth.REGIMES)
    assert all(np.allclose(np.diff(s.t), 1 / 2000.0) for s in a)
    for ext in ("npz", "csv"):
        path = write_table(tmp_path / f"s.{ext}", a[:2])
        back = to_streams(read_table(path), str(path), GRID, 0.1)
        assert len(back) == 2
        assert np.allclose(back[1].x, a[1].x) and np.allclose(back[1].vy, a[1].vy)


def test_lasa_is_read_from_the_installed_package_and_split_by_demonstration() -> None:
    streams = load_sources(["lasa:Angle,Sine"], CFG)
    assert len(streams) == 14
    assert {s.meta["shape"] for s in streams} == {"Angle", "Sine"}
    by_split = {k: sorted(s.name for s in streams if s.split == k) for k in ("train", "val", "test")}
    assert [len(v) for v in by_split.values()] == [10, 2, 2]
    assert all("/6/" in n for n in by_split["test"])
    assert all(np.allclose(np.diff(s.t), 1 / 2000.0) for s in streams)


def test_eyelink_gaze_is_read_with_blinks_as_gaps() -> None:
    streams = load_sources(["eyelink"], CFG)
    assert len(streams) > 3  # dropouts split the three recordings
    assert all(np.isfinite(s.x).all() and np.isfinite(s.vx).all() for s in streams)
    assert all(np.allclose(np.diff(s.t), 1 / 2000.0) for s in streams)
