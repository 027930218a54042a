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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tmn import _core
from tmn.model import MAX_HIDDEN, MAX_HORIZONS, MAX_LAMBDA, MAX_VELOCITY_WINDOW

# Keys of earlier configs that are gone, and why. A saved config (a
# checkpoint's, an artifact's provenance.config) may still carry them and
# loads; a YAML file may not.
RETIRED_KEYS = {
    "features": "the engine builds its own features (cpp/include/tmn/ingest.hpp)",
    "quantize": "it could hold one value only (INT8)",
    "optimizer": "it could hold one value only (Adam)",
    "prior": "it repeated 'system'",
    "data.interpolation": "the engine's ingest interpolates linearly, and training resamples "
                          "with it (a cubic spline is not causal)",
    "loss_horizon_weight": "a loss weighted by the horizon did not beat the flat one on "
                           "validation (bench/README.md, ablations)",
}


class ConfigError(ValueError):
    """A config file or override was refused; the message names the key."""


@dataclass
class MicroGruConfig:
    hidden: int = 32


@dataclass
class SolverGateConfig:
    eps: float = 0.02            # certificate target, output units
    budget: int = 200000         # touched nonzeros per tick
    lambda_grid: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.2])
    min_pass_rate: float = 0.9   # the calibrated threshold keeps at least this pass rate
    min_win_rate: float = 0.7    # where it falls back, the prior must win this often
    blend_ms: float = 20.0       # verdict switches blend over this long (no jumps)
    # the plausibility variances calibration tries: the prior's covariance, or the
    # network's own residual variance per horizon on validation
    variances: list[str] = field(default_factory=lambda: ["prior", "residual"])


@dataclass
class ActiveSelection:
    # PageRank-guided sampling of training windows (tmn_train.selection,
    # docs/active-selection.md); off by default until it is shown to help.
    enabled: bool = False
    embedding: str = "motion"    # motion | hidden: what the kNN graph is built on
    k: int = 15                  # neighbours per window in the kNN graph
    damping: float = 0.85        # PageRank alpha: the chance to follow an edge
    eps: float = 0.03            # L1 error certified by the forward push
    budget: int = 100_000_000    # push work per refresh (touched entries)
    floor: float = 0.2           # share of every pass drawn uniformly
    run_windows: int = 8         # consecutive windows drawn together (carried state)
    refresh_every: int = 1       # epochs between refreshes of the losses and scores
    warmup_epochs: int = 1       # uniform epochs before the first selection


@dataclass
class Data:
    split: list[float] = field(default_factory=lambda: [0.70, 0.15, 0.15])
    split_mode: str = "auto"     # auto | time | stream
    passes: int = 8              # sweeps over the train split per epoch (new lanes each)
    velocity_window: int = 8     # samples of the causal differentiator
    highpass_ms: float = 32.0    # time constant of the position high-pass feature


@dataclass
class Kalman:
    tune: bool = True            # fit q, r_pos, r_vel on the training split
    q: float | None = None       # fixed values, used when tune is false
    r_pos: float | None = None
    r_vel: float | None = None
    q_decades: float = 1.0       # the tuned q stays within 10^+-q_decades of the moment match


