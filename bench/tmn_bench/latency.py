"""``tmn-bench latency``: the engine and the serve benchmarks in one run, one report.

    tmn-bench latency [--model DIR] [--json OUT] [--report DIR] [--quick] [--skip-serve]
                      [--ticks N] [--requests N] [--server-core C --client-core C] [--strict]

It runs ``tmn-bench engine`` (:func:`tmn.bench.run_engine_bench`) and then
``tmn-bench serve`` (:func:`tmn.bench_serve.run_serve_bench`) on the same model
folder, in one invocation, and gathers them into one result:

* ``engine`` and ``serve``: each benchmark's own results, unchanged (``serve``
  is ``{"status": "skipped", "reason": ...}`` with ``--skip-serve``);
* ``ratios``: the engine's same-run ratios (against onnxruntime, PyTorch eager
  and the bare GRU step) as ``engine/<key>``, and the serve ratios (against the
  naive pyzmq+onnxruntime server and the echo floor) as ``serve/<key>``;
* ``targets``: the engine's, then the serve benchmark's (SKIPPED, with the
  reason, when it did not run), then the plan's per-tick budget: the full INT8
  tick at P99.9 within 0.9 ms.

``--report DIR`` writes ``latency.md`` with ``latency_stages.png`` and
``serve_rtt.png``; ``--quick`` shrinks every sample for a smoke run and every
output says so. bench/README.md explains every number.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

import tmn
from tmn import bench_serve as bs
from tmn import benchutil as bu
from tmn import report
from tmn.engine import STAGES

SCHEMA_VERSION = 1
PLAN_BUDGET_NS = 900_000.0  # the plan's budget for one full tick, at P99.9
PLAN_BUDGET_TARGET = "full tick INT8 P99.9 <= 0.9 ms (plan budget)"
PERCENTILE_KEYS = ("p50", "p90", "p99", "p99.9")
PERCENTILE_LABELS = ("P50", "P90", "P99", "P99.9")

# --quick: the sizes of the CLI tests (tests/unit/test_bench_cli.py,
# test_bench_serve.py). Enough to exercise every path in well under a minute;
# far too few samples for a tail (P99.9 of 200 round trips is the 2nd largest).
QUICK_ENGINE = {"ticks": 20_000, "steps": 2_000, "torch_steps": 1_000}
QUICK_SERVE = {"requests": 200, "warmup": 20, "throughput_s": 0.1}
QUICK_NOTE = ("QUICK RUN (--quick): small samples for a smoke test; the tails (P99.9, "
              "max) rest on a handful of samples. Do not quote these numbers.")
SKIP_SERVE_REASON = "--skip-serve: engine benchmark only"


# ---------------------------------------------------------------------------
# CLI


def add_latency_command(sub: Any) -> None:
    """Register ``tmn-bench latency``."""
    p = sub.add_parser(
        "latency", help="engine and serve benchmarks in one run: one JSON, one markdown "
        "report with plots",
        description="Runs the engine benchmark and then the serve benchmark on the same "
        "model, prints both tables, and gathers them into one JSON and one markdown report: "
        "same-run ratios against onnxruntime, PyTorch eager and the naive pyzmq server, and "
        "every target (plus the plan's 0.9 ms per-tick budget) as MET, MISSED or SKIPPED.")
    p.add_argument("--model", type=Path, default=None,
                   help="model folder (default: the built-in model, else a random System B "
                   "model written to a temporary folder)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT",
                   help="also write every number to this JSON file")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="write DIR/latency.md, DIR/latency_stages.png and DIR/serve_rtt.png")
    p.add_argument("--quick", action="store_true",
                   help=f"small samples for a smoke run (engine {QUICK_ENGINE}, serve "
                   f"{QUICK_SERVE}); every output is labelled QUICK RUN")
    p.add_argument("--skip-serve", action="store_true",
                   help="run the engine benchmark only (the serve targets are SKIPPED)")
    p.add_argument("--ticks", type=bu.positive_int, default=None,
                   help="engine: ticks replayed per precision and bare GRU steps (default: "
                   "that of tmn-bench engine, or the --quick size)")
    p.add_argument("--requests", type=bu.positive_int, default=None,
                   help="serve: timed round trips per server (default: that of tmn-bench "
                   "serve, or the --quick size)")
    p.add_argument("--server-core", type=int, default=None,
                   help="serve: CPU of the servers' loops (default: the last usable CPU)")
    p.add_argument("--client-core", type=int, default=None,
                   help="serve: CPU of the benchmark client (default: the first usable CPU)")
    p.add_argument("--naive-script", type=Path, default=None,
                   help=f"serve: the naive server (default: {bs.NAIVE_SCRIPT} of the checkout)")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 if any target is MISSED")
    p.set_defaults(func=latency_command)


def latency_command(args: argparse.Namespace) -> int:
    """Run ``tmn-bench latency``: measure, print the tables, write the JSON and report."""
    layout = None
    if not args.skip_serve:
        try:
            layout = bs.core_layout(args.server_core, args.client_core)
        except ValueError as e:
            return _fail(str(e))
    if args.report is not None:
        try:  # refuse now, not after minutes of measuring
            report.pyplot()
        except ImportError as e:
            return _fail(f"--report: {e}")
    engine_options = {} if args.ticks is None else {"ticks": args.ticks}
    serve_options: dict[str, Any] = {"naive_script": bs.find_naive_script(args.naive_script)}
    if args.requests is not None:
        serve_options["requests"] = args.requests
    with ExitStack() as stack:
        try:  # one folder for both: tmn-serve loads the model from a folder
            folder, source = stack.enter_context(bs._model_folder(args.model))
        except (FileNotFoundError, tmn.ModelFormatError) as e:
            return _fail(f"--model: {e}")
        results = run_latency_bench(
            folder, source, quick=args.quick, engine_options=engine_options,
            serve_options=serve_options, layout=layout,
            skip_serve=SKIP_SERVE_REASON if args.skip_serve else None, log=_log)

    from tmn.bench import format_engine_report, write_json

    if results["quick"]:
        print(QUICK_NOTE + "\n")
    print(format_engine_report(results["engine"]))
    print()
    if results["serve"].get("status") == "skipped":
        print(f"tmn-bench serve: SKIPPED ({results['serve']['reason']})")
    else:
        print(bs.format_serve_report(results["serve"]))
    print()
    print(format_latency_summary(results))
    if args.json is not None:
        write_json(results, args.json)
        print(f"wrote {args.json}")
    if args.report is not None:
        for path in write_report(results, args.report):
            print(f"wrote {path}")
    failed = failed_servers(results)
    if failed:
        print(f"tmn-bench latency: FAILED servers: {', '.join(failed)}", file=sys.stderr)
        return 1
    missed = [t for t in results["targets"] if t["status"] == "MISSED"]
    return 1 if (args.strict and missed) else 0


def _fail(msg: str) -> int:
    print(f"tmn-bench latency: error: {msg}", file=sys.stderr)
    return 2


def _log(msg: str) -> None:
    print(f"[tmn-bench latency] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The run


def run_latency_bench(model_dir: Path, source: str, *, quick: bool = False,
                      engine_options: dict[str, Any] | None = None,
                      serve_options: dict[str, Any] | None = None,
                      layout: bs.CoreLayout | None = None, skip_serve: str | None = None,
                      log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """The engine benchmark, then the serve benchmark, on ``model_dir``, as one
    JSON-ready dict.

    ``engine_options`` and ``serve_options`` are keyword arguments of
    :func:`tmn.bench.run_engine_bench` and :func:`tmn.bench_serve.run_serve_bench`
    (their defaults otherwise; with ``quick``, the ``QUICK_*`` sizes, which the
    options override). ``layout`` defaults to
    :func:`tmn.bench_serve.core_layout`'s. A ``skip_serve`` reason skips the
    serve benchmark; its ratios are then None and its targets SKIPPED.
    """
    from tmn.bench import run_engine_bench  # tmn.bench imports this module

    engine_kw = {**(QUICK_ENGINE if quick else {}), **(engine_options or {})}
    serve_kw = {**(QUICK_SERVE if quick else {}), **(serve_options or {})}
    if quick:
        log(QUICK_NOTE)
    log("engine benchmark")
    engine = run_engine_bench(tmn.load(model_dir), source, log=log, **engine_kw)
    if skip_serve is None:
        log("serve benchmark")
        serve = bs.run_serve_bench(model_dir, source, log=log,
                                   layout=layout or bs.core_layout(None, None), **serve_kw)
        serve_for_targets = serve
    else:
        serve = {"status": "skipped", "reason": skip_serve}
        # the headline throughput case of the serve targets is named by the batch
        batch = serve_kw.get("batch", bs.run_serve_bench.__kwdefaults__["batch"])
        serve_for_targets = _skipped_serve(skip_serve, batch)
    machine = dict(engine["machine"])
    machine["load_average_end"] = bu.load_average()
    targets = [*engine["targets"], *serve_for_targets["targets"],
               plan_budget_target(engine).as_dict()]
    return {
        "benchmark": "latency", "schema_version": SCHEMA_VERSION, "quick": quick,
        "machine": machine, "model": engine["model"], "engine": engine, "serve": serve,
        "ratios": combined_ratios(engine["ratios"], serve_for_targets["ratios"]),
        "targets": targets,
    }


def _skipped_serve(reason: str, batch: int) -> dict[str, Any]:
    """The serve benchmark's ratios and targets when it did not run: every server
    skipped with ``reason``, so each serve target is listed as SKIPPED, never dropped."""
    r: dict[str, Any] = {
        "servers": {s.name: {"status": "skipped", "reason": reason} for s in bs.SERVERS},
        "workload": {"throughput_cases": [{"streams": s, "ticks_per_request": b}
                                          for s, b in bs.throughput_cases(batch)]},
    }
    r["ratios"] = bs.serve_ratios(r)
    r["targets"] = [t.as_dict() for t in bs.serve_targets(r)]
    return r


def combined_ratios(engine: dict[str, float | None], serve: dict[str, float | None]
                    ) -> dict[str, float | None]:
    """The engine ratios as ``engine/<key>`` and the serve ratios as ``serve/<key>``."""
    return {**{f"engine/{k}": v for k, v in engine.items()},
            **{f"serve/{k}": v for k, v in serve.items()}}


def plan_budget_target(engine: dict[str, Any]) -> bu.Target:
    """The plan's per-tick budget: the full INT8 tick (C++ timing) at P99.9 within
    0.9 ms. The engine's own P99.9 target (2 us) is the ambition; this is the limit."""
    return bu.Target(PLAN_BUDGET_TARGET, engine["engine"]["int8"]["total_ns"]["p99.9"],
                     PLAN_BUDGET_NS, "<=", "ns",
                     "the plan's budget for one tick, ingest to actuation")


