"""``tmn-train evaluate``: replay exported models on a held-out split and compare them.

All models replay the same pieces (the split of the first model's training
config, ``provenance.config``) through the C++ engine. Besides the per-model
metrics of tmn_train.engine_eval, two models are compared at 500 ms on the
ticks both predicted (paired):

* blocks: consecutive 1 s stretches of one piece (ticks within a block are
  strongly correlated, so tests are run on block means, not on ticks);
* ``t_test``: paired t-test of the per-block MSE; ``wilcoxon``: Wilcoxon
  signed-rank test of the same; ``effect_dz``: Cohen's d_z of the per-block
  MSE difference (second minus first);
* ``p99_ratio`` (second / first) with a 95 % block-bootstrap interval
  (2000 resamples of blocks).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

import tmn
from tmn_train import engine_eval
from tmn_train.config import Config, from_dict
from tmn_train.pipeline import build_split, split_streams
from tmn_train.sources import load_sources


def _blocks(idx: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    piece = np.searchsorted(offsets, idx, side="right") - 1
    return piece * 10**9 + (idx - offsets[piece]) // size


def paired(e_first: np.ndarray, e_second: np.ndarray, block: np.ndarray, seed: int = 0
           ) -> dict[str, Any]:
    """Paired statistics of two error vectors (same ticks), blocked by ``block`` ids."""
    from scipy import stats

    _, inv = np.unique(block, return_inverse=True)
    nb = inv.max() + 1
    cnt = np.bincount(inv, minlength=nb)
    m1 = np.bincount(inv, e_first**2, nb) / cnt
    m2 = np.bincount(inv, e_second**2, nb) / cnt
    d = m2 - m1
    out: dict[str, Any] = {"blocks": int(nb), "mse_first": float(np.mean(e_first**2)),
                           "mse_second": float(np.mean(e_second**2))}
    if nb >= 3 and np.std(d) > 0:
        out["t_test_p"] = float(stats.ttest_rel(m2, m1).pvalue)
        out["wilcoxon_p"] = float(stats.wilcoxon(m2, m1).pvalue)
        out["effect_dz"] = float(np.mean(d) / np.std(d, ddof=1))
    p99 = float(np.percentile(e_second, 99) / np.percentile(e_first, 99))
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(inv == b) for b in range(nb)]
    ratios = []
    for _ in range(2000 if nb >= 3 else 0):
        pick = np.concatenate([members[b] for b in rng.integers(0, nb, nb)])
        ratios.append(np.percentile(e_second[pick], 99) / np.percentile(e_first[pick], 99))
    out["p99_ratio"] = p99
    if ratios:
        lo, hi = np.percentile(ratios, [2.5, 97.5])
        out["p99_ratio_ci95"] = [float(lo), float(hi)]
    return out


def evaluate_models(paths: list[Path], data: list[str], split: str = "test",
                    log=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    models = [tmn.load(p) for p in paths]
    cfgs: list[Config] = [from_dict(m.config["provenance"]["config"], where=str(m.path))
                          for m in models]
    cfg = cfgs[0]
    streams = load_sources(data, cfg)
    raw = split_streams(streams, cfg)
    min_len = cfg.ticks(cfg.window_ms) + cfg.horizon_ticks[-1] + 1
    pieces = [s for s in raw[split] if len(s) >= min_len]
    n = models[0].config["normalisation"]
    # replay needs only the raw ticks; system A skips the (unused) Kalman posterior
    plain = dataclasses.replace(cfg, system="A", prior="none", solver_gate=None,
                                active_selection=None)
    a = build_split(pieces, plain, n["mean"], n["std"], models[0].config["kalman"])
    result: dict[str, Any] = {"split": split, "data": data, "ticks": int(len(a.t)),
                              "models": {}}
    errs = []
    for p, m, c in zip(paths, models, cfgs):
        r = engine_eval.evaluate(m.config, m.tensors, a, c)
        rep = engine_eval.replay(m, a, "fp32")
        idx = engine_eval.valid_ticks(a, c, rep.verdict)
        errs.append((idx, engine_eval.errors(rep.paths, a, c, idx)[:, -1]))
        result["models"][str(p)] = r
        log(f"{p} (System {m.system}) on {split}: {r['fp32']['ticks']} ticks")
        for name in ("fp32", "int8", "kalman_only", "constant_velocity"):
            x = r[name]
            extra = f" pass {x['pass_rate']:.3f}" if "pass_rate" in x else ""
            log(f"  {name:18s} @500ms P50 {x['p50'][-1]:9.4g} P90 {x['p90'][-1]:9.4g} "
                f"P99 {x['p99'][-1]:9.4g} MSE {x['mse'][-1]:10.4g} jitter {x['jitter']:.4g}"
                f"{extra}")
        log(f"  int8/fp32 MSE@500 {r['int8_mse_ratio']:.4f}")
    if len(models) >= 2:
        (i1, e1), (i2, e2) = errs[0], errs[1]
        common, a1, a2 = np.intersect1d(i1, i2, return_indices=True)
        block = _blocks(common, a.offsets, int(cfg.sample_rate_hz))
        st = paired(e1[a1], e2[a2], block)
        result["paired_500ms"] = {"first": str(paths[0]), "second": str(paths[1]), **st}
        log(f"paired @500ms, {paths[1]} vs {paths[0]}: P99 ratio {st['p99_ratio']:.3f} "
            f"CI95 {st.get('p99_ratio_ci95')} MSE {st['mse_second']:.4g} vs "
            f"{st['mse_first']:.4g}; t-test p {st.get('t_test_p')}, Wilcoxon p "
            f"{st.get('wilcoxon_p')}, d_z {st.get('effect_dz')} ({st['blocks']} blocks)")
    return result


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
