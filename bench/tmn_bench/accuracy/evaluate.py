"""``tmn-bench accuracy``: how accurate are A, B and the baselines on held-out data,
and how sure are we (bench/README.md, "The accuracy benchmark").

It trains nothing. For each ``--data`` source it rebuilds the held-out split
the models were trained with (from the first model's ``provenance.config``),
replays every piece through the C++ engine as its own stream, once per model
and precision, and scores every predictor on the same ticks with the
held-out scoring path training uses too (``tmn_train.scoring``): those where
no model is warming and every horizon lies inside the piece.

Predictors: constant velocity (``p + v h`` from the measured tick, no engine),
Kalman-only (the engine's prior, from the replay's candidates), a ridge
regression from the recent path fitted on the source's train split
(tmn_bench.baselines.ridge, the classical anchor), and every model in FP32 and
INT8. Metrics: tmn_train.scoring and tmn_bench.accuracy.metrics.
Statistics (B against A, against its own Kalman prior and against the
ridge fit, at the headline horizon, in ``--precision``): tmn_bench.accuracy.stats. Targets:
tmn_bench.targets, MET or MISSED, per seed.

Several artifacts of one system are seeds. B artifacts are paired with A
artifacts in the order given (B_i with A_i); with a single A every B is
compared with it. ``baselines`` (``--baseline``) are models of the same system
that the models are compared with one to one, in the order given, with the
same statistics: active selection against uniform sampling at equal steps
(issue 10). It needs the training package (its data loaders).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import tmn
from tmn_bench import targets as tg
from tmn_bench.accuracy import metrics, stats
from tmn_bench.baselines import ridge
from tmn_bench.common import Log, load_average, machine_info
from tmn_bench.report import HEADERS, QUANTILES, target_lines
from tmn_bench.results import (AccuracyResult, AccuracySettings, Comparison, DatasetResult,
                               ErrorDistribution, GateSummary, GroupTail, LatencySummary,
                               ModelEntry,
                               MseRatio, Percentiles, PredictorMetrics, SeedSummary, SeedTarget,
                               ratio)
from tmn_train import scoring
from tmn_train.config import Config, of_artifact
from tmn_train.pipeline import Pieces, min_piece, split_streams
from tmn_train.sources import load_sources

PRECISIONS = ("fp32", "int8")
WARMING = int(tmn.Verdict.warming)
TANGENT_HALF_WIDTH_MS = 5.0  # central difference of the true direction of motion
EXAMPLE_SECONDS = 1.5        # the example-trajectory plot's stretch
REPLAY_ROUNDS = 10           # slices in which the engines take turns (replay_all)
RIDGE = "ridge"              # the fitted linear baseline's predictor name
# fields that must agree between models for one held-out split to serve them all
SPLIT_FIELDS = ("sample_rate_hz", "window_ms", "horizon_ms", "horizon_step_ms", "max_gap_ms",
                "data.split", "data.split_mode", "data.velocity_window", "data.highpass_ms")


class AccuracyError(ValueError):
    """A model set or data source that cannot be evaluated (the message says why)."""


@dataclass
class Entrant:
    """One model artifact under test."""

    label: str   # "A0", "B2": system and training seed ("B2 baseline" for a baseline)
    path: Path
    model: tmn.Model
    seed: int | None
    baseline: bool = False


@dataclass
class HeldOut(Pieces):
    """The pieces of one split of one source."""

    data: str = ""
    split: str = ""


@dataclass
class PlotData:
    """What the plots need besides the JSON: raw arrays of one data set."""

    data: str
    horizons_ms: list[float]
    e_headline: dict[str, np.ndarray]               # predictor -> errors at the headline
    stage_ns: dict[str, np.ndarray]                 # "B0 int8" -> [N, 5]
    example: dict[str, Any] = dataclasses.field(default_factory=dict)


# -- models and data ------------------------------------------------------------------

def load_entrants(paths: list[Path], baseline: bool = False) -> list[Entrant]:
    """Load and label the artifacts (as baselines: labels end in
    ``tmn_bench.targets.BASELINE``); refuse ones without a training config."""
    out: list[Entrant] = []
    seen: dict[str, int] = {}
    for p in paths:
        m = tmn.load(p)
        of_artifact(m.config, str(p))  # the held-out split is rebuilt from it
        seed = m.config["provenance"].get("seed")
        base = f"{m.system}{seed if seed is not None else ''}"
        seen[base] = seen.get(base, 0) + 1
        label = base if seen[base] == 1 else f"{base}#{seen[base]}"
        out.append(Entrant(label + (tg.BASELINE if baseline else ""), Path(p), m, seed, baseline))
    return out


def split_config(entrants: list[Entrant]) -> Config:
    """The first model's training config, after checking every model agrees on
    what shapes the held-out split and the horizons."""
    cfgs = [of_artifact(e.model.config, str(e.path)) for e in entrants]
    for e, c in zip(entrants[1:], cfgs[1:]):
        for f in SPLIT_FIELDS:
            if c.get(f) != cfgs[0].get(f):
                raise AccuracyError(f"{e.path}: {f} = {c.get(f)!r} but {entrants[0].path} has "
                                    f"{cfgs[0].get(f)!r}; models compared on one held-out "
                                    "split must agree on it")
    return cfgs[0]


def held_out(spec: str, cfg: Config, split: str) -> tuple[HeldOut, HeldOut]:
    """The ``split`` pieces of one ``--data`` source (``all``: every stream whole),
    and its train pieces (what the ridge baseline is fitted on), each keeping the
    pieces long enough for a window and the farthest horizon."""
    streams = load_sources([spec], cfg)
    splits = split_streams(streams, cfg)
    return (_pieces(spec, cfg, split, streams if split == "all" else splits[split]),
            _pieces(spec, cfg, "train", splits["train"]))


def _pieces(spec: str, cfg: Config, split: str, pieces: list[Any]) -> HeldOut:
    min_len = min_piece(cfg)
    pieces = [s for s in pieces if len(s) >= min_len]
    if not pieces:
        raise AccuracyError(f"--data {spec}: no {split} piece is longer than a window plus "
                            f"the farthest horizon ({min_len} ticks)")
    return HeldOut(**vars(Pieces.of(pieces)), data=spec, split=split)


def replay_all(entrants: list[Entrant], h: HeldOut, rounds: int = REPLAY_ROUNDS,
               step: Log = lambda _: None) -> dict[str, dict[str, tmn.Replay]]:
    """Every model in every precision replays every piece as its own engine stream,
    with the candidate paths. The recording is cut into ``rounds`` consecutive
    slices and the engines take turns slice by slice (each keeps its streams
    between slices), so a burst of load on a shared machine slows every model
    alike and the latency ratios stay fair; the answers are those of one replay."""
    engines = {(e.label, p): scoring.engine_for(e.model, h, p)
               for e in entrants for p in PRECISIONS}
    ids = h.tick_piece.astype(np.uint64)
    cuts = np.linspace(0, len(h.t), rounds + 1).astype(int)
    parts: dict[tuple[str, str], list[tmn.Replay]] = {k: [] for k in engines}
    for r in range(rounds):
        s = slice(cuts[r], cuts[r + 1])
        order = list(engines.items()) if r % 2 == 0 else list(engines.items())[::-1]
        for key, eng in order:
            parts[key].append(eng.replay(h.t[s], h.pos[s, 0], h.pos[s, 1], h.vel[s, 0],
                                         h.vel[s, 1], ids[s], candidates=True))
        step(f"{h.data}: replay round {r + 1}/{rounds}")
    out: dict[str, dict[str, tmn.Replay]] = {e.label: {} for e in entrants}
    for (label, p), reps in parts.items():
        out[label][p] = tmn.Replay(**{
            f.name: (sum(getattr(x, f.name) for x in reps) if f.name == "ok" else
                     np.concatenate([getattr(x, f.name) for x in reps]))
            for f in dataclasses.fields(tmn.Replay)})
    return out


def pairs(entrants: list[Entrant]) -> list[tuple[Entrant, Entrant]]:
    """(A, B) pairs: B_i with A_i, or every B with the only A (baselines aside)."""
    a = [e for e in entrants if e.model.system == "A" and not e.baseline]
    b = [e for e in entrants if e.model.system == "B" and not e.baseline]
    if not a or not b:
        return []
    if len(a) == 1:
        return [(a[0], x) for x in b]
    if len(a) != len(b):
        raise AccuracyError(f"{len(a)} System A and {len(b)} System B models: give one A, or "
                            "as many A as B (paired in the order given)")
    return list(zip(a, b))


def baseline_pairs(entrants: list[Entrant]) -> list[tuple[Entrant, Entrant]]:
    """(baseline, model) pairs, one to one in the order given; none without baselines."""
    base = [e for e in entrants if e.baseline]
    new = [e for e in entrants if not e.baseline]
    if not base:
        return []
    if len(base) != len(new):
        raise AccuracyError(f"{len(new)} models and {len(base)} baselines: --baseline takes "
                            "one baseline per model (compared in the order given)")
    for b, n in zip(base, new):
        if b.model.system != n.model.system:
            raise AccuracyError(f"{n.path} is System {n.model.system} but its baseline "
                                f"{b.path} is System {b.model.system}")
    return list(zip(base, new))


def first_b(entrants: list[Entrant]) -> Entrant:
    """The first System B model (else the first model): Kalman-only's source."""
    return next((e for e in entrants if e.model.system == "B"), entrants[0])


