"""Accuracy as the C++ engine delivers it: artifacts in memory, replay, metrics,
gate calibration.

Every reported number comes from ``tmn.Engine.replay`` over held-out pieces
(DESIGN.md: "The reported accuracy comes from the C++ engine replaying
held-out streams, not from PyTorch's evaluation"). Each piece is replayed as
its own engine stream, so the engine's warming and restart rules apply as
they would live.

Metrics (tmn_train.metrics), per horizon, over ticks that are not warming
and whose horizon lies inside the piece, in data units: ``p50``, ``p90``,
``p99``, ``max``, ``mse``, and ``jitter`` of the farthest horizon; for B,
``pass_rate`` and ``cert_mean`` (mean certificate over passes, output units).

Baselines on the same ticks: ``kalman_only`` is the engine's own prior path
(the replay's candidates, what a fallback serves); ``constant_velocity`` is
``p_i + v_i h_k`` with the measured tick (no engine maths: it is what a caller
without tmn would do). ``tmn-bench accuracy`` (tmn_train.accuracy) reports the
full set of metrics and the statistics.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

import tmn
from tmn.model import FEATURES, FORMAT_VERSION, QUANT_SCHEME
from tmn_train import metrics
from tmn_train.config import Config
from tmn_train.pipeline import SplitArrays

VERDICT_PASS = int(tmn.Verdict.pass_.value)
VERDICT_WARMING = int(tmn.Verdict.warming.value)


def artifact_config(cfg: Config, mean: list[float], std: list[float],
                    output_scale: list[float], kalman: dict[str, float],
                    gate: dict[str, float] | None = None,
                    provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.json of docs/model-format.md (without ``weights``, which writing adds)."""
    c: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "system": cfg.system,
        "sample_rate_hz": cfg.sample_rate_hz,
        "window_ms": cfg.window_ms,
        "max_gap_ms": cfg.max_gap_ms,
        "horizons_ms": cfg.horizons_ms,
        "features": list(FEATURES),
        "hidden": cfg.micro_gru.hidden,
        "normalisation": {"mean": list(mean), "std": list(std),
                          "output_scale": list(output_scale)},
        "kalman": {"q": kalman["q"], "r_pos": kalman["r_pos"], "r_vel": kalman["r_vel"]},
        "quantisation": {"scheme": QUANT_SCHEME},
        "provenance": provenance or {},
    }
    if cfg.system == "B":
        assert cfg.solver_gate is not None
        g = gate or {}
        c["gate"] = {"eps": cfg.solver_gate.eps, "budget": cfg.solver_gate.budget,
                     "lambda": g.get("lambda", cfg.solver_gate.lambda_grid[0]),
                     "threshold": g.get("threshold", 1e30)}
    return c


def memory_model(config: dict[str, Any], tensors: dict[str, np.ndarray]) -> tmn.Model:
    """A tmn.Model that was never written to disk (for calibration and evaluation)."""
    return tmn.Model(path=Path("<memory>"), config=config, tensors=tensors)


def replay(model: tmn.Model, a: SplitArrays, precision: str = "fp32",
           candidates: bool = False) -> tmn.Replay:
    """Replay every piece of a split through the C++ engine, one stream per piece
    (``candidates``: also every tick's prior and network path)."""
    eng = tmn.Engine(model, precision=precision, max_streams=max(a.pieces, 1))
    ids = np.repeat(np.arange(a.pieces, dtype=np.uint64), np.diff(a.offsets))
    return eng.replay(a.t, a.pos[:, 0], a.pos[:, 1], a.vel[:, 0], a.vel[:, 1], ids,
                      candidates=candidates)


def valid_ticks(a: SplitArrays, cfg: Config, verdict: np.ndarray) -> np.ndarray:
    """Flat indices: not warming, prediction made, every horizon inside the piece."""
    nk = cfg.horizon_ticks[-1]
    ok = np.zeros(len(a.t), dtype=bool)
    for p in range(a.pieces):
        lo, hi = int(a.offsets[p]), int(a.offsets[p + 1])
        if hi - lo > nk:
            ok[lo:hi - nk] = True
    ok &= (verdict != VERDICT_WARMING) & (verdict != 255)
    return np.flatnonzero(ok)


def errors(paths: np.ndarray, a: SplitArrays, cfg: Config, idx: np.ndarray) -> np.ndarray:
    """[m, K] Euclidean errors (data units) of paths [N, K, 2] at ticks idx."""
    return metrics.errors(paths[idx], a.pos[idx[:, None] + np.asarray(cfg.horizon_ticks)])


def summarise(paths: np.ndarray, a: SplitArrays, cfg: Config, idx: np.ndarray,
              verdict: np.ndarray | None = None, cert: np.ndarray | None = None
              ) -> dict[str, Any]:
    """The metrics of the module docstring for paths [N, K, 2] at ticks idx."""
    truth = a.pos[idx[:, None] + np.asarray(cfg.horizon_ticks)]
    pred = paths[idx]
    d = metrics.distribution(metrics.errors(pred, truth))
    piece = np.searchsorted(a.offsets, idx, side="right") - 1
    out: dict[str, Any] = {"ticks": int(len(idx)), "horizons_ms": cfg.horizons_ms,
                           **{k: d[k] for k in ("p50", "p90", "p99", "max", "mse")},
                           "jitter": metrics.jitter(pred, truth, idx, piece)[-1]}
    if verdict is not None:
        v = verdict[idx]
        out["pass_rate"] = float(np.mean(v == VERDICT_PASS))
        if cert is not None and (v == VERDICT_PASS).any():
            out["cert_mean"] = float(np.mean(cert[idx][v == VERDICT_PASS]))
    out["p99_500"] = out["p99"][-1]
    out["mse_500"] = out["mse"][-1]
    return out


