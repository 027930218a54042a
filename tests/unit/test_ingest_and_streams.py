"""Stage 1 (ingest) and the stream table, through tmn.Engine.

The central property (engine.hpp, tick.hpp): a bad tick returns its status and
leaves every stream exactly as it was, so the next good tick answers bit for
bit what it would have answered without the bad tick. Around it: warming,
restarts after gaps, many streams in one engine, reset, eviction, capacity and
the hash table's backward-shift deletion.
"""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest

import tmn
from tmn import _core
from tmn.testing import random_model

FIELDS = ("t", "x", "y", "vx", "vy")
NO_PREDICTION = 255
# B with a tight threshold, and a budget calibrated below (mixed_budget) so that
# pass, implausible and uncertified all occur
MIXED_GATE = {"eps": 0.001, "budget": 200_000, "lambda": 0.1, "threshold": 30.0}
MIXED_SEED = 5  # a random model whose passes need varied work on these trajectories
VARIANTS = [("A", "fp32"), ("A", "int8"), ("B", "fp32"), ("B", "int8"), ("B-mixed", "fp32"),
            ("B-mixed", "int8")]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    unlimited = random_model(root / "B-unlimited", system="B", seed=MIXED_SEED, gate=MIXED_GATE)
    return {
        "A": random_model(root / "A", system="A", seed=11),
        "B": random_model(root / "B", system="B", seed=12),
        "B-mixed": random_model(root / "B-mixed", system="B", seed=MIXED_SEED,
                                gate={**MIXED_GATE, "budget": mixed_budget(unlimited)}),
    }


def mixed_budget(unlimited: Path) -> int:
    """A budget that certifies some but not all passes on each of the tests'
    trajectories, from the work the same model spends with an unlimited budget."""
    works = []
    for seed, n in ((500, 1200), (400, 1200)):
        r = tmn.Engine(unlimited, precision="fp32").replay(*trajectory(seed, n).T)
        works.append(r.work[r.verdict == tmn.Verdict.pass_.value])
    budget = max(int(w.min()) for w in works)
    assert budget < min(int(w.max()) for w in works), "no budget splits both trajectories"
    return budget


def engine(models: dict[str, Path], name: str, precision: str = "fp32",
           max_streams: int = 64) -> tmn.Engine:
    return tmn.Engine(models[name], precision=precision, max_streams=max_streams)


def trajectory(seed: int, n: int, t0: float = 1.0, dt: float = 0.0005) -> np.ndarray:
    """(n, 5) ticks t, x, y, vx, vy: smooth motion sampled with jittered dt."""
    rng = np.random.default_rng(seed)
    t = t0 + np.cumsum(dt * (1.0 + 0.2 * rng.uniform(-1.0, 1.0, n)))
    ph = rng.uniform(0.0, 6.0, 3)
    x = np.sin(3 * t + ph[0]) + 0.3 * np.sin(11 * t + ph[1])
    y = np.cos(2 * t + ph[2])
    vx = 3 * np.cos(3 * t + ph[0]) + 3.3 * np.cos(11 * t + ph[1])
    vy = -2 * np.sin(2 * t + ph[2])
    return np.stack([t, x, y, vx, vy], axis=1)


def outcome(p: _core.Prediction) -> tuple:
    """Everything a tick answers except timings, as exact bytes."""
    return (p.path.tobytes(), int(p.verdict), struct.pack("<d", p.d2),
            struct.pack("<d", p.cert_error), p.work, p.restarted)


def run(e: tmn.Engine, ticks: np.ndarray, stream: int = 0) -> list[tuple]:
    return [outcome(e.tick(*row, stream=stream)) for row in ticks]


def bad_tick(kind: str, good: np.ndarray, prev_t: float | None) -> tuple[np.ndarray, tmn.Status]:
    """A tick that must be refused, modelled on the good tick that follows it."""
    row = good.copy()
    if kind == "equal_t":
        row[0] = prev_t
        return row, tmn.Status.time_not_increasing
    if kind == "backwards_t":
        row[0] = prev_t - 1e-3
        return row, tmn.Status.time_not_increasing
    if kind == "far_future_nan":  # would be a restart, if it were accepted
        row[0] += 10.0
        row[1] = math.nan
        return row, tmn.Status.non_finite
    value, field = kind.split("_")
    row[FIELDS.index(field)] = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[value]
    return row, tmn.Status.non_finite


