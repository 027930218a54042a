"""``tmn-bench serve`` runs end to end and writes every number it promises, and
its naive baseline (tmn_bench.baselines.naive_server) speaks the protocol and
runs the same network as the engine. These tests start server processes on
loopback.

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
from tmn.client import Client
from tmn.protocol import ProtocolError, decode_reply
from tmn.testing import random_model
from tmn_bench import cli, serve
from tmn_bench.results import ServerNotRun, ServeResult, from_json, to_json
from tmn_bench.workload import synthetic_ticks

PCT_KEYS = {"n", "p50", "p90", "p99", "p99.9", "max"}
NAIVE = [sys.executable, "-m", "tmn_bench.baselines.naive_server"]
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
def result(model: Path) -> ServeResult:
    """A tiny run, client and servers on one core (so the spin modes are skipped)."""
    core = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    r = serve.run_serve_bench(model, f"given: {model}", layout=serve.core_layout(core, core),
                              requests=REQUESTS, warmup=WARMUP, throughput_s=0.1, in_flight=4)
    assert os.sched_getaffinity(0) == before, "the benchmark must unpin the caller"
    return r


@pytest.fixture(scope="module")
def report(result: ServeResult) -> dict:
    """The run's JSON, as --json writes it."""
    return json.loads(json.dumps(to_json(result)))


def test_serve_json_has_every_section(report: dict) -> None:
    assert report["benchmark"] == "serve" and report["schema_version"] == 1
    assert to_json(from_json(ServeResult, report)) == report  # it reads back, ratios included
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


def test_tmn_serve_reports_the_phases_of_its_round_trips(report: dict) -> None:
    """The daemon's own split of a request (docs/protocol.md), P50 per phase."""
    phases = report["servers"]["tmn"]["server_phases_ns"]
    assert set(phases) == {"server_wait", "server_compute", "server_send", "tick"}
    assert all(v > 0 for v in phases.values())
    # the compute phase holds the tick (up to the histograms' bucket width)
    assert phases["tick"] <= 1.25 * phases["server_compute"]


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
    assert len(tmn_targets) == 9  # issue 4's eight, and issue 15's server-side P50 - echo
    for t in tmn_targets:
        assert t["status"] in ("MET", "MISSED") and t["value"] is not None


def test_scale_rows_run_one_and_two_loops_and_the_sharded_client(report: dict) -> None:
    """tmn-serve --cores with 1 and 2 loops, answered without errors; the 2-loop
    ratio is SKIPPED with its figure when a loop shares the client's CPU."""
    sc = report["scale"]
    runs = {r["loops"]: r for r in sc["runs"]}
    assert set(runs) <= {1, 2} and 1 in runs
    for r in runs.values():
        assert r["ticks"] > 0 and r["error_replies"] == 0 and len(r["cores"]) == r["loops"]
        assert r["ticks"] == r["requests"] * r["ticks_per_request"]
        _check_percentiles(r["server_side_ns"])
        assert r["clean"] == (report["layout"]["client_core"] not in r["cores"])
    targets = {t["name"]: t for t in report["targets"]}
    assert targets["batched throughput per core (1 loop)"]["value"] > 0
    two = targets["throughput, 2 loops / 1 loop"]
    if 2 in runs:
        assert sc["two_over_one"] == pytest.approx(runs[2]["ticks_per_s"] / runs[1]["ticks_per_s"])
        assert sc["sharded_client"]["ticks"] > 0
        if not (runs[1]["clean"] and runs[2]["clean"]):
            assert two["status"] == "SKIPPED" and "not a clean measurement" in two["note"]
    assert "Scale out" in serve.format_serve_report(from_json(ServeResult, report))


def test_a_missing_naive_server_makes_its_comparisons_skipped_with_the_reason(
        result: ServeResult) -> None:
    servers = {**result.servers, "naive": ServerNotRun("skipped", "naive", "not installed")}
    case = serve.headline_case(result.workload.throughput_cases)
    ratios = serve.serve_ratios(servers, case)
    targets = {t.name: t for t in serve.serve_targets(servers, ratios, case)}
    for name in ("tmn: round trip P50 / naive P50",
                 "tmn: throughput / naive throughput, 100 streams"):
        assert targets[name].status == "SKIPPED" and targets[name].note == "not installed"
    assert targets["tmn: round trip P50 / echo P50"].status in ("MET", "MISSED")
    assert "naive" in serve.format_serve_report(result)
    # a failed echo floor: the comparisons with it are SKIPPED with its log, not an error
    servers["echo"] = ServerNotRun("failed", "echo", "server did not start: ...")
    ratios = serve.serve_ratios(servers, case)
    targets = {t.name: t for t in serve.serve_targets(servers, ratios, case)}
    assert targets["tmn: round trip P99.9 / echo P99.9"].status == "SKIPPED"
    assert targets["tmn: round trip P99.9 / echo P99.9"].note.startswith("server did not start")


def test_a_renamed_or_missing_figure_is_an_error_not_a_skipped_target(
        result: ServeResult) -> None:
    """The issue's failure: a figure read by a key that no longer exists turned
    MET targets into SKIPPED with an empty note. Typed results fail loudly."""
    run = result.servers["tmn"]
    with pytest.raises(KeyError):
        run.round_trip_ns["p99_9"]  # a misspelt percentile
    with pytest.raises(KeyError, match="no throughput run"):
        run.throughput_of(serve.ThroughputCase(100, 7))
    with pytest.raises(AttributeError):
        result.ratios.modes["tmn"].over_naive_round_trip_p999  # type: ignore[attr-defined]


def test_a_bad_core_or_naive_script_is_refused_before_measuring(
        capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["serve", "--server-core", "999"]) == 2
    assert "--server-core 999 is not usable" in capsys.readouterr().err
    assert cli.main(["serve", "--naive-script", "/nonexistent/naive.py"]) == 2
    assert "no such file" in capsys.readouterr().err


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
        proc = subprocess.Popen([*NAIVE, "--model", str(model), "--endpoint", endpoint],
                                stderr=err,
                                stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        # on the model's grid, so that the engine steps once per tick, as the naive
        # server does
        w = synthetic_ticks(1200, streams=3, seed=5, jitter=0.0)
        ticks = w.wire()
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
