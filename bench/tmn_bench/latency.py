"""``tmn-bench latency``: the engine and the serve benchmarks in one run, one report.

It runs ``tmn-bench engine`` (:func:`tmn_bench.engine.run_engine_bench`) and
then ``tmn-bench serve`` (:func:`tmn_bench.serve.run_serve_bench`) on the same
model folder, in one invocation, and gathers them into one result:

* ``engine`` and ``serve``: each benchmark's own results, unchanged (``serve``
  is skipped, with the reason, with ``--skip-serve``);
* ``ratios``: the engine's same-run ratios (against onnxruntime, PyTorch eager
  and the bare GRU step) as ``engine/<key>``, and the serve ratios (against the
  naive pyzmq+onnxruntime server and the echo floor) as ``serve/<key>``;
* ``targets``: the engine's, then the serve benchmark's (SKIPPED, with the
  reason, when it did not run), then the plan's per-tick budget: the full INT8
  tick at P99.9 within 0.9 ms.

``write_report`` writes ``latency.md`` with ``latency_stages.png`` and
``serve_rtt.png``; a quick run (smaller samples) says so in every output.
bench/README.md explains every number.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

import tmn
from tmn_bench import report
from tmn_bench import serve as bs
from tmn_bench.common import Log, quiet
from tmn_bench.engine import latency_rows, run_engine_bench
from tmn_bench.report import COLUMNS, HEADERS, QUANTILES, format_us
from tmn_bench.results import (EngineResult, LatencyResult, Percentiles, ServerNotRun,
                               ServerRun, ServeResult, Skipped, to_json)
from tmn_bench.targets import plan_budget_target, scale_targets, serve_targets

# --quick: the sizes of the CLI tests (tests/bench). Enough to exercise every
# path in well under a minute; far too few samples for a tail (P99.9 of 200
# round trips is the 2nd largest).
QUICK_ENGINE = {"ticks": 20_000, "steps": 2_000, "torch_steps": 1_000}
QUICK_SERVE = {"requests": 200, "warmup": 20, "throughput_s": 0.1}
QUICK_NOTE = ("QUICK RUN (--quick): small samples for a smoke test; the tails (P99.9, "
              "max) rest on a handful of samples. Do not quote these numbers.")
SKIP_SERVE_REASON = "--skip-serve: engine benchmark only"


def run_latency_bench(model_dir: Path, source: str, *, quick: bool = False,
                      engine_options: dict[str, Any] | None = None,
                      serve_options: dict[str, Any] | None = None,
                      layout: bs.CoreLayout | None = None, skip_serve: str | None = None,
                      log: Log = quiet) -> LatencyResult:
    """The engine benchmark, then the serve benchmark, on ``model_dir``.

    ``engine_options`` and ``serve_options`` are keyword arguments of
    :func:`run_engine_bench` and :func:`tmn_bench.serve.run_serve_bench`
    (their defaults otherwise; with ``quick``, the ``QUICK_*`` sizes, which the
    options override). ``layout`` defaults to :func:`tmn_bench.serve.core_layout`'s.
    A ``skip_serve`` reason skips the serve benchmark; its ratios are then None
    and its targets SKIPPED.
    """
    engine_kw = {**(QUICK_ENGINE if quick else {}), **(engine_options or {})}
    serve_kw = {**(QUICK_SERVE if quick else {}), **(serve_options or {})}
    if quick:
        log(QUICK_NOTE)
    log("engine benchmark")
    engine = run_engine_bench(tmn.load(model_dir), source, log=log, **engine_kw)
    serve: ServeResult | Skipped
    if skip_serve is None:
        log("serve benchmark")
        serve = bs.run_serve_bench(model_dir, source, log=log,
                                   layout=layout or bs.core_layout(None, None), **serve_kw)
        serve_ratios, serve_target_list = serve.ratios, serve.targets
    else:
        serve = Skipped(skip_serve)
        # every server skipped with the reason: each serve target is listed as SKIPPED
        servers: dict[str, ServerRun | ServerNotRun] = {
            s.name: ServerNotRun("skipped", s.description, skip_serve) for s in bs.SERVERS}
        case = bs.headline_case(bs.throughput_cases(
            serve_kw.get("batch", bs.run_serve_bench.__kwdefaults__["batch"])))
        serve_ratios = bs.serve_ratios(servers, case)
        serve_target_list = [*serve_targets(servers, serve_ratios, case),
                             *scale_targets(servers, list(bs.MODES), serve_ratios.echo_of, None,
                                           skip_serve)]
    return LatencyResult(
        benchmark="latency", quick=quick, machine=engine.machine, model=engine.model, engine=engine, serve=serve,
        ratios={**{f"engine/{k}": v for k, v in to_json(engine.ratios).items()},
                **{f"serve/{k}": v for k, v in to_json(serve_ratios).items()}},
        targets=[*engine.targets, *serve_target_list, plan_budget_target(engine)])


# ---------------------------------------------------------------------------
# Text summary, markdown and plots


def format_latency_summary(r: LatencyResult) -> str:
    """The lines printed after the engine and serve tables: the plan budget and
    the count of targets per status."""
    plan = r.targets[-1]
    lines = ["tmn-bench latency: engine and serve benchmarks, one model, one run"]
    if r.quick:
        lines.append(f"  {QUICK_NOTE}")
    if isinstance(r.serve, Skipped):
        lines.append(f"  serve benchmark SKIPPED: {r.serve.reason}")
    lines += [
        *report.target_lines([plan], indent="  "),
        f"  targets: {report.count_text(r.targets)}",
    ]
    return "\n".join(lines)


def write_report(r: LatencyResult, folder: Path) -> list[Path]:
    """Write ``latency.md`` and its PNGs into ``folder``; the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pngs = [plot_stages(r, folder / "latency_stages.png")]
    if isinstance(r.serve, ServeResult):
        pngs.append(plot_serve_rtt(r.serve, r, folder / "serve_rtt.png"))
    md = folder / "latency.md"
    md.write_text(format_latency_markdown(r, [p.name for p in pngs]), encoding="utf-8")
    return [md, *pngs]


