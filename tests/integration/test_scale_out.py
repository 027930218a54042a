"""Scaling out: ``tmn-serve --cores`` (one loop per core, each on its own
endpoint) and ``tmn.Client`` sharding streams over several endpoints and
daemons on a consistent-hash ring (docs/protocol.md, "Several cores and
several daemons"). Real daemons on ipc endpoints, loopback only."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serve_daemon import DaemonFactory, free_tcp_endpoint, serve_argv
from test_cli_errors import tmn_client
from test_security import curve_daemon, keys  # noqa: F401 - the keys fixture
from test_serve import (assert_same_as_local, local_replay, mixed_streams, new_streams,
                        run_cli, smooth_track)

import tmn
from tmn.client import merge_stats
from tmn.serve import loop_endpoint

CPUS = sorted(os.sched_getaffinity(0))
TWO_CORES = f"{CPUS[0]},{CPUS[-1]}"
needs_two = pytest.mark.skipif(len(CPUS) < 2, reason="needs two usable CPUs")


@pytest.fixture
def ipc_dir() -> Iterator[Path]:
    """A short folder for ipc endpoints (a socket path has ~100 bytes at most)."""
    d = Path(tempfile.mkdtemp(prefix="tmn-scale-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def two_loops(serve: DaemonFactory, model: Path, folder: Path, *extra: str, **kw) -> list[str]:
    """A daemon with a loop on each of two cores; its two endpoints."""
    ep = f"ipc://{folder}/two"
    serve(model, "--cores", TWO_CORES, *extra, endpoint=ep, **kw)
    return [loop_endpoint(ep, 0), loop_endpoint(ep, 1)]


@needs_two
def test_a_stream_is_predicted_bit_identically_by_every_loop_and_daemon(
        serve: DaemonFactory, models: dict[str, Path], ipc_dir: Path) -> None:
    """The same ticks of one stream, sent to each loop of a two-core daemon and to
    a one-loop daemon, get the local engine's predictions, bit for bit."""
    loops = two_loops(serve, models["B"], ipc_dir)
    single = serve(models["B"], endpoint=f"ipc://{ipc_dir}/one").endpoint
    (sid,) = new_streams()
    ticks = smooth_track(300, sid)
    ref = local_replay(models["B"], ticks)
    for ep in [*loops, single]:
        with tmn.Client(ep, timeout_s=10.0) as c:
            got = np.concatenate([c.ticks(ticks[i:i + 37]).records
                                  for i in range(0, len(ticks), 37)])
        assert_same_as_local(got, ticks, ref)
        np.testing.assert_array_equal(got["radius"], ref.radius)


@needs_two
def test_a_sharded_client_splits_a_batch_and_puts_the_replies_back_in_order(
        serve: DaemonFactory, models: dict[str, Path], ipc_dir: Path) -> None:
    """Batches over 40 streams, sharded over two loops and a second daemon, pipelined:
    every record in its tick's place, predictions as the local engine's; each
    stream lives on its ring endpoint only; stats sum the two daemons."""
    endpoints = [*two_loops(serve, models["B"], ipc_dir),
                 serve(models["B"], endpoint=f"ipc://{ipc_dir}/one").endpoint]
    ticks = mixed_streams(4000, 40, seed=3, first_stream=new_streams()[0])
    ref = local_replay(models["B"], ticks)
    with tmn.Client(endpoints, timeout_s=10.0) as c:
        seqs = [c.send(ticks[i:i + 100]) for i in range(0, len(ticks), 100)]
        replies = [c.recv() for _ in seqs]
        assert [r.seq for r in replies] == seqs
        assert_same_as_local(np.concatenate([r.records for r in replies]), ticks, ref)
        s = c.stats()["stats"]
    shards = c.ring.shard_of(np.unique(ticks["stream"]))
    assert len(set(shards.tolist())) == 3, "40 streams reach every endpoint of the ring"
    assert s["ticks"] == s["ticks_ok"] == len(ticks)
    assert s["streams"] == 40 and s["loops"] == 3 and len(s["daemons"]) == 2
    assert sorted(s["endpoints"]) == sorted(endpoints)
    for i, ep in enumerate(endpoints):  # each endpoint holds exactly its streams
        with tmn.Client(ep) as one:
            held = {int(k) for k in one.stats(per_stream=True)["stats"]["per_stream_accuracy"]}
        if i < 2:  # a daemon's stats cover its loops: the two-core daemon holds both shares
            mine = np.unique(ticks["stream"])[shards < 2]
        else:
            mine = np.unique(ticks["stream"])[shards == 2]
        assert held == set(mine.tolist())


@needs_two
def test_stats_on_any_loop_cover_the_daemon_and_reset_and_reload_reach_every_loop(
        serve: DaemonFactory, models: dict[str, Path], ipc_dir: Path) -> None:
    loops = two_loops(serve, models["B"], ipc_dir)
    ticks = mixed_streams(600, 6, seed=5, first_stream=new_streams()[0])
    with tmn.Client(loops, timeout_s=10.0) as c:
        c.ticks(ticks)
        sid = int(ticks["stream"][0])
        assert c.reset(sid)["ok"] and not c.reset(sid)["ok"]  # held once, on its loop
        for ep in loops:
            with tmn.Client(ep) as one:
                s = one.stats()["stats"]
            assert s["ticks"] == 600 and s["streams"] == 5 and s["loops"] == 2
        assert c.reload(model=str(models["A"]))["ok"]
        rec = c.ticks(mixed_streams(8, 8, seed=6, first_stream=new_streams()[0])).records
    assert rec.dtype["path"].shape[0] == 3  # System A's K on both loops


