"""``tmn-bench serve`` runs end to end and writes every number it promises, and
its naive baseline (bench/naive_server.py) speaks the protocol and runs the
same network as the engine.

No timing assertions: only that the numbers exist and hang together.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zmq

import tmn
from tmn import bench, bench_serve
from tmn import benchutil as bu
from tmn.client import Client
from tmn.protocol import ProtocolError, decode_reply, make_ticks
from tmn.testing import random_model

PCT_KEYS = {"n", "p50", "p90", "p99", "p99.9", "max"}
NAIVE = Path(__file__).resolve().parents[2] / "bench" / "naive_server.py"
REQUESTS, WARMUP = 200, 20


def _check_percentiles(p: dict, n: int | None = None) -> None:
    assert PCT_KEYS <= set(p), p
    assert 0 < p["p50"] <= p["p90"] <= p["p99"] <= p["p99.9"] <= p["max"]
    if n is not None:
        assert p["n"] == n


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_model(tmp_path_factory.mktemp("m") / "B", system="B", seed=3,
                        weight_scale=0.3)


@pytest.fixture(scope="module")
def report(model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny run, client and servers on one core (so the spin modes are skipped)."""
    out = tmp_path_factory.mktemp("bench") / "serve.json"
    core = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    rc = bench.main(["serve", "--model", str(model), "--requests", str(REQUESTS), "--warmup",
                     str(WARMUP), "--throughput-seconds", "0.1", "--in-flight", "4",
                     "--server-core", str(core), "--client-core", str(core),
                     "--naive-script", str(NAIVE), "--json", str(out)])
    assert rc == 0
    assert os.sched_getaffinity(0) == before, "the benchmark must unpin the caller"
    return json.loads(out.read_text(encoding="utf-8"))


def test_serve_json_has_every_section(report: dict) -> None:
    assert report["benchmark"] == "serve" and report["schema_version"] == 1
    assert {"machine", "model", "layout", "workload", "servers", "ratios", "targets"} <= set(
        report)
    for key in ("cpu", "cores", "isa", "python", "versions", "tmn_git_sha", "date",
                "load_average_end"):
        assert key in report["machine"]
    assert report["model"]["system"] == "B" and report["model"]["horizons"] == 10
    layout = report["layout"]
    assert layout["client_core"] == layout["server_core"] and not layout["spin_allowed"]
    assert report["workload"]["requests"] == REQUESTS
    assert set(report["servers"]) == {"tmn", "tmn-spin", "echo", "echo-spin", "naive"}


def test_every_server_that_ran_has_round_trips_server_side_latency_and_throughput(
        report: dict) -> None:
    for name in ("tmn", "echo", "naive"):
        s = report["servers"][name]
        assert s["status"] == "ok", s
        assert s["exit_code"] == 0 and s["bad_replies"] == 0
        _check_percentiles(s["round_trip_ns"], REQUESTS)
        _check_percentiles(s["server_side_ns"])
        assert s["server_side_ns"]["n"] >= REQUESTS + WARMUP
        cases = [(t["streams"], t["ticks_per_request"]) for t in s["throughput"]]
        assert cases == [(1, 1), (10, 10), (100, 10), (100, 100)]
        for t in s["throughput"]:
            assert t["ticks"] > 0 and t["ticks_per_s"] > 0 and t["error_replies"] == 0
            assert t["ticks"] == t["requests"] * t["ticks_per_request"]
            assert t["exit_code"] == 0
            _check_percentiles(t["server_side_ns"])
    assert report["servers"]["tmn"]["health_model"]["precision"] == "int8"


def test_spin_modes_are_skipped_with_a_reason_on_a_shared_core(report: dict) -> None:
    for name in ("tmn-spin", "echo-spin"):
        s = report["servers"][name]
        assert s["status"] == "skipped" and "core" in s["reason"]
    spin = [t for t in report["targets"] if t["name"].startswith("tmn-spin")]
    assert spin and all(t["status"] == "SKIPPED" for t in spin)


