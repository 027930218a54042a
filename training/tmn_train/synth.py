"""Seedable synthetic 2-D motion at 2 kHz, in five regimes, with sensor noise.

Units are arbitrary "data units" (think pixels on a 1000 x 1000 screen) and
seconds. Each stream is ``stream_s`` seconds of one regime; regimes rotate
(stream i has regime ``i % 5``) so every regime is in every split. Within a
regime the parameters are drawn per stream.

=========  ================================================================
regime     clean motion
=========  ================================================================
cv_ou      constant velocity plus random acceleration: the acceleration is an
           Ornstein-Uhlenbeck process (time constant 0.2-0.6 s, stationary
           std 300-1500 units/s^2), velocity leaks slowly (3 s) and a soft
           spring keeps the point near the screen.
reach      minimum-jerk point-to-point reaches between random targets,
           ``p(s) = p0 + (p1 - p0)(10 s^3 - 15 s^4 + 6 s^5)``, s = t/T, with
           T 0.3-0.9 s and a dwell of 0.1-0.6 s at each target.
orbit      circular motion around a drifting centre (OU velocity), radius 40-300
           with a slow sinusoidal modulation (elliptic-like orbits), angular
           speed 1.5-7 rad/s either way.
lissajous  ``x = cx + A sin(a w t + phi)``, ``y = cy + B sin(b w t)`` with
           small integer a, b in 1..4 and w 0.6-2.5 rad/s.
bounce     a ball at 200-1500 units/s reflecting off the walls of a box
           (elastic, with a little random spin of the velocity direction).
=========  ================================================================

Sensor noise, all regimes: position ``+ N(0, sigma_p^2)`` with sigma_p drawn
in 0.2-1.5 units, velocity ``+ N(0, sigma_v^2)`` with sigma_v in 5-40 units/s
(a sensor that reports velocity, e.g. a tracker's own estimate). The clean
velocity is ``np.gradient`` of the clean position at 2 kHz (second order).
"""

from __future__ import annotations

import numpy as np

from tmn_train.data import Stream

REGIMES = ("cv_ou", "reach", "orbit", "lissajous", "bounce")
RATE = 2000.0
BOX = 1000.0


def _cv_ou(rng: np.random.Generator, n: int, dt: float) -> np.ndarray:
    tau = rng.uniform(0.2, 0.6)
    sd = rng.uniform(300.0, 1500.0)
    a = np.zeros(2)
    v = rng.normal(0.0, 300.0, 2)
    p = rng.uniform(0.3, 0.7, 2) * BOX
    out = np.empty((n, 2))
    k = np.exp(-dt / tau)
    shock = sd * np.sqrt(1 - k * k)
    noise = rng.normal(0.0, 1.0, (n, 2)) * shock
    for i in range(n):
        a = k * a + noise[i]
        d = p - 0.5 * BOX
        spring = -20.0 * d * (np.abs(d) > 0.4 * BOX)  # soft walls
        v = v + (a + spring - v / 3.0) * dt
        p = p + v * dt
        out[i] = p
    return out


def _reach(rng: np.random.Generator, n: int, dt: float) -> np.ndarray:
    out = np.empty((n, 2))
    p0 = rng.uniform(0.1, 0.9, 2) * BOX
    i = 0
    while i < n:
        dwell = int(rng.uniform(0.1, 0.6) / dt)
        out[i:i + dwell] = p0
        i += dwell
        if i >= n:
            break
        p1 = rng.uniform(0.1, 0.9, 2) * BOX
        T = rng.uniform(0.3, 0.9)
        m = int(T / dt)
        s = np.arange(1, m + 1) / m
        shape = 10 * s**3 - 15 * s**4 + 6 * s**5
        seg = p0 + (p1 - p0) * shape[:, None]
        out[i:i + m] = seg[:n - i]
        i += m
        p0 = p1
    return out


