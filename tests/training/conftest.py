"""The training tests need the training package and torch: fail loudly without
them (a skipped training suite would hide breakage). Their shared tiny runs are
tests/conftest.py's ``tiny_runs``."""

from __future__ import annotations

try:
    import tmn_train  # noqa: F401
except ImportError as e:
    raise ImportError("tests/training need the training package and torch: "
                      "pip install torch==2.13.0 ./training") from e
