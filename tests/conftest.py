"""Fixtures shared by the test kinds (tests/training and tests/bench): one tiny
trained run per system.

pytest puts this folder on sys.path (it has no __init__.py), so the tests
import ``train_helpers`` by name. Unit, integration and performance tests do
not need the training package; the fixture imports it when a test asks for it.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """{"A": (out folder, final checkpoint dict), "B": ...} from ``fit`` on 0.75 min of
    synthetic data (streams of 20, 20 and 5 s, split in time). The runs are
    session-scoped: one short fit of A and one of B (a few seconds each on two
    cores) serve the smoke, parity, export and accuracy-bench tests."""
    from train_helpers import tiny_config
    from tmn_train.train import FINAL, fit, load_final

    runs: dict[str, Any] = {}
    for system in ("A", "B"):
        out = tmp_path_factory.mktemp(f"run{system}")
        fit(tiny_config(system), ["synth:0.75:3"], out, [0], log=lambda m: None)
        runs[system] = (out, load_final(out / FINAL)[1])
    return runs
