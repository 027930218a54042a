"""Training/serving parity: the C++ engine (FP32) replaying a held-out stream
reproduces PyTorch's streaming predictions of the trained network."""

from __future__ import annotations

from typing import Any

import numpy as np

import tmn
from tmn_train import evaluation, scoring, synth
from tmn_train.export import artifact_config
from tmn_train.config import from_dict
from tmn_train.models import MicroGru
from tmn_train.pipeline import build_split

TOL = 1e-4  # output units


def held_out(ck: dict[str, Any], system: str):  # type: ignore[no-untyped-def]
    """A fresh synthetic stream (another seed) prepared with the run's statistics."""
    cfg = from_dict(ck["config"])
    n = ck["normalisation"]
    stream = synth.generate(0.5, seed=99, stream_s=15.0)[1]  # a reach, 15 s
    a = build_split([stream], cfg, n["mean"], n["std"], ck["kalman"])
    config = artifact_config(cfg, n["mean"], n["std"], n["output_scale"],
                                         ck["kalman"], ck["gate"])
    return cfg, a, config


def test_engine_replay_of_system_a_reproduces_torch_streaming_predictions(tiny_runs) -> None:
    _, ck = tiny_runs["A"]
    cfg, a, config = held_out(ck, "A")
    y_torch = MicroGru.from_tensors(ck["tensors"]).stream(a.z)          # [N, 2K]
    r = scoring.replay(evaluation.memory_model(config, ck["tensors"]), a, "fp32")
    live = r.verdict == tmn.Verdict.ungated.value
    assert live.sum() > 25000
    scale = np.asarray(ck["normalisation"]["output_scale"])
    y_engine = ((r.paths - a.pos[:, None, :]) / scale).reshape(len(a.t), -1)
    err = np.abs(y_engine[live] - y_torch[live])
    assert err.max() <= TOL, f"max |engine - torch| = {err.max():.3g} output units"


def test_engine_replay_of_system_b_is_the_certified_projection_of_torch_predictions(
        tiny_runs) -> None:
    """B's path on a pass is the gate's projection of prior + y, blended with the
    prior by the reported weight (fully certified once the blend has ramped up
    after warming). Against a dense solve of the same projection applied to
    torch's y, the engine's path may differ by its certificate (the proven solver
    error, already scaled by the blend) plus the network difference (A^-1 has norm
    <= 1, so it cannot amplify it)."""
    _, ck = tiny_runs["B"]
    cfg, a, config = held_out(ck, "B")
    config["gate"] = dict(config["gate"], threshold=1e30)  # judge the network, not d2
    y_torch = MicroGru.from_tensors(ck["tensors"]).stream(a.z).astype(np.float64)
    r = scoring.replay(evaluation.memory_model(config, ck["tensors"]), a, "fp32")
    live = np.flatnonzero(r.verdict == tmn.Verdict.pass_.value)
    assert len(live) > 25000
    K, scale = cfg.K, np.asarray(ck["normalisation"]["output_scale"])
    lam, dh = config["gate"]["lambda"], cfg.horizon_step_ms / 1000.0
    g = tmn._core.SolverGate(tmn._core.GateParams(0.02, 200000, lam, 1.0), K, dh)
    A = g.matrix()
    v = a.vprior[live] / scale                                        # posterior velocity
    h = np.asarray(cfg.horizons_ms) / 1000.0
    q = v[:, None, :] * h[:, None] + y_torch[live].reshape(-1, K, 2)  # prior + correction
    b = q.copy()
    b[:, 0, :] += lam * v * dh                                        # boundary terms
    if A.shape[0] == 2 * K:  # both axes as one system, interleaved (x0, y0, x1, ...)
        ref = np.linalg.solve(A, b.reshape(-1, 2 * K).T).T.reshape(-1, K, 2)
    else:
        ref = np.stack([np.linalg.solve(A, b[:, :, ax].T).T for ax in range(2)], axis=2)
    w = r.blend[live].astype(np.float64)[:, None, None]
    assert (w[:, 0, 0] == 1.0).mean() > 0.9  # ramped up within blend_ms of warming
    ref = w * ref + (1.0 - w) * v[:, None, :] * h[:, None]              # the served blend
    got = (r.paths[live] - a.base[live][:, None, :]) / scale
    dist = np.linalg.norm((got - ref).reshape(len(live), -1), axis=1)
    bound = r.cert[live].astype(np.float64) + TOL * np.sqrt(2 * K)
    assert (dist <= bound + 1e-9).all(), f"worst excess {np.max(dist - bound):.3g}"
    # and the engine ran the network on the very same posterior frame
    assert np.median(dist) < 0.02