# -- one data set ---------------------------------------------------------------------

@dataclass
class Scored:
    """One data set replayed and scored: what every part of its result reads."""

    h: HeldOut
    cfg: Config
    entrants: list[Entrant]
    runs: dict[str, dict[str, tmn.Replay]]
    ev: scoring.Evaluated
    errors: dict[str, np.ndarray]          # predictor -> [m, K]
    predictors: dict[str, PredictorMetrics]


def score(h: HeldOut, cfg: Config, entrants: list[Entrant], precision: str,
          step: Log, ridge_fit: ridge.RidgePredictor) -> Scored:
    """Replay ``h`` with every model and score every predictor on the same ticks."""
    runs = replay_all(entrants, h, step=step)
    ev = scoring.evaluated_ticks(h, cfg.horizon_ticks,
                                 [r for rr in runs.values() for r in rr.values()])
    if len(ev.idx) < 2:
        raise AccuracyError(f"--data {h.data}: fewer than 2 ticks to evaluate")
    paths = {"constant velocity": scoring.constant_velocity(h, ev, cfg.horizons_ms),
             "Kalman only": runs[first_b(entrants).label][precision].prior[ev.idx],
             RIDGE: ridge_fit.predict(h, ev.idx)}
    for e in entrants:
        for p in PRECISIONS:
            paths[f"{e.label} {p}"] = runs[e.label][p].paths[ev.idx]
    tangent = metrics.tangents(h.pos, h.offsets, ev.idx[:, None] + np.asarray(cfg.horizon_ticks),
                               cfg.ticks(TANGENT_HALF_WIDTH_MS))
    errs, out = {}, {}
    for name, pred in paths.items():
        errs[name] = scoring.errors(pred, ev.truth)
        out[name] = PredictorMetrics(
            ErrorDistribution.of(scoring.distribution(errs[name])),
            metrics.track_summary(*metrics.track_errors(pred, ev.truth, tangent)),
            scoring.jitter(pred, ev.truth, ev.idx, ev.piece))
    step(f"{h.data}: metrics of {len(paths)} predictors")
    return Scored(h, cfg, entrants, runs, ev, errs, out)


