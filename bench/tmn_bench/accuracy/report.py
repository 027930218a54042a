"""The markdown report and PNG plots of ``tmn-bench accuracy``
(tmn_bench.accuracy.evaluate).

``write_report(result, plots, folder)`` writes ``folder/accuracy.md`` and, per
data set ``i``, ``error_cdf_i.png``, ``error_vs_horizon_i.png``,
``latency_stages_i.png`` and ``trajectory_i.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tmn.engine import STAGES
from tmn_bench import report
from tmn_bench.accuracy.evaluate import PlotData, format_ci
from tmn_bench.results import AccuracyResult, DatasetResult


def _shown(d: DatasetResult) -> list[str]:
    """Predictors drawn and tabulated first: the baselines and every model at the
    comparison precision."""
    return ["constant velocity", "Kalman only", "ridge"] + [
        k for k in d.predictors if k.endswith(f" {d.precision}")]


def _first_of_each_system(names: list[str]) -> list[str]:
    """The first A and the first B (seed pair 0): more lines would hide the rest."""
    return [next(k for k in names if k[0] == s) for s in "AB" if any(k[0] == s for k in names)]


def cdf_points(values: np.ndarray, points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(x, F(x)) of the empirical CDF at ``points`` evenly spaced ranks (files stay
    small whatever the number of ticks; the largest value is always included)."""
    v = np.sort(values)
    k = np.unique(np.linspace(1, len(v), min(points, len(v))).astype(int))
    return v[k - 1], k / len(v)


