"""CURVE keys for tmn-serve and tmn.Client (docs/security.md).

Key files are ZeroMQ's own certificate format (``zmq.auth``): ``NAME.key``
holds a public key and may be shared, ``NAME.key_secret`` holds the pair and
is written with mode 0600. ``tmn-client keygen NAME`` writes both.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq.auth

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"


class KeyFileError(ValueError):
    """A key file or folder could not be used; the message names it."""


def generate(folder: Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair: (public file, secret file). Refuses to overwrite."""
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = folder / f"{name}{PUBLIC_SUFFIX}", folder / f"{name}{SECRET_SUFFIX}"
    for f in (public, secret):
        if f.exists():
            raise KeyFileError(f"{f} exists; not overwriting a key")
    pub, sec = zmq.auth.create_certificates(folder, name)
    os.chmod(sec, 0o600)
    return Path(pub), Path(sec)


def _load(file: Path) -> tuple[str, str | None]:
    try:
        public, secret = zmq.auth.load_certificate(file)
    except (OSError, ValueError, KeyError) as e:
        raise KeyFileError(f"{file}: not a readable key file: {e}") from e
    return public.decode("ascii"), secret.decode("ascii") if secret else None


def load_secret_key(file: Path) -> str:
    """The Z85 secret key of a ``.key_secret`` file."""
    _, secret = _load(file)
    if secret is None:
        raise KeyFileError(f"{file}: holds no secret key (use the .key_secret file)")
    return secret


def load_public_key(file: Path) -> str:
    """The Z85 public key of a ``.key`` (or ``.key_secret``) file."""
    return _load(file)[0]


def load_public_keys(folder: Path) -> list[str]:
    """Every public key in a folder of ``*.key`` files."""
    if not folder.is_dir():
        raise KeyFileError(f"{folder}: not a folder of {PUBLIC_SUFFIX} files")
    keys = [load_public_key(f) for f in sorted(folder.glob(f"*{PUBLIC_SUFFIX}"))]
    if not keys:
        raise KeyFileError(f"{folder}: holds no {PUBLIC_SUFFIX} file")
    return keys