def _orbit(rng: np.random.Generator, n: int, dt: float) -> np.ndarray:
    t = np.arange(n) * dt
    r0 = rng.uniform(40.0, 300.0)
    w = rng.uniform(1.5, 7.0) * rng.choice([-1.0, 1.0])
    mod, wm = rng.uniform(0.0, 0.3), rng.uniform(0.2, 1.0)
    r = r0 * (1 + mod * np.sin(wm * t + rng.uniform(0, 2 * np.pi)))
    phase = w * t + rng.uniform(0, 2 * np.pi)
    # the centre drifts: its velocity is an OU process (1 s, std 40 units/s)
    from scipy.signal import lfilter

    k = np.exp(-dt / 1.0)
    steps = rng.normal(0.0, 40.0 * np.sqrt(1 - k * k), (n, 2))
    c_vel = lfilter([1.0], [1.0, -k], steps, axis=0)
    c = np.cumsum(c_vel, axis=0) * dt + 0.5 * BOX
    return c + r[:, None] * np.stack([np.cos(phase), np.sin(phase)], axis=1)


def _lissajous(rng: np.random.Generator, n: int, dt: float) -> np.ndarray:
    t = np.arange(n) * dt
    a, b = rng.integers(1, 5, 2)
    w = rng.uniform(0.6, 2.5)
    A, B = rng.uniform(80.0, 400.0, 2)
    phi = rng.uniform(0, 2 * np.pi)
    return np.stack([0.5 * BOX + A * np.sin(a * w * t + phi),
                     0.5 * BOX + B * np.sin(b * w * t)], axis=1)


def _bounce(rng: np.random.Generator, n: int, dt: float) -> np.ndarray:
    lo, hi = 0.05 * BOX, 0.95 * BOX
    p = rng.uniform(lo, hi, 2)
    speed = rng.uniform(200.0, 1500.0)
    ang = rng.uniform(0, 2 * np.pi)
    v = speed * np.array([np.cos(ang), np.sin(ang)])
    spin = rng.normal(0.0, 0.3, n) * np.sqrt(dt)  # slow random turning, rad
    out = np.empty((n, 2))
    for i in range(n):
        c, s = np.cos(spin[i]), np.sin(spin[i])
        v = np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])
        p = p + v * dt
        for ax in range(2):  # elastic reflection at the walls
            if p[ax] < lo:
                p[ax], v[ax] = 2 * lo - p[ax], -v[ax]
            elif p[ax] > hi:
                p[ax], v[ax] = 2 * hi - p[ax], -v[ax]
        out[i] = p
    return out


_GENERATORS = {"cv_ou": _cv_ou, "reach": _reach, "orbit": _orbit, "lissajous": _lissajous,
               "bounce": _bounce}


def generate(minutes: float, seed: int = 0, stream_s: float = 20.0,
             rate: float = RATE) -> list[Stream]:
    """``minutes`` of synthetic streams (each ``stream_s`` long, regimes rotating)."""
    if not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    total = int(round(minutes * 60.0 * rate))
    per = int(round(stream_s * rate))
    streams: list[Stream] = []
    rng = np.random.default_rng(seed)
    dt = 1.0 / rate
    i = 0
    while total > 0:
        n = min(per, total)
        total -= n
        regime = REGIMES[i % len(REGIMES)]
        r = np.random.default_rng(rng.integers(2**63))
        clean = _GENERATORS[regime](r, n, dt)
        vel = np.gradient(clean, dt, axis=0) if n > 1 else np.zeros_like(clean)
        sp, sv = r.uniform(0.2, 1.5), r.uniform(5.0, 40.0)
        pos = clean + r.normal(0.0, sp, clean.shape)
        vel = vel + r.normal(0.0, sv, vel.shape)
        t = i * (stream_s + 10.0) + np.arange(n) / rate  # 10 s between streams
        streams.append(Stream(f"synth/{i:03d}-{regime}", t, pos[:, 0], pos[:, 1], vel[:, 0],
                              vel[:, 1], meta={"regime": regime, "sigma_p": f"{sp:.3f}",
                                               "sigma_v": f"{sv:.3f}"}))
        i += 1
    return streams