NON_FINITE_KINDS = [f"{v}_{f}" for v in ("nan", "inf", "-inf") for f in FIELDS] + [
    "far_future_nan"]
TIME_KINDS = ["equal_t", "backwards_t"]


# --------------------------------------------------------------------------
# ingest: the status codes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("field", FIELDS)
def test_non_finite_value_in_any_field_is_refused_as_non_finite(
        models: dict[str, Path], field: str, value: float) -> None:
    e = engine(models, "B")
    ticks = trajectory(1, 3)
    e.tick(*ticks[0], stream=5)
    row = ticks[1].copy()
    row[FIELDS.index(field)] = value
    with pytest.raises(tmn.TickError) as info:
        e.tick(*row, stream=5)
    assert info.value.status == tmn.Status.non_finite
    assert isinstance(info.value, ValueError)
    # the same on a stream that does not exist yet
    with pytest.raises(tmn.TickError) as info:
        e.tick(*row, stream=6)
    assert info.value.status == tmn.Status.non_finite
    assert e.stream_count == 1


@pytest.mark.parametrize("dt", [0.0, -1e-9, -1e-3, -100.0])
def test_time_equal_or_backwards_is_refused_as_time_not_increasing(
        models: dict[str, Path], dt: float) -> None:
    e = engine(models, "A")
    t = trajectory(2, 2)
    e.tick(*t[0], stream=1)
    row = t[1].copy()
    row[0] = t[0][0] + dt
    with pytest.raises(tmn.TickError) as info:
        e.tick(*row, stream=1)
    assert info.value.status == tmn.Status.time_not_increasing
    e.tick(*t[1], stream=1)  # the stream goes on


def test_status_codes_are_append_only_numbers() -> None:
    assert [int(s.value) for s in (tmn.Status.ok, tmn.Status.non_finite,
                                   tmn.Status.time_not_increasing, tmn.Status.capacity_exceeded,
                                   tmn.Status.unknown_stream)] == [0, 1, 2, 3, 4]


def test_reset_of_an_unknown_stream_is_refused_as_unknown_stream(
        models: dict[str, Path]) -> None:
    e = engine(models, "B")
    with pytest.raises(tmn.TickError) as info:
        e.reset(42)
    assert info.value.status == tmn.Status.unknown_stream
    e.tick(*trajectory(3, 1)[0], stream=42)
    e.reset(42)
    with pytest.raises(tmn.TickError) as info:
        e.reset(42)  # already forgotten
    assert info.value.status == tmn.Status.unknown_stream
    assert e.stream_count == 0


# --------------------------------------------------------------------------
# the key property: a bad tick changes nothing
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name,precision", VARIANTS)
def test_bad_ticks_anywhere_leave_every_later_output_bit_identical(
        models: dict[str, Path], name: str, precision: str) -> None:
    ticks = trajectory(500, 1200)
    clean = run(engine(models, name, precision), ticks, stream=9)
    if name == "B-mixed":  # the gate's three verdicts all take part
        assert {o[1] for o in clean} >= {0, 1, 2, 3}
    rng = np.random.default_rng(7)
    kinds = NON_FINITE_KINDS + TIME_KINDS
    for rep in range(3):
        e = engine(models, name, precision)
        # bad ticks before ~10% of the good ones, sometimes in bursts; always before tick 0
        positions = set(rng.choice(len(ticks), size=100, replace=False).tolist()) | {0}
        refused = 0
        for i, good in enumerate(ticks):
            if i in positions:
                for _ in range(int(rng.integers(1, 4))):
                    allowed = NON_FINITE_KINDS if i == 0 else kinds
                    kind = allowed[int(rng.integers(len(allowed)))]
                    row, status = bad_tick(kind, good, ticks[i - 1][0] if i else None)
                    with pytest.raises(tmn.TickError) as info:
                        e.tick(*row, stream=9)
                    assert info.value.status == status, kind
                    refused += 1
                    if i == 0:  # a refused first tick does not create the stream
                        assert e.stream_count == 0
            assert outcome(e.tick(*good, stream=9)) == clean[i], f"rep {rep}, tick {i}"
        assert refused >= 100 and e.stream_count == 1