def _timed(r: tmn.Replay) -> np.ndarray:
    """Ticks past warming (a warming tick skips the gate): the ones latency counts."""
    return (r.status == int(tmn.Status.ok)) & (r.verdict != WARMING)


def latency(sc: Scored) -> dict[str, LatencySummary]:
    """Total and per-stage tick latency of every replay (C++ timing)."""
    out = {}
    for label, rr in sc.runs.items():
        for p, r in rr.items():
            good = _timed(r)
            out[f"{label} {p}"] = LatencySummary(
                Percentiles.of(r.total_ns[good]),
                {s: Percentiles.of(r.stage_ns[good, i]) for i, s in enumerate(tmn.STAGES)})
    return out


def coverages(sc: Scored) -> dict[str, list[float]]:
    """Per replay of a model with an uncertainty radius, the share of its errors
    within the radius, per horizon."""
    out = {}
    for label, rr in sc.runs.items():
        for p, r in rr.items():
            radius = r.radius[sc.ev.idx]
            if np.isfinite(radius).any():
                out[f"{label} {p}"] = scoring.coverage(radius, sc.errors[f"{label} {p}"])
    return out


MAX_GROUPS = 24  # more groups than this (one per stream of a recording, say): no table


def piece_group(name: str) -> str:
    """The group a piece belongs to, from its name: the regime of a synthetic
    stream (``synth/003-reach#val`` -> ``reach``), else the name's second part
    (the LASA shape, the EyeLink recording, the file's stream)."""
    base = name.split("#", 1)[0]
    if base.startswith("synth/") and "-" in base:
        return base.split("-", 1)[1]
    parts = base.split("/")
    return parts[1] if len(parts) > 1 else parts[0]


