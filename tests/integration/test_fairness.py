"""One client cannot slow the others (issue 13, defect 5 and its target).

A victim makes synchronous one-tick round trips, first alone, then while an
attacker process pipelines full batches (4096 ticks) of worst-case finite
ticks: every value at the edge of its valid range. Batches yield between
clients (server.hpp: jobs run in slices of kSliceNs), so the victim waits for
at most a slice, not for the attacker's whole batch. The target is a P99.9
within 2x of the baseline (a same-run ratio, baseline and attacked blocks
interleaved); CI checks looser bounds (p50 2x, p99 4x, p99.9 10x) so that a
shared 2-core machine cannot make it flaky, and prints the real figures.
Before slicing, the victim's p50 was 30x its baseline.
"""

from __future__ import annotations

import os
import signal
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
    """Baseline and attacked blocks alternate (the attacker is stopped with
    SIGSTOP for the baseline blocks), so that whatever else loads the machine
    weighs on both alike."""
    d = serve(models["B"], *os.environ.get("TMN_FAIRNESS_SERVE_ARGS", "").split())
    victim, attacker = new_streams(1)[0], new_streams(64)[0]
    blocks = 8
    per = ROUND_TRIPS // blocks
    base, loaded = [], []
    with d.client() as c:
        _round_trips(c, victim, 500, 1.0)  # warm up
        # nice 19: on a 2-core test machine the attacker's own CPU would otherwise
        # compete with the victim's process; the server's work for it still counts
        p = subprocess.Popen([sys.executable, "-c", _ATTACK, d.endpoint, str(models["B"]),
                              str(attacker)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=lambda: os.nice(19))
        try:
            assert p.stdout is not None and p.stdout.readline() == b"attacking\n"
            t0 = 2.0
            for _ in range(blocks):
                p.send_signal(signal.SIGSTOP)
                time.sleep(0.05)  # its requests in flight are answered
                base.append(_round_trips(c, victim, per, t0))
                p.send_signal(signal.SIGCONT)
                time.sleep(0.05)
                loaded.append(_round_trips(c, victim, per, t0 + per / 2000.0))
                t0 += 2 * per / 2000.0
            ticks_during = c.stats()["stats"]["ticks"]
        finally:
            p.kill()
            p.wait(timeout=10)
            p.stdout.close()
            p.stderr.close()
    b, l = np.concatenate(base), np.concatenate(loaded)
    q = lambda a, x: float(np.percentile(a, x)) / 1e3  # noqa: E731
    ratio = {x: q(l, x) / q(b, x) for x in (50, 99, 99.9)}
    print(f"victim RTT us ({len(b)} round trips each): baseline p50 {q(b, 50):.1f} p99 "
          f"{q(b, 99):.1f} p99.9 {q(b, 99.9):.1f}; under attack p50 {q(l, 50):.1f} p99 "
          f"{q(l, 99):.1f} p99.9 {q(l, 99.9):.1f}; ratios p50 {ratio[50]:.2f} p99 "
          f"{ratio[99]:.2f} p99.9 {ratio[99.9]:.2f} (target p99.9 <= {TARGET_RATIO}); "
          f"{ticks_during} ticks served")
    assert ticks_during > 10 * 4096, "the attacker was not served"
    # Without slicing the victim waited for whole batches: p50 went up 30x.
    assert ratio[50] <= 2.0 and ratio[99] <= 4.0 and ratio[99.9] <= CI_RATIO