@pytest.mark.parametrize("name,precision", VARIANTS)
def test_every_bad_kind_at_every_phase_is_invisible_to_the_next_good_tick(
        models: dict[str, Path], name: str, precision: str) -> None:
    # one bad tick of each kind, at the first tick, while warming, at the end
    # of warming and after it
    ticks = trajectory(200, 300)
    clean = run(engine(models, name, precision), ticks)
    for kind in NON_FINITE_KINDS + TIME_KINDS:
        e = engine(models, name, precision)
        for i, good in enumerate(ticks):
            if i in (0, 1, 128, 255, 256, 257, 299) and not (i == 0 and kind in TIME_KINDS):
                row, status = bad_tick(kind, good, ticks[i - 1][0] if i else None)
                with pytest.raises(tmn.TickError) as info:
                    e._core.tick(*row, 0)
                assert info.value.status == status
            assert outcome(e.tick(*good)) == clean[i], f"{kind} before tick {i}"


def test_capacity_refusal_leaves_existing_streams_untouched(models: dict[str, Path]) -> None:
    ticks = {s: trajectory(300 + s, 300) for s in range(4)}
    clean = {s: run(engine(models, "B"), ticks[s]) for s in range(4)}
    e = engine(models, "B", max_streams=4)
    for i in range(300):
        for s in range(4):
            assert outcome(e.tick(*ticks[s][i], stream=s)) == clean[s][i]
        if i % 7 == 0:
            with pytest.raises(tmn.TickError) as info:
                e.tick(*ticks[0][i], stream=1000 + i)
            assert info.value.status == tmn.Status.capacity_exceeded
            assert e.stream_count == 4


def test_refused_tick_does_not_refresh_the_idle_clock(models: dict[str, Path]) -> None:
    e = engine(models, "A")
    ticks = trajectory(4, 3)
    e.tick(*ticks[0], stream=1)
    time.sleep(0.08)
    row = ticks[1].copy()
    row[2] = math.nan
    with pytest.raises(tmn.TickError):
        e.tick(*row, stream=1)
    assert e.evict_idle(0.04) == 1  # idle since the last accepted tick, 80 ms ago
    assert e.stream_count == 0


@pytest.mark.parametrize("name,precision", VARIANTS)
def test_replay_reports_bad_rows_and_matches_a_clean_replay_elsewhere(
        models: dict[str, Path], name: str, precision: str) -> None:
    rng = np.random.default_rng(8)
    ticks = trajectory(400, 1200)
    clean = engine(models, name, precision).replay(*ticks.T)
    assert clean.ok == len(ticks) and (clean.status == 0).all()
    if name == "B-mixed":
        assert set(clean.verdict.tolist()) == {0, 1, 2, 3}

    rows, expected, src = [], [], []
    kinds = NON_FINITE_KINDS + TIME_KINDS
    for i, good in enumerate(ticks):
        if i == 0 or rng.random() < 0.15:
            allowed = NON_FINITE_KINDS if i == 0 else kinds
            row, status = bad_tick(allowed[int(rng.integers(len(allowed)))], good,
                                   ticks[i - 1][0] if i else None)
            rows.append(row)
            expected.append(int(status))
            src.append(-1)
        rows.append(good)
        expected.append(0)
        src.append(i)
    arr = np.array(rows)
    src = np.array(src)
    e = engine(models, name, precision)
    r = e.replay(*arr.T)

    np.testing.assert_array_equal(r.status, expected)
    bad = src < 0
    assert r.ok == len(ticks) and bad.sum() > 100
    assert np.isnan(r.paths[bad]).all()
    assert (r.verdict[bad] == NO_PREDICTION).all()
    assert np.isnan(r.cert[bad]).all() and np.isnan(r.d2[bad]).all() and (r.work[bad] == 0).all()
    good = src[~bad]
    assert r.paths[~bad].tobytes() == clean.paths[good].tobytes()
    np.testing.assert_array_equal(r.verdict[~bad], clean.verdict[good])
    assert r.cert[~bad].tobytes() == clean.cert[good].tobytes()
    assert r.d2[~bad].tobytes() == clean.d2[good].tobytes()
    np.testing.assert_array_equal(r.work[~bad], clean.work[good])
    assert r.paths.shape == (len(arr), e.horizons, 2)
    assert r.stage_ns.shape == (len(arr), len(tmn.STAGES))
    assert e.stream_count == 1