def group_tails(sc: Scored, predictors: list[str]) -> dict[str, GroupTail]:
    """Per group of pieces, each predictor's P99 at the headline horizon and its
    share of the pooled tail (the errors above the predictor's P99 over all
    groups); empty with one group or more than MAX_GROUPS."""
    group = np.array([piece_group(n) for n in sc.h.names])[sc.ev.piece]
    names = sorted(set(group))
    if not 1 < len(names) <= MAX_GROUPS:
        return {}
    out = {}
    heads = {k: sc.errors[k][:, -1] for k in predictors}
    tails = {k: e > np.percentile(e, 99) for k, e in heads.items()}
    for g in names:
        m = group == g
        out[g] = GroupTail(int(m.sum()),
                           {k: float(np.percentile(e[m], 99)) for k, e in heads.items()},
                           {k: float(np.mean(m[t])) for k, t in tails.items()})
    return out


def gates(sc: Scored) -> dict[str, GateSummary]:
    """System B's gate in every replay, with the jitter that its switches add."""
    out = {}
    idx, piece, truth = sc.ev.idx, sc.ev.piece, sc.ev.truth
    for e in sc.entrants:
        if e.model.system != "B":
            continue
        for p, r in sc.runs[e.label].items():
            sw = metrics.gate_switches(r.verdict[idx], idx, piece)
            keep = ~(sw | np.r_[sw[1:], False])  # the pairs around a switch left out
            out[f"{e.label} {p}"] = metrics.gate_summary(
                r.verdict[idx], r.cert[idx], scoring.errors(r.prior[idx], truth)[:, -1],
                scoring.errors(r.proposal[idx], truth)[:, -1], int(sw.sum()),
                scoring.jitter(r.paths[idx[keep]], truth[keep], idx[keep], piece[keep])[-1])
    return out


