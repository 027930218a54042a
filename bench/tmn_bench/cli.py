"""``tmn-bench``: the benchmark command line (bench/README.md explains every number).

    tmn-bench engine   [--model DIR] [--ticks N] [--json OUT] [--isa auto] [--strict]
    tmn-bench serve    [--model DIR] [--requests N] [--json OUT] [--server-core C ...]
    tmn-bench latency  [--model DIR] [--json OUT] [--report DIR] [--quick] [--skip-serve]
    tmn-bench accuracy --data SOURCE ... --models DIR ... [--baseline DIR ...] [--json OUT]
    tmn-bench pagerank [--sizes N ...] [--compare-at N] [--json OUT] [--strict]

This module only parses the command line and prints; the benchmarks are
``tmn_bench.engine``, ``.serve``, ``.latency``, ``.accuracy`` and ``.pagerank``. Nothing
imports it. Each subcommand is an ``add_*`` function in :data:`COMMANDS`. A
user's mistake (a bad model folder, an unusable core, ``--report`` without
matplotlib) exits with status 2 before anything is measured; ``--strict``
exits 1 if any target is MISSED or SKIPPED.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import tmn
from tmn.protocol import MAX_BATCH
from tmn_bench import __version__
from tmn_bench.common import ROUNDS, resolved_model, write_json
from tmn_bench.results import Target, not_met


# ---------------------------------------------------------------------------
# Value types and shared options


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``1_000_000`` allowed)."""
    v = int(text.replace("_", ""))
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return v


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    v = int(text.replace("_", ""))
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return v


MODEL_HELP = ("model folder (default: the built-in model, else a random System B model "
              "written to a temporary folder)")


def _add_common(p: argparse.ArgumentParser, json_help: str = "also write every number to "
                "this JSON file") -> None:
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help=json_help)
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 if any target is MISSED or SKIPPED")


