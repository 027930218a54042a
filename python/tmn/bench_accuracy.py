"""``tmn-bench accuracy``: A, B and the baselines on held-out recordings.

    tmn-bench accuracy --data SOURCE [SOURCE ...] --models DIR [DIR ...]
                       [--json OUT] [--report DIR] [--split test] [--precision int8]

The work is in ``tmn_train.accuracy`` (it needs the training package's data
loaders: ``pip install ./training``); this module only parses the command
line, so ``tmn-bench --help`` works without it. bench/README.md explains every
figure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tmn import benchutil as bu


def add_accuracy_command(sub: Any) -> None:
    """Register ``tmn-bench accuracy``."""
    p = sub.add_parser(
        "accuracy", help="accuracy of A, B, Kalman-only and constant velocity on held-out data",
        description="Replay held-out recordings through the engine with every model (FP32 and "
        "INT8) and the baselines; per-horizon metrics, B-vs-A and B-vs-Kalman statistics, "
        "targets MET/MISSED. Trains nothing. See bench/README.md.")
    p.add_argument("--data", nargs="+", required=True, metavar="SOURCE",
                   help="each is evaluated on its own: synth:MINUTES[:SEED], lasa[:SHAPE,...], "
                   "eyelink, or a CSV/NPZ recording (training/README.md, 'Data')")
    p.add_argument("--models", nargs="+", required=True, type=Path, metavar="DIR",
                   help="model artifacts from tmn-train; several of one system are seeds, "
                   "B_i is paired with A_i (or every B with a single A)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                   help="the part of each source to evaluate, split as the first model was "
                   "trained (default test; all: every stream whole)")
    p.add_argument("--precision", default="int8", choices=["int8", "fp32"],
                   help="precision of the statistics and targets (both are always reported)")
    p.add_argument("--bootstrap", type=bu.non_negative_int, default=1000, metavar="N",
                   help="bootstrap resamples for the confidence intervals (default 1000)")
    p.add_argument("--resample-by", default="block", choices=["block", "stream"],
                   help="bootstrap unit: contiguous blocks of --block-seconds, or whole streams")
    p.add_argument("--block-seconds", type=bu.positive_float, default=1.0,
                   help="block length for block tests and the bootstrap (default 1 s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="write all results")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="write DIR/accuracy.md and PNG plots")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 if any target is MISSED (default: report only)")
    p.set_defaults(func=accuracy_command)


def accuracy_command(args: argparse.Namespace) -> int:
    """Run ``tmn-bench accuracy``."""
    try:
        from tmn_train import accuracy
        from tmn_train.config import ConfigError
        from tmn_train.data import DataError
    except ImportError as e:
        print(f"tmn-bench accuracy: needs the training package (its data loaders): "
              f"pip install ./training ({e})", file=sys.stderr)
        return 2
    from tmn import report
    from tmn.bench import write_json
    from tmn.model import ModelFormatError

    if args.report is not None:
        try:  # refuse now, not after minutes of replays
            report.pyplot()
        except ImportError as e:
            print(f"tmn-bench accuracy: --report: {e}", file=sys.stderr)
            return 2

    try:
        result, plots = accuracy.run(
            args.models, args.data, split=args.split, precision=args.precision,
            resamples=args.bootstrap, block_s=args.block_seconds, resample_by=args.resample_by,
            seed=args.seed, log=lambda m: print(f"[tmn-bench] {m}", file=sys.stderr, flush=True))
    except (accuracy.AccuracyError, ConfigError, DataError, ModelFormatError,
            FileNotFoundError) as e:
        print(f"tmn-bench accuracy: {e}", file=sys.stderr)
        return 2
    print(accuracy.format_summary(result))
    if args.json is not None:
        write_json(result, args.json)
        print(f"\nwrote {args.json}")
    if args.report is not None:
        from tmn_train.accuracy_report import write_report

        print(f"wrote {write_report(result, plots, args.report)}")
    missed = [t for d in result["datasets"] for t in d["targets"] if t["status"] == "MISSED"]
    return 1 if (args.strict and missed) else 0