def comparisons(sc: Scored, precision: str, resamples: int, block_s: float, resample_by: str,
                seed: int, lat: dict[str, LatencySummary], step: Log) -> list[Comparison]:
    """B against its A, against its own Kalman prior and against the ridge fit, at the
    headline."""
    h, idx = sc.h, sc.ev.idx
    block = (stats.blocks(idx, h.offsets, sc.cfg.ticks(block_s * 1000.0))
             if resample_by == "block" else np.unique(sc.ev.piece, return_inverse=True)[1].ravel())
    out = []
    for a, b in pairs(sc.entrants):
        new = sc.errors[f"{b.label} {precision}"][:, -1]
        prior = scoring.errors(sc.runs[b.label][precision].prior[idx], sc.ev.truth)[:, -1]
        for base_label, base in ((a.label, sc.errors[f"{a.label} {precision}"][:, -1]),
                                 (f"Kalman only ({b.label}'s prior)", prior),
                                 (RIDGE, sc.errors[RIDGE][:, -1])):
            c = dataclasses.replace(stats.compare(base, new, block, resamples, seed,
                                                  unit=resample_by), new=b.label, base=base_label)
            if base_label == a.label:
                c = dataclasses.replace(c, latency_p999_ratio=ratio(
                    lat[f"{b.label} {precision}"].total_ns["p99.9"],
                    lat[f"{a.label} {precision}"].total_ns["p99.9"]))
            out.append(c)
            step(f"{h.data}: {b.label} vs {base_label}")
    for base, new in baseline_pairs(sc.entrants):
        out.append(dataclasses.replace(stats.compare(
            sc.errors[f"{base.label} {precision}"][:, -1],
            sc.errors[f"{new.label} {precision}"][:, -1], block, resamples, seed,
            unit=resample_by), new=new.label, base=base.label))
        step(f"{h.data}: {new.label} vs {base.label}")
    return out


def dataset_targets(sc: Scored, d: DatasetResult) -> list[SeedTarget]:
    """The accuracy targets of one data set, per seed (tmn_bench.targets)."""
    hl, prec = f"{d.headline_ms:g} ms", d.precision
    out: list[SeedTarget] = []
    for c in d.comparisons:
        out += tg.comparison_targets(c, prec, hl)
    for e in sc.entrants:
        g = d.gate.get(f"{e.label} {prec}")
        if g is not None:
            out += tg.gate_targets(e.label, g, prec)
    out += [tg.int8_target(e.label, d.int8_over_fp32_mse[e.label].headline, hl)
            for e in sc.entrants]
    for e in sc.entrants:
        c = d.coverage.get(f"{e.label} {prec}")
        if c is not None:
            out += tg.coverage_targets(e.label, c, prec)
    out += [tg.jitter_target(f"{b.label} vs {a.label}",
                             d.predictors[f"{b.label} {prec}"].jitter[-1],
                             d.predictors[f"{a.label} {prec}"].jitter[-1], hl)
            for a, b in pairs(sc.entrants)]
    out += [tg.selection_overhead_target(new.label, selection_share(new))
            for _, new in baseline_pairs(sc.entrants)]
    return out


def selection_share(e: Entrant) -> float | None:
    """Selection time over training time in the model's training history
    (provenance.history: ``selection_seconds`` of each epoch's ``seconds``);
    None when the history has no selection time (uniform sampling)."""
    hist = e.model.config["provenance"].get("history") or []
    sel = sum(h.get("selection_seconds", 0.0) for h in hist)
    train = sum(h["seconds"] for h in hist) - sel
    return sel / train if sel > 0 and train > 0 else None


