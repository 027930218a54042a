"""tmn_train: data pipeline, System A/B micro-GRU training and INT8 export for tmn.

The Kalman filter, the gate and the engine are tmn's (C++, through
``tmn._core`` and ``tmn.Engine``); nothing here re-implements them.
"""

from importlib import metadata

__version__: str = metadata.version("tmn-train")  # pyproject.toml is the one source
