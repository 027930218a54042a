"""Soak: tmn-serve at 100,000 ticks/s over 100 streams (issue 13, Build 4).

CI runs 60 s; the documented run is ten minutes::

    TMN_SOAK_S=600 python -m pytest tests/integration/test_soak.py -s

One batch of 100 ticks (one per stream) every millisecond, paced in real
time, 16 batches in flight. Reported: the daemon's RSS growth after the
warm-up (target < 1 MB), unanswered ticks (target 0: each tick is answered,
or refused with a status that is counted), and the round trip at the start
against the end.
"""

from __future__ import annotations

import os
import time
from collections import deque

import numpy as np
import psutil
from serve_daemon import DaemonFactory
from test_serve import new_streams

from tmn.protocol import make_ticks

SECONDS = float(os.environ.get("TMN_SOAK_S", "60"))
RATE = 100_000          # ticks per second
STREAMS = 100
BATCHES_PER_S = RATE // STREAMS
IN_FLIGHT = 16
WARMUP_S = min(10.0, SECONDS / 6)
RSS_TARGET = 1 << 20


def test_soak_holds_rate_memory_and_latency(serve: DaemonFactory, models) -> None:
    d = serve(models["B"])
    proc = psutil.Process(d.proc.pid)
    ids = np.array(new_streams(STREAMS), dtype=np.uint64)
    phase = np.linspace(0, 2 * np.pi, STREAMS, endpoint=False)
    sent = answered = refused = 0
    rtt: list[tuple[float, int]] = []  # (seconds since start, ns)
    rss_after_warmup = rss_peak = 0
    pending: deque[tuple[int, int]] = deque()
    with d.client(timeout_s=10.0) as c:
        start = time.perf_counter()
        batch = 0
        while True:
            now = time.perf_counter() - start
            if now >= SECONDS and not pending:
                break
            due = now < SECONDS and batch < now * BATCHES_PER_S + 1
            if due and len(pending) < IN_FLIGHT:
                t = 1.0 + batch / BATCHES_PER_S
                w = t + phase
                seq = c.send(make_ticks(np.full(STREAMS, t), np.cos(w), np.sin(w), -np.sin(w),
                                        np.cos(w), ids))
                pending.append((seq, time.perf_counter_ns()))
                batch += 1
                sent += STREAMS
                continue
            if pending:
                r = c.recv()
                seq, t_sent = pending.popleft()
                assert r.seq == seq
                answered += len(r.records)
                refused += int((r.records["status"] != 0).sum())
                rtt.append((now, time.perf_counter_ns() - t_sent))
            else:
                time.sleep(0.0002)
            if not rss_after_warmup and now >= WARMUP_S:
                rss_after_warmup = proc.memory_info().rss
            if rss_after_warmup and batch % 1000 == 0:
                rss_peak = max(rss_peak, proc.memory_info().rss)
        elapsed = time.perf_counter() - start
        rss_end = proc.memory_info().rss  # before stats: its first call imports psutil
        st = c.stats()["stats"]
    growth = max(rss_peak, rss_end) - rss_after_warmup
    times = np.array([x[0] for x in rtt])
    ns = np.array([x[1] for x in rtt], dtype=np.float64)
    first = ns[(times >= WARMUP_S) & (times < WARMUP_S + 10)]
    last = ns[times >= max(WARMUP_S, SECONDS - 10)]
    pct = lambda a, q: float(np.percentile(a, q)) / 1e3  # noqa: E731
    print(f"soak {SECONDS:.0f} s: {sent} ticks sent at {sent / elapsed:.0f}/s, {answered} "
          f"answered, {refused} refused, {sent - answered} unanswered; RSS after warm-up "
          f"{rss_after_warmup / 2**20:.1f} MB, growth {growth / 1024:.0f} KB (target < 1024 KB); "
          f"RTT us start p50 {pct(first, 50):.0f} p99 {pct(first, 99):.0f} p99.9 "
          f"{pct(first, 99.9):.0f}, end p50 {pct(last, 50):.0f} p99 {pct(last, 99):.0f} "
          f"p99.9 {pct(last, 99.9):.0f}; dropped_replies {st['dropped_replies']}")
    assert answered == sent and refused == 0
    assert st["ticks_ok"] >= sent and st["dropped_replies"] == 0
    assert sent / elapsed >= 0.5 * RATE, "the client could not hold half the rate"
    assert growth < RSS_TARGET
    assert pct(last, 50) < 3 * pct(first, 50) + 200