def evaluate_dataset(spec: str, entrants: list[Entrant], cfg: Config, *, split: str = "test",
                     precision: str = "int8", resamples: int = 1000, block_s: float = 1.0,
                     resample_by: str = "block", seed: int = 0,
                     step: Log = lambda _: None) -> tuple[DatasetResult, PlotData]:
    """Every metric, statistic and target of one ``--data`` source."""
    h, train = held_out(spec, cfg, split)
    step(f"{spec}: {len(h.t):,} {split} ticks in {len(h.names)} pieces")
    fitted = ridge.fit(train, cfg.sample_rate_hz, cfg.ticks(cfg.window_ms), cfg.horizon_ticks)
    sc = score(h, cfg, entrants, precision, step, fitted)
    lat, gate = latency(sc), gates(sc)
    ratios = {}
    for e in entrants:
        dist = {p: scoring.distribution(sc.errors[f"{e.label} {p}"]) for p in PRECISIONS}
        ratios[e.label] = MseRatio(**scoring.mse_ratio(dist["int8"], dist["fp32"]))
    d = DatasetResult(
        data=spec, split=split, pieces=len(h.names), ticks=int(len(h.t)),
        evaluated_ticks=int(len(sc.ev.idx)), horizons_ms=cfg.horizons_ms,
        headline_ms=cfg.horizons_ms[-1], precision=precision,
        kalman_only_from=first_b(entrants).label, predictors=sc.predictors, gate=gate,
        latency=lat, int8_over_fp32_mse=ratios,
        comparisons=comparisons(sc, precision, resamples, block_s, resample_by, seed, lat, step),
        targets=[], plan_criteria=[], coverage=coverages(sc),
        groups=group_tails(sc, ["Kalman only", RIDGE] + [f"{e.label} {precision}"
                                                        for e in entrants]))
    d = dataclasses.replace(d, targets=dataset_targets(sc, d), plan_criteria=[
        tg.plan_criteria(c, d.gate[f"{c.new} {precision}"]) for c in d.comparisons
        if not c.base.startswith("Kalman only") and c.base != RIDGE
        and not c.base.endswith(tg.BASELINE)])
    plot = PlotData(spec, cfg.horizons_ms, {k: v[:, -1] for k, v in sc.errors.items()},
                    {f"{label} {p}": r.stage_ns[_timed(r)]
                     for label, rr in sc.runs.items() for p, r in rr.items()},
                    example_stretch(sc, precision))
    return d, plot


