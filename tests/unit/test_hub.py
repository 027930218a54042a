"""Models by Hugging Face repo id (tmn.hub, docs/hub.md), without network: a
cache laid out as huggingface_hub lays it out, HF_HUB_OFFLINE=1, and the
upload stopped at HfApi's methods."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tmn
from tmn import hub
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


def test_an_existing_path_wins_over_a_repo_id(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A local folder called owner/name is loaded as a folder; the Hub is never asked."""
    random_model(tmp_path / "acme" / "mover", system="A", seed=3)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub, "_import_hub", lambda: pytest.fail("the Hub was asked"))
    assert tmn.load("acme/mover").path == Path("acme/mover")
    assert hub.resolve("./acme/missing") == Path("./acme/missing")  # not a repo id: a path
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        tmn.load("./acme/missing")


@pytest.mark.parametrize("ref, parsed", [
    ("acme/mover", ("acme/mover", None)), ("acme/mover@v1.0", ("acme/mover", "v1.0")),
    ("a-b_c.d/e-f@refs/pr/1", ("a-b_c.d/e-f", "refs/pr/1")),
    ("acme", None), ("/abs/path", None), ("./acme/mover", None), ("a/b/c", None),
    ("acme/../x", None), ("acme/mover@", None)])
def test_what_reads_as_a_repo_id(ref: str, parsed: tuple[str, str | None] | None) -> None:
    assert hub.parse_repo_ref(ref) == parsed


def test_publish_without_a_token_fails_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    folder = random_model(tmp_path / "m", system="A", seed=4)
    with pytest.raises(hub.HubError, match=r"^no Hugging Face token: set HF_TOKEN") as e:
        hub.publish(folder, "acme/mover", token=None)
    assert "\n" not in str(e.value)
    with pytest.raises(hub.HubError, match="must be owner/name"):
        hub.publish(folder, "acme/mover@v1", token="hf_fake")


def test_publish_with_a_token_creates_the_repo_and_uploads_exactly_the_folder_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi

    folder = random_model(tmp_path / "m", system="B", seed=5)
    (folder / "examples").mkdir()
    (folder / "examples" / "inference.py").write_text("print('hi')\n")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "junk").write_text("x")
    (folder / "examples" / "__pycache__").mkdir()
    (folder / "examples" / "__pycache__" / "inference.pyc").write_bytes(b"\0")
    calls: list[tuple[str, tuple, dict]] = []
    monkeypatch.setattr(HfApi, "create_repo",
                        lambda self, *a, **k: calls.append(("create_repo", a, k)))
    monkeypatch.setattr(HfApi, "upload_folder",
                        lambda self, *a, **k: calls.append(("upload_folder", a, k)) or "url")
    assert hub.publish(folder, "acme/mover", token="hf_fake") == "url"
    (c_name, c_args, c_kw), (u_name, _, u_kw) = calls
    assert (c_name, c_args, c_kw["repo_type"], c_kw["exist_ok"]) == (
        "create_repo", ("acme/mover",), "model", True)
    assert u_name == "upload_folder" and u_kw["repo_id"] == "acme/mover"
    assert u_kw["folder_path"] == str(folder)
    assert u_kw["allow_patterns"] == hub.repo_files(folder) == sorted(
        [p.name for p in folder.iterdir() if p.is_file()] + ["examples/inference.py"])


def test_publish_without_network_is_a_one_line_hub_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_ENDPOINT at a closed local port: the create_repo call cannot connect."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    folder = random_model(tmp_path / "m", system="A", seed=6)
    with pytest.raises(hub.HubError, match=r"^publish to acme/mover failed: ") as e:
        hub.publish(folder, "acme/mover", token="hf_fake")
    assert "\n" not in str(e.value)
