"""One client cannot slow the others (issue 13, defect 5 and its target).

A victim makes synchronous one-tick round trips, first alone, then while an
attacker process pipelines full batches (4096 ticks) of worst-case finite
ticks: every value at the edge of its valid range. Batches yield between
clients (server.hpp: jobs run in slices of kSliceNs), so the victim waits for
at most a slice, not for the attacker's whole batch. The target is a P99.9
within 2x of the baseline (a same-run ratio); CI checks a looser bound so that
a shared 2-core machine cannot make it flaky, and prints the real figure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
from serve_daemon import DaemonFactory
from test_serve import new_streams

import tmn

TARGET_RATIO = 2.0
CI_RATIO = float(os.environ.get("TMN_FAIRNESS_CI_RATIO", "10"))
ROUND_TRIPS = int(os.environ.get("TMN_FAIRNESS_ROUND_TRIPS", "4000"))

# The attacker: 4 full batches in flight, every tick at its range's edge.
_ATTACK = """
import sys, numpy as np, tmn
from tmn import _core
from tmn.protocol import MAX_BATCH, make_ticks
c = tmn.Client(sys.argv[1], timeout_s=30.0)
r = _core.input_ranges(tmn.load(sys.argv[2]).spec())
sid = int(sys.argv[3])
t, sent, got = 1.0, 0, 0
edge = lambda f, i: np.where(i % 2 == 0, r[f][1], r[f][0])
while True:
    while sent - got < 4:
        i = np.arange(MAX_BATCH)
        tt = t + i / 2000.0
        c.send(make_ticks(tt, edge("x", i), edge("y", i + 1), edge("vx", i), edge("vy", i + 1),
                          sid + (i % 64).astype(np.uint64)))
        t, sent = float(tt[-1]) + 0.0005, sent + 1
    c.recv()
    got += 1
    if got == 1:
        print("attacking", flush=True)
"""


def _round_trips(c: tmn.Client, sid: int, n: int, t0: float) -> np.ndarray:
    rtt = np.empty(n)
    for i in range(n):
        a = time.perf_counter_ns()
        rec = c.tick(t0 + i / 2000.0, np.cos(i / 100), np.sin(i / 100), 0.1, 0.1, stream=sid)
        rtt[i] = time.perf_counter_ns() - a
        assert rec["status"] == 0
    return rtt


def test_another_clients_p999_stays_near_baseline_under_worst_case_ticks(
        serve: DaemonFactory, models) -> None:
    d = serve(models["B"])
    victim, attacker = new_streams(1)[0], new_streams(64)[0]
    with d.client() as c:
        _round_trips(c, victim, 500, 1.0)  # warm up
        base = _round_trips(c, victim, ROUND_TRIPS, 2.0)
        p = subprocess.Popen([sys.executable, "-c", _ATTACK, d.endpoint, str(models["B"]),
                              str(attacker)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert p.stdout is not None and p.stdout.readline() == b"attacking\n"
            loaded = _round_trips(c, victim, ROUND_TRIPS, 10.0)
            ticks_during = c.stats()["stats"]["ticks"]
        finally:
            p.kill()
            p.wait(timeout=10)
            p.stdout.close()
            p.stderr.close()
    q = lambda a, x: float(np.percentile(a, x)) / 1e3  # noqa: E731
    ratio = q(loaded, 99.9) / q(base, 99.9)
    print(f"victim RTT us: baseline p50 {q(base, 50):.1f} p99.9 {q(base, 99.9):.1f}; "
          f"under attack p50 {q(loaded, 50):.1f} p99.9 {q(loaded, 99.9):.1f}; "
          f"p99.9 ratio {ratio:.2f} (target <= {TARGET_RATIO}); {ticks_during} ticks served")
    assert ticks_during > 10 * 4096, "the attacker was not served"
    assert ratio <= CI_RATIO