def _positive_or_nan(values: list[float]) -> list[float]:
    """A log axis cannot show 0 ns (a stage below one clock quantum): leave it out."""
    return [v if v > 0 else math.nan for v in values]


def _plot_title(r: LatencyResult, what: str) -> str:
    quick = "  [QUICK RUN: smoke-test sample sizes]" if r.quick else ""
    return f"{what}\n{r.machine.cpu}, {r.machine.date}{quick}"


def plot_stages(r: LatencyResult, path: Path) -> Path:
    """``latency_stages.png``: P50..P99.9 of the full tick and of every stage,
    INT8 and FP32 side by side, log y axis."""
    plt = report.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True, layout="constrained")
    x = np.arange(len(QUANTILES))
    for ax, precision in zip(axes, ("int8", "fp32")):
        e = r.engine.engine[precision]
        series = [("full tick", e.total_ns)] + [(s, e.stage_ns[s]) for s in tmn.STAGES]
        for name, pct in series:
            ax.plot(x, _positive_or_nan([pct[k] for k in QUANTILES]), marker="o",
                    label=name, linewidth=2.5 if name == "full tick" else 1.2)
        ax.set_yscale("log")
        ax.set_xticks(x, [k.upper() for k in QUANTILES])
        ax.set_title(f"{precision.upper()} (C++ timing, {e.timed_ticks:,} ticks, "
                     f"stages of {e.stage_timed_ticks:,})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ns per tick (log)")
    axes[1].legend(loc="upper left", fontsize="small")
    fig.suptitle(_plot_title(r, "tmn engine: full tick and stages, percentiles"))
    return report.save_figure(fig, path)