def _add_cores(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument("--server-core", type=int, default=None,
                   help=f"{prefix}CPU of the servers' loops (default: the last usable CPU)")
    p.add_argument("--client-core", type=int, default=None,
                   help=f"{prefix}CPU of the benchmark client (default: the first usable CPU)")
    p.add_argument("--naive-script", type=Path, default=None,
                   help=f"{prefix}a naive server script to run instead of the packaged "
                   "tmn_bench.baselines.naive_server")


def _subparser(sub: Any, name: str, summary: str, module: str,
               model: bool = True) -> argparse.ArgumentParser:
    """The parser of one subcommand (with ``--model`` unless told otherwise); its
    description is the first paragraph of the docstring of ``module``, the
    benchmark it runs."""
    doc = (importlib.import_module(module).__doc__ or "").split("\n\n")[0]
    p = sub.add_parser(name, help=summary, description=" ".join(doc.replace("``", "").split()))
    if model:
        p.add_argument("--model", type=Path, default=None, help=MODEL_HELP)
    return p


# (flag, default, what it counts): the sizes of a benchmark, integers >= 1
ENGINE_COUNTS = (
    ("--ticks", 1_000_000, "ticks replayed per precision, and bare GRU steps"),
    ("--streams", 8, "interleaved streams in the replayed recording"),
    ("--steps", 100_000, "Python Engine.tick calls and onnxruntime steps"),
    ("--torch-steps", 50_000, "PyTorch eager steps"))
SERVE_COUNTS = (
    ("--requests", 20_000, "timed single-tick round trips per server"),
    ("--in-flight", 16, "requests kept in flight in the throughput runs"),
    ("--batch", 10, "ticks per request in the throughput runs with more streams than this; "
     "requests cycle over the streams"))


# (benchmark, its counts, flag): the sizes tmn-bench latency passes on
LATENCY_COUNTS = (("engine", ENGINE_COUNTS, "--ticks"), ("serve", SERVE_COUNTS, "--requests"))


def _add_counts(p: argparse.ArgumentParser, counts: tuple[tuple[str, int, str], ...]) -> None:
    for flag, default, what in counts:
        p.add_argument(flag, type=positive_int, default=default,
                       help=f"{what} (default {default})")


def _fail(command: str, msg: str) -> int:
    print(f"tmn-bench {command}: error: {msg}", file=sys.stderr)
    return 2


def _logger(command: str) -> Callable[[str], None]:
    def log(msg: str) -> None:
        print(f"[tmn-bench {command}] {msg}", file=sys.stderr, flush=True)
    return log


def _finish(result: Any, targets: list[Target], args: argparse.Namespace) -> int:
    """Write the JSON if asked; the exit status of ``--strict``."""
    if args.json is not None:
        write_json(result, args.json)
        print(f"\nwrote {args.json}")
    return 1 if (args.strict and not_met(targets)) else 0


def _unless_failed(command: str, failed: list[str], rc: int) -> int:
    """Exit status 1 when a server did not start, stalled or was refused."""
    if failed:
        print(f"tmn-bench {command}: FAILED servers: {', '.join(failed)}", file=sys.stderr)
        return 1
    return rc


def _refuse_report_without_matplotlib(command: str, folder: Path | None) -> int | None:
    if folder is None:
        return None
    from tmn_bench import report

    try:  # refuse now, not after minutes of measuring
        report.pyplot()
    except ImportError as e:
        return _fail(command, f"--report: {e}")
    return None


# ---------------------------------------------------------------------------
# tmn-bench engine


def add_engine_command(sub: Any) -> None:
    """Register ``tmn-bench engine``."""
    p = _subparser(sub, "engine", "full tick latency vs bare GRU, onnxruntime and PyTorch eager",
                   "tmn_bench.engine")
    _add_counts(p, ENGINE_COUNTS)
    p.add_argument("--isa", default="auto", choices=["auto", "scalar", "avx2", "avx512"],
                   help="GRU kernel instruction set (default: the best this CPU has)")
    p.add_argument("--rounds", type=positive_int, default=ROUNDS,
                   help=f"interleaved rounds the measurements are split into (default {ROUNDS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic recording")
    _add_common(p)
    p.set_defaults(func=engine_command)


def engine_command(args: argparse.Namespace) -> int:
    """Run ``tmn-bench engine``: measure, print the table, write the JSON."""
    from tmn_bench.engine import format_engine_report, run_engine_bench

    if args.isa != "auto" and not tmn._core.isa_available(tmn.Isa.__members__[args.isa]):
        return _fail("engine", f"--isa {args.isa} is not available on this CPU or in this "
                     f"build (best available: {tmn._core.best_isa().name})")
    with ExitStack() as stack:
        try:
            choice = stack.enter_context(resolved_model(args.model))
        except (FileNotFoundError, tmn.ModelFormatError) as e:
            return _fail("engine", f"--model: {e}")
        r = run_engine_bench(choice.model, choice.source, ticks=args.ticks,
                             streams=args.streams, steps=args.steps,
                             torch_steps=args.torch_steps, isa=args.isa, seed=args.seed,
                             rounds=args.rounds, log=_logger("engine"))
    print(format_engine_report(r))
    return _finish(r, r.targets, args)


# ---------------------------------------------------------------------------
# tmn-bench serve


def add_serve_command(sub: Any) -> None:
    """Register ``tmn-bench serve``."""
    p = _subparser(sub, "serve", "tmn-serve round trips and throughput vs the echo floor and a "
                   "naive pyzmq+onnxruntime server", "tmn_bench.serve")
    _add_counts(p, SERVE_COUNTS)
    p.add_argument("--throughput-seconds", type=positive_float, default=1.5,
                   help="length of each throughput run (default 1.5 s)")
    p.add_argument("--skip-scale", action="store_true",
                   help="skip the scale-out runs (tmn-serve --cores with 1 and 2 loops, the "
                        "sharded client); their targets are then SKIPPED")
    _add_cores(p)
    p.add_argument("--warmup", type=non_negative_int, default=2_000,
                   help="untimed round trips before the timed ones (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic motion")
    _add_common(p)
    p.set_defaults(func=serve_command)


def _serve_setup(command: str, args: argparse.Namespace) -> tuple[Any, list[str]] | int:
    """The core layout and the naive server's command, or an exit status."""
    from tmn_bench import serve

    try:
        layout = serve.core_layout(args.server_core, args.client_core)
        naive = serve.naive_command(args.naive_script)
    except ValueError as e:
        return _fail(command, str(e))
    return layout, naive


def serve_command(args: argparse.Namespace) -> int:
    """Run ``tmn-bench serve``: measure, print the table, write the JSON."""
    from tmn_bench import serve

    setup = _serve_setup("serve", args)
    if isinstance(setup, int):
        return setup
    if args.batch > MAX_BATCH:
        return _fail("serve", f"--batch must be <= {MAX_BATCH}, got {args.batch}")
    with ExitStack() as stack:
        try:
            choice = stack.enter_context(resolved_model(args.model))
        except (FileNotFoundError, tmn.ModelFormatError) as e:
            return _fail("serve", f"--model: {e}")
        r = serve.run_serve_bench(
            choice.folder, choice.source, layout=setup[0], requests=args.requests,
            warmup=args.warmup, throughput_s=args.throughput_seconds, in_flight=args.in_flight,
            batch=args.batch, naive_script=args.naive_script, seed=args.seed,
            scale=not args.skip_scale, log=_logger("serve"))
    print(serve.format_serve_report(r))
    return _unless_failed("serve", r.failed(), _finish(r, r.targets, args))


# ---------------------------------------------------------------------------
# tmn-bench latency


def add_latency_command(sub: Any) -> None:
    """Register ``tmn-bench latency``."""
    from tmn_bench.latency import QUICK_ENGINE, QUICK_SERVE

    p = _subparser(sub, "latency", "engine and serve benchmarks in one run: one JSON, one "
                   "markdown report with plots", "tmn_bench.latency")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="write DIR/latency.md, DIR/latency_stages.png and DIR/serve_rtt.png")
    p.add_argument("--quick", action="store_true",
                   help=f"small samples for a smoke run (engine {QUICK_ENGINE}, serve "
                   f"{QUICK_SERVE}); every output is labelled QUICK RUN")
    p.add_argument("--skip-serve", action="store_true",
                   help="run the engine benchmark only (the serve targets are SKIPPED)")
    for bench, counts, flag in LATENCY_COUNTS:
        what = next(w for f, _, w in counts if f == flag)
        p.add_argument(flag, type=positive_int, default=None,
                       help=f"{bench}: {what} (default: that of tmn-bench {bench}, or the "
                       "--quick size)")
    _add_cores(p, prefix="serve: ")
    _add_common(p)
    p.set_defaults(func=latency_command)


