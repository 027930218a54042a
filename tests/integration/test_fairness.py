"""One client cannot slow the others (issue 13, defect 5 and its target).

A victim makes synchronous one-tick round trips, first alone, then while an
attacker process pipelines full batches (4096 ticks) of worst-case finite
ticks: every value at the edge of its valid range. Batches yield between
clients (server.hpp: jobs run in slices of kSliceNs), so the victim waits for
at most a slice (or one tick, when a tick is longer), not for the attacker's
whole batch. Before slicing, the victim's p50 was 30x its baseline.

Two models. "edges": the test model, on which those ticks are cheap (the gate
certifies them in ~440 touched nonzeros, ~1 us). "gate_limit": a model inside
every load bound chosen so that range-edge ticks drive the gate to its limit
(eps at its minimum, the largest budget, lambda next to 1/4, an output scale
of 1e-5 that makes the attacker's paths huge in output units), and an
attacker whose 64 streams sweep their position range at 0.9 of the velocity
bound: every attacker tick runs the gate until its largest work budget or its
wall-clock guard (kGateGuardNs, 0.5 ms) stops it, uncertified (since the
register kernel of issue 15 the budget comes first, ~0.36 ms a tick here), so
one attacker tick is several slices long and a victim's request can wait
behind one.

The target is a P99.9 within 2x of the baseline (a same-run ratio, baseline
and attacked blocks interleaved). CI checks the bounds in CI_BOUNDS, set with
margin above what a loaded 2-core machine measured (docs/reliability.md has
the runs), and prints the real figures. A percentile also passes when it is
at most EXCESS_US above its baseline: p50 by two attacker ticks at the gate's
limit (2 x (guard + slice), 1.1 ms: a tick is never cut, so a ~100 us round
trip behind one is several times its baseline), p99 by 6 ms and p99.9 by
10 ms. On a quiet 2-core machine (baseline p99 ~0.2 ms) the attacked p99 and
p99.9 are 2.4 to 5.5 ms with either attacker, 12 to 16 times the baseline:
the loop is busy on one core, and the victim, libzmq's I/O thread and the
attacker share the other (docs/reliability.md). The issue's 2x p99.9 target
holds only on a machine whose own noise is at that scale; CI checks what
holds on both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pathlib import Path

import numpy as np
import pytest
from serve_daemon import HORIZONS, DaemonFactory
from test_serve import new_streams

import tmn
from tmn import _core
from tmn.testing import random_model

TARGET_RATIO = 2.0
# per model: the victim's RTT ratios, attacked over baseline, (p50, p99, p99.9),
# and the excess over the baseline (us) that passes whatever the ratio
EXCESS_US = (2 * (_core.GATE_GUARD_NS + 50_000) / 1e3, 6_000.0, 10_000.0)
CI_BOUNDS = {"edges": ((2.0, 3.0, 4.0), EXCESS_US), "gate_limit": ((6.0, 6.0, 6.0), EXCESS_US)}
CI_SCALE = float(os.environ.get("TMN_FAIRNESS_CI_SCALE", "1"))  # loosen on a slower machine
ROUND_TRIPS = int(os.environ.get("TMN_FAIRNESS_ROUND_TRIPS", "4000"))


def gate_limit_model(folder: Path) -> Path:
    """A System B model inside every load bound on which range-edge ticks run
    the gate until its budget or its guard stops it."""
    F = len(tmn.FEATURES["B"])
    return random_model(folder, system="B", seed=1, weight_scale=0.3, horizons_ms=HORIZONS["B"],
                        gate={"eps": _core.MIN_GATE_EPS, "budget": _core.MAX_GATE_BUDGET,
                              "lambda": 0.2499, "threshold": 1e30},
                        normalisation={"mean": [0.0] * F, "std": [1.0] * F,
                                       "output_scale": [1e-5, 1e-5]})

# The attacker: argv[6] batches in flight of argv[4] ticks over 64 streams (argv[5]:
# "edges", every value at its range's edge, each stream at a corner; "sweep",
# each stream sweeping its position range back and forth at 0.9 of the
# velocity bound, whose prior path stays huge, tick after tick).
_ATTACK = """
import sys, numpy as np, tmn
from tmn import _core
from tmn.protocol import make_ticks
c = tmn.Client(sys.argv[1], timeout_s=60.0)
r = _core.input_ranges(tmn.load(sys.argv[2]).spec())
sid, n, mode, depth = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
t, sent, got, k0 = 1.0, 0, 0, 0
edge = lambda f, i: np.where(i % 2 == 0, r[f][1], r[f][0])
L, v = 0.9 * r["x"][1], 0.9 * r["vx"][1]
def sweep(t, sign):
    ph = np.mod(v * t, 4 * L)
    up = ph < 2 * L
    return sign * np.where(up, ph - L, 3 * L - ph), sign * np.where(up, v, -v)