def exceedance_points(values: np.ndarray, points: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """(x, share of values >= x) at ranks spaced evenly on a log scale, down to the
    single largest value, for log-log tail plots."""
    v = np.sort(values)
    k = np.unique(np.geomspace(1, len(v), min(points, len(v))).astype(int))
    return v[len(v) - k], k / len(v)


def plot_error_cdf(d: DatasetResult, p: PlotData, path: Path) -> Path:
    """Empirical CDFs of the headline error, one line per predictor."""
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in _shown(d):
        x, f = cdf_points(np.maximum(p.e_headline[name], np.finfo(float).tiny))
        ax.plot(x, f, label=name,
                lw=1.0 if name[0] in "AB" else 1.6, ls="-" if name[0] in "AB" else "--")
    ax.set_xscale("log")
    ax.set_xlabel(f"error at {d.headline_ms:g} ms (data units)")
    ax.set_ylabel("fraction of ticks")
    ax.axhline(0.99, color="grey", lw=0.6, ls=":")
    ax.set_title(f"{d.data} ({d.split}): error CDF at {d.headline_ms:g} ms, "
                 f"{d.evaluated_ticks:,} ticks")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return report.save_figure(fig, path)


def plot_error_vs_horizon(d: DatasetResult, path: Path) -> Path:
    """P50, P99 and RMSE of every shown predictor against the horizon."""
    plt = report.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
    for ax, key in zip(axes, ("p50", "p99", "rmse")):
        for name in _shown(d):
            e = d.predictors[name].errors
            ax.plot(d.horizons_ms, e.rmse if key == "rmse" else e[key], marker=".", label=name,
                    ls="-" if name[0] in "AB" else "--")
        ax.set_xlabel("horizon (ms)")
        ax.set_title(f"{key.upper()} error (data units)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{d.data} ({d.split})")
    return report.save_figure(fig, path)


def plot_latency_stages(d: DatasetResult, p: PlotData, path: Path) -> Path:
    """For the first A and the first B at the comparison precision, the share of
    ticks slower than x for every stage and the total (log-log, so P99 and P99.9
    are readable); C++ timings of the replays above, on this machine."""
    plt = report.pyplot()
    names = _first_of_each_system([k for k in p.stage_ns if k.endswith(f" {d.precision}")])
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False,
                             sharey=True)
    for ax, name in zip(axes[0], names):
        s = p.stage_ns[name].astype(float)
        for i, stage in enumerate([*STAGES, "total"]):
            x, share = exceedance_points(np.maximum(s[:, i] if i < len(STAGES)
                                                    else s.sum(axis=1), 1.0))
            ax.step(x, share, where="post", label=stage,
                    color="k" if stage == "total" else None)
        for q in (1e-2, 1e-3):
            ax.axhline(q, color="grey", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ns")
        ax.set_title(f"{name}: per-stage tick time")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share of ticks slower (dotted: P99, P99.9)")
    axes[0][0].legend(fontsize=8, loc="lower left")
    return report.save_figure(fig, path)


def plot_trajectory(d: DatasetResult, p: PlotData, path: Path) -> Path:
    """A stretch of one held-out piece: the true path, the first A's and the first
    B's predicted headline point at every tick, a few whole predicted paths, and
    B's fallbacks."""
    plt = report.pyplot()
    ex = p.example
    fig, ax = plt.subplots(figsize=(7, 6))
    truth = ex["truth"]
    ax.plot(truth[:, 0], truth[:, 1], color="0.3", lw=1.2, label="measured path")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = _first_of_each_system(list(ex["paths"]))
    step = max(len(ex["ticks"]) // 6, 1)
    for c, label in zip(colours, labels):
        paths = ex["paths"][label]
        ax.plot(paths[:, -1, 0], paths[:, -1, 1], color=c, lw=0.8, alpha=0.8,
                label=f"{label}: predicted {d.headline_ms:g} ms point")
        for i in range(0, len(paths), step):
            start = truth[ex["ticks"][i]]
            ax.plot(np.r_[start[0], paths[i, :, 0]], np.r_[start[1], paths[i, :, 1]],
                    color=c, lw=1.6, alpha=0.5)
    fb = ex["fallback"]
    if fb.any():
        pts = ex["paths"][ex["b_label"]][fb, -1]
        ax.scatter(pts[:, 0], pts[:, 1], marker="x", color="red", s=14,
                   label=f"{ex['b_label']} fell back to the prior ({int(fb.sum())} ticks)")
    ax.set_title(f"{d.data}: {ex['piece']} from t = {ex['t0']:.2f} s\n"
                 f"(thick: whole predicted paths every {step} ticks)"
                 + ("" if fb.any() else "; no fallback in this stretch"))
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside the data
    return report.save_figure(fig, path)


def _headline_rows(d: DatasetResult) -> list[list[object]]:
    rows = []
    for name, m in d.predictors.items():
        e, t = m.errors, m.track
        rows.append([name, e.mse[-1], *(e[c][-1] for c in report.COLUMNS), t.along_mean[-1],
                     t.along_rms[-1], t.cross_rms[-1], m.jitter[-1]])
    return rows


def _accuracy_tables(d: DatasetResult) -> list[str]:
    return [f"### Accuracy at {d.headline_ms:g} ms (data units)", "",
            report.table(["predictor", "MSE", *report.HEADERS,
                          "along bias", "along RMS", "cross RMS", "jitter"], _headline_rows(d)),
            "", "Along bias < 0: the prediction lags the truth. Jitter: RMS tick-to-tick change "
            "of the predicted point beyond the true motion.", "",
            "### P99 error by horizon", "",
            report.table(["predictor"] + [f"{h:g} ms" for h in d.horizons_ms],
                         [[n] + d.predictors[n].errors["p99"] for n in _shown(d)]), ""]


def _gate_table(d: DatasetResult) -> list[str]:
    if not d.gate:
        return []
    rows = [[k, g.pass_rate, g.cert_mean, g.cert_max, *g.fallbacks.values(),
             g.fallback_win_rate, g.fallback_mse_prior, g.fallback_mse_network, g.switches,
             d.predictors[k].jitter[-1], g.jitter_without_switches] for k, g in d.gate.items()]
    fallbacks = list(next(iter(d.gate.values())).fallbacks)
    return ["### System B's gate", "",
            report.table(["model", "pass rate", "mean cert", "max cert",
                          *(f.removeprefix("fallback_") for f in fallbacks),
                          "fallback win rate", "fallback MSE prior", "fallback MSE network",
                          "switches", "jitter", "jitter without switches"], rows),
            "", "Certificates in output units. Win rate: share of fallbacks where the "
            "prior's error was below the network's own path (n/a: the gate never fell "
            "back on these ticks). Switches: ticks whose verdict differs from the tick "
            f"before, where the served path jumps; jitter at {d.headline_ms:g} ms with and "
            "without the tick pairs around them.", ""]


def _group_table(d: DatasetResult) -> list[str]:
    if not d.groups:
        return []
    who = list(next(iter(d.groups.values())).p99)
    rows = [[g, t.ticks, *(t.p99[k] for k in who), *(t.tail_share[k] for k in who)]
            for g, t in d.groups.items()]
    return [f"### Where the tail lives ({d.headline_ms:g} ms)", "",
            report.table(["group", "ticks", *(f"{k} P99" for k in who),
                          *(f"{k} tail share" for k in who)], rows),
            "", "Groups of pieces (a synthetic regime, a LASA shape, a recording): each "
            "predictor's P99 within the group, and the share of its errors above its P99 "
            "over all groups that lie in the group.", ""]


def _coverage_table(d: DatasetResult) -> list[str]:
    if not d.coverage:
        return []
    return ["### Uncertainty: coverage of the 90 % radius", "",
            report.table(["model"] + [f"{h:g} ms" for h in d.horizons_ms],
                         [[k, *c] for k, c in d.coverage.items()]),
            "", "The share of ticks whose error at each horizon lies within the radius the "
            "engine served (calibrated on the validation split; docs/uncertainty.md).", ""]


def _latency_table(d: DatasetResult) -> list[str]:
    return ["### Tick latency in these replays (C++ timing, ns)", "",
            report.table(["model", *report.HEADERS] + [f"{s} P50" for s in STAGES],
                         [[k, *(v.total_ns[q] for q in report.COLUMNS),
                           *(v.stage_ns[s]["p50"] for s in STAGES)]
                          for k, v in d.latency.items()]), ""]


def _statistics_table(d: DatasetResult) -> list[str]:
    if not d.comparisons:
        return []
    rows = [[f"{c.new} vs {c.base}", c.p99_ratio, format_ci(c.p99_ratio_ci95), c.mse_ratio,
             format_ci(c.mse_ratio_ci95), c.per_tick.t_test_p, c.per_tick.wilcoxon_p,
             c.per_tick.mann_whitney_p, c.per_block.t_test_p, c.per_block.t_test_p_new_lower,
             c.per_block.wilcoxon_p, c.cohens_d, c.cohens_dz, c.cliffs_delta,
             c.latency_p999_ratio] for c in d.comparisons]
    c0 = d.comparisons[0]
    return [f"### Statistics at {d.headline_ms:g} ms (new / base)", "",
            report.table(["pair", "P99 ratio", "CI95", "MSE ratio", "CI95", "t p (tick)",
                          "Wilcoxon p (tick)", "Mann-Whitney p", "t p (block)",
                          "t p (block, new lower)", "Wilcoxon p (block)", "Cohen's d", "d_z",
                          "Cliff's delta", "P99.9 latency ratio"], rows),
            "", "Tests are two-sided except \"new lower\" (one-sided: the new "
            "predictor's block MSE is lower; the targets use it). Per-tick tests treat "
            "autocorrelated ticks as independent and overstate the evidence; block tests "
            f"use per-block MSE over {c0.blocks:,} blocks. CIs: percentile bootstrap, "
            f"{c0.bootstrap.resamples} resamples by {c0.bootstrap.unit}. Effect sizes: negative "
            "means the new predictor has smaller errors.", ""]


def _plan_table(d: DatasetResult) -> list[str]:
    if not d.plan_criteria:
        return []
    return ["### The plan's success criteria", "",
            report.table(["pair", "1: P99 <= 0.85x A or P99.9 latency <= 0.8x A",
                          "P99 ratio", "latency ratio", "2: pass >= 90 %, cert <= 0.02",
                          "pass rate", "mean cert"],
                         [[c.pair, f"**{c.criterion_1.status}**", c.criterion_1.p99_ratio,
                           c.criterion_1.latency_p999_ratio, f"**{c.criterion_2.status}**",
                           c.criterion_2.pass_rate, c.criterion_2.cert_mean]
                          for c in d.plan_criteria]), ""]


def dataset_section(i: int, d: DatasetResult, images: dict[str, Path | None]) -> str:
    """One data set's part of the report."""
    out = [f"## {i + 1}. `{d.data}` ({d.split} split)", "",
           f"{d.ticks:,} ticks in {d.pieces} pieces; {d.evaluated_ticks:,} evaluated "
           f"(no model warming, every horizon inside its piece). Statistics and targets "
           f"use **{d.precision.upper()}**; Kalman-only is {d.kalman_only_from}'s prior.", "",
           *_accuracy_tables(d), *_group_table(d), *_gate_table(d), *_coverage_table(d),
           *_latency_table(d), *_statistics_table(d),
           *_plan_table(d), "### Targets", "", report.targets_table(d.targets), ""]
    for key, title in (("cdf", "Error CDF"), ("horizon", "Error against horizon"),
                       ("latency", "Per-stage latency"), ("trajectory", "Example trajectory")):
        image = images.get(key)
        if image is not None:
            out.append(f"![{title}]({image.name})")
    return "\n".join(out) + "\n"


def render(result: AccuracyResult, images: list[dict[str, Path | None]]) -> str:
    """The whole markdown report."""
    s = result.settings
    out = ["# tmn-bench accuracy", "", report.machine_section(result.machine),
           f"- **settings**: split `{s.split}`, statistics on {s.precision.upper()}, "
           f"bootstrap {s.bootstrap_resamples} resamples by {s.resample_by}"
           + (f" ({s.block_s:g} s blocks)" if s.resample_by == "block" else "")
           + f", seed {s.seed}", "", "## Models", "",
           report.table(["label", "system", "seed", "trained on", "git", "path"],
                        [[m.label, m.system, m.seed, ", ".join(m.trained_on or []),
                          m.git_sha, m.path] for m in result.models]), ""]
    if result.seed_summary:
        out += ["## Summary over seeds", "",
                report.table(["data", "target", "limit", "met", "min", "mean", "max"],
                             [[r.data, r.target, f"{r.op} {report.cell(r.limit)}",
                               f"{r.met} of {r.seeds}", r.min, r.mean, r.max]
                              for r in result.seed_summary]), ""]
    for i, (d, im) in enumerate(zip(result.datasets, images)):
        out.append(dataset_section(i, d, im))
    return "\n".join(out)


def write_report(result: AccuracyResult, plots: list[PlotData], folder: Path) -> Path:
    """Plots and ``accuracy.md`` into ``folder``; returns the markdown's path."""
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for i, (d, p) in enumerate(zip(result.datasets, plots)):
        images.append({
            "cdf": plot_error_cdf(d, p, folder / f"error_cdf_{i}.png"),
            "horizon": plot_error_vs_horizon(d, folder / f"error_vs_horizon_{i}.png"),
            "latency": plot_latency_stages(d, p, folder / f"latency_stages_{i}.png"),
            "trajectory": plot_trajectory(d, p, folder / f"trajectory_{i}.png"),
        })
    md = folder / "accuracy.md"
    md.write_text(render(result, images), encoding="utf-8")
    return md
