"""Model artifacts: load, validate and turn them into engine arrays.

An artifact is a folder (docs/model-format.md is the normative spec)::

    config.json        what the model is and how to run it
    model.safetensors  FP32 weights and their INT8 per-row quantisation
    model.onnx         the FP32 single step, for baselines (optional here)
    README.md          model card

C++ never parses files: this module reads and checks everything, then hands
plain arrays to ``tmn._core.ModelSpec``. Every refusal is a
:class:`ModelFormatError` that names the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tmn import _core, hub

FORMAT_VERSION = 2
# The features each system reads, in input order: the engine's ingest builds
# them (cpp/include/tmn/ingest.hpp), translation invariant.
FEATURES: dict[str, list[str]] = {k: list(v) for k, v in _core.FEATURES.items()}
QUANT_SCHEME = "int8-per-row-symmetric"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
DEFAULT_MODEL_DIR = Path(__file__).parent / "models" / "default"
# Limits the engine enforces too (defined in C++).
MAX_HIDDEN, MAX_HORIZONS, MAX_LAMBDA = _core.MAX_HIDDEN, _core.MAX_HORIZONS, _core.MAX_LAMBDA
MAX_VELOCITY_WINDOW = _core.MAX_VELOCITY_WINDOW
# Bounds that keep a model useful (not only finite): a sensor grid of at least
# 1 Hz, a warm-up no longer than the longest horizon allowed, a gap that spans
# at least one grid step (else ticks at the model's own rate always restart
# the stream), and normalisation constants whose z-scores and valid ranges
# stay well inside float32 (a std of 1e-320 made 1 / std infinite).
MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ = 1.0, 1e6
MAX_WINDOW_MS = _core.MAX_HORIZON_S * 1000.0
MIN_SCALE, MAX_SCALE = 1e-9, 1e9  # normalisation.std and .output_scale, data units
MAX_ABS_MEAN = 1e9                # normalisation.mean, data units
MAX_CONFIG_BYTES = 1 << 20   # config.json is a few KB; anything bigger is refused unread
MAX_WEIGHTS_BYTES = 1 << 26  # 64 MiB: above the largest model the engine can hold

# name -> (dtype, shape as a function of F = features, H = hidden, O = 2K)
_TENSORS: dict[str, tuple[str, Any]] = {
    "gru.weight_ih": ("float32", lambda F, H, O: (3 * H, F)),
    "gru.weight_hh": ("float32", lambda F, H, O: (3 * H, H)),
    "gru.bias_ih": ("float32", lambda F, H, O: (3 * H,)),
    "gru.bias_hh": ("float32", lambda F, H, O: (3 * H,)),
    "head.weight": ("float32", lambda F, H, O: (O, H)),
    "head.bias": ("float32", lambda F, H, O: (O,)),
    "gru.weight_ih.int8": ("int8", lambda F, H, O: (3 * H, F)),
    "gru.weight_ih.scale": ("float32", lambda F, H, O: (3 * H,)),
    "gru.weight_hh.int8": ("int8", lambda F, H, O: (3 * H, H)),
    "gru.weight_hh.scale": ("float32", lambda F, H, O: (3 * H,)),
    "head.weight.int8": ("int8", lambda F, H, O: (O, H)),
    "head.weight.scale": ("float32", lambda F, H, O: (O,)),
}


# ModelSpec.tensors name -> artifact tensor (row-major, flattened)
_SPEC_TENSORS = {
    "w_ih": "gru.weight_ih", "w_hh": "gru.weight_hh", "b_ih": "gru.bias_ih",
    "b_hh": "gru.bias_hh", "w_out": "head.weight", "b_out": "head.bias",
    "q_ih": "gru.weight_ih.int8", "s_ih": "gru.weight_ih.scale", "q_hh": "gru.weight_hh.int8",
    "s_hh": "gru.weight_hh.scale", "q_out": "head.weight.int8", "s_out": "head.weight.scale",
}


class ModelFormatError(ValueError):
    """An artifact was refused. The message names the file and the field."""


@dataclass(frozen=True)
class Model:
    """A validated model artifact: its folder, its config and its tensors."""

    path: Path
    config: dict[str, Any]
    tensors: dict[str, np.ndarray]

    @property
    def system(self) -> str:
        """``"A"`` (displacement) or ``"B"`` (residual over the Kalman prior)."""
        return str(self.config["system"])

    @property
    def horizons_ms(self) -> list[float]:
        """Prediction horizons in milliseconds."""
        return [float(h) for h in self.config["horizons_ms"]]

    @property
    def hidden(self) -> int:
        """GRU hidden size."""
        return int(self.config["hidden"])

    def spec(self) -> _core.ModelSpec:
        """The plain arrays and numbers that ``tmn._core.Engine`` is built from."""
        c, t = self.config, self.tensors
        s = _core.ModelSpec()
        s.system = _core.System.A if c["system"] == "A" else _core.System.B
        s.hidden = int(c["hidden"])
        s.horizons_s = [h / 1000.0 for h in self.horizons_ms]
        i = c["ingest"]
        s.ingest = _core.IngestParams(float(c["sample_rate_hz"]), int(i["velocity_window"]),
                                      float(i["highpass_ms"]) / 1000.0)
        n = c["normalisation"]
        s.feature_mean = [float(v) for v in n["mean"]]
        s.feature_std = [float(v) for v in n["std"]]
        s.output_scale = [float(v) for v in n["output_scale"]]
        s.window_s = float(c["window_ms"]) / 1000.0
        s.max_gap_s = float(c["max_gap_ms"]) / 1000.0
        k = c["kalman"]
        s.kalman = _core.KalmanParams(float(k["q"]), float(k["r_pos"]), float(k["r_vel"]))
        if c["system"] == "B":
            g = c["gate"]
            s.gate = _core.GateParams(float(g["eps"]), int(g["budget"]), float(g["lambda"]),
                                      float(g["threshold"]), float(g["blend_ms"]) / 1000.0)
            s.gate_variance = [] if g["variance"] == "prior" else [float(v) for v in g["variance"]]
        u = c.get("uncertainty")
        if u is not None:
            s.radius_c0 = [float(v) for v in u["radius_c0"]]
            s.radius_c1 = [float(v) for v in u["radius_c1"]]
        s.tensors = {name: t[tensor].ravel() for name, tensor in _SPEC_TENSORS.items()}
        return s


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load(path: str | Path | None = None) -> Model:
    """Load and validate a model artifact folder (default: the built-in model).

    ``path`` may also be a Hugging Face repo id, ``"owner/name[@revision]"``:
    a path that exists wins; otherwise :func:`tmn.hub.resolve` fetches the
    snapshot (or finds it in the cache) and it is validated like any folder.

    Raises :class:`ModelFormatError` naming the file and field of the first
    problem found (whatever the problem: unreadable, oversized, deeply nested
    or out-of-range content all end up there), ``FileNotFoundError`` if the
    folder does not exist, and :class:`tmn.hub.HubError` if a repo id cannot
    be fetched.
    """
    folder = hub.resolve(path) if path is not None else DEFAULT_MODEL_DIR
    try:
        is_dir = folder.is_dir()
    except (OSError, ValueError) as e:  # e.g. a path with a NUL byte
        raise ModelFormatError(f"{folder}: not a readable folder: {e}") from e
    if not is_dir:
        if path is None:
            raise FileNotFoundError(
                f"no built-in model at {folder}; pass the path of a model folder")
        raise FileNotFoundError(f"model folder not found: {folder}")
    try:
        config = _read_config(folder / CONFIG_FILE)
        tensors = _read_tensors(folder / WEIGHTS_FILE, config)
    except ModelFormatError:
        raise
    except (OSError, ValueError, RecursionError, MemoryError) as e:
        raise ModelFormatError(f"{folder}: cannot read the model: {type(e).__name__}: {e}") from e
    return Model(path=folder, config=config, tensors=tensors)


def _fail(file: Path, field: str, problem: str) -> ModelFormatError:
    return ModelFormatError(f"{file}: field '{field}': {problem}")


def _lookup(file: Path, cfg: dict[str, Any], field: str) -> Any:
    """The value at a dotted field path, or a ModelFormatError naming it."""
    v: Any = cfg
    for key in field.split("."):
        if not isinstance(v, dict) or key not in v:
            raise _fail(file, field, "missing")
        v = v[key]
    return v


def _number_list(file: Path, cfg: dict[str, Any], field: str, n: int | None,
                 positive: bool = False, lo: float = -math.inf,
                 hi: float = math.inf) -> list[float]:
    v = _lookup(file, cfg, field)
    if not isinstance(v, list) or (n is not None and len(v) != n):
        raise _fail(file, field, f"must be a list of {n if n is not None else 'some'} numbers")
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise _fail(file, field, f"must hold finite numbers, got {x!r}")
        if positive and x <= 0:
            raise _fail(file, field, f"must hold positive numbers, got {x!r}")
        if not lo <= x <= hi:
            raise _fail(file, field, f"must hold numbers in [{lo:g}, {hi:g}], got {x!r}")
    return [float(x) for x in v]


def _number(file: Path, cfg: dict[str, Any], field: str, lo: float = -math.inf,
            hi: float = math.inf, lo_open: bool = False, hi_open: bool = False) -> float:
    v = _lookup(file, cfg, field)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _fail(file, field, f"must be a finite number, got {v!r}")
    below = v <= lo if lo_open else v < lo
    above = v >= hi if hi_open else v > hi
    if below or above:
        lb, rb = ("(" if lo_open else "["), (")" if hi_open else "]")
        raise _fail(file, field, f"must be in {lb}{lo}, {hi}{rb}, got {v!r}")
    return float(v)


def _read_bounded(file: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or a ModelFormatError."""
    if not file.is_file():
        raise ModelFormatError(f"{file}: missing")
    try:
        with open(file, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ModelFormatError(f"{file}: cannot be read: {e.strerror or e}") from e
    if len(data) > limit:
        raise ModelFormatError(f"{file}: larger than {limit} bytes")
    return data


def _check_ingest(file: Path, cfg: dict[str, Any]) -> None:
    window = _lookup(file, cfg, "ingest.velocity_window")
    if isinstance(window, bool) or not isinstance(window, int) or \
            not 2 <= window <= MAX_VELOCITY_WINDOW:
        raise _fail(file, "ingest.velocity_window",
                    f"must be an integer in [2, {MAX_VELOCITY_WINDOW}], got {window!r}")
    _number(file, cfg, "ingest.highpass_ms", 0, _core.MAX_HORIZON_S * 1000.0, lo_open=True)


def _check_gate(file: Path, cfg: dict[str, Any], horizons: int) -> None:
    _number(file, cfg, "gate.eps", _core.MIN_GATE_EPS, _core.MAX_GATE_EPS)
    _number(file, cfg, "gate.budget", 1, _core.MAX_GATE_BUDGET)
    if not isinstance(cfg["gate"]["budget"], int):
        raise _fail(file, "gate.budget", f"must be an integer, got {cfg['gate']['budget']!r}")
    _number(file, cfg, "gate.lambda", 0, MAX_LAMBDA, lo_open=True, hi_open=True)
    _number(file, cfg, "gate.threshold", 0, lo_open=True)
    _number(file, cfg, "gate.blend_ms", 0, _core.MAX_HORIZON_S * 1000.0)
    if _lookup(file, cfg, "gate.variance") != "prior":
        _number_list(file, cfg, "gate.variance", horizons, positive=True)


def _check_uncertainty(file: Path, cfg: dict[str, Any], horizons: int) -> None:
    """The optional radius calibration (docs/uncertainty.md): r_k^2 = c0_k + c1_k |v|^2."""
    _number(file, cfg, "uncertainty.quantile", 0, 1, lo_open=True, hi_open=True)
    c0 = _number_list(file, cfg, "uncertainty.radius_c0", horizons)
    c1 = _number_list(file, cfg, "uncertainty.radius_c1", horizons)
    for field, values in (("uncertainty.radius_c0", c0), ("uncertainty.radius_c1", c1)):
        if min(values) < 0:
            raise _fail(file, field, f"must hold numbers >= 0, got {min(values)!r}")
    if any(a + b <= 0 for a, b in zip(c0, c1)):
        raise _fail(file, "uncertainty.radius_c0", "radius_c0 and radius_c1 are both 0 at a horizon")


def _read_config(file: Path) -> dict[str, Any]:
    text = _read_bounded(file, MAX_CONFIG_BYTES)
    try:
        cfg = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise ModelFormatError(f"{file}: not valid JSON: {e}") from e
    except RecursionError as e:
        raise ModelFormatError(f"{file}: not valid JSON: nested too deeply") from e
    if not isinstance(cfg, dict):
        raise ModelFormatError(f"{file}: must hold a JSON object")
    version = cfg.get("format_version")
    if version == 1:
        raise _fail(file, "format_version",
                    "version 1 (networks that read absolute positions, before tmn 0.2) is no "
                    f"longer read: this tmn reads version {FORMAT_VERSION}; retrain the model "
                    "with tmn-train fit")
    if isinstance(version, bool) or not isinstance(version, int) or version != FORMAT_VERSION:
        raise _fail(file, "format_version",
                    f"this tmn reads version {FORMAT_VERSION}, got {cfg.get('format_version')!r}")
    if cfg.get("system") not in ("A", "B"):
        raise _fail(file, "system", f"must be 'A' or 'B', got {cfg.get('system')!r}")
    features = FEATURES[cfg["system"]]
    if cfg.get("features") != features:
        raise _fail(file, "features", f"System {cfg['system']} reads exactly {features}, got "
                                      f"{cfg.get('features')!r}")
    hidden = cfg.get("hidden")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or not 1 <= hidden <= MAX_HIDDEN:
        raise _fail(file, "hidden", f"must be an integer in [1, {MAX_HIDDEN}], got {hidden!r}")
    rate = _number(file, cfg, "sample_rate_hz", MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ)
    _number(file, cfg, "window_ms", 0, MAX_WINDOW_MS)
    gap_ms = _number(file, cfg, "max_gap_ms", 0, lo_open=True)
    if gap_ms / 1000.0 * rate + 2 > _core.MAX_GRID_STEPS_PER_TICK:
        raise _fail(file, "max_gap_ms", f"times sample_rate_hz must stay below "
                                        f"{_core.MAX_GRID_STEPS_PER_TICK} grid samples")
    if gap_ms < 1000.0 / rate:
        raise _fail(file, "max_gap_ms", f"must span at least one grid step "
                                        f"({1000.0 / rate:g} ms at sample_rate_hz {rate:g}), "
                                        f"got {gap_ms!r}")
    _check_ingest(file, cfg)
    h = _number_list(file, cfg, "horizons_ms", None, positive=True)
    if not 1 <= len(h) <= MAX_HORIZONS:
        raise _fail(file, "horizons_ms", f"must hold 1 to {MAX_HORIZONS} horizons, got {len(h)}")
    if any(abs(hk - (k + 1) * h[0]) > 1e-6 * (k + 1) for k, hk in enumerate(h)):
        raise _fail(file, "horizons_ms", "must be equally spaced: h_k = (k + 1) * h_0")
    if h[-1] > _core.MAX_HORIZON_S * 1000.0:
        raise _fail(file, "horizons_ms",
                    f"the last horizon must be at most {_core.MAX_HORIZON_S * 1000.0:g} ms")
    _number_list(file, cfg, "normalisation.mean", len(features), lo=-MAX_ABS_MEAN,
                 hi=MAX_ABS_MEAN)
    _number_list(file, cfg, "normalisation.std", len(features), positive=True, lo=MIN_SCALE,
                 hi=MAX_SCALE)
    _number_list(file, cfg, "normalisation.output_scale", 2, positive=True, lo=MIN_SCALE,
                 hi=MAX_SCALE)
    _number(file, cfg, "kalman.q", 0, _core.MAX_KALMAN_Q)
    _number(file, cfg, "kalman.r_pos", _core.MIN_KALMAN_R, _core.MAX_KALMAN_R)
    _number(file, cfg, "kalman.r_vel", _core.MIN_KALMAN_R, _core.MAX_KALMAN_R)
    if cfg["system"] == "B":
        _check_gate(file, cfg, len(h))
    if "uncertainty" in cfg:
        _check_uncertainty(file, cfg, len(h))
    q = cfg.get("quantisation")
    if not isinstance(q, dict) or q.get("scheme") != QUANT_SCHEME:
        raise _fail(file, "quantisation.scheme", f"must be '{QUANT_SCHEME}'")
    w = cfg.get("weights")
    if not isinstance(w, dict) or not isinstance(w.get("sha256"), str):
        raise _fail(file, "weights.sha256", "missing")
    if w.get("file", WEIGHTS_FILE) != WEIGHTS_FILE:
        raise _fail(file, "weights.file", f"must be '{WEIGHTS_FILE}', got {w.get('file')!r}")
    return cfg


def _read_tensors(file: Path, cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    data = _read_bounded(file, MAX_WEIGHTS_BYTES)
    digest = hashlib.sha256(data).hexdigest()
    if digest != cfg["weights"]["sha256"]:
        raise ModelFormatError(
            f"{file}: checksum mismatch: config.json field 'weights.sha256' says "
            f"{cfg['weights']['sha256']}, the file hashes to {digest}")
    try:
        tensors = load(data)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFormatError(f"{file}: not a readable safetensors file: {e}") from e
    F, H, O = len(cfg["features"]), int(cfg["hidden"]), 2 * len(cfg["horizons_ms"])
    for name, (dtype, shape_of) in _TENSORS.items():
        if name not in tensors:
            raise _fail(file, name, "tensor missing")
        a, shape = tensors[name], shape_of(F, H, O)
        if a.dtype != np.dtype(dtype):
            raise _fail(file, name, f"dtype must be {dtype}, got {a.dtype}")
        if a.shape != shape:
            raise _fail(file, name, f"shape must be {shape}, got {a.shape}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise _fail(file, name, "holds non-finite values")
        if a.dtype == np.int8 and (a == -128).any():
            raise _fail(file, name, "int8 values must be in [-127, 127]")
        if name.endswith(".scale") and not (a > 0).all():
            raise _fail(file, name, "scales must be positive")
    extra = sorted(set(tensors) - set(_TENSORS))
    if extra:
        raise _fail(file, extra[0], "unknown tensor")
    return tensors
