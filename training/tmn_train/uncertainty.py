"""The uncertainty radius: each path point's calibrated 90 % error radius.

The engine serves ``r_k = sqrt(c0_k + c1_k |v|^2)`` for path point k, ``|v|``
the Kalman prior's posterior speed at the tick (cpp/src/engine.cpp,
``Engine::radius``); docs/uncertainty.md gives the reasoning. This module
chooses ``c0_k, c1_k`` on the validation split, through the engine:

1. replay the split (INT8, what tmn-serve runs, with the candidates) and take
   the evaluated ticks (``tmn_train.scoring``): the served path's error
   ``e_k`` and the speed ``|v|``, read back from the prior path, which is
   ``p + v h_k`` exactly;
2. **shape**: sort the ticks by speed into ``BINS`` bins of equal count; in
   each, the ``quantile`` of ``e_k``; fit ``q_b^2 = c0 + c1 |v_b|^2``
   (``|v_b|`` the bin's mean speed) by non-negative least squares, so that
   the radius follows how the error grows with speed;
3. **level**: scale both by ``m^2``, ``m`` the ``quantile`` of
   ``e_k / sqrt(c0 + c1 |v|^2)`` over all ticks, so that exactly that share
   of validation errors lies within the radius at every horizon.

``tmn_train.scoring.coverage`` measures it on any split: the share of errors
within the radius, per horizon.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

import tmn
from tmn_train import scoring
from tmn_train.config import Config, of_artifact
from tmn_train.evaluation import memory_model
from tmn_train.pipeline import Pieces, min_piece, split_streams
from tmn_train.sources import load_sources

QUANTILE = 0.9
BINS = 20


def prior_speed(prior: np.ndarray, horizons_s: np.ndarray) -> np.ndarray:
    """``[m]`` the posterior speed behind prior paths ``[m, K, 2]`` (``p + v h_k``);
    zeros for a single horizon (no slope to read)."""
    if prior.shape[1] < 2:
        return np.zeros(prior.shape[0])
    v = (prior[:, -1] - prior[:, 0]) / (horizons_s[-1] - horizons_s[0])
    return np.linalg.norm(v, axis=-1)


def fit_radius(e: np.ndarray, speed: np.ndarray, quantile: float = QUANTILE,
               bins: int = BINS) -> tuple[np.ndarray, np.ndarray]:
    """``(c0, c1)``, each ``[K]``, from errors ``e`` ``[m, K]`` and speeds ``[m]``
    (module docstring, 2 and 3)."""
    e, speed = np.asarray(e, np.float64), np.asarray(speed, np.float64)
    if e.ndim != 2 or len(e) < bins or len(speed) != len(e):
        raise ValueError(f"need at least {bins} ticks of [m, K] errors and m speeds")
    order = np.argsort(speed, kind="stable")
    groups = np.array_split(order, bins)
    v2 = np.array([np.mean(speed[g] ** 2) for g in groups])
    K = e.shape[1]
    c0, c1 = np.zeros(K), np.zeros(K)
    for k in range(K):
        q2 = np.array([np.quantile(e[g, k], quantile) for g in groups]) ** 2
        (a, b), _ = nnls(np.stack([np.ones(bins), v2], axis=1), q2)
        if a + b <= 0:  # every bin's quantile is 0: an exact predictor
            a = max(float(np.max(e[:, k] ** 2)), np.finfo(float).tiny)
        scale = np.sqrt(a + b * speed ** 2)
        m = np.quantile(np.divide(e[:, k], scale, out=np.zeros(len(e)), where=scale > 0),
                        quantile)
        m = max(float(m), 1e-12)
        c0[k], c1[k] = a * m * m, b * m * m
    return c0, c1


def calibrate_radius(config: dict[str, Any], tensors: dict[str, np.ndarray], val: Pieces,
                     cfg: Config, log=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """config.json's ``uncertainty`` for the model ``config`` + ``tensors``, fitted
    on ``val`` (module docstring)."""
    r = scoring.replay(memory_model(config, tensors), val, "int8", candidates=True)
    ev = scoring.evaluated_ticks(val, cfg.horizon_ticks, [r])
    assert r.prior is not None
    e = scoring.errors(r.paths[ev.idx], ev.truth)
    speed = prior_speed(r.prior[ev.idx], np.asarray(cfg.horizons_ms) / 1000.0)
    c0, c1 = fit_radius(e, speed)
    out = {"quantile": QUANTILE, "radius_c0": c0.tolist(), "radius_c1": c1.tolist(),
           "method": f"{BINS} speed bins' {QUANTILE} error quantiles, non-negative least "
                     "squares, scaled to the quantile over the validation split (INT8)"}
    # the engine's own radius, replayed: what it serves covers what was fitted
    check = scoring.replay(memory_model(dict(config, uncertainty=out), tensors), val, "int8")
    out["val_coverage"] = scoring.coverage(check.radius[ev.idx], e)
    log(f"uncertainty: {QUANTILE:.0%} radius at {cfg.horizons_ms[-1]:g} ms "
        f"sqrt({c0[-1]:.4g} + {c1[-1]:.4g} |v|^2); val coverage "
        f"{min(out['val_coverage']):.3f}-{max(out['val_coverage']):.3f} over the horizons")
    return out


def recalibrate(folder: Path, data: list[str] | None = None, log=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """``tmn-train calibrate``: fit the radius of an existing artifact on the
    validation split of ``data`` (default: the data it was trained on), split as
    its training config says, and rewrite its config.json (atomically; the
    weights are untouched). Returns the new ``uncertainty``."""
    model = tmn.load(folder)
    cfg = of_artifact(model.config, str(folder))
    data = data or list(model.config["provenance"].get("data") or [])
    if not data:
        raise ValueError(f"{folder}: no data named in provenance.data; pass --data")
    val = [s for s in split_streams(load_sources(data, cfg), cfg)["val"]
           if len(s) >= min_piece(cfg)]
    if not val:
        raise ValueError(f"--data {' '.join(data)}: no validation piece is longer than a "
                         f"window plus the farthest horizon ({min_piece(cfg)} ticks)")
    unc = calibrate_radius(model.config, model.tensors, Pieces.of(val), cfg, log=log)
    unc["data"] = data
    config = dict(model.config, uncertainty=unc)
    path = Path(folder) / "config.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    tmn.load(folder)  # what was written loads
    return unc
