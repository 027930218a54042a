"""Writing model artifacts (docs/model-format.md): config.json, model.safetensors
and their checksum. ``tmn.model`` reads and validates what this module writes.

The training export (``tmn-train export``) and ``tmn.testing.random_model``
both build their ``config.json`` with :func:`artifact_config` and write with
:func:`write_artifact`, so the format is written in one place. numpy only.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from tmn.model import (CONFIG_FILE, FEATURES, FORMAT_VERSION, QUANT_SCHEME, WEIGHTS_FILE,
                       file_sha256)

# A file only a tmn checkout has (git_sha).
TMN_CHECKOUT_MARK = "cpp/include/tmn/engine.hpp"
# The tensors with an INT8 copy (their per-row quantisation, quantise_rows).
QUANTISED = ("gru.weight_ih", "gru.weight_hh", "head.weight")


def quantise_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric INT8 quantisation: ``w[i] ~= scale[i] * q[i]``.

    ``scale[i] = max|w[i]| / 127`` (1 for an all-zero row) and
    ``q = clip(rint(w / scale), -127, 127)``, rounding half to even.
    """
    w = np.asarray(w, dtype=np.float32)
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def model_tensors(w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray,
                  w_out: np.ndarray, b_out: np.ndarray) -> dict[str, np.ndarray]:
    """The artifact's tensor dict from FP32 weights (PyTorch layout), INT8 included."""
    t = {
        "gru.weight_ih": w_ih, "gru.weight_hh": w_hh, "gru.bias_ih": b_ih,
        "gru.bias_hh": b_hh, "head.weight": w_out, "head.bias": b_out,
    }
    t = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in t.items()}
    for name in QUANTISED:
        t[name + ".int8"], t[name + ".scale"] = quantise_rows(t[name])
    return t


def artifact_config(*, system: str, sample_rate_hz: float, window_ms: float, max_gap_ms: float,
                    horizons_ms: list[float], ingest: dict[str, float], hidden: int,
                    normalisation: dict[str, list[float]], kalman: dict[str, float],
                    gate: dict[str, Any] | None, provenance: dict[str, Any],
                    uncertainty: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config.json`` of docs/model-format.md, without ``weights`` (which
    :func:`write_artifact` adds). ``ingest`` has ``velocity_window`` and
    ``highpass_ms``; ``normalisation`` has ``mean``, ``std`` (one per feature of
    the system) and ``output_scale``; ``kalman`` has ``q``, ``r_pos``, ``r_vel``;
    ``gate`` (System B only) has ``eps``, ``budget``, ``lambda``, ``threshold``,
    ``blend_ms`` and ``variance`` ("prior", or one variance per horizon);
    ``uncertainty`` (optional) has ``quantile``, ``radius_c0`` and ``radius_c1``
    (one per horizon) and may say how they were found."""
    c: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "system": system,
        "sample_rate_hz": sample_rate_hz,
        "window_ms": window_ms,
        "max_gap_ms": max_gap_ms,
        "horizons_ms": list(horizons_ms),
        "ingest": {"velocity_window": int(ingest["velocity_window"]),
                   "highpass_ms": float(ingest["highpass_ms"])},
        "features": list(FEATURES[system]),
        "hidden": hidden,
        "normalisation": {k: list(normalisation[k]) for k in ("mean", "std", "output_scale")},
        "kalman": {k: kalman[k] for k in ("q", "r_pos", "r_vel")},
        "quantisation": {"scheme": QUANT_SCHEME},
        "provenance": provenance,
    }
    if gate is not None:
        c["gate"] = {k: gate[k] for k in ("eps", "budget", "lambda", "threshold", "blend_ms",
                                          "variance")}
    if uncertainty is not None:
        c["uncertainty"] = dict(uncertainty)
    return c


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


def git_sha(start: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` of the tmn checkout that holds ``start`` (default:
    this package's source, following symlinks, then the current directory), with
    ``-dirty`` if the work tree has changes or files git does not track yet (they
    may be the code that ran): the provenance of an artifact or a benchmark. A
    repository that is not a tmn checkout does not count (an installed package
    can live inside someone else's repository, such as pyenv's); ``"unknown"``
    when no tmn checkout is found or without git."""
    places = [Path(start)] if start is not None else [Path(__file__).resolve().parent,
                                                      Path.cwd()]
    for where in places:
        try:
            top = subprocess.run(["git", "-C", str(where), "rev-parse", "--show-toplevel"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
            if not top or not (Path(top) / TMN_CHECKOUT_MARK).is_file():
                continue
            sha = subprocess.run(["git", "-C", top, "rev-parse", "HEAD"], capture_output=True,
                                 text=True, timeout=10, check=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", top, "status", "--porcelain"],
                                   capture_output=True, text=True, timeout=10,
                                   check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if sha:
            return sha + ("-dirty" if dirty else "")
    return "unknown"
