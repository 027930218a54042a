"""The pipeline: splits without leakage, normalisation fitted on train only, window
counts, and targets in the engine's own frame."""

from __future__ import annotations

import numpy as np
import pytest

from tmn import _core
from tmn.model import FEATURES
from tmn_train import evaluation, scoring, synth
from tmn_train.export import artifact_config
from tmn_train.data import to_streams
from tmn_train.models import MicroGru
from tmn_train.pipeline import (SPLITS, build_split, labelled, lanes, native_rate, prepare,
                                split_streams, suggested_rate, targets)

from train_helpers import tiny_config

KALMAN = {"q": 1e6, "r_pos": 1.0, "r_vel": 100.0}


@pytest.fixture(scope="module")
def streams() -> list:
    return synth.generate(0.5, seed=11, stream_s=10.0)


def test_time_splits_cut_every_stream_into_ordered_disjoint_pieces(streams: list) -> None:
    cfg = tiny_config("B")
    parts = split_streams(streams, cfg)
    for s in streams:
        pieces = [p for k in SPLITS for p in parts[k] if p.name.startswith(s.name + "#")]
        assert [p.split for p in pieces] == list(SPLITS)
        assert np.array_equal(np.concatenate([p.t for p in pieces]), s.t)
        assert pieces[0].t[-1] < pieces[1].t[0] and pieces[1].t[-1] < pieces[2].t[0]
        assert abs(len(pieces[0]) / len(s) - 0.70) < 1e-3


def test_no_window_and_no_target_crosses_a_split_boundary(streams: list) -> None:
    cfg = tiny_config("B")
    prep = prepare(streams, cfg, kalman=KALMAN, log=lambda m: None)
    w, nk = cfg.ticks(cfg.window_ms), cfg.horizon_ticks[-1]
    for k in SPLITS:
        a = prep.splits[k]
        piece_of = np.repeat(np.arange(a.pieces), np.diff(a.offsets))
        starts = np.concatenate(a.chains(cfg))
        last_target = starts + w - 1 + nk
        assert (last_target < len(a.t)).all()
        assert np.array_equal(piece_of[starts], piece_of[last_target])
        idx = labelled(a, cfg)
        assert np.array_equal(piece_of[idx], piece_of[idx + nk])
    # and the pieces of different splits share no tick time within a stream
    times = {k: set(np.round(prep.splits[k].t, 9)) for k in SPLITS}
    assert not (times["train"] & times["val"]) and not (times["val"] & times["test"])


