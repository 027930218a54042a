"""Fixtures for the tmn-serve integration tests (helpers in serve_daemon.py).

``serve`` starts daemons private to a test; ``daemon_b`` and ``daemon_a`` are
shared by a module. Every daemon is stopped with SIGTERM at the end and must
exit with code 0 within a bounded wait.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_daemon import HORIZONS, Daemon, DaemonFactory, running_daemons, start_daemon

from tmn.testing import random_model


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random but valid model folders: "B" (K=10), "A" (K=3)."""
    root = tmp_path_factory.mktemp("serve-models")
    return {
        "B": random_model(root / "B", system="B", seed=1, weight_scale=0.3,
                          horizons_ms=HORIZONS["B"]),
        "A": random_model(root / "A", system="A", seed=2, weight_scale=0.3,
                          horizons_ms=HORIZONS["A"]),
    }


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[DaemonFactory]:
    """Start daemons private to one test."""
    with running_daemons() as started:
        yield DaemonFactory(started, tmp_path / "logs")


@pytest.fixture(scope="module")
def daemon_b(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Daemon]:
    """A System B daemon shared by the tests of a module (each test uses stream
    ids of its own, see ``test_serve.new_streams``)."""
    log_dir = tmp_path_factory.mktemp("daemon-b")
    with running_daemons() as started:
        started.append(start_daemon(models["B"], log_dir=log_dir))
        yield started[0]


@pytest.fixture(scope="module")
def daemon_a(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Daemon]:
    """A System A daemon shared by the tests of a module."""
    log_dir = tmp_path_factory.mktemp("daemon-a")
    with running_daemons() as started:
        started.append(start_daemon(models["A"], log_dir=log_dir))
        yield started[0]
