"""A valid model with random weights, for tests and benchmarks that need no
training (numpy only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tmn.artifact import artifact_config, model_tensors, write_artifact
from tmn.model import FEATURES


def random_model(folder: str | Path, system: str = "B", hidden: int = 32,
                 horizons_ms: list[float] | None = None, seed: int = 0,
                 weight_scale: float = 1.0, **overrides: Any) -> Path:
    """Write a valid artifact with random weights (PyTorch's default init range,
    times ``weight_scale``) and return its folder.

    ``overrides`` replace top-level config entries, e.g. ``normalisation={...}``;
    ``gate={...}`` updates the default gate's entries (the rest keep their defaults).
    """
    rng = np.random.default_rng(seed)
    horizons_ms = horizons_ms if horizons_ms is not None else [50.0 * (k + 1) for k in range(10)]
    H, O, F = hidden, 2 * len(horizons_ms), len(FEATURES[system])
    bound = weight_scale / np.sqrt(H)

    def u(*shape: int) -> np.ndarray:
        return rng.uniform(-bound, bound, size=shape).astype(np.float32)

    tensors = model_tensors(u(3 * H, F), u(3 * H, H), u(3 * H), u(3 * H), u(O, H), u(O))
    config = artifact_config(
        system=system, sample_rate_hz=2000, window_ms=128, max_gap_ms=100,
        horizons_ms=horizons_ms, ingest={"velocity_window": 8, "highpass_ms": 32.0}, hidden=H,
        normalisation={"mean": [0.0] * F, "std": [1.0] * F, "output_scale": [1.0, 1.0]},
        kalman={"q": 10.0, "r_pos": 1e-4, "r_vel": 1e-2},
        gate={"eps": 0.02, "budget": 200000, "lambda": 0.1, "threshold": 1e6, "blend_ms": 0.0,
              "variance": "prior"},
        provenance={"source": "tmn.testing.random_model", "seed": seed})
    if "gate" in overrides and config.get("gate") is not None:
        overrides = dict(overrides, gate={**config["gate"], **overrides["gate"]})
    config.update(overrides)
    return write_artifact(folder, config, tensors)
