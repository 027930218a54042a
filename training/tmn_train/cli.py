"""The ``tmn-train`` command line: fit, synth, export, calibrate (evaluation:
``tmn-bench accuracy``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tmn.argtypes import run_command
from tmn_train import __version__
from tmn_train.config import ConfigError
from tmn_train.data import DataError


def _log(msg: str) -> None:
    print(msg, flush=True)


def cmd_fit(args: argparse.Namespace) -> int:
    from tmn_train import config as config_mod
    from tmn_train.export import export, summary
    from tmn_train.train import FINAL, fit, load_final

    overrides = list(args.set or [])
    if args.epochs is not None:
        overrides.append(f"epochs={args.epochs}")
    cfg = config_mod.load(args.config, overrides)
    out = Path(args.out)
    fit(cfg, args.data, out, args.seeds, resume=args.resume,
        tensorboard=Path(args.tensorboard) if args.tensorboard else None, log=_log)
    cfg2, ck = load_final(out / FINAL)
    folder = export(ck, cfg2, out / "model")
    _log(f"exported {summary(folder)}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from tmn_train import synth
    from tmn_train.data import write_table

    streams = synth.generate(args.minutes, seed=args.seed)
    path = write_table(args.out, streams)
    _log(f"wrote {path}: {len(streams)} streams, {sum(len(s) for s in streams)} ticks at "
         f"{synth.RATE:g} Hz (regimes {', '.join(synth.REGIMES)}, seed {args.seed})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tmn_train.export import export, summary
    from tmn_train.train import load_final

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    cfg, ck = load_final(Path(args.checkpoint))
    folder = export(ck, cfg, out)
    _log(f"exported {summary(folder)}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from tmn_train.uncertainty import recalibrate

    recalibrate(Path(args.model), args.data, log=_log)
    _log(f"calibrated {args.model}/config.json")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tmn-train", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="train a model (every seed), calibrate, evaluate, export")
    f.add_argument("--config", required=True, help="YAML config, e.g. configs/B_temporal_solver.yaml")
    f.add_argument("--data", required=True, nargs="+",
                   help="recordings (.csv, .npz) and/or named sources: synth:MINUTES[:SEED], "
                        "lasa[:SHAPE,...], eyelink")
    f.add_argument("--out", required=True, help="run folder (checkpoints, final.pt, model/)")
    f.add_argument("--epochs", type=int, help="override the config's epochs")
    f.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to train (default 0)")
    f.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set data.passes=4 (repeatable)")
    f.add_argument("--resume", action="store_true",
                   help="continue from the run folder's per-seed checkpoints")
    f.add_argument("--tensorboard", metavar="DIR", help="also log to TensorBoard, if installed")
    f.set_defaults(run=cmd_fit)

    s = sub.add_parser("synth", help="write synthetic 2 kHz recordings (.npz or .csv)")
    s.add_argument("--minutes", type=float, required=True)
    s.add_argument("--out", required=True, help="output file, .npz or .csv")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(run=cmd_synth)

    e = sub.add_parser("export", help="write the artifact folder from a fit's final.pt")
    e.add_argument("checkpoint", help="the final.pt written by fit")
    e.add_argument("--out", required=True, help="artifact folder")
    e.set_defaults(run=cmd_export)

    c = sub.add_parser("calibrate", help="fit an artifact's 90%% uncertainty radius on its "
                                         "validation split (rewrites its config.json)")
    c.add_argument("model", help="artifact folder (from tmn-train fit/export)")
    c.add_argument("--data", nargs="+", help="the sources it was trained on (default: those "
                                             "named in its provenance)")
    c.set_defaults(run=cmd_calibrate)

    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tmn-train``; returns the exit code."""
    args = parser().parse_args(argv)
    return run_command("tmn-train", lambda: args.run(args),
                       (ConfigError, DataError, OSError, ValueError))


if __name__ == "__main__":
    raise SystemExit(main())