def test_ratios_and_targets_are_reported(report: dict) -> None:
    ra = report["ratios"]
    for key in ("tmn_over_naive_round_trip_p50", "tmn_over_naive_round_trip_p99.9",
                "tmn_over_echo_round_trip_p50", "tmn_over_echo_round_trip_p99.9",
                "tmn_over_naive_throughput_100_streams"):
        assert ra[key] is not None and ra[key] > 0, key
    rt = report["servers"]
    assert ra["tmn_over_naive_round_trip_p50"] == pytest.approx(
        rt["tmn"]["round_trip_ns"]["p50"] / rt["naive"]["round_trip_ns"]["p50"])
    tmn_targets = [t for t in report["targets"] if t["name"].startswith("tmn:")]
    assert len(tmn_targets) == 8
    for t in tmn_targets:
        assert t["status"] in ("MET", "MISSED") and t["value"] is not None


def test_a_missing_naive_server_makes_its_comparisons_skipped(report: dict) -> None:
    assert bench_serve.find_naive_script(Path("/nonexistent/naive_server.py")) is None
    r = json.loads(json.dumps(report))
    r["servers"]["naive"] = {"status": "skipped", "reason": "not found"}
    r["ratios"] = bench_serve.serve_ratios(r)
    targets = {t.name: t for t in bench_serve.serve_targets(r)}
    assert targets["tmn: round trip P50 / naive P50"].status == "SKIPPED"
    assert targets["tmn: throughput / naive throughput, 100 streams"].status == "SKIPPED"
    assert targets["tmn: round trip P50 / echo P50"].status in ("MET", "MISSED")
    assert "naive" in bench_serve.format_serve_report(r)


def test_an_unusable_core_is_refused() -> None:
    assert bench.main(["serve", "--server-core", "999"]) == 2


# ---------------------------------------------------------------------------
# the naive baseline


def _free_endpoint() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def test_naive_server_speaks_the_protocol_and_runs_the_same_network(tmp_path: Path) -> None:
    model = random_model(tmp_path / "A", system="A", seed=4, weight_scale=0.3)
    endpoint = _free_endpoint()
    log = tmp_path / "naive.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(NAIVE), "--model", str(model),
                                 "--endpoint", endpoint], stderr=err,
                                stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        w = bu.synthetic_ticks(1200, streams=3, seed=5)
        ticks = make_ticks(w.t, w.x, w.y, w.vx, w.vy, w.stream)
        with Client(endpoint, timeout_s=30.0) as c:
            h = c.health()  # waits (bounded) until the server is up
            assert h["ok"] and "NETWORK ONLY" in h["server"]
            rec = np.concatenate([c.ticks(ticks[i:i + 100]).records
                                  for i in range(0, len(ticks), 100)])
            bad = ticks[-1:].copy()
            bad["t"] = bad["t"] + 1.0
            bad["vx"] = np.nan
            assert c.ticks(bad).records[0]["status"] == 1
            s = c.stats()["stats"]
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(endpoint)
            sock.send(b"\x00junk")
            assert sock.poll(30_000), "no reply to a bad frame"
            with pytest.raises(ProtocolError, match="bad_magic"):
                decode_reply(sock.recv())
        finally:
            sock.close(linger=0)
        assert s["ticks"] == len(ticks) + 1 and s["tick_errors"] == 1
        # System A after warm-up: position + head output, the same network as the engine
        ref = tmn.Engine(model, precision="fp32").replay(w.t, w.x, w.y, w.vx, w.vy, w.stream)
        ungated = ref.verdict == int(tmn.Verdict.ungated)
        assert ungated.sum() > 0
        np.testing.assert_allclose(rec["path"][ungated], ref.paths[ungated], atol=1e-5)
        assert (rec["status"] == 0).all() and (rec["verdict"] == 4).all()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
            pytest.fail("the naive server ignored SIGTERM")
    assert rc == 0, log.read_text()
    assert "NETWORK ONLY" in log.read_text()
