"""Faults tmn-serve survives, each with its expected outcome (issue 13, Build 5).

Clients killed or reconnecting, a slow subscriber, signals under load, a
SIGKILL and restart over stale files, reloads under load, a full disk for the
pidfile (tests/integration/test_cli_errors.py) and occupied endpoints.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from serve_daemon import (STARTUP_TIMEOUT_S, DaemonFactory, serve_argv, short_ipc_endpoint,
                          start_daemon)
from test_hostile_peers import _hostile_folder
from test_serve import (assert_still_answering, local_replay, new_streams, smooth_track,
                        stats)

import tmn
from tmn.protocol import MAX_BATCH, ProtocolError, make_ticks

SIGTERM_TARGET_S = 2.0   # issue 13's target; the check below is looser for a shared CI box
SIGTERM_CHECK_S = 4.0

# A client process that keeps the daemon's queue full of full batches (4096
# ticks, milliseconds of work each) and never reads.
_FIREHOSE = """
import sys, zmq, numpy as np
from tmn.protocol import MAX_BATCH, encode_ticks, make_ticks
s = zmq.Context().socket(zmq.DEALER)
s.setsockopt(zmq.SNDHWM, 64)
s.setsockopt(zmq.RCVHWM, 1)
s.connect(sys.argv[1])
i = np.arange(MAX_BATCH)
frames = [encode_ticks(make_ticks(1.0 + (k * MAX_BATCH + i) / 2000.0, np.cos(i), np.sin(i),
                                  0.0, 0.0, 900 + (i % 50).astype(np.uint64)))
          for k in range(200)]
print("firing", flush=True)
while True:
    for f in frames:
        s.send(f)
"""

# A client process that pipelines batches until killed.
_PUMP = """
import sys, numpy as np, tmn
from tmn.protocol import make_ticks
c = tmn.Client(sys.argv[1], timeout_s=5.0)
t, sid = 1.0, int(sys.argv[2])
while True:
    for _ in range(8):
        n = 256
        tt = t + np.arange(n) / 2000.0
        c.send(make_ticks(tt, np.cos(tt), np.sin(tt), -np.sin(tt), np.cos(tt), sid))
        t = float(tt[-1]) + 0.0005
    for _ in range(8):
        c.recv()
    print("batch", flush=True)
