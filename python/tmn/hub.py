"""Models on the Hugging Face Hub (docs/hub.md): resolve a repo id to a folder,
and upload a model folder.

``tmn.load("org/name@rev")`` and ``tmn-serve --model org/name`` come here. A
path that exists always wins, so a local folder called ``org/name`` is loaded
as today; only a reference that is no existing path and reads as a repo id
(``owner/name`` with an optional ``@revision``) goes to
``huggingface_hub.snapshot_download``, which keeps its own cache
(``HF_HUB_CACHE``, ``HF_HOME``) and honours ``HF_HUB_OFFLINE``. The folder it
returns is then validated exactly like a local one, by ``tmn.load``.

huggingface_hub is optional (``pip install "tmn[hub]"``) and imported only
here, only when a repo id is used. Every failure is a :class:`HubError` whose
message is one line, fit for a command line.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

# owner/name[@revision], as the Hub spells them: letters, digits, "-", "_", "."
_REPO_REF = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[\w./-]+))?$")
INSTALL_HINT = 'pip install "tmn[hub]"'


class HubError(RuntimeError):
    """A model could not be fetched from, or published to, the Hub (one line)."""


def parse_repo_ref(ref: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` of ``owner/name[@revision]``, or None if ``ref``
    is not written like a repo id."""
    m = _REPO_REF.match(ref)
    if m is None or ".." in ref:
        return None
    return m.group("repo"), m.group("rev")


def resolve(ref: str | Path) -> Path:
    """The local folder of a model reference: ``ref`` itself if it is a
    ``Path``, exists, or is not written like a repo id, else the snapshot of the Hub repo it names (downloaded into,
    or read from, huggingface_hub's cache). Raises :class:`HubError`."""
    if isinstance(ref, Path) or _exists(ref):
        return Path(ref)
    parsed = parse_repo_ref(ref)
    if parsed is None:
        return Path(ref)
    repo, revision = parsed
    hf = _import_hub()
    from huggingface_hub import errors

    where = f"{repo}@{revision}" if revision else repo
    try:
        return Path(hf.snapshot_download(repo, revision=revision, repo_type="model"))
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as e:
        why = "HF_HUB_OFFLINE is set" if hf.constants.is_offline_mode() else \
            "the Hub cannot be reached"
        raise HubError(f"model {where}: not in the Hugging Face cache "
                       f"({hf.constants.HF_HUB_CACHE}) and {why}; no local folder of that "
                       "name either") from e
    except errors.RevisionNotFoundError as e:
        raise HubError(f"model {where}: the repo has no revision {revision!r}") from e
    except errors.RepositoryNotFoundError as e:
        raise HubError(f"model {where}: no such model repo on the Hub (or it is private: "
                       "set HF_TOKEN); no local folder of that name either") from e
    except errors.HfHubHTTPError as e:
        raise HubError(f"model {where}: the Hub refused the download: {_first_line(e)}") from e


def repo_files(folder: Path) -> list[str]:
    """The files ``publish`` uploads: every regular file under ``folder``,
    relative POSIX paths, sorted; hidden files and folders (``.git``,
    ``.cache``) and Python's ``__pycache__`` (pip compiles the examples of an
    installed model) are left out."""
    files = [p.relative_to(folder) for p in folder.rglob("*") if p.is_file()]
    return sorted(p.as_posix() for p in files
                  if not any(s.startswith(".") or s == "__pycache__" for s in p.parts))


def publish(folder: Path, repo: str, token: str | None = None, private: bool = False) -> str:
    """Upload exactly :func:`repo_files` of ``folder`` to the model repo
    ``repo`` (created if missing) with ``HfApi.create_repo`` and
    ``HfApi.upload_folder``; returns the commit's URL. ``token`` defaults to
    huggingface_hub's (``HF_TOKEN`` or a saved login). Raises :class:`HubError`
    with no token, without network, or when the Hub refuses."""
    parsed = parse_repo_ref(repo)
    if parsed is None or parsed[1] is not None:
        raise HubError(f"--repo {repo!r}: must be owner/name (no @revision)")
    hf = _import_hub()
    token = token or hf.get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login` "
                       "(or use --dry-run)")
    from huggingface_hub import errors

    api = hf.HfApi(token=token)
    try:
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                                 allow_patterns=repo_files(folder),
                                 commit_message=f"Upload tmn model from {folder.name}")
    except (errors.HTTPError, OSError) as e:  # the HTTP library's errors, the Hub's among them
        raise HubError(f"publish to {repo} failed: {_first_line(e)}") from e
    return str(getattr(info, "commit_url", info))


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):  # e.g. a NUL byte: tmn.load names the problem
        return False


def _import_hub() -> ModuleType:
    try:
        import huggingface_hub
    except ImportError as e:
        raise HubError(f"Hugging Face Hub support needs huggingface_hub: {INSTALL_HINT}") from e
    return huggingface_hub


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