@dataclass
class Config:
    system: str = "B"
    sample_rate_hz: float = 2000.0
    window_ms: float = 128.0
    horizon_ms: float = 500.0
    horizon_step_ms: float = 50.0
    max_gap_ms: float = 100.0
    lr: float = 3e-3
    lr_schedule: str = "onecycle"  # onecycle | constant
    batch: int = 256
    epochs: int = 15
    patience: int = 4
    grad_clip: float = 1.0
    smoothness: float = 0.01
    jitter: float = 0.0  # weight of the tick-to-tick error change in the loss (train.py)
    threads: int = 1
    micro_gru: MicroGruConfig = field(default_factory=MicroGruConfig)
    solver_gate: SolverGateConfig | None = None
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

    def ingest(self) -> _core.IngestParams:
        """The engine's ingest parameters (model rate, differentiator, high-pass)."""
        return _core.IngestParams(self.sample_rate_hz, self.data.velocity_window,
                                  self.data.highpass_ms / 1000.0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def get(self, dotted: str) -> Any:
        """The value of a dotted key (``"data.passes"``); :data:`ABSENT` when a
        section on the way is None (System A has no ``solver_gate``)."""
        v: Any = self
        for part in dotted.split("."):
            if v is None:
                return ABSENT
            v = getattr(v, part)
        return v

    def validate(self, where: str = "config") -> Config:
        """Check every rule of :data:`FIELD_RULES` and :data:`CROSS_RULES`; returns self."""
        for key, ok, requirement in FIELD_RULES:
            v = self.get(key)
            if v is not ABSENT and not ok(v):
                raise ConfigError(f"{where}: key '{key}': {requirement}, got {v!r}")
        for key, ok_cfg, requirement in CROSS_RULES:
            if not ok_cfg(self):
                raise ConfigError(f"{where}: key '{key}': {requirement}")
        return self


ABSENT = object()  # Config.get of a key inside a section that is None


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def _whole_samples(cfg: Config, ms: float) -> bool:
    n = ms * cfg.sample_rate_hz / 1000.0
    return abs(n - round(n)) <= 1e-6


def _horizon_count_ok(cfg: Config) -> bool:
    k = cfg.horizon_ms / cfg.horizon_step_ms
    return abs(k - round(k)) <= 1e-9 and 1 <= round(k) <= MAX_HORIZONS


# (dotted key, test of its value, what it must be): the rules of one field each,
# in the order they are checked. Keys inside a section that is None are skipped.
FIELD_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("system", lambda v: v in ("A", "B"), "must be 'A' or 'B'"),
    *((k, _positive, "must be a positive number") for k in (
        "sample_rate_hz", "window_ms", "horizon_ms", "horizon_step_ms", "max_gap_ms", "lr",
        "grad_clip")),
    *((k, lambda v: v >= 0, "must be >= 0") for k in ("smoothness", "jitter")),
    ("lr_schedule", lambda v: v in ("onecycle", "constant"), "must be onecycle or constant"),
    *((k, lambda v: v >= 1, "must be >= 1") for k in (
        "batch", "epochs", "threads", "patience", "data.passes", "solver_gate.budget")),
    ("micro_gru.hidden", lambda v: 1 <= v <= MAX_HIDDEN, f"must be in [1, {MAX_HIDDEN}]"),
    ("data.split", lambda s: len(s) == 3 and all(v > 0 for v in s) and abs(sum(s) - 1) <= 1e-6,
     "must be three positive fractions summing to 1"),
    ("data.split_mode", lambda v: v in ("auto", "time", "stream"),
     "must be auto, time or stream"),
    ("data.velocity_window", lambda v: 2 <= v <= MAX_VELOCITY_WINDOW,
     f"must be 2 to {MAX_VELOCITY_WINDOW} samples"),
    ("data.highpass_ms", _positive, "must be a positive number"),
    ("kalman.q_decades", lambda v: 0 <= v <= 3, "must be in [0, 3]"),
    ("solver_gate.eps", lambda v: v > 0, "must be > 0"),
    ("solver_gate.lambda_grid", lambda g: bool(g) and all(0 < v < MAX_LAMBDA for v in g),
     f"values must be in (0, {MAX_LAMBDA}) (diagonal dominance)"),
    ("solver_gate.min_pass_rate", lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ("solver_gate.min_win_rate", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("solver_gate.blend_ms", lambda v: 0 <= v <= 1000, "must be in [0, 1000]"),
    ("solver_gate.variances", lambda g: bool(g) and set(g) <= {"prior", "residual"},
     "must list 'prior' and/or 'residual'"),
    ("active_selection.embedding", lambda v: v in ("motion", "hidden"),
     "must be motion or hidden"),
    *((f"active_selection.{k}", lambda v: v >= 1, "must be >= 1") for k in (
        "k", "budget", "run_windows", "refresh_every")),
    ("active_selection.damping", lambda v: 0 < v < 1, "must be in (0, 1)"),
    ("active_selection.eps", lambda v: v > 0, "must be > 0"),
    ("active_selection.floor", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("active_selection.warmup_epochs", lambda v: v >= 0, "must be >= 0"),
)

# (key named in the error, test of the whole config, what must hold): rules
# across fields, checked after FIELD_RULES.
CROSS_RULES: tuple[tuple[str, Callable[[Config], bool], str], ...] = (
    ("solver_gate", lambda c: c.system != "B" or c.solver_gate is not None,
     "system B needs a solver_gate section"),
    ("solver_gate", lambda c: c.system != "A" or (c.solver_gate is None
                                                  and c.active_selection is None),
     "solver_gate and active_selection are for system B only"),
    ("horizon_ms", _horizon_count_ok,
     f"must be 1 to {MAX_HORIZONS} whole multiples of horizon_step_ms"),
    ("horizon_step_ms", lambda c: _whole_samples(c, c.horizon_step_ms),
     "must be a whole number of samples at sample_rate_hz"),
    ("window_ms", lambda c: _whole_samples(c, c.window_ms),
     "must be a whole number of samples at sample_rate_hz"),
    ("window_ms", lambda c: c.ticks(c.window_ms) >= 1, "must be at least one sample"),
    ("kalman", lambda c: c.kalman.tune or None not in (c.kalman.q, c.kalman.r_pos,
                                                        c.kalman.r_vel),
     "with tune: false, give q, r_pos and r_vel"),
)


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
        if prefix + key in RETIRED_KEYS:
            raise ConfigError(f"{where}: key '{prefix}{key}' is retired "
                              f"({RETIRED_KEYS[prefix + key]}); remove it")
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{prefix}{key}' "
                              f"(known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], prefix + k, where) for k, v in data.items()}
    return cls(**kwargs)


def from_dict(data: dict[str, Any], where: str = "config") -> Config:
    """Build and validate a Config from a plain mapping."""
    return _build(Config, data, where).validate(where)


def from_saved(data: dict[str, Any], where: str = "config") -> Config:
    """:func:`from_dict` of a config saved by this or an earlier version (a
    checkpoint's, an artifact's ``provenance.config``): the
    :data:`RETIRED_KEYS` it may carry are dropped first."""
    def keep(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        return {k: keep(v, prefix + k + ".") if isinstance(v, dict) else v
                for k, v in d.items() if prefix + k not in RETIRED_KEYS}

    return from_dict(keep(data), where)


def of_artifact(config: dict[str, Any], where: str) -> Config:
    """The training config an artifact's config.json keeps (``provenance.config``),
    which rebuilds its splits; a ConfigError naming ``where`` without one."""
    prov = config.get("provenance") or {}
    if "config" not in prov:
        raise ConfigError(f"{where}: provenance.config is missing; the training config is "
                          "needed to rebuild the model's data splits (artifacts from "
                          "tmn-train fit/export have it)")
    return from_saved(prov["config"], where=f"{where} provenance")


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
