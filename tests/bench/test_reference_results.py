"""Every JSON under bench/reference is a typed result: it reads back with
``tmn_bench.results.from_json`` as the result of the benchmark it names, and
writes back to the same JSON, so no figure there lives outside the
dataclasses (a stale reference fails here, not in a reader later)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tmn_bench.results import (AccuracyResult, BenchmarkResult, EngineResult, LatencyResult,
                               PushResult, ResultFormatError, ServeRatios, ServeResult,
                               from_json, to_json)

REFERENCE = Path(__file__).resolve().parents[2] / "bench" / "reference"
JSONS = sorted(REFERENCE.rglob("*.json"))
RESULTS: dict[str, type[BenchmarkResult]] = {
    "engine": EngineResult, "serve": ServeResult, "latency": LatencyResult,
    "pagerank": PushResult, "accuracy": AccuracyResult}


def test_every_result_type_is_known_and_the_references_are_found() -> None:
    assert set(RESULTS.values()) == set(BenchmarkResult.__subclasses__())
    assert {json.loads(p.read_text(encoding="utf-8"))["benchmark"] for p in JSONS} >= {
        "latency", "pagerank", "accuracy"}


@pytest.mark.parametrize("path", JSONS, ids=lambda p: str(p.relative_to(REFERENCE)))
def test_a_reference_json_reads_back_typed_and_writes_back_unchanged(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    result = from_json(RESULTS[data["benchmark"]], data)
    assert result.benchmark == data["benchmark"]
    assert to_json(result) == data


def test_the_flat_serve_ratios_read_back_and_a_key_they_do_not_explain_is_an_error() -> None:
    data = json.loads((REFERENCE / "latency" / "latency.json").read_text(encoding="utf-8"))
    ratios = data["serve"]["ratios"]
    assert set(from_json(ServeRatios, ratios).modes) == {"tmn", "tmn-spin"}
    with pytest.raises(ResultFormatError, match=r"keys not understood: \['tmn_over_x'\]"):
        from_json(ServeRatios, {**ratios, "tmn_over_x": 1.0})
    with pytest.raises(ResultFormatError, match="needs one echo floor"):
        from_json(ServeRatios, {k: v for k, v in ratios.items() if "echo_round" not in k})