def plot_serve_rtt(s: ServeResult, r: LatencyResult, path: Path) -> Path:
    """``serve_rtt.png``: P50..P99.9 of the single-tick round trip of every server
    that ran (tmn-serve modes, echo floors, naive), log y axis."""
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    x = np.arange(len(QUANTILES))
    for name, srv in s.servers.items():
        if isinstance(srv, ServerRun):
            ax.plot(x, [srv.round_trip_ns[k] / 1e3 for k in QUANTILES], marker="o",
                    label=name, linestyle="--" if name.startswith("echo") else "-")
    ax.set_yscale("log")
    ax.set_xticks(x, [k.upper() for k in QUANTILES])
    ax.set_ylabel("round trip, us (log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    n = s.workload.requests
    ax.set_title(_plot_title(r, f"tmn-serve round trip, one tick per request ({n:,} each)"),
                 fontsize="medium")
    return report.save_figure(fig, path)


def _one_line(text: str) -> str:
    """The first line of a reason (a failed server's carries its log tail)."""
    return text.strip().splitlines()[0] if text.strip() else ""


def _engine_table(e: EngineResult) -> str:
    rows = []
    for row in latency_rows(e):
        label = f"{row.parent} {row.label}" if row.parent else row.label
        if row.label.startswith("full tick"):
            label = (f"**{row.label.replace(' (C++', '** (C++')}" if " (C++" in row.label
                     else f"**{row.label}**")
        if row.p is None:
            rows.append([label, f"skipped: {_one_line(row.note)}", *[None] * 5])
        else:
            rows.append([label, row.p.n, *(report.format_ns(row.p[k]) for k in COLUMNS)])
    return report.table(["latency, ns", "n", *HEADERS], rows)


def _engine_notes(e: EngineResult) -> list[str]:
    out = []
    for p in ("int8", "fp32"):
        t, o = e.engine[p], e.replay_off[p]
        out.append(f"- replay throughput {p.upper()}: {t.replay_ticks_per_s / 1e6:.2f} M "
                   f"ticks/s with timing {t.timing} (wall clock, output arrays included); "
                   f"timed {t.timed_ticks:,} of {t.ticks:,} ticks (the rest were warming "
                   f"up), the stages of {t.stage_timed_ticks:,}; with timing off "
                   f"{o.ticks_per_s / 1e6:.2f} M ticks/s, {o.ticks_per_cpu_s / 1e6:.2f} M "
                   f"ticks per CPU second")
    for key, b in (("the fast-math floor", e.floor), ("onnxruntime", e.onnxruntime),
                   ("torch", e.torch)):
        if not isinstance(b, Skipped):
            out.append(f"- {key} computed the same network as the engine's FP32 step: max "
                       f"abs h difference {b.max_abs_h_diff_vs_engine_fp32:.2e} after "
                       f"{b.steps:,} carried steps")
    return out


def _any_rate_table(e: EngineResult) -> str:
    rows = [[f"{a.rate_hz:g}", "velocity" if a.velocity else "position-only", f"{a.ticks:,}",
             f"{a.p99_error:.4g}", f"{a.p99_over_native:.3f}", report.format_ns(a.tick_ns_p50)]
            for a in e.any_rate]
    return "\n".join([
        "The workload's motion sampled at the model's own rate and at other report rates "
        "(the same streams), replayed in INT8; each answer's longest-horizon point against "
        "the noise-free position (tmn_bench.any_rate).", "",
        report.table(["rate, Hz", "sensor", "ticks", "P99 error", "/ native", "tick P50, ns"],
                     rows)])


def _side(p: Percentiles | None) -> list[str]:
    """Server-side P50, P99.9 and max, in us."""
    return ["-"] * 3 if p is None else [format_us(v) for v in (p["p50"], p["p99.9"], p.max)]


def _serve_tables(s: ServeResult) -> str:
    rt_rows, tp_rows = [], []
    for name, srv in s.servers.items():
        if isinstance(srv, ServerNotRun):
            rt_rows.append([name, f"{srv.status}: {_one_line(srv.reason)}", *[None] * 8])
            continue
        rt = srv.round_trip_ns
        rt_rows.append([name, rt.n, *(format_us(rt[k]) for k in COLUMNS),
                        *_side(srv.server_side_ns)])
        for t in srv.throughput:
            tp_rows.append([name, t.case.streams, t.case.ticks_per_request,
                            None if t.ticks_per_s is None else round(t.ticks_per_s),
                            *_side(t.server_side_ns), t.error_replies])
    w = s.workload
    return "\n".join([
        f"Round trip of one tick per request, synchronous, {w.requests:,} requests after "
        f"{w.warmup_requests:,} warm-up; the server's own receive-to-send time beside it "
        "(us).", "",
        report.table(["server", "n", *HEADERS, "server-side P50",
                      "server-side P99.9", "server-side max"], rt_rows),
        *_phase_lines(s),
        "", f"Throughput, pipelined ({w.in_flight} requests in flight, "
        f"{w.throughput_seconds:g} s per run, a fresh server per run); server-side "
        "latency per request (us).", "",
        report.table(["server", "streams", "ticks/request", "ticks/s", "server-side P50",
                      "server-side P99.9", "server-side max", "error replies"], tp_rows),
    ])


def _phase_lines(s: ServeResult) -> list[str]:
    """tmn-serve's phases of those round trips (P50, us), from its stats."""
    out = [f"- {name}: wait {format_us(p['server_wait'])}, compute "
           f"{format_us(p['server_compute'])} (the engine's tick {format_us(p['tick'])}), send "
           f"{format_us(p['server_send'])}"
           for name, srv in s.servers.items()
           if isinstance(srv, ServerRun) and (p := srv.server_phases_ns) and len(p) == 4]
    return ["", "tmn-serve's phases of these round trips, P50 from its stats (us; the stats "
            "histograms are coarse, so the phases need not add up):", "", *out] if out else []


def _workload_lines(r: LatencyResult) -> list[str]:
    ew = r.engine.workload
    out = [f"- **engine**: {ew.ticks:,} ticks replayed per precision, {ew.streams} "
           f"interleaved streams at {ew.rate_hz:.0f} Hz (seed {ew.seed}); {ew.python_calls:,} "
           f"`Engine.tick` calls from Python, {ew.onnxruntime_steps:,} onnxruntime steps, "
           f"{ew.torch_steps:,} PyTorch steps, {ew.bare_gru_steps:,} bare GRU steps; all "
           f"interleaved in {ew.rounds} rounds"]
    if isinstance(r.serve, Skipped):
        return out + [f"- **serve**: SKIPPED ({r.serve.reason})"]
    sw = r.serve.workload
    cases = ", ".join(f"{c.streams}x{c.ticks_per_request}" for c in sw.throughput_cases)
    return out + [f"- **serve**: {sw.requests:,} timed round trips per server after "
                  f"{sw.warmup_requests:,} warm-up; throughput runs of "
                  f"{sw.throughput_seconds:g} s with {sw.in_flight} requests in flight for "
                  f"streams x ticks/request = {cases}; a fresh server per measurement"]


def _header_markdown(r: LatencyResult) -> list[str]:
    mod = r.model
    out = ["# tmn-bench latency", ""]
    if r.quick:
        out += [f"> **{QUICK_NOTE}**", ""]
    out += [
        "The engine benchmark and then the serve benchmark, on one model in one run. Every "
        "ratio divides numbers measured in this run. Absolute times hold for this machine "
        "only; bench/README.md explains every number.", "",
        "## Machine", "", report.machine_section(r.machine),
        f"- **load average at end**: {report.load_text(r.machine.load_average_end)}",
    ]
    if isinstance(r.serve, ServeResult):
        out.append(f"- **serve layout**: {r.serve.layout.description}")
    return out + [
        "", "## Model", "",
        f"System {mod.system}, hidden {mod.hidden}, {mod.horizons} horizons "
        f"({', '.join(f'{h:g}' for h in mod.horizons_ms)} ms); {mod.source} "
        f"(`{mod.path}`).", "", "## Workload", "", *_workload_lines(r)]


def format_latency_markdown(r: LatencyResult, pngs: list[str]) -> str:
    """``latency.md``: machine, model, sizes, engine and serve tables, ratios and
    targets; ``pngs`` are the plot file names to link."""
    out = _header_markdown(r)
    out += ["", "## Engine", "", _engine_table(r.engine), "", *_engine_notes(r.engine), "",
            "### Any report rate", "", _any_rate_table(r.engine), ""]
    if "latency_stages.png" in pngs:
        out += ["![Full tick and stage percentiles, INT8 and FP32](latency_stages.png)", "",
                "(A stage whose percentile is 0 ns, below one clock quantum, is not drawn "
                "on the log axis.)", ""]
    out += ["## Serve", ""]
    if isinstance(r.serve, Skipped):
        out += [f"**SKIPPED**: {r.serve.reason}. The serve ratios are n/a and the serve "
                "targets SKIPPED.", ""]
    else:
        out += [_serve_tables(r.serve), ""]
        if "serve_rtt.png" in pngs:
            out += ["![Round-trip percentiles per server](serve_rtt.png)", ""]
    out += [
        "## Ratios", "",
        "Same-run ratios: `engine/` from the engine benchmark (onnxruntime, PyTorch eager, "
        "the bare GRU step), `serve/` from the serve benchmark (the naive pyzmq server, the "
        "echo floor).", "",
        report.table(["ratio", "value (x)"], [[k, v] for k, v in r.ratios.items()]), "",
        "## Targets", "",
        f"**{report.count_text(r.targets)}**: the engine's, the serve benchmark's, and the "
        "plan's per-tick budget.", "",
        report.targets_table(r.targets), "",
    ]
    return "\n".join(out)