@pytest.mark.parametrize("name,precision", VARIANTS)
def test_replay_answers_exactly_what_tick_by_tick_answers(
        models: dict[str, Path], name: str, precision: str) -> None:
    ticks = trajectory(500, 400)
    e = engine(models, name, precision)
    preds = [e.tick(*row) for row in ticks]
    r = engine(models, name, precision).replay(*ticks.T)
    assert r.paths.tobytes() == np.stack([p.path for p in preds]).tobytes()
    np.testing.assert_array_equal(r.verdict, [int(p.verdict) for p in preds])
    assert r.d2.tobytes() == np.array([p.d2 for p in preds], np.float32).tobytes()
    assert r.cert.tobytes() == np.array([p.cert_error for p in preds], np.float32).tobytes()
    np.testing.assert_array_equal(r.work, [p.work for p in preds])


# --------------------------------------------------------------------------
# warming and restarts
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name,after", [("A", tmn.Verdict.ungated), ("B", tmn.Verdict.pass_)])
@pytest.mark.parametrize("window_ms", [None, 20.0, 0.0])
def test_stream_is_warming_for_one_window_then_answers_normally(
        tmp_path: Path, name: str, after: tmn.Verdict, window_ms: float | None) -> None:
    overrides = {} if window_ms is None else {"window_ms": window_ms}
    folder = random_model(tmp_path / "m", system=name, seed=21, **overrides)
    window_s = (128.0 if window_ms is None else window_ms) / 1000.0
    ticks = trajectory(600, 400)
    e = tmn.Engine(folder, precision="fp32", max_streams=2)
    verdicts = [e.tick(*row).verdict for row in ticks]
    expected = [tmn.Verdict.warming if row[0] - ticks[0][0] < window_s else after
                for row in ticks]
    assert verdicts == expected
    assert (verdicts[0] == tmn.Verdict.warming) == (window_s > 0)
    assert verdicts[-1] == after


@pytest.mark.parametrize("name", ["A", "B"])
def test_warming_output_is_the_kalman_prior_path(models: dict[str, Path], name: str) -> None:
    """The prior runs on the model's grid (ingest.hpp): each tick's path is the
    Kalman prior of the newest grid sample the tick reached."""
    model = tmn.load(models[name])
    spec = model.spec()
    kf = _core.KalmanPrior(spec.kalman)
    ticks = trajectory(700, 200)  # all inside the 128 ms window, jittered around the grid
    grid = np.array(_core.resample(spec.ingest, *ticks.T))     # [5, n_grid]
    state, _ = kf.filter(*grid)
    e = tmn.Engine(model, precision="int8", max_streams=1)
    hs = np.array(spec.horizons_s)
    s = kf.init(*grid[:, 0])
    done = 1
    for row in ticks:
        p = e.tick(*row)
        assert p.verdict == tmn.Verdict.warming
        upto = int(np.searchsorted(grid[0], row[0], side="right"))
        for j in range(done, upto):
            kf.step(s, *grid[:, j], grid[0, j] - grid[0, j - 1])
        done = max(done, upto)
        assert p.t_grid == grid[0, done - 1]
        rel, _ = kf.extrapolate(s, hs)
        assert (s.px, s.py) == tuple(state[done - 1, :2])
        np.testing.assert_array_equal(p.path, np.array([s.px, s.py]) + rel.reshape(-1, 2))


