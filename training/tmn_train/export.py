"""``tmn-train export``: a final checkpoint -> the artifact folder of
docs/model-format.md (config.json, model.safetensors, model.onnx, README.md).

``config.json`` and ``model.safetensors`` are written by ``tmn.artifact`` (the
runtime's own writer, checksum included), ``model.onnx`` by
``tmn.onnx_graph.write_step_graph`` from the artifact as ``tmn.load`` reads it
back, so the three files cannot disagree. The resolved training config is kept
in ``provenance.config``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import tmn
from tmn.artifact import write_artifact
from tmn.artifact import artifact_config as _artifact_config
from tmn.onnx_graph import write_step_graph
from tmn_train.config import Config
from tmn_train.evaluation import NEVER


def artifact_config(cfg: Config, mean: list[float], std: list[float],
                    output_scale: list[float], kalman: dict[str, float],
                    gate: dict[str, Any] | None = None,
                    provenance: dict[str, Any] | None = None,
                    uncertainty: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.json (``tmn.artifact.artifact_config``) of a model trained with
    ``cfg``; System B's gate takes ``gate``'s calibrated lambda, threshold and
    variance (before calibration: the grid's first lambda, the prior's variance
    and a threshold that never fires); ``uncertainty`` is the radius calibration
    (tmn_train.uncertainty), if any."""
    g = None
    if cfg.system == "B":
        assert cfg.solver_gate is not None
        chosen = gate or {}
        g = {"eps": cfg.solver_gate.eps, "budget": cfg.solver_gate.budget,
             "lambda": chosen.get("lambda", cfg.solver_gate.lambda_grid[0]),
             "threshold": chosen.get("threshold", NEVER),
             "blend_ms": cfg.solver_gate.blend_ms,
             "variance": chosen.get("variance", "prior")}
    return _artifact_config(
        system=cfg.system, sample_rate_hz=cfg.sample_rate_hz, window_ms=cfg.window_ms,
        max_gap_ms=cfg.max_gap_ms, horizons_ms=cfg.horizons_ms,
        ingest={"velocity_window": cfg.data.velocity_window,
                "highpass_ms": cfg.data.highpass_ms},
        hidden=cfg.micro_gru.hidden,
        normalisation={"mean": mean, "std": std, "output_scale": output_scale},
        kalman=kalman, gate=g, provenance=provenance or {}, uncertainty=uncertainty)


def export(ck: dict[str, Any], cfg: Config, out: Path) -> Path:
    n = ck["normalisation"]
    prov = dict(ck["provenance"])
    prov["config"] = cfg.to_dict()
    if ck.get("gate") is not None:
        prov["gate_calibration"] = ck["gate"]["chosen"]
    config = artifact_config(cfg, n["mean"], n["std"], n["output_scale"], ck["kalman"],
                             ck.get("gate"), prov, ck.get("uncertainty"))
    out.mkdir(parents=True, exist_ok=True)
    write_artifact(out, config, ck["tensors"])
    os.chmod(out / "model.safetensors", 0o644)  # safetensors writes 0600; this is package data
    model = tmn.load(out)  # validates what we just wrote
    write_step_graph(model, out / "model.onnx")
    (out / "README.md").write_text(model_card(model.config), encoding="utf-8")
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def model_card(c: dict[str, Any]) -> str:
    p = c.get("provenance", {})
    m = p.get("metrics", {}).get("test", {})
    lines = [
        f"# tmn model — System {c['system']}",
        "",
        "A micro-GRU motion predictor for the tmn engine "
        + ("(residual over a constant-velocity Kalman prior, with the certified gate)."
           if c["system"] == "B" else "(displacement from the measured position)."),
        "",
        "| field | value |",
        "|---|---|",
        f"| system | {c['system']} |",
        f"| horizons (ms) | {', '.join(_fmt(h) for h in c['horizons_ms'])} |",
        f"| sample rate (Hz) | {_fmt(c['sample_rate_hz'])} |",
        f"| window / max gap (ms) | {_fmt(c['window_ms'])} / {_fmt(c['max_gap_ms'])} |",
        f"| hidden | {c['hidden']} |",
        f"| Kalman q, r_pos, r_vel | {_fmt(c['kalman']['q'])}, {_fmt(c['kalman']['r_pos'])}, "
        f"{_fmt(c['kalman']['r_vel'])} |",
    ]
    if "gate" in c:
        g = c["gate"]
        lines.append(f"| gate eps, budget, lambda, threshold | {_fmt(g['eps'])}, {g['budget']}, "
                     f"{_fmt(g['lambda'])}, {_fmt(g['threshold'])} |")
    lines += [
        f"| quantisation | {c['quantisation']['scheme']} |",
        f"| data | {', '.join(map(str, p.get('data', [])))} |",
        f"| seed | {p.get('seed')} |",
        f"| git sha | {p.get('git_sha')} |",
        "",
        "## Intended use",
        "",
        "Latency compensation and short-term prediction of a moving 2-D point from ticks "
        "(t, x, y, vx, vy). Data units are those of the training data; the model does not "
        "know about other scales, rates or kinds of motion.",
        "",
    ]
    if m:
        lines += ["## Accuracy (C++ engine replay, held-out test split, data units)", "",
                  "| predictor | P50 @500 ms | P90 @500 ms | P99 @500 ms | MSE @500 ms | jitter |",
                  "|---|---|---|---|---|---|"]
        for name in ("fp32", "int8", "kalman_only", "constant_velocity"):
            if name in m:
                r = m[name]
                lines.append(f"| {name} | {_fmt(r['p50'][-1])} | {_fmt(r['p90'][-1])} | "
                             f"{_fmt(r['p99'][-1])} | {_fmt(r['mse'][-1])} | {_fmt(r['jitter'])} |")
        if "pass_rate" in m.get("fp32", {}):
            lines += ["", f"Gate pass rate {m['fp32']['pass_rate']:.3f}, mean certificate "
                          f"{m['fp32'].get('cert_mean', float('nan')):.3g} (output units)."]
        lines += ["", f"INT8 / FP32 MSE at 500 ms: {m.get('int8_mse_ratio', float('nan')):.4f}.",
                  ""]
    lines += ["## Limitations", "",
              "Trained on the data named above only. Accuracy on other motion is unknown: "
              "measure it with `tmn-bench accuracy`. The metrics above include the sensor "
              "noise of the measured future position.", "",
              "Full provenance (config, per-horizon metrics, training history) is in "
              "config.json under `provenance`.", ""]
    return "\n".join(lines)


def summary(out: Path) -> str:
    c = json.loads((out / "config.json").read_text(encoding="utf-8"))
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return f"{out}: System {c['system']}, {size} bytes"