def failed_servers(r: dict[str, Any]) -> list[str]:
    """Names of the servers that did not start, stalled or were refused."""
    return [n for n, s in r["serve"].get("servers", {}).items() if s["status"] == "failed"]


# ---------------------------------------------------------------------------
# Text summary, markdown and plots


def format_latency_summary(r: dict[str, Any]) -> str:
    """The lines printed after the engine and serve tables: the plan budget and
    the count of targets per status."""
    plan = next(t for t in r["targets"] if t["name"] == PLAN_BUDGET_TARGET)
    counts = Counter(t["status"] for t in r["targets"])
    value = "n/a" if plan["value"] is None else f"{plan['value']:,.0f} ns"
    lines = ["tmn-bench latency: engine and serve benchmarks, one model, one run"]
    if r["quick"]:
        lines.append(f"  {QUICK_NOTE}")
    if r["serve"].get("status") == "skipped":
        lines.append(f"  serve benchmark SKIPPED: {r['serve']['reason']}")
    lines += [
        f"  [{plan['status']}] {plan['name']}: {value} <= {plan['limit']:,.0f} ns",
        f"  targets: {counts['MET']} MET, {counts['MISSED']} MISSED, "
        f"{counts['SKIPPED']} SKIPPED (of {len(r['targets'])})",
    ]
    return "\n".join(lines)


