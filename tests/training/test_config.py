"""Configs: A and B extend common, carry the plan's values, refuse unknown keys."""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml

from tmn_train import config as config_mod
from tmn_train import synth
from tmn_train.config import ConfigError
from tmn_train.train import fit

from train_helpers import tiny_config

REPO = Path(__file__).resolve().parents[2]


def test_a_and_b_extend_common_and_carry_the_plan_values() -> None:
    for name, system in (("A_traditional.yaml", "A"), ("B_temporal_solver.yaml", "B")):
        c = config_mod.load(REPO / "configs" / name)
        assert c.system == system
        assert (c.horizon_ms, c.window_ms, c.sample_rate_hz) == (500, 128, 2000)
        assert (c.lr, c.lr_schedule, c.batch, c.epochs) == (3e-3, "onecycle", 256, 15)
        assert c.micro_gru.hidden == 32
        assert c.horizons_ms == [50.0 * (k + 1) for k in range(10)]
    b = config_mod.load(REPO / "configs" / "B_temporal_solver.yaml")
    assert b.solver_gate is not None and (b.solver_gate.eps, b.solver_gate.budget) == (0.02, 200000)
    assert b.active_selection is not None and (b.active_selection.k, b.active_selection.eps) == (15, 0.03)
    a = config_mod.load(REPO / "configs" / "A_traditional.yaml")
    assert a.solver_gate is None and a.active_selection is None


def test_an_unknown_key_in_a_file_is_an_error_that_names_it(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        f"extends: {REPO / 'configs' / 'B_temporal_solver.yaml'}\ndata:\n  strid_ms: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'data.strid_ms'"):
        config_mod.load(tmp_path / "c.yaml")


def test_an_unknown_key_in_an_override_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        config_mod.load(REPO / "configs" / "A_traditional.yaml", ["learning_rate=0.1"])


def test_overrides_set_nested_keys_with_yaml_values() -> None:
    c = config_mod.load(REPO / "configs" / "B_temporal_solver.yaml",
                        ["data.passes=3", "solver_gate.lambda_grid=[0.05]", "epochs=3"])
    assert c.data.passes == 3 and c.solver_gate is not None
    assert c.solver_gate.lambda_grid == [0.05] and c.epochs == 3


def test_a_float_written_without_a_dot_is_a_number_and_text_is_not() -> None:
    # YAML 1.1 reads 1e6 as a string; a float key takes it as the number it means
    c = config_mod.load(REPO / "configs" / "B_temporal_solver.yaml",
                        ["kalman.tune=false", "kalman.q=1e6", "kalman.r_pos=2",
                         "kalman.r_vel=3E2"])
    assert (c.kalman.q, c.kalman.r_pos, c.kalman.r_vel) == (1e6, 2.0, 300.0)
    with pytest.raises(ConfigError, match="kalman.q': must be a number, got 'big'"):
        config_mod.load(REPO / "configs" / "B_temporal_solver.yaml", ["kalman.q=big"])


def test_system_a_refuses_gate_settings_and_b_refuses_a_bad_lambda() -> None:
    with pytest.raises(ConfigError, match="system B only"):
        config_mod.load(REPO / "configs" / "A_traditional.yaml", ["solver_gate.eps=0.1"])
    with pytest.raises(ConfigError, match="lambda_grid"):
        config_mod.load(REPO / "configs" / "B_temporal_solver.yaml",
                        ["solver_gate.lambda_grid=[0.3]"])


def test_the_config_round_trips_through_its_dict() -> None:
    c = config_mod.load(REPO / "configs" / "B_temporal_solver.yaml")
    assert config_mod.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("key", config_mod.RETIRED_KEYS)
def test_a_retired_key_is_refused_in_a_file_and_dropped_from_a_saved_config(
        key: str, tmp_path: Path) -> None:
    """Keys that could hold one value only, or that the engine made meaningless
    (data.interpolation: it resamples linearly); configs saved before they went
    (a checkpoint's, an artifact's provenance) still load."""
    *section, leaf = key.split(".")
    yaml_text = "".join(f"{'  ' * i}{k}:\n" for i, k in enumerate(section)) + \
        f"{'  ' * len(section)}{leaf}: x\n"
    (tmp_path / "c.yaml").write_text(
        f"extends: {REPO / 'configs' / 'B_temporal_solver.yaml'}\n{yaml_text}")
    with pytest.raises(ConfigError, match=f"key '{key}' is retired"):
        config_mod.load(tmp_path / "c.yaml")
    saved = config_mod.load(REPO / "configs" / "B_temporal_solver.yaml").to_dict()
    node = saved
    for k in section:
        node = node[k]
    node[leaf] = "x"
    assert config_mod.from_saved(saved).system == "B"


