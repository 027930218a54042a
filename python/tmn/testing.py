"""Helpers for tests and benchmarks that need no training (numpy only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tmn.model import (CONFIG_FILE, FEATURES, FORMAT_VERSION, QUANT_SCHEME, WEIGHTS_FILE,
                       file_sha256, quantise_rows)


def model_tensors(w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray,
                  w_out: np.ndarray, b_out: np.ndarray) -> dict[str, np.ndarray]:
    """The artifact's tensor dict from FP32 weights (PyTorch layout), INT8 included."""
    t = {
        "gru.weight_ih": w_ih, "gru.weight_hh": w_hh, "gru.bias_ih": b_ih,
        "gru.bias_hh": b_hh, "head.weight": w_out, "head.bias": b_out,
    }
    t = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in t.items()}
    for name in ("gru.weight_ih", "gru.weight_hh", "head.weight"):
        t[name + ".int8"], t[name + ".scale"] = quantise_rows(t[name])
    return t


def write_artifact(folder: str | Path, config: dict[str, Any],
                   tensors: dict[str, np.ndarray]) -> Path:
    """Write config.json and model.safetensors (with its checksum) into ``folder``."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / WEIGHTS_FILE))
    config = dict(config)
    config["weights"] = {"file": WEIGHTS_FILE, "sha256": file_sha256(folder / WEIGHTS_FILE)}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def random_model(folder: str | Path, system: str = "B", hidden: int = 32,
                 horizons_ms: list[float] | None = None, seed: int = 0,
                 weight_scale: float = 1.0, **overrides: Any) -> Path:
    """Write a valid artifact with random weights (PyTorch's default init range,
    times ``weight_scale``) and return its folder.

    ``overrides`` replace top-level config entries, e.g. ``gate={...}`` or
    ``normalisation={...}``.
    """
    rng = np.random.default_rng(seed)
    horizons_ms = horizons_ms if horizons_ms is not None else [50.0 * (k + 1) for k in range(10)]
    H, O = hidden, 2 * len(horizons_ms)
    bound = weight_scale / np.sqrt(H)

    def u(*shape: int) -> np.ndarray:
        return rng.uniform(-bound, bound, size=shape).astype(np.float32)

    tensors = model_tensors(u(3 * H, 4), u(3 * H, H), u(3 * H), u(3 * H), u(O, H), u(O))
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "system": system,
        "sample_rate_hz": 2000,
        "window_ms": 128,
        "max_gap_ms": 100,
        "horizons_ms": horizons_ms,
        "features": list(FEATURES),
        "hidden": H,
        "normalisation": {"mean": [0.0, 0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0, 1.0],
                          "output_scale": [1.0, 1.0]},
        "kalman": {"q": 10.0, "r_pos": 1e-4, "r_vel": 1e-2},
        "gate": {"eps": 0.02, "budget": 200000, "lambda": 0.1, "threshold": 1e6},
        "quantisation": {"scheme": QUANT_SCHEME},
        "provenance": {"source": "tmn.testing.random_model", "seed": seed},
    }
    config.update(overrides)
    return write_artifact(folder, config, tensors)
