"""tmn: certified real-time 2-D motion prediction.

``tmn.load()`` reads a model artifact, ``tmn.Engine`` runs it through the
five-stage C++ tick (ingest, Kalman prior, GRU, certified gate, actuation).
``tmn.load("owner/name")`` fetches a model from the Hugging Face Hub
(``tmn.hub``, docs/hub.md).
"""

# zmq first: tmn._core needs the libzmq inside pyzmq's wheel by its file name, and the
# loader reuses the copy this maps wherever tmn is installed (docs/installation.md).
import zmq  # noqa: F401  # isort: skip

from tmn._core import Isa, Prediction, Status, Verdict
from tmn.artifact import quantise_rows
from tmn.client import Client
from tmn.engine import (NO_PREDICTION, PERCENTILES, STAGES, VERDICT_NAMES, Engine, Replay,
                        TickError, percentiles)
from tmn.hub import HubError
from tmn.model import FEATURES, Model, ModelFormatError, load
from tmn.version import __version__

__all__ = [
    "__version__",
    "FEATURES",
    "NO_PREDICTION",
    "PERCENTILES",
    "STAGES",
    "VERDICT_NAMES",
    "Client",
    "Engine",
    "HubError",
    "Isa",
    "Model",
    "ModelFormatError",
    "Prediction",
    "Replay",
    "Status",
    "TickError",
    "Verdict",
    "load",
    "percentiles",
    "quantise_rows",
]