def test_window_counts_follow_the_documented_formula(streams: list) -> None:
    cfg = tiny_config("A")
    prep = prepare(streams, cfg, kalman=KALMAN, log=lambda m: None)
    a = prep.splits["train"]
    w, nk = cfg.ticks(cfg.window_ms), cfg.horizon_ticks[-1]
    chains = a.chains(cfg)
    lens = np.diff(a.offsets)
    assert [len(c) for c in chains] == [(n - nk) // w for n in lens]
    assert all(np.array_equal(c, a.offsets[p] + w * np.arange(len(c)))
               for p, c in enumerate(chains))
    assert (7000 - nk) // w == 23  # a 7000-tick piece (the train part of a 10 s stream)


def test_lanes_carry_state_only_between_consecutive_windows_of_one_piece(streams: list) -> None:
    cfg = tiny_config("B")
    a = prepare(streams, cfg, kalman=KALMAN, log=lambda m: None).splits["train"]
    w = cfg.ticks(cfg.window_ms)
    chains = a.chains(cfg)
    piece_of = np.repeat(np.arange(a.pieces), np.diff(a.offsets))
    start, reset, valid = lanes(chains, 8, w, np.random.default_rng(0))
    assert start.shape[0] == 8 and reset[:, 0].all()
    # every window is used exactly once per pass
    assert sorted(start[valid].tolist()) == sorted(np.concatenate(chains).tolist())
    carried = ~reset[:, 1:] & valid[:, 1:]
    prev, cur = start[:, :-1][carried], start[:, 1:][carried]
    assert np.array_equal(cur, prev + w) and np.array_equal(piece_of[cur], piece_of[prev])
    # a restart in the middle of a lane happens only at a piece change or a jump
    restarts = reset[:, 1:] & valid[:, 1:]
    jumps = start[:, 1:][restarts] != start[:, :-1][restarts] + w
    other = piece_of[start[:, 1:][restarts]] != piece_of[start[:, :-1][restarts]]
    assert (jumps | other).all()
    # validation: one lane per piece, streamed from its first tick
    vs, vr, vv = lanes(chains, 8, w, None)
    assert vs.shape[0] == len([c for c in chains if len(c)]) and vr[:, 0].all()
    assert not (vr[:, 1:] & vv[:, 1:]).any()


def test_normalisation_and_output_scale_are_fitted_on_train_only(streams: list) -> None:
    cfg = tiny_config("B")
    base = prepare(streams, cfg, kalman=KALMAN, log=lambda m: None)
    changed = []
    for s in streams:  # change everything after the train cut by a lot
        c = s.slice(0, len(s))
        cut = int(len(s) * 0.70)
        c.x = c.x.copy()
        c.x[cut:] += 1e4
        c.vx = c.vx.copy()
        c.vx[cut:] *= 50.0
        changed.append(c)
    other = prepare(changed, cfg, kalman=KALMAN, log=lambda m: None)
    assert other.mean == base.mean and other.std == base.std
    assert other.output_scale == base.output_scale
    assert not np.array_equal(other.splits["test"].z, base.splits["test"].z)


def test_b_targets_are_residuals_over_the_engine_prior_path(streams: list) -> None:
    """The engine's prior path (replay candidates) equals the start of B's
    targets, posterior + v h: training and serving share one frame."""
    cfg = tiny_config("B")
    prep = prepare(streams[:2], cfg, kalman=KALMAN, log=lambda m: None)
    a = prep.splits["test"]
    tensors = MicroGru(cfg.micro_gru.hidden, cfg.K, len(FEATURES[cfg.system])).artifact_tensors()
    config = artifact_config(cfg, prep.mean, prep.std, prep.output_scale, KALMAN)
    r = scoring.replay(evaluation.memory_model(config, tensors), a, candidates=True)
    idx = scoring.evaluated_ticks(a, cfg.horizon_ticks, [r]).idx
    assert r.prior is not None
    scale = np.asarray(prep.output_scale)
    # truth = start + target * scale, so the engine's prior error is target * scale
    truth = a.pos[idx[:, None] + np.asarray(cfg.horizon_ticks)]
    t = targets(a, idx, cfg, scale) * scale
    assert np.allclose(truth - r.prior[idx], t, atol=1e-6 * np.abs(truth).max())


def reference_features(s, cfg, kalman: dict[str, float]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The features of cpp/include/tmn/ingest.hpp written out in numpy: velocity,
    position high-pass (p - EMA(p)) / tau, and B's posterior velocity and
    innovation from the prior (KalmanPrior.filter)."""
    tau = cfg.data.highpass_ms / 1000.0
    a = 1.0 - np.exp(-1.0 / (cfg.sample_rate_hz * tau))
    e = np.empty_like(s.pos)
    e[0] = s.pos[0]
    for i in range(1, len(s)):
        e[i] = e[i - 1] + a * (s.pos[i] - e[i - 1])
    f = [s.vel, (s.pos - e) / tau]
    if cfg.system == "B":
        kp = _core.KalmanPrior(_core.KalmanParams(kalman["q"], kalman["r_pos"], kalman["r_vel"]))
        post, _ = kp.filter(s.t, s.x, s.y, s.vx, s.vy)
        pred = np.concatenate([s.pos[:1], post[:-1, :2] + post[:-1, 2:] * np.diff(s.t)[:, None]])
        f += [post[:, 2:], s.pos - pred]
    return np.concatenate(f, axis=1)


def test_a_and_b_build_the_network_input_the_engine_ingest_defines(streams: list) -> None:
    """The features are translation invariant, A's are the first four of B's, and
    both are those of ingest.hpp's definition, z-scored in float32."""
    a_cfg, b_cfg = tiny_config("A"), tiny_config("B")
    mean, std = [0.0] * 8, [300.0, 250.0, 200.0, 180.0, 290.0, 240.0, 0.8, 0.7]
    pa = build_split(streams[:1], a_cfg, mean[:4], std[:4], KALMAN)
    pb = build_split(streams[:1], b_cfg, mean, std, KALMAN)
    assert pa.z.dtype == pb.z.dtype == np.float32 and pa.z.shape[1] == 4 and pb.z.shape[1] == 8
    assert np.array_equal(pa.z, pb.z[:, :4])
    for cfg, p in ((a_cfg, pa), (b_cfg, pb)):
        ref = reference_features(streams[0], cfg, KALMAN) / np.asarray(std[:p.z.shape[1]])
        assert np.max(np.abs(p.z - ref)) <= 1e-5 * np.max(np.abs(ref))
    moved = streams[0].slice(0, len(streams[0]))
    moved.x, moved.y = moved.x + 5000.0, moved.y - 3000.0  # anywhere on the screen
    pm = build_split([moved], b_cfg, mean, std, KALMAN)
    assert np.max(np.abs(pm.z - pb.z)) <= 1e-4


def test_many_short_recordings_go_whole_to_the_splits() -> None:
    """A file of 0.7 s movements cannot be cut in time (its validation piece would be
    shorter than a window plus the farthest horizon): auto sends whole streams."""
    cfg = tiny_config("B")
    moves = synth.generate(3.0, seed=4, stream_s=0.7)
    split = split_streams(moves, cfg)
    assert all(len(v) > 0 for v in split.values())
    assert sum(len(v) for v in split.values()) == len(moves)
    assert all("#" not in s.name for v in split.values() for s in v)  # none was cut
    long = split_streams(synth.generate(1.0, seed=4, stream_s=20.0), cfg)
    assert all(s.name.endswith(f"#{k}") for k, v in long.items() for s in v)
    # one short stream (here 4 s after a 20 s one) does not send all to `stream`:
    # with two streams that would leave validation empty
    mixed = split_streams(synth.generate(0.4, seed=6, stream_s=20.0), cfg)
    assert all(len(v) > 0 for v in mixed.values())


def test_short_movements_beside_a_long_recording_are_kept_whole() -> None:
    """Regression: one stream long enough to cut made auto cut every stream in
    time, so each short movement's validation and test pieces were too short and
    every movement was dropped without a word (120 of 180 s in the audit)."""
    cfg = tiny_config("B")
    moves = synth.generate(2.0, seed=4, stream_s=0.7)
    long = synth.generate(1.0, seed=5, stream_s=60.0)
    split = split_streams(moves + long, cfg)
    whole = [s for v in split.values() for s in v if "#" not in s.name]
    assert len(whole) == len(moves)                   # every movement kept, none cut
    assert all(len(v) > 1 for v in split.values())    # movements in every split
    cut = [s for v in split.values() for s in v if "#" in s.name]
    assert sorted(s.name.rsplit("#", 1)[1] for s in cut) == ["test", "train", "val"]
    logged: list[str] = []
    prepare(moves + long, cfg, log=logged.append)     # the last movement is shorter than
    assert any("have no target: left out" in m for m in logged)  # a window + 500 ms: said


def test_a_slow_recording_gets_a_model_rate_suggested() -> None:
    cfg = tiny_config("B")
    assert suggested_rate(60.0, cfg) == 500.0 and suggested_rate(100.0, cfg) == 500.0
    assert suggested_rate(1000.0, cfg) == 2000.0
    t = np.arange(600) / 60.0
    (s,) = to_streams({"t": t, "x": np.sin(t), "y": np.cos(t)}, "r", cfg.ingest(), 0.1)
    assert native_rate([s]) == pytest.approx(60.0)
    assert native_rate(synth.generate(0.1, seed=1)) is None
