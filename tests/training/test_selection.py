"""Active selection (tmn_train.selection): the kNN graph, the motion features,
PageRank weights that follow the restart, runs that keep the hidden state
carried, equal gradient steps, and determinism under a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tmn import _core
from tmn_train import selection, synth
from tmn_train.models import MicroGru
from tmn_train.pipeline import Prepared, lanes, prepare
from tmn_train.train import FINAL, fit, load_final

from train_helpers import tiny_config

KALMAN = {"q": 1e6, "r_pos": 1.0, "r_vel": 100.0}
ACTIVE = ["active_selection.enabled=true", "epochs=3"]


@pytest.fixture(scope="module")
def prep() -> Prepared:
    cfg = tiny_config("B", *ACTIVE)
    return prepare(synth.generate(0.75, seed=4, stream_s=15.0), cfg, kalman=KALMAN,
                   log=lambda m: None)


def test_the_knn_graph_links_each_window_to_its_k_nearest_both_ways() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 3))
    x[7] = x[8]  # a duplicate point must not lose its own neighbours
    k = 4
    indptr, indices = selection.knn_csr(x, k)
    edges = {(u, int(v)) for u in range(len(x)) for v in indices[indptr[u]:indptr[u + 1]]}
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    for u in range(len(x)):
        kth = np.sort(np.delete(d[u], u))[k - 1]
        near = {v for v in range(len(x)) if v != u and d[u, v] < kth - 1e-12}
        assert all((u, v) in edges and (v, u) in edges for v in near), u
        assert (u, u) not in edges
        assert np.all(np.diff(indices[indptr[u]:indptr[u + 1]]) > 0)  # sorted, no repeats
    assert {(v, u) for u, v in edges} == edges
    assert min(np.diff(indptr)) >= k


def test_a_single_window_gives_a_graph_without_edges() -> None:
    indptr, indices = selection.knn_csr(np.zeros((1, 5)), 15)
    assert list(indptr) == [0, 0] and len(indices) == 0


def test_motion_features_do_not_change_when_the_motion_is_moved_or_turned(prep: Prepared) -> None:
    a = prep.splits["train"]
    starts = np.concatenate(a.chains(prep.cfg))
    f = selection.motion_features(a, starts, prep.cfg)
    assert f.shape == (len(starts), len(selection.MOTION_FEATURES))
    assert np.all(np.isfinite(f))
    c, s = np.cos(0.7), np.sin(0.7)
    R = np.array([[c, -s], [s, c]])
    moved = type(a)(**{**vars(a), "pos": a.pos @ R.T + [500.0, -300.0], "vel": a.vel @ R.T})
    np.testing.assert_allclose(selection.motion_features(moved, starts, prep.cfg), f, atol=1e-8)


def two_part_graph(n: int) -> _core.PushGraph:
    """Two cliques of n/2 windows with no edge between them."""
    half = n // 2
    x = np.concatenate([np.zeros((half, 2)), np.full((n - half, 2), 100.0)])
    x += np.random.default_rng(1).standard_normal(x.shape) * 0.01
    return _core.PushGraph(*selection.knn_csr(x, half - 1))


def test_the_pagerank_follows_the_errors_and_the_floor_feeds_every_window(prep: Prepared) -> None:
    sel = prep.cfg.active_selection
    n = 40
    g = two_part_graph(n)
    err = np.r_[np.linspace(1.0, 2.0, n // 2), np.zeros(n // 2)]  # errors in the first part only
    w, cert = selection.pagerank_weights(g, err, sel)
    assert cert["certified"] and cert["error_bound"] <= sel.eps
    np.testing.assert_allclose(w.sum(), 1.0)
    np.testing.assert_allclose(w[n // 2:], sel.floor / n)  # no path: the floor alone
    assert w[:n // 2].min() > sel.floor / n
    w0, _ = selection.pagerank_weights(g, np.zeros(n), sel)  # no error anywhere: uniform
    np.testing.assert_allclose(w0, 1.0 / n, atol=sel.eps / n)


def test_drawn_runs_hold_as_many_windows_as_a_uniform_pass_and_follow_the_weights() -> None:
    chains = [np.arange(0, 2560, 256), np.arange(10_000, 10_000 + 256 * 23, 256)]
    run_list = selection.runs(chains, 4)
    assert [len(r) for r in run_list] == [4, 4, 2, 4, 4, 4, 4, 4, 3]
    assert np.array_equal(np.concatenate(run_list), np.arange(33))
    weights = np.full(33, 0.1 / 33)
    weights[run_list[4]] += 0.9 / 4  # one run holds most of the weight
    rng = np.random.default_rng(2)
    counts = np.zeros(len(run_list))
    for _ in range(200):
        picked = selection.draw_runs(run_list, weights, 33, rng)
        assert sum(len(r) for r in picked) == 33
        for r in picked:
            counts[next(i for i, q in enumerate(run_list) if q[0] == r[0])] += 1
    assert counts[4] > 0.8 * counts.sum()
    assert np.all(counts > 0)  # the floor: every run is drawn now and then


def test_lanes_carry_the_hidden_state_within_a_drawn_run_and_reset_between_runs() -> None:
    w = 256
    runs = [np.array([0, 256, 512]), np.array([5000, 5256]), np.array([9000, 9256, 9512])]
    uniform = [np.arange(0, 20 * w, w)]
    for seed in range(10):  # the sampler's runs replace the chains lanes() was given
        start, reset, valid = lanes(uniform, 1, w, np.random.default_rng(seed),
                                    sampler=lambda c, r: runs)
        s, rs = start[0][valid[0]], reset[0][valid[0]]
        assert sorted(s) == sorted(np.concatenate(runs))
        assert rs[0]
        np.testing.assert_array_equal(rs[1:], s[1:] != s[:-1] + w)  # carried inside a run


def test_a_selector_is_deterministic_and_keeps_the_steps_of_a_pass(prep: Prepared) -> None:
    cfg, a = prep.cfg, prep.splits["train"]
    chains = a.chains(cfg)
    scale = np.asarray(prep.output_scale)
    torch.manual_seed(0)
    model = MicroGru(cfg.micro_gru.hidden, cfg.K)
    out = []
    for _ in range(2):
        sel = selection.Selector(cfg, a, chains, scale, seed=5, log=lambda m: None)
        assert not sel.due(1) and sel.due(2)
        plans, secs = selection.epoch_plans(sel, chains, cfg, np.random.default_rng(7), 2, model)
        out.append((sel.weights, plans))
        assert secs > 0 and sel.weights is not None
    np.testing.assert_array_equal(out[0][0], out[1][0])
    for p, q in zip(out[0][1], out[1][1]):
        for x, y in zip(p, q):
            np.testing.assert_array_equal(x, y)
    uniform, _ = selection.epoch_plans(None, chains, cfg, np.random.default_rng(7), 2, model)
    assert [p[0].shape for p in uniform] == [p[0].shape for p in out[0][1]]  # equal steps
    assert int(uniform[0][2].sum()) == int(out[0][1][0][2].sum())           # equal windows


def test_a_fit_with_active_selection_is_deterministic_under_a_seed(tmp_path: Path) -> None:
    finals, logs = [], []
    for i in range(2):
        lines: list[str] = []
        fit(tiny_config("B", *ACTIVE), ["synth:0.75:3"], tmp_path / f"run{i}", [0],
            log=lines.append)
        finals.append(load_final(tmp_path / f"run{i}" / FINAL)[1])
        logs.append(lines)
    h0, h1 = (f["provenance"]["history"] for f in finals)
    assert [e["train_loss"] for e in h0] == [e["train_loss"] for e in h1]
    assert h0[0]["selection_seconds"] == 0.0 and h0[1]["selection_seconds"] > 0  # warm-up
    for k, v in finals[0]["tensors"].items():
        np.testing.assert_array_equal(v, finals[1]["tensors"][k])
    assert any(m.startswith("selection epoch 2:") for m in logs[0])


def test_the_refresh_schedule_and_the_hidden_state_embedding(prep: Prepared) -> None:
    a, scale = prep.splits["train"], np.asarray(prep.output_scale)
    cfg = tiny_config("B", *ACTIVE, "active_selection.refresh_every=2",
                      "active_selection.embedding=hidden")
    sel = selection.Selector(cfg, a, a.chains(cfg), scale, seed=1, log=lambda m: None)
    assert [sel.due(e) for e in (1, 2)] == [False, True]
    model = MicroGru(cfg.micro_gru.hidden, cfg.K)
    sel.refresh(2, model)
    first = sel.graph
    assert first is not None and sel.weights is not None
    assert [sel.due(e) for e in (3, 4, 5, 6)] == [False, True, False, True]
    sel.refresh(4, model)
    assert sel.graph is not first  # the hidden-state graph is rebuilt at every refresh
    resumed = selection.Selector(cfg, a, a.chains(cfg), scale, seed=1, log=lambda m: None)
    assert resumed.due(3)  # a resumed run without scores refreshes at once