@pytest.mark.parametrize("name,precision", VARIANTS)
def test_gap_longer_than_max_gap_restarts_like_a_fresh_stream(
        models: dict[str, Path], name: str, precision: str) -> None:
    first = trajectory(800, 350)
    second = trajectory(801, 350, t0=first[-1][0] + 0.25)  # 250 ms > max_gap_ms = 100
    e = engine(models, name, precision)
    before = [e.tick(*row, stream=3) for row in first]
    assert not any(p.restarted for p in before)
    after = [e.tick(*row, stream=3) for row in second]
    assert after[0].restarted and not any(p.restarted for p in after[1:])
    assert after[0].verdict == tmn.Verdict.warming
    assert e._core.restarts == 1 and e.stream_count == 1
    fresh = run(engine(models, name, precision), second, stream=3)
    for i, p in enumerate(after):
        o = outcome(p)
        assert o[:-1] == fresh[i][:-1], f"tick {i} after the restart"


@pytest.mark.parametrize("gap", [0.1 - 1e-7, 0.1 + 1e-7, 0.0999, 0.1001])
def test_restart_happens_exactly_when_the_gap_exceeds_max_gap(
        models: dict[str, Path], gap: float) -> None:
    e = engine(models, "B")
    ticks = trajectory(900, 2)
    ticks[1][0] = ticks[0][0] + gap
    e.tick(*ticks[0])
    p = e.tick(*ticks[1])
    assert p.restarted == (ticks[1][0] - ticks[0][0] > 100 / 1000.0)
    assert e._core.restarts == int(p.restarted)


# --------------------------------------------------------------------------
# many streams
# --------------------------------------------------------------------------

STREAM_IDS = [0, 1, 2, 2**63, 2**64 - 1, 123456789012345]


@pytest.mark.parametrize("name,precision", VARIANTS)
def test_interleaved_streams_in_one_engine_equal_one_engine_per_stream(
        models: dict[str, Path], name: str, precision: str) -> None:
    rng = np.random.default_rng(10)
    ticks = {sid: trajectory(1000 + k, int(rng.integers(200, 400)), t0=float(rng.uniform(0, 5)))
             for k, sid in enumerate(STREAM_IDS)}
    alone = {sid: run(engine(models, name, precision), ticks[sid], stream=sid)
             for sid in STREAM_IDS}
    order = [sid for sid in STREAM_IDS for _ in range(len(ticks[sid]))]  # python ints
    order = [order[k] for k in rng.permutation(len(order))]  # a random interleaving ...
    e = engine(models, name, precision)
    nxt = dict.fromkeys(STREAM_IDS, 0)
    rows, ids, expected = [], [], []
    for sid in order:  # ... that keeps each stream's own order
        i = nxt[sid]
        nxt[sid] += 1
        assert outcome(e.tick(*ticks[sid][i], stream=sid)) == alone[sid][i]
        rows.append(ticks[sid][i])
        ids.append(sid)
        expected.append(alone[sid][i][0])
    assert e.stream_count == len(STREAM_IDS)
    # the same interleaving through replay's stream array
    r = engine(models, name, precision).replay(*np.array(rows).T,
                                               stream=np.array(ids, dtype=np.uint64))
    assert r.ok == len(rows)
    assert r.paths.tobytes() == b"".join(expected)


def test_reset_then_reuse_behaves_like_a_fresh_stream(models: dict[str, Path]) -> None:
    first = trajectory(1100, 300)
    second = trajectory(1101, 300, t0=0.5)  # earlier than the first life: fine after reset
    for name, precision in VARIANTS:
        e = engine(models, name, precision)
        run(e, first, stream=77)
        e.tick(*trajectory(1102, 5)[0], stream=78)
        e.reset(77)
        assert e.stream_count == 1
        assert run(e, second, stream=77) == run(engine(models, name, precision), second,
                                                stream=77)


