"""What training does with the C++ engine on held-out splits: the test metrics
stored in every artifact's provenance, and System B's gate calibration.

Both go through ``tmn_train.scoring``, the held-out scoring path that
``tmn-bench accuracy`` uses too. Metrics, per horizon, over the evaluated ticks
(scoring's module docstring), in data units: ``p50``, ``p90``, ``p99``,
``max``, ``mse``, and ``jitter`` of the farthest horizon; for B, ``pass_rate``
and ``cert_mean`` (mean certificate over passes, output units). Baselines on
the same ticks: ``kalman_only`` is the engine's own prior path (the replay's
candidates, what a fallback serves) and ``constant_velocity``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

import tmn
from tmn_train import scoring
from tmn_train.config import Config
from tmn_train.pipeline import SplitArrays

PRECISIONS = ("fp32", "int8")


def memory_model(config: dict[str, Any], tensors: dict[str, np.ndarray]) -> tmn.Model:
    """A tmn.Model that was never written to disk (for calibration and evaluation)."""
    return tmn.Model(path=Path("<memory>"), config=config, tensors=tensors)


def summarise(pred: np.ndarray, ev: scoring.Evaluated, cfg: Config,
              r: tmn.Replay | None = None) -> dict[str, Any]:
    """The metrics of the module docstring for paths ``pred`` at the evaluated
    ticks (with ``r``, B's replay, the gate's too)."""
    m = scoring.path_metrics(pred, ev)
    out: dict[str, Any] = {"ticks": int(len(ev.idx)), "horizons_ms": cfg.horizons_ms,
                           **{k: m[k] for k in ("p50", "p90", "p99", "max", "mse")},
                           "jitter": m["jitter"][-1]}
    if r is not None:
        g = scoring.gate_rates(r.verdict[ev.idx], r.cert[ev.idx])
        out["pass_rate"] = g["pass_rate"]
        if math.isfinite(g["cert_mean"]):
            out["cert_mean"] = g["cert_mean"]
    out["p99_500"] = out["p99"][-1]
    out["mse_500"] = out["mse"][-1]
    return out


def evaluate(config: dict[str, Any], tensors: dict[str, np.ndarray], a: SplitArrays,
             cfg: Config, baselines: bool = True) -> dict[str, Any]:
    """FP32 and INT8 engine replay of one split, plus the baselines."""
    model = memory_model(config, tensors)
    runs = {p: scoring.replay(model, a, p, candidates=baselines) for p in PRECISIONS}
    ev = scoring.evaluated_ticks(a, cfg.horizon_ticks, runs.values())
    out: dict[str, Any] = {p: summarise(r.paths[ev.idx], ev, cfg,
                                        r if cfg.system == "B" else None)
                           for p, r in runs.items()}
    if baselines:
        prior = runs["fp32"].prior
        assert prior is not None
        out["kalman_only"] = summarise(prior[ev.idx], ev, cfg)
        out["constant_velocity"] = summarise(
            scoring.constant_velocity(a, ev, cfg.horizons_ms), ev, cfg)
    ratio = scoring.mse_ratio(out["int8"], out["fp32"])
    out["int8_mse_ratio"], out["int8_mse_ratio_all"] = ratio["headline"], ratio["all_horizons"]
    return out


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
    ev: scoring.Evaluated | None = None
    e_prior = np.zeros(0)
    qs = sorted({sg.min_pass_rate, *[q for q in (0.9, 0.925, 0.95, 0.97, 0.98, 0.99, 0.995,
                                                 0.999) if q >= sg.min_pass_rate], 1.0})
    trace = []
    best: dict[str, Any] | None = None
    for lam in sg.lambda_grid:
        c = dict(config)
        c["gate"] = dict(config["gate"], **{"lambda": lam, "threshold": math.inf})
        r = scoring.replay(memory_model(c, tensors), val, "fp32", candidates=True)
        if ev is None:  # warming and the prior do not depend on lambda
            assert r.prior is not None
            ev = scoring.evaluated_ticks(val, cfg.horizon_ticks, [r])
            e_prior = scoring.errors(r.prior[ev.idx], ev.truth)
        d2 = r.d2[ev.idx].astype(np.float64)
        certified = r.verdict[ev.idx] == scoring.PASS
        e_net = scoring.errors(r.paths[ev.idx], ev.truth)
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
