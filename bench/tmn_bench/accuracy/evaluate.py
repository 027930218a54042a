"""``tmn-bench accuracy``: how accurate are A, B and the baselines on held-out data,
and how sure are we (bench/README.md, "The accuracy benchmark").

It trains nothing. For each ``--data`` source it rebuilds the held-out split
the models were trained with (from the first model's ``provenance.config``),
replays every piece through the C++ engine as its own stream, once per model
and precision, and scores every predictor on the same ticks: those where no
model is warming and every horizon lies inside the piece.

Predictors: constant velocity (``p + v h`` from the measured tick, no engine),
Kalman-only (the engine's prior, from the replay's candidates), and every model
in FP32 and INT8. Metrics: tmn_train.metrics. Statistics (B against A and B
against its own Kalman prior, at the headline horizon, in ``--precision``):
tmn_train.stats. Targets: the issue's and the plan's, MET or MISSED, per seed.

Several artifacts of one system are seeds. B artifacts are paired with A
artifacts in the order given (B_i with A_i); with a single A every B is
compared with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import tmn
from tmn import benchutil as bu
from tmn_train import metrics, stats
from tmn_train.config import Config, from_dict
from tmn_train.pipeline import split_streams
from tmn_train.sources import load_sources

SCHEMA_VERSION = 1
PRECISIONS = ("fp32", "int8")
VERDICTS = {v.name.rstrip("_"): int(v.value) for v in tmn.Verdict.__members__.values()}
NO_PREDICTION = 255
TANGENT_HALF_WIDTH_MS = 5.0  # central difference of the true direction of motion
EXAMPLE_SECONDS = 1.5        # the example-trajectory plot's stretch
REPLAY_ROUNDS = 10           # slices in which the engines take turns (replay_all)
# fields that must agree between models for one held-out split to serve them all
SPLIT_FIELDS = ("sample_rate_hz", "window_ms", "horizon_ms", "horizon_step_ms", "max_gap_ms",
                "data.split", "data.split_mode", "data.interpolation", "data.velocity_window")
# targets (issue 5 and the plan's success criteria)
P99_RATIO_MAX, P_MAX, KALMAN_MSE_RATIO_MAX = 0.85, 0.01, 0.7
PASS_RATE_MIN, CERT_MEAN_MAX, INT8_MSE_RATIO_MAX, LATENCY_RATIO_MAX = 0.9, 0.02, 1.02, 0.8


class AccuracyError(ValueError):
    """A model set or data source that cannot be evaluated (the message says why)."""


@dataclass
class Entrant:
    """One model artifact under test."""

    label: str   # "A0", "B2": system and training seed
    path: Path
    model: tmn.Model
    seed: int | None


@dataclass
class HeldOut:
    """The pieces of one split of one source, concatenated like SplitArrays."""

    data: str
    split: str
    names: list[str]
    offsets: np.ndarray
    t: np.ndarray
    pos: np.ndarray
    vel: np.ndarray

    @property
    def piece(self) -> np.ndarray:
        """Piece number of every tick."""
        return np.repeat(np.arange(len(self.names)), np.diff(self.offsets))


@dataclass
class PlotData:
    """What the plots need besides the JSON: raw arrays of one data set."""

    data: str
    horizons_ms: list[float]
    e_headline: dict[str, np.ndarray]               # predictor -> errors at the headline
    stage_ns: dict[str, np.ndarray]                 # "B0 int8" -> [N, 5]
    example: dict[str, Any] = dataclasses.field(default_factory=dict)


# -- models and data ------------------------------------------------------------------

def load_entrants(paths: list[Path]) -> list[Entrant]:
    """Load and label the artifacts; refuse ones without a training config."""
    out: list[Entrant] = []
    seen: dict[str, int] = {}
    for p in paths:
        m = tmn.load(p)
        prov = m.config.get("provenance") or {}
        if "config" not in prov:
            raise AccuracyError(f"{p}: provenance.config is missing; the accuracy bench needs "
                                "the training config to rebuild the held-out split "
                                "(artifacts from tmn-train fit/export have it)")
        seed = prov.get("seed")
        base = f"{m.system}{seed if seed is not None else ''}"
        seen[base] = seen.get(base, 0) + 1
        label = base if seen[base] == 1 else f"{base}#{seen[base]}"
        out.append(Entrant(label, Path(p), m, seed))
    return out


def split_config(entrants: list[Entrant]) -> Config:
    """The first model's training config, after checking every model agrees on
    what shapes the held-out split and the horizons."""
    cfgs = [from_dict(e.model.config["provenance"]["config"], where=f"{e.path} provenance")
            for e in entrants]

    def get(c: Config, dotted: str) -> Any:
        v: Any = c
        for part in dotted.split("."):
            v = getattr(v, part)
        return v

    for e, c in zip(entrants[1:], cfgs[1:]):
        for f in SPLIT_FIELDS:
            if get(c, f) != get(cfgs[0], f):
                raise AccuracyError(f"{e.path}: {f} = {get(c, f)!r} but {entrants[0].path} has "
                                    f"{get(cfgs[0], f)!r}; models compared on one held-out "
                                    "split must agree on it")
    return cfgs[0]


def held_out(spec: str, cfg: Config, split: str) -> HeldOut:
    """The ``split`` pieces of one ``--data`` source (``all``: every stream whole),
    keeping pieces long enough for a window and the farthest horizon."""
    streams = load_sources([spec], cfg)
    pieces = streams if split == "all" else split_streams(streams, cfg)[split]
    min_len = cfg.ticks(cfg.window_ms) + cfg.horizon_ticks[-1] + 1
    pieces = [s for s in pieces if len(s) >= min_len]
    if not pieces:
        raise AccuracyError(f"--data {spec}: no {split} piece is longer than a window plus "
                            f"the farthest horizon ({min_len} ticks)")
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in pieces])]).astype(np.int64)
    return HeldOut(spec, split, [s.name for s in pieces], offsets,
                   np.concatenate([s.t for s in pieces]), np.concatenate([s.pos for s in pieces]),
                   np.concatenate([s.vel for s in pieces]))


def replay_all(entrants: list[Entrant], h: HeldOut, rounds: int = REPLAY_ROUNDS,
               step: Callable[[str], None] = lambda _: None) -> dict[str, dict[str, tmn.Replay]]:
    """Every model in every precision replays every piece as its own engine stream,
    with the candidate paths. The recording is cut into ``rounds`` consecutive
    slices and the engines take turns slice by slice (each keeps its streams
    between slices), so a burst of load on a shared machine slows every model
    alike and the latency ratios stay fair; the answers are those of one replay."""
    engines = {(e.label, p): tmn.Engine(e.model, precision=p, max_streams=len(h.names))
               for e in entrants for p in PRECISIONS}
    ids = h.piece.astype(np.uint64)
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
    """(A, B) pairs: B_i with A_i, or every B with the only A."""
    a = [e for e in entrants if e.model.system == "A"]
    b = [e for e in entrants if e.model.system == "B"]
    if not a or not b:
        return []
    if len(a) == 1:
        return [(a[0], x) for x in b]
    if len(a) != len(b):
        raise AccuracyError(f"{len(a)} System A and {len(b)} System B models: give one A, or "
                            "as many A as B (paired in the order given)")
    return list(zip(a, b))


# -- one data set ---------------------------------------------------------------------

def evaluate_dataset(spec: str, entrants: list[Entrant], cfg: Config, *, split: str = "test",
                     precision: str = "int8", resamples: int = 1000, block_s: float = 1.0,
                     resample_by: str = "block", seed: int = 0,
                     step: Callable[[str], None] = lambda _: None
                     ) -> tuple[dict[str, Any], PlotData]:
    """Every metric, statistic and target of one ``--data`` source."""
    h = held_out(spec, cfg, split)
    step(f"{spec}: {len(h.t):,} {split} ticks in {len(h.names)} pieces")
    runs = replay_all(entrants, h, step=step)

    # the evaluated ticks: every model answering and warm, every horizon inside the piece
    nk = np.asarray(cfg.horizon_ticks)
    piece = h.piece
    ok = np.arange(len(h.t)) + nk[-1] < h.offsets[piece + 1]
    for rr in runs.values():
        for r in rr.values():
            ok &= (r.verdict != VERDICTS["warming"]) & (r.verdict != NO_PREDICTION)
    idx = np.flatnonzero(ok)
    if len(idx) < 2:
        raise AccuracyError(f"--data {spec}: fewer than 2 ticks to evaluate")
    target = idx[:, None] + nk[None, :]
    truth = h.pos[target]
    tangent = metrics.tangents(h.pos, h.offsets, target, cfg.ticks(TANGENT_HALF_WIDTH_MS))
    hs = np.asarray(cfg.horizons_ms) / 1000.0

    predictors: dict[str, np.ndarray] = {
        "constant velocity": h.pos[idx, None, :] + h.vel[idx, None, :] * hs[None, :, None]}
    ref = next((e for e in entrants if e.model.system == "B"), entrants[0])
    prior_of = {e.label: runs[e.label][precision].prior[idx] for e in entrants}
    predictors["Kalman only"] = prior_of[ref.label]
    for e in entrants:
        for p in PRECISIONS:
            predictors[f"{e.label} {p}"] = runs[e.label][p].paths[idx]

    result: dict[str, Any] = {
        "data": spec, "split": split, "pieces": len(h.names), "ticks": int(len(h.t)),
        "evaluated_ticks": int(len(idx)), "horizons_ms": cfg.horizons_ms,
        "headline_ms": cfg.horizons_ms[-1], "precision": precision,
        "kalman_only_from": ref.label, "predictors": {}, "gate": {}, "latency": {},
        "int8_over_fp32_mse": {}, "comparisons": [],
    }
    errs: dict[str, np.ndarray] = {}
    for name, pred in predictors.items():
        e = metrics.errors(pred, truth)
        errs[name] = e
        along, cross = metrics.track_errors(pred, truth, tangent)
        result["predictors"][name] = {**metrics.distribution(e),
                                      **metrics.track_summary(along, cross),
                                      "jitter": metrics.jitter(pred, truth, idx, piece[idx])}
    step(f"{spec}: metrics of {len(predictors)} predictors")

    for e in entrants:
        for p in PRECISIONS:
            r = runs[e.label][p]  # latency past warming (a warming tick skips the gate)
            good = (r.status == int(tmn.Status.ok)) & (r.verdict != VERDICTS["warming"])
            result["latency"][f"{e.label} {p}"] = {
                "total_ns": bu.percentiles(r.total_ns[good]),
                "stage_ns": {s: bu.percentiles(r.stage_ns[good, i])
                             for i, s in enumerate(tmn.STAGES)}}
            if e.model.system == "B":
                e_prior = metrics.errors(r.prior[idx], truth)[:, -1]
                e_net = metrics.errors(r.proposal[idx], truth)[:, -1]
                g = metrics.gate_summary(r.verdict[idx], r.cert[idx], e_prior, e_net, VERDICTS)
                # jitter with the pairs around a switch left out: what the switches add
                sw = metrics.gate_switches(r.verdict[idx], idx, piece[idx])
                keep = ~(sw | np.r_[sw[1:], False])
                g["switches"] = int(sw.sum())
                g["jitter_without_switches"] = metrics.jitter(
                    r.paths[idx[keep]], truth[keep], idx[keep], piece[idx[keep]])[-1]
                result["gate"][f"{e.label} {p}"] = g
        mse = {p: np.asarray(result["predictors"][f"{e.label} {p}"]["mse"]) for p in PRECISIONS}
        result["int8_over_fp32_mse"][e.label] = {
            "headline": float(mse["int8"][-1] / mse["fp32"][-1]),
            "all_horizons": float(mse["int8"].mean() / mse["fp32"].mean())}

    block = (stats.blocks(idx, h.offsets, cfg.ticks(block_s * 1000.0)) if resample_by == "block"
             else np.unique(piece[idx], return_inverse=True)[1].ravel())
    for a, b in pairs(entrants):
        new = errs[f"{b.label} {precision}"][:, -1]
        for base_label, base in ((a.label, errs[f"{a.label} {precision}"][:, -1]),
                                 (f"Kalman only ({b.label}'s prior)",
                                  metrics.errors(prior_of[b.label], truth)[:, -1])):
            c = stats.compare(base, new, block, resamples, seed, unit=resample_by)
            c.update({"new": b.label, "base": base_label})
            if base_label == a.label:
                la = result["latency"][f"{a.label} {precision}"]["total_ns"]["p99.9"]
                lb = result["latency"][f"{b.label} {precision}"]["total_ns"]["p99.9"]
                c["latency_p999_ratio"] = bu.ratio(lb, la)
            result["comparisons"].append(c)
            step(f"{spec}: {b.label} vs {base_label}")
    result["targets"] = targets(result, entrants)
    result["plan_criteria"] = plan_criteria(result)

    ok_code, warming = int(tmn.Status.ok), VERDICTS["warming"]
    plot = PlotData(spec, cfg.horizons_ms, {k: v[:, -1] for k, v in errs.items()},
                    {f"{e.label} {p}": r.stage_ns[(r.status == ok_code) & (r.verdict != warming)]
                     for e in entrants for p, r in runs[e.label].items()})
    plot.example = example_stretch(h, idx, truth, runs, entrants, precision, cfg)
    return result, plot


def example_stretch(h: HeldOut, idx: np.ndarray, truth: np.ndarray,
                    runs: dict[str, dict[str, tmn.Replay]], entrants: list[Entrant],
                    precision: str, cfg: Config) -> dict[str, Any]:
    """A stretch of ``EXAMPLE_SECONDS`` of one piece for the trajectory plot: the one
    with the most B fallbacks, else the one where the first B's headline error peaks."""
    b = next((e for e in entrants if e.model.system == "B"), entrants[0])
    r = runs[b.label][precision]
    n = cfg.ticks(EXAMPLE_SECONDS * 1000.0)
    fell = np.isin(r.verdict[idx], [VERDICTS["fallback_implausible"],
                                    VERDICTS["fallback_uncertified"]])
    score = fell.astype(float) if fell.any() else np.linalg.norm(
        r.paths[idx, -1] - truth[:, -1], axis=-1)
    centre = int(idx[int(np.argmax(np.convolve(score, np.ones(min(n, len(score))), "same")))])
    p = int(np.searchsorted(h.offsets, centre, side="right") - 1)
    lo = max(int(h.offsets[p]), centre - n // 2)
    hi = min(int(h.offsets[p + 1]), lo + n + cfg.horizon_ticks[-1])
    sel = idx[(idx >= lo) & (idx < hi - cfg.horizon_ticks[-1])]
    return {
        "piece": h.names[p], "t0": float(h.t[lo]),
        "truth": h.pos[lo:hi], "ticks": sel - lo,
        "paths": {e.label: runs[e.label][precision].paths[sel] for e in entrants},
        "fallback": np.isin(r.verdict[sel], [VERDICTS["fallback_implausible"],
                                             VERDICTS["fallback_uncertified"]]),
        "b_label": b.label,
    }


# -- targets --------------------------------------------------------------------------

def targets(r: dict[str, Any], entrants: list[Entrant]) -> list[dict[str, Any]]:
    """Issue 5's accuracy targets for one data set, per seed, MET or MISSED. Each is a
    :class:`tmn.benchutil.Target` dict plus ``kind`` (the target) and ``who`` (the
    model or pair), so seeds can be summarised per kind."""
    prec, hl = r["precision"], f"@{r['headline_ms']:g} ms"
    out: list[dict[str, Any]] = []

    def add(kind: str, who: str, value: float | None, limit: float, op: str, unit: str = "",
            note: str = "") -> None:
        t = bu.Target(f"{kind} [{who}]", value, limit, op, unit, note)
        out.append({**t.as_dict(), "kind": kind, "who": who})

    for c in r["comparisons"]:
        who = f"{c['new']} vs {c['base']}"
        if c["base"].startswith("Kalman only"):
            add(f"B / Kalman-only MSE {hl}", c["new"], c["mse_ratio"], KALMAN_MSE_RATIO_MAX,
                "<=", "x", f"{prec}; CI95 {format_ci(c['mse_ratio_ci95'])}")
            continue
        add(f"B / A P99 error {hl}", who, c["p99_ratio"], P99_RATIO_MAX, "<=", "x",
            f"{prec}; CI95 {format_ci(c['p99_ratio_ci95'])}")
        add("B better than A: paired p (block t-test)", who,
            c["per_block"]["t_test_p_new_lower"], P_MAX, "<=", "",
            f"one-sided, {c['blocks']} blocks; two-sided per-tick p "
            f"{c['per_tick']['t_test_p']:.2g}")
    for e in entrants:
        g = r["gate"].get(f"{e.label} {prec}")
        if g is not None:
            add("gate pass rate", e.label, g["pass_rate"], PASS_RATE_MIN, ">=", "", prec)
            add("mean certificate error", e.label, g["cert_mean"], CERT_MEAN_MAX, "<=",
                "output units", prec)
    for e in entrants:
        add(f"INT8 / FP32 MSE {hl}", e.label, r["int8_over_fp32_mse"][e.label]["headline"],
            INT8_MSE_RATIO_MAX, "<=", "x")
    return out


def plan_criteria(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's success criteria per (A, B) pair, each with a plain MET/MISSED:

    1. B's P99 error <= 0.85x A's, or B's P99.9 tick latency <= 0.8x A's;
    2. gate pass rate >= 90 % with mean certificate error <= 0.02.
    """
    out = []
    prec = r["precision"]
    for c in r["comparisons"]:
        if c["base"].startswith("Kalman only"):
            continue
        lat = c.get("latency_p999_ratio")
        acc_ok = c["p99_ratio"] <= P99_RATIO_MAX
        lat_ok = lat is not None and lat <= LATENCY_RATIO_MAX
        g = r["gate"][f"{c['new']} {prec}"]
        gate_ok = g["pass_rate"] >= PASS_RATE_MIN and g["cert_mean"] <= CERT_MEAN_MAX
        out.append({
            "pair": f"{c['new']} vs {c['base']}",
            "criterion_1": {"status": "MET" if (acc_ok or lat_ok) else "MISSED",
                            "p99_ratio": c["p99_ratio"], "latency_p999_ratio": lat},
            "criterion_2": {"status": "MET" if gate_ok else "MISSED",
                            "pass_rate": g["pass_rate"], "cert_mean": g["cert_mean"]},
        })
    return out


def seed_summary(datasets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per data set and target kind, the values over seeds: min, mean, max, and
    how many seeds met it."""
    out = []
    for d in datasets:
        kinds: dict[str, list[dict[str, Any]]] = {}
        for t in d["targets"]:
            kinds.setdefault(t["kind"], []).append(t)
        for kind, ts in kinds.items():
            v = np.array([t["value"] for t in ts if t["value"] is not None], dtype=float)
            v = v[np.isfinite(v)]
            out.append({"data": d["data"], "target": kind, "limit": ts[0]["limit"],
                        "op": ts[0]["op"], "seeds": len(ts),
                        "met": sum(t["status"] == "MET" for t in ts),
                        "min": float(v.min()) if len(v) else None,
                        "mean": float(v.mean()) if len(v) else None,
                        "max": float(v.max()) if len(v) else None})
    return out


def format_ci(ci: list[float] | None) -> str:
    """A 95 % interval as "lo-hi" (n/a without one)."""
    return "n/a" if not ci else f"{ci[0]:.3f}-{ci[1]:.3f}"


# -- the whole run --------------------------------------------------------------------

def run(model_paths: list[Path], data: list[str], *, split: str = "test",
        precision: str = "int8", resamples: int = 1000, block_s: float = 1.0,
        resample_by: str = "block", seed: int = 0,
        log: Callable[[str], None] = print) -> tuple[dict[str, Any], list[PlotData]]:
    """``tmn-bench accuracy``: every data set, as one JSON-ready dict, plus plot data."""
    from tqdm import tqdm

    entrants = load_entrants(model_paths)
    cfg = split_config(entrants)
    pairs(entrants)  # refuse an unpairable set before any work
    n_pairs = len(pairs(entrants))
    steps = len(data) * (1 + REPLAY_ROUNDS + 1 + 2 * n_pairs)
    result: dict[str, Any] = {
        "benchmark": "accuracy", "schema_version": SCHEMA_VERSION,
        "machine": bu.machine_info(),
        "settings": {"split": split, "precision": precision, "bootstrap_resamples": resamples,
                     "resample_by": resample_by, "block_s": block_s, "seed": seed,
                     "tangent_half_width_ms": TANGENT_HALF_WIDTH_MS},
        "models": [{"label": e.label, "path": str(e.path), "system": e.model.system,
                    "seed": e.seed, "trained_on": e.model.config["provenance"].get("data"),
                    "git_sha": e.model.config["provenance"].get("git_sha")}
                   for e in entrants],
        "datasets": [],
    }
    plots = []
    with tqdm(total=steps, desc="tmn-bench accuracy", unit="step", disable=None) as bar:
        def step(msg: str) -> None:
            bar.update(1)
            bar.set_postfix_str(msg[-60:])
            log(msg)

        for spec in data:
            d, p = evaluate_dataset(spec, entrants, cfg, split=split, precision=precision,
                                    resamples=resamples, block_s=block_s,
                                    resample_by=resample_by, seed=seed, step=step)
            result["datasets"].append(d)
            plots.append(p)
    result["seed_summary"] = seed_summary(result["datasets"])
    result["machine"]["load_average_end"] = bu.load_average()
    return result, plots


def format_summary(result: dict[str, Any]) -> str:
    """The terminal summary of ``tmn-bench accuracy`` (the report has everything)."""
    m = result["machine"]
    out = ["tmn-bench accuracy",
           f"  machine : {m['cpu']}, {m['cores']} cores; tmn {m['tmn_version']} "
           f"({m['tmn_git_sha']})",
           "  models  : " + ", ".join(f"{x['label']}={x['path']}" for x in result["models"])]
    for d in result["datasets"]:
        hl = d["headline_ms"]
        out += ["", f"  {d['data']} ({d['split']}): {d['evaluated_ticks']:,} evaluated ticks of "
                f"{d['ticks']:,}, {d['pieces']} pieces; at {hl:g} ms, data units",
                f"    {'predictor':<20}{'MSE':>12}{'P50':>10}{'P90':>10}{'P99':>10}"
                f"{'P99.9':>10}{'jitter':>10}"]
        for name, x in d["predictors"].items():
            out.append(f"    {name:<20}{x['mse'][-1]:>12.5g}{x['p50'][-1]:>10.4g}"
                       f"{x['p90'][-1]:>10.4g}{x['p99'][-1]:>10.4g}{x['p99.9'][-1]:>10.4g}"
                       f"{x['jitter'][-1]:>10.4g}")
        for k, g in d["gate"].items():
            win = g["fallback_win_rate"]
            out.append(f"    gate {k}: pass rate {g['pass_rate']:.4f}, cert mean "
                       f"{g['cert_mean']:.4g} max {g['cert_max']:.4g}, fallbacks "
                       f"{sum(g['fallbacks'].values())}, fallback win rate "
                       f"{'n/a' if win is None else f'{win:.3f}'}")
        for c in d["comparisons"]:
            out.append(f"    {c['new']} vs {c['base']}: P99 ratio {c['p99_ratio']:.3f} "
                       f"(CI95 {format_ci(c['p99_ratio_ci95'])}), MSE ratio "
                       f"{c['mse_ratio']:.3f} (CI95 {format_ci(c['mse_ratio_ci95'])}), "
                       f"block t-test p {_p(c['per_block']['t_test_p'])}, Cliff's delta "
                       f"{c['cliffs_delta']:.3f}")
        out.append("    targets")
        for t in d["targets"]:
            v = "n/a" if t["value"] is None else f"{t['value']:.4g}"
            out.append(f"      [{t['status']:<7}] {t['name']}: {v} {t['op']} {t['limit']:g}")
    return "\n".join(out)


def _p(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2g}"