def test_evict_idle_zero_after_a_pause_evicts_every_stream(models: dict[str, Path]) -> None:
    e = engine(models, "B", max_streams=16)
    for s in range(10):
        e.tick(*trajectory(1200 + s, 1)[0], stream=s)
    assert e.evict_idle(3600.0) == 0 and e.stream_count == 10
    time.sleep(0.01)
    assert e.evict_idle(0.0) == 10 and e.stream_count == 0
    assert e.evict_idle(0.0) == 0
    # an evicted stream comes back as a fresh one (an earlier t is fine)
    again = trajectory(1300, 300, t0=0.0)
    assert run(e, again, stream=3) == run(engine(models, "B"), again, stream=3)


def test_evict_idle_spares_recently_active_streams(models: dict[str, Path]) -> None:
    e = engine(models, "A", max_streams=8)
    for s in range(6):
        e.tick(*trajectory(1400 + s, 1)[0], stream=s)
    time.sleep(0.15)
    for s in (1, 4):
        e.tick(*trajectory(1400 + s, 2)[1], stream=s)
    assert e.evict_idle(0.1) == 4
    assert e.stream_count == 2
    for s in (1, 4):
        e.reset(s)  # still held
    for s in (0, 2, 3, 5):
        with pytest.raises(tmn.TickError):
            e.reset(s)


def test_capacity_is_enforced_and_slots_are_reused_after_reset_and_evict(
        models: dict[str, Path]) -> None:
    cap = 8
    e = engine(models, "B", max_streams=cap)
    assert e._core.max_streams == cap
    t = trajectory(1500, 3)
    for s in range(cap):
        e.tick(*t[0], stream=s)
    with pytest.raises(tmn.TickError) as info:
        e.tick(*t[0], stream=cap)
    assert info.value.status == tmn.Status.capacity_exceeded
    assert e.stream_count == cap
    for s in range(cap):  # existing streams keep working
        e.tick(*t[1], stream=s)
    for s in (1, 3, 6):
        e.reset(s)
    fresh = outcome(engine(models, "B").tick(*t[0]))
    for s in (100, 101, 102):
        assert outcome(e.tick(*t[0], stream=s)) == fresh  # reused slots start clean
    with pytest.raises(tmn.TickError) as info:
        e.tick(*t[0], stream=103)
    assert info.value.status == tmn.Status.capacity_exceeded
    time.sleep(0.01)
    assert e.evict_idle(0.0) == cap
    for s in range(1000, 1000 + cap):
        assert outcome(e.tick(*t[0], stream=s)) == fresh
    assert e.stream_count == cap


def test_single_slot_engine_serves_one_stream_at_a_time(models: dict[str, Path]) -> None:
    e = engine(models, "A", max_streams=1)
    t = trajectory(1600, 2)
    e.tick(*t[0], stream=5)
    with pytest.raises(tmn.TickError) as info:
        e.tick(*t[0], stream=6)
    assert info.value.status == tmn.Status.capacity_exceeded
    e.reset(5)
    e.tick(*t[0], stream=6)
    assert e.stream_count == 1


# --------------------------------------------------------------------------
# the hash table under random inserts and erases
# --------------------------------------------------------------------------

M64 = (1 << 64) - 1


def home(stream: int, mask: int) -> int:
    """stream_table.cpp's bucket: the splitmix64 finaliser, masked."""
    z = stream
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    z ^= z >> 31
    return (z & 0xFFFFFFFF) & mask


def colliding_ids(capacity: int, buckets: list[int], per_bucket: int) -> list[int]:
    size = 16
    while size < 2 * capacity:
        size <<= 1
    found: dict[int, list[int]] = {b % size: [] for b in buckets}
    candidate = 0
    while any(len(v) < per_bucket for v in found.values()):
        h = home(candidate, size - 1)
        if h in found and len(found[h]) < per_bucket:
            found[h].append(candidate)
        candidate += 1
    return [i for v in found.values() for i in v]