def write_report(r: dict[str, Any], folder: Path) -> list[Path]:
    """Write ``latency.md`` and its PNGs into ``folder``; the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pngs = [plot_stages(r, folder / "latency_stages.png")]
    if r["serve"].get("status") != "skipped":
        pngs.append(plot_serve_rtt(r, folder / "serve_rtt.png"))
    md = folder / "latency.md"
    md.write_text(format_latency_markdown(r, [p.name for p in pngs]), encoding="utf-8")
    return [md, *pngs]


def _positive_or_nan(values: list[float]) -> list[float]:
    """A log axis cannot show 0 ns (a stage below one clock quantum): leave it out."""
    return [v if v > 0 else math.nan for v in values]


def _plot_title(r: dict[str, Any], what: str) -> str:
    quick = "  [QUICK RUN: smoke-test sample sizes]" if r["quick"] else ""
    return f"{what}\n{r['machine']['cpu']}, {r['machine']['date']}{quick}"


def plot_stages(r: dict[str, Any], path: Path) -> Path:
    """``latency_stages.png``: P50..P99.9 of the full tick and of every stage,
    INT8 and FP32 side by side, log y axis."""
    plt = report.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True, layout="constrained")
    x = np.arange(len(PERCENTILE_KEYS))
    for ax, precision in zip(axes, ("int8", "fp32")):
        e = r["engine"]["engine"][precision]
        series = [("full tick", e["total_ns"])] + [(s, e["stage_ns"][s]) for s in STAGES]
        for name, pct in series:
            ax.plot(x, _positive_or_nan([pct[k] for k in PERCENTILE_KEYS]), marker="o",
                    label=name, linewidth=2.5 if name == "full tick" else 1.2)
        ax.set_yscale("log")
        ax.set_xticks(x, PERCENTILE_LABELS)
        ax.set_title(f"{precision.upper()} (C++ timing, {e['timed_ticks']:,} ticks)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ns per tick (log)")
    axes[1].legend(loc="upper left", fontsize="small")
    fig.suptitle(_plot_title(r, "tmn engine: full tick and stages, percentiles"))
    return report.save_figure(fig, path)


def plot_serve_rtt(r: dict[str, Any], path: Path) -> Path:
    """``serve_rtt.png``: P50..P99.9 of the single-tick round trip of every server
    that ran (tmn-serve modes, echo floors, naive), log y axis."""
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    x = np.arange(len(PERCENTILE_KEYS))
    for name, s in r["serve"]["servers"].items():
        if s["status"] != "ok":
            continue
        rt = s["round_trip_ns"]
        ax.plot(x, [rt[k] / 1e3 for k in PERCENTILE_KEYS], marker="o", label=name,
                linestyle="--" if name.startswith("echo") else "-")
    ax.set_yscale("log")
    ax.set_xticks(x, PERCENTILE_LABELS)
    ax.set_ylabel("round trip, us (log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    n = r["serve"]["workload"]["requests"]
    ax.set_title(_plot_title(r, f"tmn-serve round trip, one tick per request ({n:,} each)"),
                 fontsize="medium")
    return report.save_figure(fig, path)


def _one_line(text: str) -> str:
    """The first line of a reason (a failed server's carries its log tail)."""
    return text.strip().splitlines()[0] if text.strip() else ""


def _ns_row(label: str, p: dict[str, float] | None, reason: str = "") -> list[Any]:
    if p is None:
        return [label, f"skipped: {_one_line(reason)}", None, None, None, None, None]
    return [label, p["n"], *(bu.format_ns(p[k]) for k in (*PERCENTILE_KEYS, "max"))]


def _engine_table(e: dict[str, Any]) -> str:
    rows = []
    for precision in ("int8", "fp32"):
        tick = e["engine"][precision]
        rows.append(_ns_row(f"**full tick {precision.upper()}** (C++ timing)", tick["total_ns"]))
        rows += [_ns_row(f"{precision.upper()} {s}", tick["stage_ns"][s]) for s in STAGES]
    rows += [_ns_row(f"bare GRU step {p.upper()} (C++)", e["bare_gru"][p]["step_ns"])
             for p in ("fp32", "int8")]
    rows.append(_ns_row("Engine.tick from Python (INT8)", e["python_tick"]["call_ns"]))
    rows.append(_ns_row("perf_counter_ns pair (timer floor)", e["python_tick"]["timer_floor_ns"]))
    for key, label in (("onnxruntime", "onnxruntime step (Python)"),
                       ("torch", "PyTorch eager step (Python)")):
        b = e[key]
        if b.get("status") != "ok":
            rows.append(_ns_row(label, None, b.get("reason", "")))
            continue
        rows.append(_ns_row(label, b["step_ns"]))
        if "run_floor_ns" in b:
            rows.append(_ns_row("onnxruntime per-call floor (Identity graph)", b["run_floor_ns"]))
    return report.table(["latency, ns", "n", "P50", "P90", "P99", "P99.9", "max"], rows)


def _engine_notes(e: dict[str, Any]) -> list[str]:
    out = []
    for p in ("int8", "fp32"):
        t = e["engine"][p]
        out.append(f"- replay throughput {p.upper()}: {t['replay_ticks_per_s'] / 1e6:.2f} M "
                   f"ticks/s (wall clock, output arrays included); timed {t['timed_ticks']:,} "
                   f"of {t['ticks']:,} ticks (the rest were warming up)")
    for key in ("onnxruntime", "torch"):
        b = e[key]
        if b.get("status") == "ok":
            out.append(f"- {key} computed the same network as the engine's FP32 step: max "
                       f"abs h difference {b['max_abs_h_diff_vs_engine_fp32']:.2e} after "
                       f"{b['steps']:,} carried steps")
    return out


def _serve_tables(s: dict[str, Any]) -> str:
    rt_rows, tp_rows = [], []
    for name, srv in s["servers"].items():
        if srv["status"] != "ok":
            rt_rows.append([name, f"{srv['status']}: {_one_line(srv.get('reason', ''))}",
                            *[None] * 8])
            continue
        rt, ss = srv["round_trip_ns"], srv.get("server_side_ns") or {}
        rt_rows.append([name, rt["n"], *(bs._us(rt[k]) for k in (*PERCENTILE_KEYS, "max")),
                        *(bs._us(ss.get(k)) for k in ("p50", "p99.9", "max"))])
        for t in srv["throughput"]:
            ts = t.get("server_side_ns") or {}
            tp_rows.append([name, t["streams"], t["ticks_per_request"],
                            None if t["ticks_per_s"] is None else round(t["ticks_per_s"]),
                            *(bs._us(ts.get(k)) for k in ("p50", "p99.9", "max")),
                            t["error_replies"]])
    w = s["workload"]
    return "\n".join([
        f"Round trip of one tick per request, synchronous, {w['requests']:,} requests after "
        f"{w['warmup_requests']:,} warm-up; the server's own receive-to-send time beside it "
        "(us).", "",
        report.table(["server", "n", "P50", "P90", "P99", "P99.9", "max", "server-side P50",
                      "server-side P99.9", "server-side max"], rt_rows),
        "", f"Throughput, pipelined ({w['in_flight']} requests in flight, "
        f"{w['throughput_seconds']:g} s per run, a fresh server per run); server-side "
        "latency per request (us).", "",
        report.table(["server", "streams", "ticks/request", "ticks/s", "server-side P50",
                      "server-side P99.9", "server-side max", "error replies"], tp_rows),
    ])


def format_latency_markdown(r: dict[str, Any], pngs: list[str]) -> str:
    """``latency.md``: machine, model, sizes, engine and serve tables, ratios and
    targets; ``pngs`` are the plot file names to link."""
    m, mod, e, s = r["machine"], r["model"], r["engine"], r["serve"]
    ew = e["workload"]
    end = m.get("load_average_end")
    out = ["# tmn-bench latency", ""]
    if r["quick"]:
        out += [f"> **{QUICK_NOTE}**", ""]
    out += [
        "The engine benchmark and then the serve benchmark, on one model in one run. Every "
        "ratio divides numbers measured in this run. Absolute times hold for this machine "
        "only; bench/README.md explains every number.", "",
        "## Machine", "", report.machine_section(m),
        f"- **load average at end**: {'/'.join(f'{x:.2f}' for x in end) if end else 'n/a'}",
    ]
    if s.get("status") != "skipped":
        out.append(f"- **serve layout**: {s['layout']['description']}")
    out += [
        "", "## Model", "",
        f"System {mod['system']}, hidden {mod['hidden']}, {mod['horizons']} horizons "
        f"({', '.join(f'{h:g}' for h in mod['horizons_ms'])} ms); {mod['source']} "
        f"(`{mod['path']}`).", "",
        "## Workload", "",
        f"- **engine**: {ew['ticks']:,} ticks replayed per precision, {ew['streams']} "
        f"interleaved streams at {ew['rate_hz']:.0f} Hz (seed {ew['seed']}); "
        f"{ew['python_calls']:,} `Engine.tick` calls from Python, {ew['onnxruntime_steps']:,} "
        f"onnxruntime steps, {ew['torch_steps']:,} PyTorch steps, {ew['bare_gru_steps']:,} "
        f"bare GRU steps; all interleaved in {ew['rounds']} rounds",
    ]
    if s.get("status") == "skipped":
        out.append(f"- **serve**: SKIPPED ({s['reason']})")
    else:
        sw = s["workload"]
        cases = ", ".join(f"{c['streams']}x{c['ticks_per_request']}"
                          for c in sw["throughput_cases"])
        out.append(f"- **serve**: {sw['requests']:,} timed round trips per server after "
                   f"{sw['warmup_requests']:,} warm-up; throughput runs of "
                   f"{sw['throughput_seconds']:g} s with {sw['in_flight']} requests in flight "
                   f"for streams x ticks/request = {cases}; a fresh server per measurement")
    out += ["", "## Engine", "", _engine_table(e), "", *_engine_notes(e), ""]
    if "latency_stages.png" in pngs:
        out += ["![Full tick and stage percentiles, INT8 and FP32](latency_stages.png)", "",
                "(A stage whose percentile is 0 ns, below one clock quantum, is not drawn "
                "on the log axis.)", ""]
    out += ["## Serve", ""]
    if s.get("status") == "skipped":
        out += [f"**SKIPPED**: {s['reason']}. The serve ratios are n/a and the serve "
                "targets SKIPPED.", ""]
    else:
        out += [_serve_tables(s), ""]
        if "serve_rtt.png" in pngs:
            out += ["![Round-trip percentiles per server](serve_rtt.png)", ""]
    counts = Counter(t["status"] for t in r["targets"])
    out += [
        "## Ratios", "",
        "Same-run ratios: `engine/` from the engine benchmark (onnxruntime, PyTorch eager, "
        "the bare GRU step), `serve/` from the serve benchmark (the naive pyzmq server, the "
        "echo floor).", "",
        report.table(["ratio", "value (x)"], [[k, v] for k, v in r["ratios"].items()]), "",
        "## Targets", "",
        f"**{counts['MET']} MET, {counts['MISSED']} MISSED, {counts['SKIPPED']} SKIPPED** "
        f"of {len(r['targets'])}: the engine's, the serve benchmark's, and the plan's "
        "per-tick budget.", "",
        report.targets_table(r["targets"]), "",
    ]
    return "\n".join(out)