@needs_two
def test_curve_scopes_streams_and_holds_the_quota_on_every_loop(
        serve: DaemonFactory, models: dict[str, Path], ipc_dir: Path,
        keys: dict[str, Path]) -> None:  # noqa: F811 - the fixture
    """On the second loop as on the first: a stranger is refused, alice's and
    bob's stream 7 are two streams, and alice holds at most her quota."""
    d = curve_daemon(serve, models["B"], keys, "--cores", TWO_CORES,
                     "--max-streams-per-client", "2")
    second = loop_endpoint(d.endpoint, 1)
    opts = {"server_key_file": keys["server"]}
    a_ticks, b_ticks = smooth_track(80, 7), smooth_track(80, 7, t0=3.0, seed=9, radius=2.0)
    with tmn.Client(second, timeout_s=3.0, key_file=keys["alice_secret"], **opts) as a, \
            tmn.Client(second, timeout_s=3.0, key_file=keys["bob_secret"], **opts) as b:
        assert_same_as_local(a.ticks(a_ticks).records, a_ticks, local_replay(models["B"], a_ticks))
        assert_same_as_local(b.ticks(b_ticks).records, b_ticks, local_replay(models["B"], b_ticks))
        more = mixed_streams(3, 3, seed=1, first_stream=100)
        status = a.ticks(more).records["status"]
        full = int(tmn.Status.capacity_exceeded)  # her 2nd stream is served, not a 3rd
        assert list(status) == [0, full, full]
    with tmn.Client(second, timeout_s=1.0, key_file=keys["stranger_secret"], **opts) as s, \
            pytest.raises(TimeoutError):
        s.health()


def test_cores_with_core_and_a_bad_core_list_are_refused_without_a_traceback(
        models: dict[str, Path]) -> None:
    for extra, words in ((["--cores", f"{CPUS[0]}", "--core", f"{CPUS[0]}"], "without --core"),
                         (["--cores", "1-x"], "expected CPUs like"),
                         (["--cores", "0,0"], "named twice"),
                         (["--cores", "4000-4001"], "not available")):
        r = run_cli(serve_argv(models["B"], free_tcp_endpoint(), *extra))
        assert r.returncode == 2, r.stderr
        assert words in r.stderr and "Traceback" not in r.stderr, r.stderr


@needs_two
def test_tmn_client_stats_with_several_endpoints_sums_the_daemons(
        serve: DaemonFactory, models: dict[str, Path], ipc_dir: Path) -> None:
    loops = two_loops(serve, models["B"], ipc_dir)
    other = serve(models["B"], endpoint=f"ipc://{ipc_dir}/one")
    ticks = mixed_streams(300, 3, seed=2, first_stream=new_streams()[0])
    for ep in (loops[1], other.endpoint):
        with tmn.Client(ep) as c:
            c.ticks(ticks)
    r = tmn_client("--endpoint", loops[0], "--endpoint", loops[1], "--endpoint",
                   other.endpoint, "stats")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)["stats"]
    assert s["ticks"] == 600 and s["loops"] == 3 and len(s["daemons"]) == 2


def test_merge_stats_sums_counters_and_bounds_percentiles() -> None:
    def one(n: int, p50: float, mx: float, passed: int, cert: float) -> dict:
        h = {"count": n, "mean": p50, "p50": p50, "p90": p50, "p99": mx, "p99.9": mx, "max": mx}
        return {"ticks": n, "daemon": str(n), "endpoints": [f"e{n}"], "uptime_s": float(n),
                "verdicts": {"pass": passed, "fallback_implausible": n - passed,
                             "fallback_uncertified": 0, "warming": 0, "ungated": 0},
                "mean_cert_error": cert, "latency_ns": {"server": h},
                "live_accuracy": [dict(h, horizon_ms=50.0)]}

    s = merge_stats([one(10, 2.0, 5.0, 10, 0.01), one(30, 4.0, 9.0, 15, 0.04)])
    assert s["ticks"] == 40 and s["endpoints"] == ["e10", "e30"] and s["uptime_s"] == 30.0
    assert s["daemons"] == ["10", "30"]
    server = s["latency_ns"]["server"]
    assert server["count"] == 40 and server["mean"] == pytest.approx((20 + 120) / 40)
    assert server["p50"] == 4.0 and server["max"] == 9.0  # the larger: an upper bound
    assert s["live_accuracy"][0]["horizon_ms"] == 50.0 and s["live_accuracy"][0]["count"] == 40
    assert s["gate_pass_rate"] == pytest.approx(25 / 40)
    assert s["mean_cert_error"] == pytest.approx((10 * 0.01 + 15 * 0.04) / 25)