def test_thousands_of_random_inserts_and_erases_match_a_dict_model(
        models: dict[str, Path]) -> None:
    cap = 48  # index of 128 buckets
    # long probe runs that wrap around the end of the index, plus scattered ids
    pool = colliding_ids(cap, [126, 127, 0, 1, 60, 61], 14)
    rng = np.random.default_rng(12)
    pool += rng.integers(0, 2**63, size=40).tolist()
    pool = sorted(set(pool))
    L = 300
    template = trajectory(1700, L)
    ref = run(engine(models, "B", "int8"), template)  # any stream's j-th tick in its life

    e = engine(models, "B", "int8", max_streams=cap)
    life: dict[int, int] = {}  # stream -> ticks accepted in its current life
    counts = {"tick": 0, "new": 0, "full": 0, "reset": 0, "unknown": 0, "bad": 0, "evict": 0}
    for step in range(20_000):
        op = rng.random()
        if op < 0.65:
            if life and rng.random() < 0.6:
                sid = list(life)[int(rng.integers(len(life)))]
            else:
                sid = pool[int(rng.integers(len(pool)))]
            j = life.get(sid)
            if j is None:
                if len(life) < cap:
                    assert outcome(e.tick(*template[0], stream=sid)) == ref[0], step
                    life[sid] = 1
                    counts["new"] += 1
                else:
                    with pytest.raises(tmn.TickError) as info:
                        e.tick(*template[0], stream=sid)
                    assert info.value.status == tmn.Status.capacity_exceeded
                    counts["full"] += 1
            elif j == L:
                e.reset(sid)
                del life[sid]
            else:
                assert outcome(e.tick(*template[j], stream=sid)) == ref[j], (step, sid, j)
                life[sid] = j + 1
                counts["tick"] += 1
        elif op < 0.93:
            sid = pool[int(rng.integers(len(pool)))]
            if sid in life:
                e.reset(sid)
                del life[sid]
                counts["reset"] += 1
            else:
                with pytest.raises(tmn.TickError) as info:
                    e.reset(sid)
                assert info.value.status == tmn.Status.unknown_stream
                counts["unknown"] += 1
        elif op < 0.999:
            if not life:
                continue
            sid = list(life)[int(rng.integers(len(life)))]
            j = life[sid]
            row = template[min(j, L - 1)].copy()
            if j and rng.random() < 0.5:
                row[0] = template[j - 1][0]  # repeats the last accepted t
            else:
                row[1] = math.nan
            with pytest.raises(tmn.TickError):
                e.tick(*row, stream=sid)
            counts["bad"] += 1
        else:
            time.sleep(0.002)
            assert e.evict_idle(0.0) == len(life)
            life.clear()
            counts["evict"] += 1
        assert e.stream_count == len(life), step
    assert all(v > 0 for v in counts.values()), counts
    assert counts["tick"] > 5000 and counts["full"] > 200, counts


# --------------------------------------------------------------------------
# replay's arguments
# --------------------------------------------------------------------------

def test_replay_without_streams_is_stream_zero(models: dict[str, Path]) -> None:
    ticks = trajectory(1800, 100)
    a = engine(models, "B").replay(*ticks.T)
    b = engine(models, "B").replay(*ticks.T, stream=np.zeros(len(ticks), np.uint64))
    assert a.paths.tobytes() == b.paths.tobytes()
    e = engine(models, "B")
    e.replay(*ticks.T)
    e.reset(0)  # the replay created stream 0


def test_replay_refuses_arrays_of_different_lengths(models: dict[str, Path]) -> None:
    ticks = trajectory(1900, 10)
    e = engine(models, "A")
    cols = list(ticks.T)
    for k in range(5):
        short = cols.copy()
        short[k] = short[k][:-1]
        with pytest.raises(ValueError):
            e.replay(*short)
    with pytest.raises(ValueError):
        e.replay(*cols, stream=np.zeros(9, np.uint64))
    with pytest.raises(ValueError):
        e.replay(*cols, stream=np.zeros(11, np.uint64))
    assert e.stream_count == 0  # nothing ran
