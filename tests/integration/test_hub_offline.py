"""Models by Hugging Face repo id (tmn.hub, docs/hub.md) in fresh processes,
without network: a cache laid out as huggingface_hub lays it out and
HF_HUB_OFFLINE=1, read by ``python -c`` and by ``python -m tmn.serve``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tmn
from tmn.testing import random_model

pytest.importorskip("huggingface_hub")

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hf_cache(root: Path, repo: str, model: Path, commit: str = COMMIT) -> Path:
    """``root`` as a Hugging Face cache holding ``model`` as ``repo``'s main:
    models--owner--name/{refs/main, snapshots/<commit>/...}."""
    store = root / ("models--" + repo.replace("/", "--"))
    snap = store / "snapshots" / commit
    shutil.copytree(model, snap)
    (store / "refs").mkdir(parents=True)
    (store / "refs" / "main").write_text(commit)
    return snap


def offline_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
            "HF_TOKEN": "", "HF_HOME": str(cache.parent / "hf-home")}


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cache folder, snapshot) with a random System B model as acme/mover."""
    tmp = tmp_path_factory.mktemp("hub")
    model = random_model(tmp / "model", system="B", seed=1)
    cache = tmp / "cache"
    return cache, hf_cache(cache, "acme/mover", model)


def test_a_repo_id_loads_from_the_cache_offline_and_is_validated(
        cached: tuple[Path, Path]) -> None:
    cache, snap = cached
    r = run_python("import tmn; m = tmn.load('acme/mover'); print(m.path); "
                   f"print(tmn.load('acme/mover@{COMMIT}').path)", offline_env(cache))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(snap), str(snap)]
    assert tmn.load(snap).config == tmn.load(Path(r.stdout.split()[0])).config


def test_a_broken_cached_model_is_refused_like_a_local_one(tmp_path: Path) -> None:
    model = random_model(tmp_path / "model", system="A", seed=2)
    snap = hf_cache(tmp_path / "cache", "acme/broken", model)
    (snap / "model.safetensors").write_bytes(b"not the weights")
    r = run_python("import tmn\ntry:\n    tmn.load('acme/broken')\nexcept tmn.ModelFormatError "
                   "as e:\n    print('refused', e)", offline_env(tmp_path / "cache"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("refused ") and "checksum mismatch" in r.stdout


def test_a_missing_repo_offline_is_a_one_line_hub_error(cached: tuple[Path, Path]) -> None:
    r = run_python("import tmn\ntry:\n    tmn.load('acme/nothing@v2')\nexcept tmn.HubError as e:"
                   "\n    print(e)", offline_env(cached[0]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1
    assert "acme/nothing@v2" in r.stdout and "HF_HUB_OFFLINE is set" in r.stdout


def test_tmn_serve_names_a_missing_repo_without_a_traceback(cached: tuple[Path, Path]) -> None:
    r = subprocess.run([sys.executable, "-m", "tmn.serve", "--model", "acme/nothing"],
                       env=offline_env(cached[0]), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "cannot load the model: model acme/nothing: not in the Hugging Face cache" in r.stderr
