"""Shared fixtures for the training tests: small configs and one tiny trained run per system.

The runs are session-scoped: one short fit of A and one of B (a few seconds
each on two cores) serve the smoke, parity and export tests.
"""

from __future__ import annotations

from typing import Any

import pytest

try:
    import tmn_train  # noqa: F401
except ImportError as e:  # fail loudly: a skipped training suite would hide breakage
    raise ImportError("tests/training need the training package and torch: "
                      "pip install torch==2.13.0 ./training") from e

from train_helpers import tiny_config  # noqa: E402


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """{"A": (out folder, final checkpoint dict), "B": ...} from ``fit`` on 0.75 min of
    synthetic data (streams of 20, 20 and 5 s, split in time)."""
    from tmn_train.train import FINAL, fit, load_final

    runs: dict[str, Any] = {}
    for system in ("A", "B"):
        out = tmp_path_factory.mktemp(f"run{system}")
        fit(tiny_config(system), ["synth:0.75:3"], out, [0], log=lambda m: None)
        runs[system] = (out, load_final(out / FINAL)[1])
    return runs