def constant_velocity_paths(a: SplitArrays, cfg: Config) -> np.ndarray:
    h = np.asarray(cfg.horizons_ms) / 1000.0
    return a.pos[:, None, :] + a.vel[:, None, :] * h[:, None]


def evaluate(config: dict[str, Any], tensors: dict[str, np.ndarray], a: SplitArrays,
             cfg: Config, baselines: bool = True) -> dict[str, Any]:
    """FP32 and INT8 engine replay of one split, plus the baselines."""
    out: dict[str, Any] = {}
    ref: tuple[np.ndarray, tmn.Replay] | None = None
    for precision in ("fp32", "int8"):
        r = replay(memory_model(config, tensors), a, precision, candidates=baselines)
        idx = valid_ticks(a, cfg, r.verdict)
        ref = (idx, r) if ref is None else ref
        out[precision] = summarise(r.paths, a, cfg, idx,
                                   r.verdict if cfg.system == "B" else None, r.cert)
    if baselines:
        assert ref is not None and ref[1].prior is not None
        out["kalman_only"] = summarise(ref[1].prior, a, cfg, ref[0])
        out["constant_velocity"] = summarise(constant_velocity_paths(a, cfg), a, cfg, ref[0])
    out["int8_mse_ratio"] = _ratio(out["int8"]["mse"][-1], out["fp32"]["mse"][-1])
    out["int8_mse_ratio_all"] = _ratio(float(np.mean(out["int8"]["mse"])),
                                       float(np.mean(out["fp32"]["mse"])))
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


# -- gate calibration -----------------------------------------------------------------

def calibrate_gate(config: dict[str, Any], tensors: dict[str, np.ndarray], val: SplitArrays,
                   cfg: Config, log=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Choose gate.lambda (from solver_gate.lambda_grid) and gate.threshold on validation.

    For each lambda the engine replays validation with the threshold at
    infinity, which gives every tick's d2, certified path and prior path (the
    replay's candidates). The engine's output for a threshold T is then
    exactly ``pass and d2 <= T ? certified : prior``. Among thresholds at the
    d2 quantiles that keep the pass rate >= min_pass_rate, and for which the
    fallback wins where it fires (the prior's MSE at 500 ms beats the certified
    path's on the ticks with d2 > T), we take the (lambda, T) with the lowest
    P99 error at 500 ms. Returns the choice and the search trace.
    """
    assert cfg.solver_gate is not None
    sg = cfg.solver_gate
    idx: np.ndarray | None = None
    e_prior = np.zeros(0)
    qs = sorted({sg.min_pass_rate, *[q for q in (0.9, 0.925, 0.95, 0.97, 0.98, 0.99, 0.995,
                                                 0.999) if q >= sg.min_pass_rate], 1.0})
    trace = []
    best: dict[str, Any] | None = None
    for lam in sg.lambda_grid:
        c = dict(config)
        c["gate"] = dict(config["gate"], **{"lambda": lam, "threshold": math.inf})
        r = replay(memory_model(c, tensors), val, "fp32", candidates=True)
        if idx is None:  # warming and the prior do not depend on lambda
            assert r.prior is not None
            idx = valid_ticks(val, cfg, r.verdict)
            e_prior = errors(r.prior, val, cfg, idx)
        d2 = r.d2[idx].astype(np.float64)
        certified = r.verdict[idx] == VERDICT_PASS
        e_net = errors(r.paths, val, cfg, idx)
        for q in qs:
            T = float(np.quantile(d2, q)) if q < 1.0 else float(np.max(d2)) * 2.0 + 1e-12
            T = max(T, 1e-12)
            passed = certified & (d2 <= T)
            e = np.where(passed[:, None], e_net, e_prior)
            fired = ~passed & certified
            wins = (not fired.any()) or bool(np.mean(e_prior[fired, -1] ** 2)
                                              <= np.mean(e_net[fired, -1] ** 2))
            row = {"lambda": lam, "quantile": q, "threshold": T,
                   "pass_rate": float(passed.mean()),
                   "p99_500": float(np.percentile(e[:, -1], 99)),
                   "mse_500": float(np.mean(e[:, -1] ** 2)),
                   "fallback_wins": wins,
                   "fired_mse_prior": float(np.mean(e_prior[fired, -1] ** 2)) if fired.any()
                   else None,
                   "fired_mse_network": float(np.mean(e_net[fired, -1] ** 2)) if fired.any()
                   else None}
            trace.append(row)
            if row["pass_rate"] + 1e-12 < sg.min_pass_rate or not wins:
                continue
            if best is None or row["p99_500"] < best["p99_500"]:
                best = row
    if best is None:  # nothing satisfied both rules: never fire, smallest lambda
        lam = min(sg.lambda_grid)
        best = next(r for r in trace if r["lambda"] == lam and r["quantile"] == 1.0)
    log(f"gate: lambda={best['lambda']} threshold={best['threshold']:.4g} "
        f"(val pass rate {best['pass_rate']:.3f}, P99@500 {best['p99_500']:.4g}, "
        f"fallback wins where it fires: {best['fallback_wins']})")
    return {"lambda": best["lambda"], "threshold": best["threshold"], "chosen": best,
            "trace": trace}
