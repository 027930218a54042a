"""The installed tmn's version, read from its package metadata, so that
``pyproject.toml`` is its one source of truth (``tmn.__version__``, every
command's ``--version``)."""

from importlib import metadata

__version__: str = metadata.version("tmn")
