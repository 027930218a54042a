"""One source for every shared constant: C++ defines them, the bindings export
them (tmn._core), the Python side reads them from there, and the docs state the
same values (checked here, so a change in C++ that the docs miss fails)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import tmn
from tmn import _core, protocol
from tmn.client import DEFAULT_ENDPOINT as CLIENT_ENDPOINT
from tmn.model import FEATURES
from tmn.serve import DEFAULT_ENDPOINT as SERVE_ENDPOINT

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_python_reads_the_constants_from_the_bindings() -> None:
    assert tmn.STAGES is _core.STAGES
    assert tmn.STAGES == ("ingest", "prior", "network", "gate", "actuation")
    assert protocol.prediction_dtype(3)["stage_ns"].shape == (len(tmn.STAGES),)
    assert tmn.NO_PREDICTION == 255 and tmn.VERDICT_NAMES[255] == "no_prediction"
    assert {v: tmn.VERDICT_NAMES[int(v)] for v in tmn.Verdict.__members__.values()} == {
        v: name.rstrip("_") for name, v in tmn.Verdict.__members__.items()}
    assert [name for name, _ in tmn.PERCENTILES] == ["p50", "p90", "p99", "p99.9"]
    assert list(tmn.percentiles(np.arange(1001.0))) == ["p50", "p90", "p99", "p99.9", "max"]
    assert CLIENT_ENDPOINT == SERVE_ENDPOINT == _core.DEFAULT_ENDPOINT == "tcp://127.0.0.1:5555"
    assert protocol.MAX_BATCH == _core.MAX_BATCH and protocol.MAGIC == _core.WIRE_MAGIC
    assert protocol.FRAME_ERRORS[int(_core.FrameError.internal)] == "internal"
    assert FEATURES == {k: list(v) for k, v in _core.FEATURES.items()}
    assert FEATURES["B"][:len(FEATURES["A"])] == FEATURES["A"] == ["vx", "vy", "hpx", "hpy"]


def test_the_protocol_spec_states_the_cpp_values() -> None:
    doc = (DOCS / "protocol.md").read_text(encoding="utf-8")
    verdicts = ", ".join(f"{int(v)} {tmn.VERDICT_NAMES[int(v)]}"
                         for v in tmn.Verdict.__members__.values())
    assert f"verdict: {verdicts}; {tmn.NO_PREDICTION} when status ≠ 0" in doc
    # binary frame errors have a row each; the codes of JSON replies are named in a sentence
    rows = {code for code, name in protocol.FRAME_ERRORS.items() if f"| {code} | {name} |" in doc}
    assert "Codes 7–9 name JSON control errors" in doc
    assert rows | {7, 8, 9} == set(protocol.FRAME_ERRORS) and not rows & {7, 8, 9}
    assert f"`count` (1 to {_core.MAX_BATCH})" in doc and f"count > {_core.MAX_BATCH}" in doc
    assert f"default `{_core.DEFAULT_ENDPOINT}`" in doc
    assert f"`{_core.WIRE_MAGIC:#010X}`".replace("0X", "0x") in doc
    assert f"stage_ns: {', '.join(_core.STAGES)}" in doc
    assert ", ".join(name for name, _ in _core.PERCENTILES) in doc


def test_the_model_format_spec_states_the_cpp_limits() -> None:
    doc = (DOCS / "model-format.md").read_text(encoding="utf-8")
    assert f"list of 1–{_core.MAX_HORIZONS} numbers" in doc
    assert f"int in [1, {_core.MAX_HIDDEN}]" in doc
    assert f"number in (0, {_core.MAX_LAMBDA:g})" in doc
    assert f"127² · {_core.MAX_HIDDEN}" in doc
    for system in ("A", "B"):
        assert f"{system}: `[" + ", ".join(f'"{f}"' for f in _core.FEATURES[system]) + "]`" in doc
    assert f"int in [2, {_core.MAX_VELOCITY_WINDOW}]" in doc
    assert f"`MAX_GRID_STEPS_PER_TICK` ({_core.MAX_GRID_STEPS_PER_TICK})" in doc


def test_the_gate_doc_names_every_verdict() -> None:
    doc = (DOCS / "gate.md").read_text(encoding="utf-8")
    for v in tmn.Verdict.__members__.values():
        assert f"`{tmn.VERDICT_NAMES[int(v)]}`" in doc