def latency_command(args: argparse.Namespace) -> int:
    """Run ``tmn-bench latency``: measure, print the tables, write the JSON and report."""
    from tmn_bench import latency, serve
    from tmn_bench.engine import format_engine_report

    layout = None
    if not args.skip_serve:
        setup = _serve_setup("latency", args)
        if isinstance(setup, int):
            return setup
        layout = setup[0]
    refused = _refuse_report_without_matplotlib("latency", args.report)
    if refused is not None:
        return refused
    serve_options: dict[str, Any] = {"naive_script": args.naive_script}
    if args.requests is not None:
        serve_options["requests"] = args.requests
    with ExitStack() as stack:
        try:  # one folder for both: tmn-serve loads the model from a folder
            choice = stack.enter_context(resolved_model(args.model))
        except (FileNotFoundError, tmn.ModelFormatError) as e:
            return _fail("latency", f"--model: {e}")
        r = latency.run_latency_bench(
            choice.folder, choice.source, quick=args.quick,
            engine_options={} if args.ticks is None else {"ticks": args.ticks},
            serve_options=serve_options, layout=layout,
            skip_serve=latency.SKIP_SERVE_REASON if args.skip_serve else None,
            log=_logger("latency"))
    if r.quick:
        print(latency.QUICK_NOTE + "\n")
    print(format_engine_report(r.engine) + "\n")
    if isinstance(r.serve, serve.ServeResult):
        print(serve.format_serve_report(r.serve) + "\n")
    else:
        print(f"tmn-bench serve: SKIPPED ({r.serve.reason})\n")
    print(latency.format_latency_summary(r))
    rc = _finish(r, r.targets, args)
    for path in latency.write_report(r, args.report) if args.report is not None else []:
        print(f"wrote {path}")
    return _unless_failed("latency", r.serve.failed() if isinstance(r.serve, serve.ServeResult)
                          else [], rc)


# ---------------------------------------------------------------------------
# tmn-bench accuracy


