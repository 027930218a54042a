"""``tmn-hub``: make a Hugging Face model-repo folder from a tmn artifact, and
publish it (docs/hub.md). Nothing imports this module.

    tmn-hub folder MODEL_DIR --accuracy ACC.json --recipe TRAIN.sh [--refer-to-recipe] --out OUT_DIR
    tmn-hub publish OUT_DIR --repo owner/name [--dry-run]

Every user error is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tmn
from tmn.argtypes import run_command
from tmn.hub import HubError, publish, repo_files
from tmn_bench import __version__
from tmn_bench.hub_card import CardError, write_repo_folder


def cmd_folder(args: argparse.Namespace) -> int:
    """Write the repo folder and list its files."""
    files = write_repo_folder(args.model, args.out, args.accuracy, args.recipe,
                              latency_json=args.latency, label=args.label, repo=args.repo,
                              plots=not args.no_plots, refer_to_recipe=args.refer_to_recipe)
    print(f"wrote {args.out}: {len(files)} files")
    for f in files:
        print(f"  {f}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Validate the folder, then list (--dry-run) or upload its files."""
    tmn.load(args.folder)  # the artifact is validated as tmn.load would
    files = repo_files(args.folder)
    if args.dry_run:
        print(f"would upload {len(files)} files from {args.folder} to {args.repo}:")
        for f in files:
            print(f"  {f}")
        return 0
    url = publish(args.folder, args.repo, private=args.private)
    print(f"uploaded {len(files)} files to {args.repo}: {url}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The ``tmn-hub`` command line."""
    p = argparse.ArgumentParser(prog="tmn-hub", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("folder", help="the model-repo folder: artifact, model card, examples, "
                                      "data description")
    f.add_argument("model", type=Path, help="the artifact folder (tmn-train fit's run/model)")
    f.add_argument("--out", type=Path, required=True,
                   help="the repo folder (may be the artifact folder: only the card and the "
                        "extra files are rewritten)")
    f.add_argument("--accuracy", type=Path, required=True,
                   help="tmn-bench accuracy --json of a run that evaluated this model; its "
                        "plots are copied from the same folder")
    f.add_argument("--recipe", type=Path, required=True,
                   help="the script that trained the model, copied as examples/train.sh")
    f.add_argument("--refer-to-recipe", action="store_true",
                   help="examples/train.sh runs --recipe in a tmn checkout instead of holding "
                        "a copy (a recipe of the tmn repository, such as the built-in model's)")
    f.add_argument("--latency", type=Path, default=None, help="tmn-bench latency --json")
    f.add_argument("--label", default=None,
                   help="the model's label in --accuracy (default: found by provenance)")
    f.add_argument("--repo", default=None, help="owner/name the card and examples load")
    f.add_argument("--no-plots", action="store_true",
                   help="do not copy the report's plots into eval/ (the built-in model: it "
                        "keeps the tmn package small)")
    f.set_defaults(run=cmd_folder)
    u = sub.add_parser("publish", help="upload a repo folder (needs a Hugging Face token)")
    u.add_argument("folder", type=Path)
    u.add_argument("--repo", required=True, help="owner/name of the model repo")
    u.add_argument("--dry-run", action="store_true", help="list the files, upload nothing")
    u.add_argument("--private", action="store_true", help="create the repo private")
    u.set_defaults(run=cmd_publish)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tmn-hub``; returns the exit code."""
    args = parser().parse_args(argv)
    return run_command("tmn-hub", lambda: args.run(args),
                       (CardError, HubError, tmn.ModelFormatError, OSError))


if __name__ == "__main__":
    sys.exit(main())