"""


def _pump_process(endpoint: str, stream: int) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _PUMP, endpoint, str(stream)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdout is not None
    assert p.stdout.readline().startswith(b"batch"), "the pump never got replies"
    return p


def test_a_client_killed_mid_stream_costs_nobody_else_anything(serve: DaemonFactory,
                                                              models) -> None:
    d = serve(models["B"])
    (sid,) = new_streams()
    pump = _pump_process(d.endpoint, sid)
    time.sleep(0.3)
    pump.kill()  # mid-stream: requests in flight, replies unread
    pump.wait(timeout=10)
    pump.stdout.close()
    assert_still_answering(d, models["B"])
    assert d.terminate() == 0


def test_a_client_reconnecting_with_the_same_identity_continues_its_stream(
        serve: DaemonFactory, models) -> None:
    d = serve(models["B"])
    (sid,) = new_streams()
    ticks = smooth_track(400, sid)
    got = []
    for part in (ticks[:150], ticks[150:300], ticks[300:]):
        with tmn.Client(d.endpoint, routing_id=b"robot-7") as c:
            got.append(c.ticks(part).records)
    rec = np.concatenate(got)
    np.testing.assert_array_equal(rec["path"], local_replay(models["B"], ticks).paths)


def test_a_slow_pub_subscriber_is_counted_and_slows_nothing(serve: DaemonFactory,
                                                           models) -> None:
    d = serve(models["B"], pub=True)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 1)
    sub.setsockopt(zmq.RCVBUF, 4096)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(d.pub)
    (sid,) = new_streams()
    try:
        with d.client() as c:
            deadline = time.monotonic() + 20
            t0, sent = 1.0, 0
            while time.monotonic() < deadline and sent < 400_000:  # the subscriber never reads
                tt = t0 + np.arange(MAX_BATCH) / 2000.0
                rec = c.ticks(make_ticks(tt, np.cos(tt), np.sin(tt), 0.0, 0.0, sid)).records
                assert (rec["status"] == 0).all()
                t0, sent = float(tt[-1]) + 0.0005, sent + MAX_BATCH
                if sent % (20 * MAX_BATCH) == 0 and stats(d)["dropped_pub"] > 0:
                    break
        assert stats(d)["dropped_pub"] > 0
    finally:
        sub.close(linger=0)


def _traffic(d, stop: threading.Event, errors: list[str], counts: dict[str, int]) -> None:
    """Pipelined batches (8 in flight) on fresh streams until `stop`."""
    ids = np.array(new_streams(16), dtype=np.uint64)
    t = 1.0
    try:
        with d.client(timeout_s=10.0) as c:
            inflight = 0
            while not stop.is_set():
                while inflight < 8:
                    c.send(make_ticks(np.full(16, t), np.cos(t), np.sin(t), -np.sin(t),
                                      np.cos(t), ids))
                    t += 0.0005
                    inflight += 1
                try:
                    r = c.recv(timeout_s=10.0)
                    counts["ok"] += int((r.records["status"] == 0).sum())
                except ProtocolError as e:
                    errors.append(str(e))
                except TimeoutError:
                    counts["timeouts"] += 1
                    return
                inflight -= 1
    except Exception as e:  # noqa: BLE001 - reported by the test
        errors.append(f"{type(e).__name__}: {e}")


def test_sigterm_under_continuous_load_drains_and_exits_0_quickly(serve: DaemonFactory,
                                                                 models) -> None:
    """It never finished while a client kept sending: two pipelining clients
    and a firehose that never reads."""
    d = serve(models["B"])
    stop, errors, counts = threading.Event(), [], {"ok": 0, "timeouts": 0}
    pumps = [threading.Thread(target=_traffic, args=(d, stop, errors, counts))
             for _ in range(2)]
    hose = subprocess.Popen([sys.executable, "-c", _FIREHOSE, d.endpoint],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert hose.stdout is not None and hose.stdout.readline() == b"firing\n"
    for p in pumps:
        p.start()
    try:
        time.sleep(1.0)
        assert counts["ok"] > 0, errors
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(timeout=30)
        took = time.monotonic() - t0
        d.returncode = rc
    finally:
        stop.set()
        hose.kill()
        hose.wait(timeout=10)
        hose.stdout.close()
        for p in pumps:
            p.join(timeout=30)
    print(f"SIGTERM under load: exit {rc} after {took:.3f} s (target {SIGTERM_TARGET_S} s)")
    assert rc == 0 and took < SIGTERM_CHECK_S
    assert "final stats:" in d.log()


def test_sigkill_then_restart_over_a_stale_pidfile_and_ipc_file(models, tmp_path: Path) -> None:
    ep, pidfile = short_ipc_endpoint(tmp_path), tmp_path / "tmn.pid"
    first = start_daemon(models["A"], log_dir=tmp_path / "l1", endpoint=ep, pidfile=pidfile)
    first.proc.kill()
    first.proc.wait(timeout=10)
    first.returncode = -9
    assert pidfile.exists() and os.path.exists(ep[len("ipc://"):])  # both left behind
    second = start_daemon(models["A"], log_dir=tmp_path / "l2", endpoint=ep, pidfile=pidfile)
    try:
        assert pidfile.read_text().strip() == str(second.proc.pid)
        assert_still_answering(second, models["A"])
        assert "stale" in second.log()
    finally:
        assert second.terminate() == 0
    assert not pidfile.exists()


def test_reloading_valid_corrupt_and_hostile_models_under_load(serve: DaemonFactory, models,
                                                              tmp_path: Path) -> None:
    d = serve(models["B"])
    corrupt = _hostile_folder(models["B"].parent, "nested", models["B"])
    hostile = _hostile_folder(models["B"].parent, "wedging_gate", models["B"])
    stop, errors, counts = threading.Event(), [], {"ok": 0, "timeouts": 0}
    pump = threading.Thread(target=_traffic, args=(d, stop, errors, counts))
    pump.start()
    try:
        with d.client() as c:
            outcomes = [c.reload(str(m))["ok"] for m in
                        (models["A"], corrupt, hostile, models["B"], corrupt)]
        time.sleep(0.3)
    finally:
        stop.set()
        pump.join(timeout=30)
    assert outcomes == [True, False, False, True, False]
    assert not errors and counts["timeouts"] == 0 and counts["ok"] > 0, (errors, counts)
    assert stats(d)["reloads"] == 2
    assert_still_answering(d, models["B"])


def test_an_occupied_tcp_port_and_ipc_path_are_refused_cleanly(models, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        ep = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        r = subprocess.run(serve_argv(models["A"], ep), capture_output=True, text=True,
                           timeout=STARTUP_TIMEOUT_S)
    assert r.returncode == 2 and ep in r.stderr and "Traceback" not in r.stderr
    path = Path(short_ipc_endpoint(tmp_path)[len("ipc://"):])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as u:
        u.bind(str(path))
        u.listen()
        r = subprocess.run(serve_argv(models["A"], f"ipc://{path}"), capture_output=True,
                           text=True, timeout=STARTUP_TIMEOUT_S)
    assert r.returncode == 2 and "in use" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT])
def test_other_signals_never_leave_a_stale_pidfile(serve: DaemonFactory, models,
                                                  tmp_path: Path, signum: int) -> None:
    pidfile = tmp_path / "tmn.pid"
    d = serve(models["A"], pidfile=pidfile)
    os.kill(d.proc.pid, signum)
    time.sleep(0.5)
    if signum == signal.SIGHUP:
        assert d.proc.poll() is None and pidfile.exists()
        assert d.terminate() == 0
    else:
        assert d.proc.wait(timeout=20) == 0
        d.returncode = 0
    assert not pidfile.exists()