def example_stretch(sc: Scored, precision: str) -> dict[str, Any]:
    """A stretch of ``EXAMPLE_SECONDS`` of one piece for the trajectory plot: the one
    with the most B fallbacks, else the one where the first B's headline error peaks."""
    h, idx, truth, cfg = sc.h, sc.ev.idx, sc.ev.truth, sc.cfg
    b = first_b(sc.entrants)
    r = sc.runs[b.label][precision]
    n = cfg.ticks(EXAMPLE_SECONDS * 1000.0)
    fell = np.isin(r.verdict[idx], metrics.FALLBACKS)
    weight = fell.astype(float) if fell.any() else np.linalg.norm(
        r.paths[idx, -1] - truth[:, -1], axis=-1)
    centre = int(idx[int(np.argmax(np.convolve(weight, np.ones(min(n, len(weight))), "same")))])
    p = int(np.searchsorted(h.offsets, centre, side="right") - 1)
    lo = max(int(h.offsets[p]), centre - n // 2)
    hi = min(int(h.offsets[p + 1]), lo + n + cfg.horizon_ticks[-1])
    sel = idx[(idx >= lo) & (idx < hi - cfg.horizon_ticks[-1])]
    return {
        "piece": h.names[p], "t0": float(h.t[lo]),
        "truth": h.pos[lo:hi], "ticks": sel - lo,
        "paths": {e.label: sc.runs[e.label][precision].paths[sel] for e in sc.entrants},
        "fallback": np.isin(r.verdict[sel], metrics.FALLBACKS),
        "b_label": b.label,
    }


def seed_summary(datasets: list[DatasetResult]) -> list[SeedSummary]:
    """Per data set and target kind, the values over seeds: min, mean, max, and
    how many seeds met it."""
    out = []
    for d in datasets:
        kinds: dict[str, list[SeedTarget]] = {}
        for t in d.targets:
            kinds.setdefault(t.kind, []).append(t)
        for kind, ts in kinds.items():
            v = np.array([t.value for t in ts if t.value is not None], dtype=float)
            v = v[np.isfinite(v)]
            out.append(SeedSummary(
                d.data, kind, ts[0].limit, ts[0].op, len(ts), sum(t.status == "MET" for t in ts),
                float(v.min()) if len(v) else None, float(v.mean()) if len(v) else None,
                float(v.max()) if len(v) else None))
    return out


# -- the whole run --------------------------------------------------------------------

def run(model_paths: list[Path], data: list[str], *, split: str = "test",
        precision: str = "int8", resamples: int = 1000, block_s: float = 1.0,
        resample_by: str = "block", seed: int = 0, baselines: list[Path] | None = None,
        log: Log = print) -> tuple[AccuracyResult, list[PlotData]]:
    """``tmn-bench accuracy``: every data set, plus plot data."""
    from tqdm import tqdm

    entrants = load_entrants(model_paths) + load_entrants(baselines or [], baseline=True)
    cfg = split_config(entrants)
    # refuses an unpairable set before any work; a step per comparison
    n_comparisons = 2 * len(pairs(entrants)) + len(baseline_pairs(entrants))
    machine = machine_info()
    datasets, plots = [], []
    with tqdm(total=len(data) * (2 + REPLAY_ROUNDS + n_comparisons), desc="tmn-bench accuracy",
              unit="step", disable=None) as bar:
        def step(msg: str) -> None:
            bar.update(1)
            bar.set_postfix_str(msg[-60:])
            log(msg)

        for spec in data:
            d, p = evaluate_dataset(spec, entrants, cfg, split=split, precision=precision,
                                    resamples=resamples, block_s=block_s,
                                    resample_by=resample_by, seed=seed, step=step)
            datasets.append(d)
            plots.append(p)
    result = AccuracyResult(
        benchmark="accuracy", machine=dataclasses.replace(machine, load_average_end=load_average()),
        settings=AccuracySettings(split, precision, resamples, resample_by, block_s, seed,
                                  TANGENT_HALF_WIDTH_MS),
        models=[ModelEntry(e.label, str(e.path), e.model.system, e.seed,
                           e.model.config["provenance"].get("data"),
                           e.model.config["provenance"].get("git_sha")) for e in entrants],
        datasets=datasets, seed_summary=seed_summary(datasets))
    return result, plots


def format_ci(ci: list[float] | None) -> str:
    """A 95 % interval as "lo-hi" (n/a without one)."""
    return "n/a" if not ci else f"{ci[0]:.3f}-{ci[1]:.3f}"


def _p(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2g}"


def _dataset_lines(d: DatasetResult) -> list[str]:
    out = ["", f"  {d.data} ({d.split}): {d.evaluated_ticks:,} evaluated ticks of "
           f"{d.ticks:,}, {d.pieces} pieces; at {d.headline_ms:g} ms, data units",
           f"    {'predictor':<20}{'MSE':>12}" + "".join(f"{h:>10}" for h in HEADERS[:-1])
           + f"{'jitter':>10}"]
    for name, x in d.predictors.items():
        e = x.errors
        out.append(f"    {name:<20}{e.mse[-1]:>12.5g}"
                   + "".join(f"{e[q][-1]:>10.4g}" for q in QUANTILES) + f"{x.jitter[-1]:>10.4g}")
    for k, g in d.gate.items():
        win = "n/a" if g.fallback_win_rate is None else f"{g.fallback_win_rate:.3f}"
        out.append(f"    gate {k}: pass rate {g.pass_rate:.4f}, cert mean {g.cert_mean:.4g} "
                   f"max {g.cert_max:.4g}, fallbacks {sum(g.fallbacks.values())}, fallback "
                   f"win rate {win}")
    for c in d.comparisons:
        out.append(f"    {c.new} vs {c.base}: P99 ratio {c.p99_ratio:.3f} (CI95 "
                   f"{format_ci(c.p99_ratio_ci95)}), MSE ratio {c.mse_ratio:.3f} (CI95 "
                   f"{format_ci(c.mse_ratio_ci95)}), block t-test p "
                   f"{_p(c.per_block.t_test_p)}, Cliff's delta {c.cliffs_delta:.3f}")
    return out + ["    targets", *target_lines(d.targets, indent="      ")]


def format_summary(result: AccuracyResult) -> str:
    """The terminal summary of ``tmn-bench accuracy`` (the report has everything)."""
    m = result.machine
    out = ["tmn-bench accuracy",
           f"  machine : {m.cpu}, {m.cores} cores; tmn {m.tmn_version} ({m.tmn_git_sha})",
           "  models  : " + ", ".join(f"{x.label}={x.path}" for x in result.models)]
    for d in result.datasets:
        out += _dataset_lines(d)
    return "\n".join(out)
