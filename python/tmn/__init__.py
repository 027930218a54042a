"""tmn: certified real-time 2-D motion prediction.

``tmn.load()`` reads a model artifact, ``tmn.Engine`` runs it through the
five-stage C++ tick (ingest, Kalman prior, GRU, certified gate, actuation).
"""

from tmn._core import Isa, Prediction, Status, Verdict
from tmn.client import Client
from tmn.engine import STAGES, Engine, Replay, TickError
from tmn.model import Model, ModelFormatError, load, quantise_rows

__all__ = [
    "STAGES",
    "Client",
    "Engine",
    "Isa",
    "Model",
    "ModelFormatError",
    "Prediction",
    "Replay",
    "Status",
    "TickError",
    "Verdict",
    "load",
    "quantise_rows",
]