def add_accuracy_command(sub: Any) -> None:
    """Register ``tmn-bench accuracy``."""
    p = _subparser(sub, "accuracy", "accuracy of A, B, Kalman-only and constant velocity on "
                   "held-out data", "tmn_bench.accuracy", model=False)
    p.add_argument("--data", nargs="+", required=True, metavar="SOURCE",
                   help="each is evaluated on its own: synth:MINUTES[:SEED], lasa[:SHAPE,...], "
                   "eyelink, or a CSV/NPZ recording (training/README.md, 'Data')")
    p.add_argument("--models", nargs="+", required=True, type=Path, metavar="DIR",
                   help="model artifacts from tmn-train; several of one system are seeds, "
                   "B_i is paired with A_i (or every B with a single A)")
    p.add_argument("--baseline", nargs="+", type=Path, default=None, metavar="DIR",
                   help="models of the same systems to compare --models with one to one, in "
                   "the order given (active selection against uniform sampling); labelled "
                   "'B0 baseline'")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                   help="the part of each source to evaluate, split as the first model was "
                   "trained (default test; all: every stream whole)")
    p.add_argument("--precision", default="int8", choices=["int8", "fp32"],
                   help="precision of the statistics and targets (both are always reported)")
    p.add_argument("--bootstrap", type=non_negative_int, default=1000, metavar="N",
                   help="bootstrap resamples for the confidence intervals (default 1000)")
    p.add_argument("--resample-by", default="block", choices=["block", "stream"],
                   help="bootstrap unit: contiguous blocks of --block-seconds, or whole streams")
    p.add_argument("--block-seconds", type=positive_float, default=1.0,
                   help="block length for block tests and the bootstrap (default 1 s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="write DIR/accuracy.md and PNG plots")
    _add_common(p, json_help="write all results")
    p.set_defaults(func=accuracy_command)


def accuracy_command(args: argparse.Namespace) -> int:
    """Run ``tmn-bench accuracy``."""
    try:
        from tmn_bench.accuracy import evaluate
        from tmn_train.config import ConfigError
        from tmn_train.data import DataError
    except ImportError as e:
        return _fail("accuracy", "needs the training package (its data loaders): "
                     f"pip install torch==2.13.0 ./training ({e})")
    refused = _refuse_report_without_matplotlib("accuracy", args.report)
    if refused is not None:
        return refused
    try:
        r, plots = evaluate.run(
            args.models, args.data, split=args.split, precision=args.precision,
            resamples=args.bootstrap, block_s=args.block_seconds, resample_by=args.resample_by,
            seed=args.seed, baselines=args.baseline, log=_logger("accuracy"))
    except (evaluate.AccuracyError, ConfigError, DataError, tmn.ModelFormatError,
            FileNotFoundError) as e:
        return _fail("accuracy", str(e))
    print(evaluate.format_summary(r))
    rc = _finish(r, r.targets(), args)
    if args.report is not None:
        from tmn_bench.accuracy.report import write_report

        print(f"wrote {write_report(r, plots, args.report)}")
    return rc


# ---------------------------------------------------------------------------
# tmn-bench pagerank


def add_pagerank_command(sub: Any) -> None:
    """Register ``tmn-bench pagerank``."""
    from tmn_bench.pagerank import SIZES

    p = _subparser(sub, "pagerank", "forward-push PageRank: work against graph size, and "
                   "against networkx at the same accuracy", "tmn_bench.pagerank", model=False)
    p.add_argument("--sizes", type=positive_int, nargs="+", default=list(SIZES), metavar="N",
                   help=f"graph sizes in nodes (default {' '.join(f'{n:_}' for n in SIZES)})")
    p.add_argument("--compare-at", type=positive_int, default=100_000, metavar="N",
                   help="the size (one of --sizes) compared with networkx (default 100_000)")
    p.add_argument("--repeats", type=positive_int, default=20,
                   help="push solves timed per size (default 20)")
    p.add_argument("--nx-repeats", type=positive_int, default=3,
                   help="networkx.pagerank runs timed (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random points")
    _add_common(p)
    p.set_defaults(func=pagerank_command)


def pagerank_command(args: argparse.Namespace) -> int:
    """Run ``tmn-bench pagerank``: measure, print the table, write the JSON."""
    from tmn_bench.pagerank import K, RESTART, format_pagerank_report, run_pagerank_bench

    if args.compare_at not in args.sizes:
        return _fail("pagerank", f"--compare-at {args.compare_at} is not one of --sizes")
    if min(args.sizes) <= max(K, RESTART):
        return _fail("pagerank", f"--sizes must be above {max(K, RESTART)} nodes (k = {K} "
                     "neighbours each)")
    try:
        import networkx  # noqa: F401
    except ImportError:
        return _fail("pagerank", "the comparison needs networkx: pip install networkx")
    r = run_pagerank_bench(tuple(sorted(set(args.sizes))), args.compare_at, args.repeats,
                           args.nx_repeats, args.seed, log=_logger("pagerank"))
    print(format_pagerank_report(r))
    return _finish(r, r.targets, args)


# ---------------------------------------------------------------------------
# The entry point

# Subcommands, in the order `tmn-bench --help` lists them.
COMMANDS: tuple[Callable[[Any], None], ...] = (add_engine_command, add_serve_command,
                                               add_latency_command, add_accuracy_command,
                                               add_pagerank_command)


def build_parser() -> argparse.ArgumentParser:
    """The ``tmn-bench`` parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="tmn-bench", description="Benchmarks of the tmn engine against baselines, "
        "in the same run. See bench/README.md.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tmn-bench``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
