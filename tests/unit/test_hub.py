"""Models by Hugging Face repo id (tmn.hub, docs/hub.md), in process and
without network: what reads as a repo id, a local path winning over it, and
the upload stopped at HfApi's methods. Loading from a cache in a fresh
process is tests/integration/test_hub_offline.py."""

from __future__ import annotations

from pathlib import Path

import pytest

import tmn
from tmn import hub
from tmn.testing import random_model

pytest.importorskip("huggingface_hub")


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
