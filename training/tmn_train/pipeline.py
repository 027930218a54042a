"""Splits, normalisation, targets and training windows.

**Splits** (``data.split`` = train/val/test fractions, ``data.split_mode``):

* ``time``: every stream is cut in time: its first 70 % is train, the next
  15 % validation, the last 15 % test (with the default fractions). Each piece
  becomes its own stream (hidden state from zero, Kalman re-initialised, as
  the engine does after a restart).
* ``stream``: whole streams go to one split: the split a source assigns (LASA:
  by demonstration), otherwise by cumulative duration in the given order.
* ``auto``: ``stream`` when the source assigned every stream a split;
  otherwise each stream long enough to cut is cut in time, and the streams
  too short to cut (whose validation or test piece would be shorter than a
  window plus the farthest horizon: the movements of a file of many short
  ones, say) go whole to the splits by cumulative duration, as in
  ``stream``. A stream shorter than a window plus the farthest horizon has no
  target at all; ``prepare`` drops it and says how many it dropped.

Nothing crosses a split boundary: windows, lanes' hidden state and targets
stay inside one piece, and the last ``horizon_ms`` of each piece has no target.

**Features** are the engine's own (cpp/include/tmn/ingest.hpp, computed by
``tmn._core.grid_features`` over each piece with the piece's Kalman prior):
translation invariant, with no absolute position. A reads the velocity and the
position's high-pass ``(p - EMA(p)) / tau``; B reads those and the prior's
posterior velocity and innovation.

**Normalisation** is fitted on the train split only: each pair of features
(x and y of one quantity) is divided by its RMS over every train tick, pooled
over the two axes, with mean 0, so that a motion and its mirror image look
alike to the network; ``output_scale`` (per axis) is the RMS of the train
targets over all horizons.

**Targets**, for a tick i and horizon ``h_k`` (``n_k = h_k * rate`` samples),
in output units (data units / ``output_scale``):

* A: ``(p_{i+n_k} - p_i) / scale`` with p the measured position;
* B: ``(p_{i+n_k} - (p̂_i + v̂_i h_k)) / scale``, the residual over the Kalman
  prior, where (p̂, v̂) is the posterior of the C++ filter
  run over the piece, exactly as the engine's stage 2 runs it.

This is what the engine's actuation inverts: A outputs ``p_i + y * scale``,
B ``p̂_i + (v̂_i h_k / scale + certified(y)) * scale``.

**Windows and lanes** (streaming training, DESIGN.md "Training/serving
parity"). Each piece is cut, from its first tick, into consecutive windows of
``window_ms`` (128 ms = 256 ticks), keeping those whose every target lies in
the piece: a piece of n ticks has ``floor((n - n_K) / W)`` windows, its
*chain*. Training runs ``batch`` (256) lanes side by side: every pass lays
all chains end to end in a random order, rotates the whole by a random offset
and cuts it into ``batch`` lanes of equal length. A lane feeds its windows to
the GRU one after the other, carrying the hidden state (truncated
back-propagation through time, one window per optimiser step); where a lane
starts, or jumps to a window that does not follow the previous one in the
same piece, its hidden state is reset to zero and that window is burn-in: it
runs without loss, exactly like the engine's warming window after a stream
(re)start. So the network is trained on hidden states carried over seconds,
as the engine carries them, not only on states 128 ms old. Validation streams
every validation piece whole, one lane per piece, which is what the engine
does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tmn import _core
from tmn_train.config import Config
from tmn_train.data import Stream

SPLITS = ("train", "val", "test")


# -- splitting -----------------------------------------------------------------------

def native_rate(streams: list[Stream]) -> float | None:
    """The median sample rate of the recordings as the sensor gave them (None for
    sources made on the model grid, such as the synthetic generator)."""
    dts = [np.diff(s.native.t) for s in streams if s.native is not None and len(s.native.t) > 1]
    return 1.0 / float(np.median(np.concatenate(dts))) if dts else None


def suggested_rate(native_hz: float, cfg: Config) -> float:
    """The lowest model rate of at least twice ``native_hz`` at which window_ms and
    horizon_step_ms are whole samples (500 Hz for 60 or 100 Hz with 128 and 50 ms)."""
    from fractions import Fraction

    step = 1
    for ms in (cfg.window_ms, cfg.horizon_step_ms):
        f = Fraction(ms).limit_denominator(1000) / 1000  # seconds
        step = step * f.denominator // np.gcd(step, f.denominator)  # rates r with r * f whole
    return float(step * max(1, int(np.ceil(2.0 * native_hz / step))))


def min_piece(cfg: Config) -> int:
    """Samples a piece needs for one tick past warming with every horizon inside it."""
    return cfg.ticks(cfg.window_ms) + cfg.horizon_ticks[-1] + 1


def split_streams(streams: list[Stream], cfg: Config) -> dict[str, list[Stream]]:
    """Pieces per split (see module docstring)."""
    mode = cfg.data.split_mode
    hinted = all(s.split in SPLITS for s in streams)
    out: dict[str, list[Stream]] = {k: [] for k in SPLITS}
    if mode == "stream" or (mode == "auto" and hinted):
        _whole(streams, cfg, out, hinted)
        return out
    if mode == "auto":  # what cannot be cut in time goes whole; the rest is cut
        shortest_share = min(cfg.data.split[1], cfg.data.split[2])
        short = [len(s) * shortest_share < min_piece(cfg) for s in streams]
        _whole([s for s, sh in zip(streams, short) if sh], cfg, out, False)
        streams = [s for s, sh in zip(streams, short) if not sh]
    f_train, f_val, _ = cfg.data.split
    for s in streams:
        n = len(s)
        a, b = int(n * f_train), int(n * (f_train + f_val))
        for k, (lo, hi) in zip(SPLITS, ((0, a), (a, b), (b, n))):
            if hi > lo:
                out[k].append(s.slice(lo, hi, split=k, suffix=f"#{k}"))
    return out


def _whole(streams: list[Stream], cfg: Config, out: dict[str, list[Stream]],
           hinted: bool) -> None:
    """Whole streams into ``out``: to the split each names (``hinted``), else by
    cumulative duration in the given order."""
    if hinted:
        for s in streams:
            out[str(s.split)].append(s)
        return
    f_train, f_val, _ = cfg.data.split
    total = sum(len(s) for s in streams)
    seen = 0
    for s in streams:
        mid = (seen + len(s) / 2) / total
        seen += len(s)
        k = "train" if mid < f_train else ("val" if mid < f_train + f_val else "test")
        out[k].append(s.slice(0, len(s), split=k))


# -- pieces and the prepared arrays of one split ------------------------------------

@dataclass
class Pieces:
    """Pieces of recordings, concatenated; ``offsets[p]:offsets[p+1]`` is piece p.
    Each piece is its own stream (the engine replays it as one)."""

    names: list[str]
    offsets: np.ndarray      # [P + 1]
    t: np.ndarray            # [N]
    pos: np.ndarray          # [N, 2] measured position
    vel: np.ndarray          # [N, 2] measured velocity

    @classmethod
    def of(cls, streams: list[Stream]) -> Pieces:
        """The streams, one piece each, in order."""
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in streams])]).astype(np.int64)
        if not streams:
            return cls([], offsets, np.zeros(0), np.zeros((0, 2)), np.zeros((0, 2)))
        return cls([s.name for s in streams], offsets, np.concatenate([s.t for s in streams]),
                   np.concatenate([s.pos for s in streams]),
                   np.concatenate([s.vel for s in streams]))

    @property
    def pieces(self) -> int:
        return len(self.names)

    @property
    def tick_piece(self) -> np.ndarray:
        """[N] the piece of every tick (the engine stream it is replayed on)."""
        return np.repeat(np.arange(self.pieces), np.diff(self.offsets))


@dataclass
class SplitArrays(Pieces):
    """Every piece of one split with what training feeds the network."""

    z: np.ndarray            # [N, 4] float32 network input, exactly as the engine's ingest
    base: np.ndarray         # [N, 2] where the path starts: A p_i, B the posterior position
    vprior: np.ndarray       # [N, 2] prior velocity: A zero, B the posterior velocity
    vbound: np.ndarray       # [N, 2] velocity at the path start (smoothness boundary)

    def piece(self, p: int) -> slice:
        return slice(int(self.offsets[p]), int(self.offsets[p + 1]))

    def chains(self, cfg: Config) -> list[np.ndarray]:
        """Per piece, the flat start indices of its consecutive windows (module docstring)."""
        w, nk = cfg.ticks(cfg.window_ms), cfg.horizon_ticks[-1]
        out = []
        for p in range(self.pieces):
            n = int(self.offsets[p + 1] - self.offsets[p])
            m = max((n - nk) // w, 0)
            out.append(self.offsets[p] + w * np.arange(m, dtype=np.int64))
        return out


Sampler = Callable[[list[np.ndarray], np.random.Generator], list[np.ndarray]]


def lanes(chains: list[np.ndarray], batch: int, w: int, rng: np.random.Generator | None,
          sampler: Sampler | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lay chains into ``batch`` lanes: (start [batch, L], reset [batch, L], valid [batch, L]).

    With ``rng`` the chains are shuffled, rotated and cut into equal lanes (training);
    without, every chain is one lane of its own (validation; ``batch`` is ignored).
    A ``sampler`` (training only) first replaces the chains by the runs of windows
    it draws with ``rng`` (tmn_train.selection). A window resets the hidden state (and
    is burn-in) where a lane starts or where it does not follow the lane's previous
    window in the same chain.
    """
    if sampler is not None and rng is not None:
        chains = sampler(chains, rng)
    chains = [c for c in chains if len(c)]
    if not chains:
        e = np.zeros((0, 0), np.int64)
        return e, e.astype(bool), e.astype(bool)
    if rng is None:
        L = max(len(c) for c in chains)
        start = np.zeros((len(chains), L), np.int64)
        valid = np.zeros((len(chains), L), bool)
        piece = np.full((len(chains), L), -1, np.int64)
        for i, c in enumerate(chains):
            start[i, :len(c)], valid[i, :len(c)], piece[i, :len(c)] = c, True, i
    else:
        order = rng.permutation(len(chains))
        seq = np.concatenate([chains[i] for i in order])
        pid = np.concatenate([np.full(len(chains[i]), i) for i in order])
        r = int(rng.integers(len(seq)))
        seq, pid = np.roll(seq, r), np.roll(pid, r)
        L = -(-len(seq) // batch)
        pad = batch * L - len(seq)
        start = np.concatenate([seq, np.zeros(pad, np.int64)]).reshape(batch, L)
        valid = np.concatenate([np.ones(len(seq), bool), np.zeros(pad, bool)]).reshape(batch, L)
        piece = np.concatenate([pid, np.full(pad, -1)]).reshape(batch, L)
    reset = np.ones_like(valid)
    reset[:, 1:] = (start[:, 1:] != start[:, :-1] + w) | (piece[:, 1:] != piece[:, :-1])
    return start, reset, valid


@dataclass
class Prepared:
    """Everything fitted on the train split, and the arrays of all three splits."""

    cfg: Config
    mean: list[float]
    std: list[float]
    output_scale: list[float]
    kalman: dict[str, float]
    splits: dict[str, SplitArrays] = field(default_factory=dict)
    raw: dict[str, list[Stream]] = field(default_factory=dict)

    def horizons_s(self) -> np.ndarray:
        return np.asarray(self.cfg.horizons_ms) / 1000.0


def normalise(feat: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """``float32((f - mean) * (1 / std))``: the engine's Normaliser, to the bit."""
    inv = 1.0 / np.asarray(std, dtype=np.float64)
    return ((feat - np.asarray(mean, dtype=np.float64)) * inv).astype(np.float32)


def grid_features(s: Stream, cfg: Config, kalman: dict[str, float]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(raw features [n, F], Kalman posterior [n, 4]) of one piece: the engine's
    ingest and prior run over it (``tmn._core.grid_features``)."""
    kp = _core.KalmanParams(kalman["q"], kalman["r_pos"], kalman["r_vel"])
    system = _core.System.A if cfg.system == "A" else _core.System.B
    f, post, _ = _core.grid_features(cfg.ingest(), system, kp, s.t, s.x, s.y, s.vx, s.vy)
    return np.asarray(f), np.asarray(post)


def fit_normalisation(raw: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """(mean, std) of the features (module docstring): mean 0; each (x, y) pair
    divided by its RMS over both axes."""
    f = np.concatenate(raw)
    rms = np.sqrt(np.mean(f.reshape(len(f), -1, 2) ** 2, axis=(0, 2)))
    rms = np.where(rms > 0, rms, 1.0)
    return [0.0] * f.shape[1], [float(v) for v in np.repeat(rms, 2)]


def build_split(pieces: list[Stream], cfg: Config, mean: list[float], std: list[float],
                kalman: dict[str, float]) -> SplitArrays:
    p = Pieces.of(pieces)
    if not pieces:
        e2 = np.zeros((0, 2))
        return SplitArrays(p.names, p.offsets, p.t, p.pos, p.vel,
                           np.zeros((0, len(mean)), np.float32), e2, e2, e2)
    raw, post = zip(*(grid_features(s, cfg, kalman) for s in pieces))
    z = normalise(np.concatenate(raw), mean, std)
    if cfg.system == "B":
        post_all = np.concatenate(post)
        base, vprior = post_all[:, :2].copy(), post_all[:, 2:].copy()
        vbound = vprior.copy()
    else:
        base, vprior, vbound = p.pos.copy(), np.zeros_like(p.pos), p.vel.copy()
    return SplitArrays(p.names, p.offsets, p.t, p.pos, p.vel, z, base, vprior, vbound)


def targets(a: SplitArrays, idx: np.ndarray, cfg: Config, scale: np.ndarray) -> np.ndarray:
    """[..., K, 2] targets in output units for the flat tick indices ``idx``."""
    n_k = np.asarray(cfg.horizon_ticks)
    h = np.asarray(cfg.horizons_ms) / 1000.0
    fut = a.pos[idx[..., None] + n_k]                                  # [..., K, 2]
    start = a.base[idx][..., None, :] + a.vprior[idx][..., None, :] * h[:, None]
    return (fut - start) / scale


def labelled(a: SplitArrays, cfg: Config) -> np.ndarray:
    """Flat indices of ticks whose every horizon lies inside their piece."""
    nk = cfg.horizon_ticks[-1]
    out = [np.arange(a.offsets[p], a.offsets[p + 1] - nk) for p in range(a.pieces)
           if a.offsets[p + 1] - a.offsets[p] > nk]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def fit_output_scale(a: SplitArrays, cfg: Config, every: int = 7) -> list[float]:
    idx = labelled(a, cfg)[::every]
    y = targets(a, idx, cfg, np.ones(2))
    rms = np.sqrt(np.mean(y.reshape(-1, 2) ** 2, axis=0))
    return [float(v) if v > 0 else 1.0 for v in rms]


def prepare(streams: list[Stream], cfg: Config, kalman: dict[str, float] | None = None,
            log=print) -> Prepared:  # type: ignore[no-untyped-def]
    """Split, tune the Kalman prior (unless given), fit normalisation on train, build arrays."""
    from tmn_train.kalman_fit import tune_kalman

    raw = split_streams(streams, cfg)
    min_len = min_piece(cfg)
    for k in SPLITS:
        kept = [s for s in raw[k] if len(s) >= min_len]
        if len(kept) < len(raw[k]):
            log(f"data: {len(raw[k]) - len(kept)} of the {len(raw[k])} {k} pieces are shorter "
                f"than a window plus the farthest horizon ({min_len} samples) and have no "
                "target: left out")
        raw[k] = kept
        if not raw[k]:
            raise ValueError(
                f"the {k} split is empty: it needs a piece of at least {min_len} samples "
                f"({min_len / cfg.sample_rate_hz:.2f} s: a window of {cfg.window_ms:g} ms and "
                f"the farthest horizon, {cfg.horizons_ms[-1]:g} ms). Add recordings (with "
                "data.split_mode: stream whole recordings go to each split), record longer "
                "streams, or lower window_ms or horizon_ms")
    if kalman is None:
        kalman = tune_kalman(raw["train"], cfg, log=log)
    mean, std = fit_normalisation([grid_features(s, cfg, kalman)[0] for s in raw["train"]])
    prep = Prepared(cfg, mean, std, [1.0, 1.0], kalman, raw=raw)
    for k in SPLITS:
        prep.splits[k] = build_split(raw[k], cfg, mean, std, kalman)
    prep.output_scale = fit_output_scale(prep.splits["train"], cfg)
    return prep
