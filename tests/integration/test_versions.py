"""Every console script of every pyproject (tmn, training/, bench/) answers
``--version`` with its package's version, read from the package metadata
(the pyproject is the one source)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
PYPROJECTS = [ROOT / "pyproject.toml", ROOT / "training" / "pyproject.toml",
              ROOT / "bench" / "pyproject.toml"]


def scripts() -> list[tuple[str, str, str]]:
    """(distribution, its version in the pyproject, script) of every console script."""
    out = []
    for path in PYPROJECTS:
        project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
        out += [(project["name"], project["version"], s) for s in project["scripts"]]
    return out


def test_every_pyproject_has_console_scripts() -> None:
    assert {s for _, _, s in scripts()} >= {"tmn-serve", "tmn-client", "tmn-train", "tmn-bench",
                                            "tmn-hub"}


@pytest.mark.parametrize("dist, version, script", scripts(), ids=lambda v: str(v))
def test_every_console_script_answers_version(dist: str, version: str, script: str) -> None:
    exe = Path(sys.executable).parent / script
    assert exe.is_file(), f"{script} is not installed next to {sys.executable}"
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{script} {version}"
    assert metadata.version(dist) == version


def test_the_packages_version_attributes_are_their_metadata() -> None:
    import tmn
    import tmn_bench
    import tmn_train

    assert (tmn.__version__, tmn_train.__version__, tmn_bench.__version__) == (
        metadata.version("tmn"), metadata.version("tmn-train"), metadata.version("tmn-bench"))
