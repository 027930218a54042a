"""Helpers shared by the training and bench tests (imported by name: pytest puts this folder on
sys.path, as for every test folder without an __init__.py)."""

from __future__ import annotations

from pathlib import Path

from tmn_train import config as config_mod

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# small but real: the default network and windows, fewer lanes and passes
TINY = ["epochs=4", "patience=10", "data.passes=2", "batch=32"]


def tiny_config(system: str, *extra: str) -> config_mod.Config:
    """The shipped A or B config with the TINY overrides (and any ``extra`` ones)."""
    name = "A_traditional.yaml" if system == "A" else "B_temporal_solver.yaml"
    return config_mod.load(CONFIGS / name, [*TINY, *extra])
