"""What training does with the C++ engine on held-out splits: the test metrics
stored in every artifact's provenance, and System B's gate calibration.

Both go through ``tmn_train.scoring``, the held-out scoring path that
``tmn-bench accuracy`` uses too. Metrics, per horizon, over the evaluated ticks
(scoring's module docstring), in data units: ``p50``, ``p90``, ``p99``,
``max``, ``mse``, and ``jitter`` of the farthest horizon; for B, ``pass_rate``
and ``cert_mean`` (mean certificate over passes, output units); with an
uncertainty calibration, ``coverage`` (the share of errors within the served
90 % radius, per horizon). Baselines on
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
NEVER = 1e30  # a gate threshold no d2 reaches: the gate never falls back as implausible


def memory_model(config: dict[str, Any], tensors: dict[str, np.ndarray]) -> tmn.Model:
    """A tmn.Model that was never written to disk (for calibration and evaluation)."""
    return tmn.Model(path=Path("<memory>"), config=config, tensors=tensors)


def summarise(pred: np.ndarray, ev: scoring.Evaluated, cfg: Config,
              r: tmn.Replay | None = None) -> dict[str, Any]:
    """The metrics of the module docstring for paths ``pred`` at the evaluated
    ticks (with ``r``, the model's replay: its coverage, and B's gate)."""
    m = scoring.path_metrics(pred, ev)
    out: dict[str, Any] = {"ticks": int(len(ev.idx)), "horizons_ms": cfg.horizons_ms,
                           **{k: m[k] for k in ("p50", "p90", "p99", "max", "mse")},
                           "jitter": m["jitter"][-1]}
    if r is not None and np.isfinite(r.radius[ev.idx]).any():
        out["coverage"] = scoring.coverage(r.radius[ev.idx], scoring.errors(pred, ev.truth))
    if r is not None and cfg.system == "B":
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
    out: dict[str, Any] = {p: summarise(r.paths[ev.idx], ev, cfg, r) for p, r in runs.items()}
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

def _variances(base: tmn.Replay, ev: scoring.Evaluated, scale: np.ndarray,
               names: list[str]) -> dict[str, tuple[Any, np.ndarray]]:
    """Per plausibility variance (calibrate_gate, 2.): its config value and every
    evaluated tick's d2 under it, from a replay that never fell back."""
    assert base.prior is not None and base.proposal is not None
    delta = (base.proposal[ev.idx] - base.prior[ev.idx]) / scale          # [m, K, 2]
    resid = (base.proposal[ev.idx] - ev.truth) / scale
    out: dict[str, tuple[Any, np.ndarray]] = {}
    for name in names:
        if name == "prior":
            out[name] = ("prior", base.d2[ev.idx].astype(np.float64))
        else:
            s2 = np.maximum(np.mean(resid ** 2, axis=(0, 2)), 1e-12)     # [K]
            out[name] = ([float(v) for v in s2],
                         np.mean(np.sum(delta ** 2, axis=2) / s2, axis=1))
    return out


def calibrate_gate(config: dict[str, Any], tensors: dict[str, np.ndarray], val: SplitArrays,
                   cfg: Config, log=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Choose the gate's lambda, plausibility variance and threshold on validation,
    for the tail error of the path the engine serves (docs/gate.md, "Calibration").

    1. **lambda**: every value of ``solver_gate.lambda_grid`` is replayed with the
       threshold at infinity (every tick certified, no fallback); the lowest P99
       error at the headline horizon wins.
    2. **variance**: ``prior`` divides each correction by the prior's covariance
       S_k; ``residual`` by the network's own residual variance per horizon on
       validation, half the mean squared error of its own path (proposal) per
       axis, in output units^2 (the correction against how wrong the network
       usually is).
    3. **threshold**: the d2 quantiles 0.9 to 0.999 under that variance, and
       infinity (never fall back). Each candidate is replayed through the engine
       (the blend of verdict switches makes the served path depend on the past),
       and kept if its pass rate is >= ``min_pass_rate`` and, where it falls back,
       the prior beats the network's own path at the headline on at least
       ``min_win_rate`` of the fallbacks. The lowest served P99 at the headline
       wins; never falling back wins ties.
    Returns the choice (lambda, threshold, variance) and the trace of every row.
    """
    assert cfg.solver_gate is not None
    sg = cfg.solver_gate
    model = memory_model(config, tensors)

    def replay_with(**gate: Any) -> tmn.Replay:
        c = dict(model.config, gate=dict(model.config["gate"], **gate))
        return scoring.replay(memory_model(c, tensors), val, "fp32", candidates=True)

    # 1. lambda, on the certified path alone
    runs = {lam: replay_with(**{"lambda": lam, "threshold": NEVER, "variance": "prior"})
            for lam in sg.lambda_grid}
    ev = scoring.evaluated_ticks(val, cfg.horizon_ticks, list(runs.values()))
    p99 = {lam: float(np.percentile(scoring.errors(r.paths[ev.idx], ev.truth)[:, -1], 99))
           for lam, r in runs.items()}
    lam = min(p99, key=lambda k: (p99[k], k))
    base = runs[lam]
    assert base.prior is not None and base.proposal is not None
    e_prior = scoring.errors(base.prior[ev.idx], ev.truth)[:, -1]
    e_net = scoring.errors(base.proposal[ev.idx], ev.truth)[:, -1]
    # 2. the variances and their d2
    variances = _variances(base, ev, np.asarray(config["normalisation"]["output_scale"]),
                           sg.variances)
    # 3. thresholds, each replayed
    trace = [{"lambda": k, "variance": "prior", "quantile": 1.0, "threshold": NEVER,
              "p99_500": v, "pass_rate": 1.0, "fallback_win_rate": None} for k, v in p99.items()]
    best = trace[sg.lambda_grid.index(lam)]
    for name, (variance, d2) in variances.items():
        for q in (0.9, 0.95, 0.98, 0.99, 0.995, 0.999):
            T = max(float(np.quantile(d2, q)), 1e-12)
            r = replay_with(**{"lambda": lam, "threshold": T, "variance": variance})
            v = r.verdict[ev.idx]
            fired = (v == int(tmn.Verdict.fallback_implausible)) | \
                (v == int(tmn.Verdict.fallback_uncertified))
            win = float(np.mean(e_prior[fired] < e_net[fired])) if fired.any() else None
            row = {"lambda": lam, "variance": name, "quantile": q, "threshold": T,
                   "p99_500": float(np.percentile(
                       scoring.errors(r.paths[ev.idx], ev.truth)[:, -1], 99)),
                   "pass_rate": float(np.mean(v == scoring.PASS)), "fallback_win_rate": win}
            trace.append(row)
            ok = row["pass_rate"] + 1e-12 >= sg.min_pass_rate and \
                (win is None or win >= sg.min_win_rate)
            if ok and row["p99_500"] < best["p99_500"]:
                best = dict(row, variance_values=variance)
    log(f"gate: lambda={best['lambda']} variance={best['variance']} "
        f"threshold={best['threshold']:.4g} (val pass rate {best['pass_rate']:.3f}, "
        f"P99@{cfg.horizons_ms[-1]:g} {best['p99_500']:.4g}, fallback win rate "
        f"{best['fallback_win_rate']})")
    return {"lambda": best["lambda"], "threshold": best["threshold"],
            "variance": best.get("variance_values", "prior"),
            "chosen": {k: v for k, v in best.items() if k != "variance_values"}, "trace": trace}