while True:
    while sent - got < depth:
        i = k0 + np.arange(n)
        tt = t + np.arange(n) / 2000.0
        if mode == "edges":
            x, y, vx, vy = edge("x", i), edge("y", i + 1), edge("vx", i), edge("vy", i + 1)
        else:
            sign = np.where(i % 2 == 0, 1.0, -1.0)
            (x, vx), (y, vy) = sweep(tt, sign), sweep(tt + 0.3, -sign)
        c.send(make_ticks(tt, x, y, vx, vy, sid + (i % 64).astype(np.uint64)))
        t, sent, k0 = float(tt[-1]) + 0.0005, sent + 1, k0 + n
    c.recv()
    got += 1
    if got == 1:
        print("attacking", flush=True)
"""


def _ticks(c: tmn.Client) -> int:
    return int(c.stats()["stats"]["ticks"])


def _settle(c: tmn.Client, attacking: bool, batch: int) -> None:
    """Wait (bounded) until the attacker's requests in flight are answered
    (the server's tick count stops moving), or until it is served again after
    SIGCONT (a nice-19 process on a loaded machine can take a while)."""
    deadline, last = time.monotonic() + 5.0, _ticks(c)
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = _ticks(c)
        if (now >= last + batch) if attacking else (now == last):
            return
        if not attacking:
            last = now


def _round_trips(c: tmn.Client, sid: int, n: int, t0: float) -> np.ndarray:
    rtt = np.empty(n)
    for i in range(n):
        a = time.perf_counter_ns()
        rec = c.tick(t0 + i / 2000.0, np.cos(i / 100), np.sin(i / 100), 0.1, 0.1, stream=sid)
        rtt[i] = time.perf_counter_ns() - a
        assert rec["status"] == 0
    return rtt


@pytest.mark.parametrize("model", ["edges", "gate_limit"])
def test_another_clients_p999_stays_near_baseline_under_worst_case_ticks(
        serve: DaemonFactory, models, tmp_path: Path, model: str) -> None:
    """Baseline and attacked blocks alternate (the attacker is stopped with
    SIGSTOP for the baseline blocks), so that whatever else loads the machine
    weighs on both alike."""
    folder = models["B"] if model == "edges" else gate_limit_model(tmp_path / "gate_limit")
    d = serve(folder, *os.environ.get("TMN_FAIRNESS_SERVE_ARGS", "").split())
    victim, attacker = new_streams(1)[0], new_streams(64)[0]
    blocks = 8
    per = ROUND_TRIPS // blocks
    base, loaded = [], []
    with d.client() as c:
        _round_trips(c, victim, 500, 1.0)  # warm up
        # nice 19: on a 2-core test machine the attacker's own CPU would otherwise
        # compete with the victim's process; the server's work for it still counts
        # (gate_limit: 4 batches of 256 ticks in flight, ~0.14 s of work each,
        # so that the loop stays busy however late the attacker gets a CPU, and
        # not niced: it needs almost no CPU of its own)
        batch = 4096 if model == "edges" else 256
        args = [str(batch), "edges" if model == "edges" else "sweep", "4"]
        p = subprocess.Popen([sys.executable, "-c", _ATTACK, d.endpoint, str(folder),
                              str(attacker), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=lambda: os.nice(19 if model == "edges" else 0))
        try:
            assert p.stdout is not None and p.stdout.readline() == b"attacking\n"
            t0, attack_s, in_blocks = 2.0, 0.0, 0
            for _ in range(blocks):
                p.send_signal(signal.SIGSTOP)
                _settle(c, False, batch)
                base.append(_round_trips(c, victim, per, t0))
                p.send_signal(signal.SIGCONT)
                _settle(c, True, batch)
                a, k0 = time.perf_counter(), _ticks(c)
                loaded.append(_round_trips(c, victim, per, t0 + per / 2000.0))
                attack_s += time.perf_counter() - a
                in_blocks += _ticks(c) - k0 - per  # the attacker's, during the block
                t0 += 2 * per / 2000.0
            st = c.stats()["stats"]
            ticks_during = st["ticks"]
        finally:
            p.kill()
            p.wait(timeout=10)
            p.stdout.close()
            p.stderr.close()
    b, l = np.concatenate(base), np.concatenate(loaded)
    q = lambda a, x: float(np.percentile(a, x)) / 1e3  # noqa: E731
    ratio = {x: q(l, x) / q(b, x) for x in (50, 99, 99.9)}
    gate = st["latency_ns"]["gate"]
    bound = tuple(CI_SCALE * x for x in CI_BOUNDS[model][0])
    excess = CI_BOUNDS[model][1]
    print(f"{model}: victim RTT us ({len(b)} round trips each): baseline p50 {q(b, 50):.1f} "
          f"p99 {q(b, 99):.1f} p99.9 {q(b, 99.9):.1f}; under attack p50 {q(l, 50):.1f} p99 "
          f"{q(l, 99):.1f} p99.9 {q(l, 99.9):.1f}; ratios p50 {ratio[50]:.2f} p99 "
          f"{ratio[99]:.2f} p99.9 {ratio[99.9]:.2f} (CI bounds {bound} or +{excess} us, "
          f"target p99.9 <= "
          f"{TARGET_RATIO}); {ticks_during} ticks served, gate p50 {gate['p50'] / 1e3:.1f} us, "
          f"verdicts {st['verdicts']}")
    attacked = ticks_during - 2 * ROUND_TRIPS - 500  # the attacker's ticks
    if model == "gate_limit":
        print(f"gate_limit: {attacked} attacker ticks (~{attacked * gate['p50'] / 1e9:.2f}"
              f" s of gate work), {in_blocks} of them during the attacked blocks, which took "
              f"{attack_s:.2f} s")
    if model == "edges":
        assert attacked > 10 * 4096, "the attacker was not served"
    else:  # the attacker's ticks ran the gate to its limit: budget or guard
        assert attacked > 1000, "the attacker was not served"
        assert st["verdicts"]["fallback_uncertified"] >= 0.9 * attacked - 64 * 5
        assert gate["p90"] >= 0.4 * _core.GATE_GUARD_NS
        # round robin: a tick of the attacker between two of the victim's requests.
        # (The turn used to go to a request appended just as the job before it
        # retired, so the victim, whose next request came in while its reply
        # went out, was served ~10 times per attacker tick when the machine's
        # scheduling brought it in first, and its figures then measured no
        # attack. Whether the old code fails this depends on that scheduling.)
        assert in_blocks >= 0.5 * ROUND_TRIPS, in_blocks
    # Without slicing the victim waited for whole batches: p50 went up 30x.
    for x, r, e in zip((50, 99, 99.9), bound, excess):
        assert ratio[x] <= r or q(l, x) - q(b, x) <= e, (x, ratio)