def test_the_built_in_models_training_config_still_loads() -> None:
    import tmn

    saved = tmn.load().config["provenance"]["config"]
    assert config_mod.from_saved(saved).system == "B"


@pytest.mark.parametrize(("override", "key"), [
    ("system=C", "system"), ("lr=0", "lr"), ("grad_clip=-1", "grad_clip"),
    ("smoothness=-0.1", "smoothness"), ("batch=0", "batch"), ("data.passes=0", "data.passes"),
    ("micro_gru.hidden=1025", "micro_gru.hidden"), ("data.split=[0.5,0.5]", "data.split"),
    ("data.split_mode=random", "data.split_mode"), ("data.interpolation=spline",
                                                    "data.interpolation"),
    ("data.velocity_window=1", "data.velocity_window"), ("solver_gate.eps=0", "solver_gate.eps"),
    ("solver_gate.budget=0", "solver_gate.budget"),
    ("solver_gate.min_pass_rate=1.5", "solver_gate.min_pass_rate"),
    ("horizon_ms=1700", "horizon_ms"),
    ("horizon_ms=0.75 horizon_step_ms=0.25", "horizon_step_ms"),
    ("window_ms=0.1", "window_ms"), ("kalman.tune=false", "kalman"),
    ("active_selection.embedding=pixels", "active_selection.embedding"),
    ("active_selection.k=0", "active_selection.k"),
    ("active_selection.damping=1", "active_selection.damping"),
    ("active_selection.eps=0", "active_selection.eps"),
    ("active_selection.budget=0", "active_selection.budget"),
    ("active_selection.floor=1.5", "active_selection.floor"),
    ("active_selection.run_windows=0", "active_selection.run_windows"),
    ("active_selection.refresh_every=0", "active_selection.refresh_every"),
    ("active_selection.warmup_epochs=-1", "active_selection.warmup_epochs"),
])
def test_every_validation_rule_names_its_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        config_mod.load(REPO / "configs" / "B_temporal_solver.yaml", override.split())


# -- no stored-but-unused key ------------------------------------------------------

def config_file_keys() -> set[str]:
    """Every dotted key written in configs/*.yaml (``extends`` aside)."""
    keys: set[str] = set()

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif k != "extends":
                keys.add(prefix + k)

    for f in sorted((REPO / "configs").glob("*.yaml")):
        walk(yaml.safe_load(f.read_text(encoding="utf-8")), "")
    return keys


# config.py's own functions that derive values for the code (the rest of it
# validates, converts and saves, which is not a use)
DERIVED = {"ticks", "horizons_ms", "horizon_ticks", "K", "ingest"}


def test_every_key_in_every_config_file_is_read_by_the_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit of B with active selection on a 1 kHz recording without velocity (so
    resampling and the differentiator run) reads every key the config files hold;
    reads by the config machinery itself (validate, to_dict, dataclasses) do not count."""
    reads: set[str] = set()
    section = {"": config_mod.Config}
    for f in dataclasses.fields(config_mod.Config):
        tp = config_mod._strip_optional(typing.get_type_hints(config_mod.Config)[f.name])[0]
        if dataclasses.is_dataclass(tp):
            section[f.name + "."] = tp

    def tracer(prefix: str):  # type: ignore[no-untyped-def]
        def getattribute(self: object, name: str) -> object:
            code = sys._getframe(1).f_code
            machinery = code.co_filename == dataclasses.__file__ or (
                code.co_filename == config_mod.__file__ and code.co_name not in DERIVED)
            if not machinery:
                reads.add(prefix + name)
            return object.__getattribute__(self, name)
        return getattribute

    streams = synth.generate(0.75, seed=3)
    rows = np.concatenate([np.column_stack([s.t, s.x, s.y, np.full(len(s), i)])[::2]
                           for i, s in enumerate(streams)])
    csv = tmp_path / "no_velocity_1khz.csv"
    np.savetxt(csv, rows, delimiter=",", header="t,x,y,stream", comments="",
               fmt=["%.17g"] * 3 + ["%d"])
    cfg = tiny_config("B", "active_selection.enabled=true", "epochs=3")
    for prefix, cls in section.items():
        monkeypatch.setattr(cls, "__getattribute__", tracer(prefix))
    fit(cfg, [str(csv)], tmp_path / "run", [0], log=lambda m: None)
    monkeypatch.undo()
    unread = sorted(config_file_keys() - reads)
    assert not unread, f"keys in configs/*.yaml that no code reads: {unread}"
