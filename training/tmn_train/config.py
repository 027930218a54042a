"""One dataclass config, read from YAML (with ``extends:``) and ``--set`` overrides.

The resolved config is saved in every checkpoint and every exported artifact
(``provenance.config``), and a run is rebuilt from it. YAML is parsed with
``yaml.safe_load``; nothing is ever executed. Every key must be a field of
:class:`Config`: an unknown key is an error that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FEATURES = ["x", "y", "vx", "vy"]


class ConfigError(ValueError):
    """A config file or override was refused; the message names the key."""


@dataclass
class MicroGru:
    hidden: int = 32


@dataclass
class SolverGate:
    eps: float = 0.02            # certificate target, output units
    budget: int = 200000         # touched nonzeros per tick
    lambda_grid: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.2])
    min_pass_rate: float = 0.9   # the calibrated threshold keeps at least this pass rate


@dataclass
class ActiveSelection:
    # PageRank forward push over the stream graph: a later issue. Stored, not used yet.
    k: int = 15
    eps: float = 0.03


@dataclass
class Data:
    split: list[float] = field(default_factory=lambda: [0.70, 0.15, 0.15])
    split_mode: str = "auto"     # auto | time | stream
    passes: int = 8              # sweeps over the train split per epoch (new lanes each)
    interpolation: str = "linear"  # linear | cubic
    velocity_window: int = 8     # samples of the causal differentiator


@dataclass
class Kalman:
    tune: bool = True            # fit q, r_pos, r_vel on the training split
    q: float | None = None       # fixed values, used when tune is false
    r_pos: float | None = None
    r_vel: float | None = None


@dataclass
class Config:
    system: str = "B"
    sample_rate_hz: float = 2000.0
    window_ms: float = 128.0
    horizon_ms: float = 500.0
    horizon_step_ms: float = 50.0
    max_gap_ms: float = 100.0
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    quantize: str = "int8"
    optimizer: str = "adam"
    lr: float = 1e-3
    batch: int = 256
    epochs: int = 15
    patience: int = 4
    grad_clip: float = 1.0
    smoothness: float = 0.01
    threads: int = 1
    micro_gru: MicroGru = field(default_factory=MicroGru)
    prior: str = "kalman"
    solver_gate: SolverGate | None = None
    active_selection: ActiveSelection | None = None
    data: Data = field(default_factory=Data)
    kalman: Kalman = field(default_factory=Kalman)

    # -- derived quantities -------------------------------------------------

    def ticks(self, ms: float) -> int:
        """Whole samples at the model rate in ``ms`` milliseconds."""
        return int(round(ms * self.sample_rate_hz / 1000.0))

    @property
    def horizons_ms(self) -> list[float]:
        k = int(round(self.horizon_ms / self.horizon_step_ms))
        return [self.horizon_step_ms * (i + 1) for i in range(k)]

    @property
    def horizon_ticks(self) -> list[int]:
        return [self.ticks(h) for h in self.horizons_ms]

    @property
    def K(self) -> int:
        return len(self.horizons_ms)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self, where: str = "config") -> Config:
        """Check ranges and cross-field rules; returns self."""
        def bad(key: str, problem: str) -> ConfigError:
            return ConfigError(f"{where}: key '{key}': {problem}")

        if self.system not in ("A", "B"):
            raise bad("system", f"must be 'A' or 'B', got {self.system!r}")
        if self.system == "A" and self.prior != "none":
            raise bad("prior", f"system A has no prior: must be 'none', got {self.prior!r}")
        if self.system == "B" and self.prior != "kalman":
            raise bad("prior", f"system B needs prior 'kalman', got {self.prior!r}")
        if self.system == "B" and self.solver_gate is None:
            raise bad("solver_gate", "system B needs a solver_gate section")
        if self.system == "A" and (self.solver_gate is not None
                                   or self.active_selection is not None):
            raise bad("solver_gate", "solver_gate and active_selection are for system B only")
        if self.features != FEATURES:
            raise bad("features", f"the engine reads exactly {FEATURES}, got {self.features}")
        if self.quantize != "int8":
            raise bad("quantize", f"only 'int8' (per-row symmetric) is supported, "
                                  f"got {self.quantize!r}")
        if self.optimizer != "adam":
            raise bad("optimizer", f"only 'adam' is supported, got {self.optimizer!r}")
        for key in ("sample_rate_hz", "window_ms", "horizon_ms", "horizon_step_ms",
                    "max_gap_ms", "lr", "grad_clip"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v > 0):
                raise bad(key, f"must be a positive number, got {v!r}")
        if not (self.smoothness >= 0):
            raise bad("smoothness", f"must be >= 0, got {self.smoothness!r}")
        for key in ("batch", "epochs", "threads", "patience"):
            if getattr(self, key) < 1:
                raise bad(key, f"must be >= 1, got {getattr(self, key)}")
        k = self.horizon_ms / self.horizon_step_ms
        if abs(k - round(k)) > 1e-9 or not 1 <= round(k) <= 32:
            raise bad("horizon_ms", "must be 1 to 32 whole multiples of horizon_step_ms")
        for key, ms in (("horizon_step_ms", self.horizon_step_ms), ("window_ms", self.window_ms)):
            n = ms * self.sample_rate_hz / 1000.0
            if abs(n - round(n)) > 1e-6:
                raise bad(key, f"{ms} ms is not a whole number of samples at "
                               f"{self.sample_rate_hz} Hz")
        if self.ticks(self.window_ms) < 1:
            raise bad("window_ms", "must be at least one sample")
        if self.data.passes < 1:
            raise bad("data.passes", f"must be >= 1, got {self.data.passes}")
        if not 1 <= self.micro_gru.hidden <= 1024:
            raise bad("micro_gru.hidden", f"must be in [1, 1024], got {self.micro_gru.hidden}")
        s = self.data.split
        if len(s) != 3 or any(not (v > 0) for v in s) or abs(sum(s) - 1.0) > 1e-6:
            raise bad("data.split", f"must be three positive fractions summing to 1, got {s}")
        if self.data.split_mode not in ("auto", "time", "stream"):
            raise bad("data.split_mode", f"must be auto, time or stream, "
                                         f"got {self.data.split_mode!r}")
        if self.data.interpolation not in ("linear", "cubic"):
            raise bad("data.interpolation", f"must be linear or cubic, "
                                            f"got {self.data.interpolation!r}")
        if self.data.velocity_window < 2:
            raise bad("data.velocity_window", "must be at least 2 samples")
        if not self.kalman.tune and None in (self.kalman.q, self.kalman.r_pos, self.kalman.r_vel):
            raise bad("kalman", "with tune: false, give q, r_pos and r_vel")
        if self.solver_gate is not None:
            g = self.solver_gate
            if not g.eps > 0:
                raise bad("solver_gate.eps", f"must be > 0, got {g.eps}")
            if g.budget < 1:
                raise bad("solver_gate.budget", f"must be >= 1, got {g.budget}")
            if not g.lambda_grid or any(not 0 < v < 0.25 for v in g.lambda_grid):
                raise bad("solver_gate.lambda_grid",
                          f"values must be in (0, 0.25) (diagonal dominance), got {g.lambda_grid}")
            if not 0 < g.min_pass_rate <= 1:
                raise bad("solver_gate.min_pass_rate", f"must be in (0, 1], got {g.min_pass_rate}")
        return self


# -- building a Config from plain data -----------------------------------------

def _strip_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if (origin is typing.Union or origin is types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: key '{key}': must not be empty")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: key '{key}': must be a mapping, got {value!r}")
        return _build(tp, value, where, prefix=key + ".")
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: key '{key}': must be a list, got {value!r}")
        return [_convert(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: key '{key}': must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: key '{key}': must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e6 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: key '{key}': must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: key '{key}': must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp}")  # pragma: no cover


def _build(cls: Any, data: dict[str, Any], where: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{prefix}{key}' "
                              f"(known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], prefix + k, where) for k, v in data.items()}
    return cls(**kwargs)


def from_dict(data: dict[str, Any], where: str = "config") -> Config:
    """Build and validate a Config from a plain mapping (a checkpoint's copy, say)."""
    return _build(Config, data, where).validate(where)


# -- YAML files, extends and overrides ------------------------------------------

def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'extends' forms a cycle")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a mapping")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: key 'extends': must be a file name")
    base = _read_yaml(path.parent / parent, seen + (path,))
    return _merge(base, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"data.passes=4"`` -> (["data", "passes"], 4); the value is YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, value = text.split("=", 1)
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    return key.split("."), yaml.safe_load(value)


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (following ``extends:``), apply ``key=value`` overrides,
    and return the validated Config."""
    path = Path(path)
    data = _read_yaml(path)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: '{k}' is not a section")
        node[keys[-1]] = value
    return from_dict(data, where=str(path))
