"""What every ``tmn-bench`` benchmark shares: the machine's name, the model to
run, measuring in interleaved rounds with the GC paused, and writing JSON.

numpy only. Nothing here imports torch or onnxruntime;
:func:`package_versions` asks for their versions without importing them.
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import tmn
from tmn.artifact import git_sha
from tmn.model import Model, ModelFormatError
from tmn_bench.results import Machine, to_json

Log = Callable[[str], None]


def quiet(_msg: str) -> None:
    """A :data:`Log` that says nothing."""


# ---------------------------------------------------------------------------
# The machine


def _cpuinfo_field(prefix: str) -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what ``platform`` knows."""
    return (_cpuinfo_field("model name") or platform.processor() or platform.machine()
            or "unknown")


def cpu_flags() -> set[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none)."""
    return set((_cpuinfo_field("flags") or "").split())


def package_versions(names: tuple[str, ...] = ("numpy", "scipy", "matplotlib", "onnxruntime",
                                                "onnx", "torch", "pyzmq")
                     ) -> dict[str, str | None]:
    """Installed versions (None if not installed), read from package metadata so
    that nothing heavy gets imported."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none). A
    load near or above the core count means other work shared the CPUs."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _tmn_version() -> str:
    try:
        return metadata.version("tmn")
    except metadata.PackageNotFoundError:
        return "unknown"


def machine_info(isa: str | None = None) -> Machine:
    """Everything needed to name the machine a number was measured on (the load
    average at the end is filled in by the benchmark when it ends)."""
    flags = cpu_flags()
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return Machine(
        cpu=cpu_model(), cores=os.cpu_count(), cores_usable=affinity,
        cpu_avx2="avx2" in flags, cpu_avx512f="avx512f" in flags,
        isa=isa if isa is not None else tmn._core.best_isa().name,
        clock_uses_tsc=bool(tmn._core.clock_uses_tsc()), load_average=load_average(),
        platform=platform.platform(), python=platform.python_version(),
        python_implementation=platform.python_implementation(), versions=package_versions(),
        tmn_version=_tmn_version(), tmn_git_sha=git_sha(),
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        argv=list(sys.argv))


# ---------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class ModelChoice:
    """The model a benchmark runs: its folder (servers load from a folder), the
    loaded model, and a sentence saying where it came from."""

    folder: Path
    model: Model
    source: str


@contextmanager
def resolved_model(path: Path | None) -> Iterator[ModelChoice]:
    """``path``, else the built-in model, else a random System B model in a
    temporary folder (removed afterwards). A bad ``path`` raises
    ``FileNotFoundError`` or ``ModelFormatError`` before anything runs."""
    if path is not None:
        folder = Path(path).resolve()
        yield ModelChoice(folder, tmn.load(folder), f"given: {path}")
        return
    try:
        builtin: Model | None = tmn.load()
    except (FileNotFoundError, ModelFormatError) as e:
        builtin, reason = None, str(e)
    if builtin is not None:
        yield ModelChoice(Path(builtin.path), builtin, "built-in model")
        return
    from tmn.testing import random_model

    tmp = Path(tempfile.mkdtemp(prefix="tmn-bench-model-"))
    try:
        folder = random_model(tmp / "random_B", system="B", seed=0)
        yield ModelChoice(folder, tmn.load(folder),
                          f"RANDOM System B model (tmn.testing.random_model, seed 0, temporary "
                          f"folder) because the built-in model is not usable: {reason}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def model_scale(model: Model) -> dict[str, tuple[float, float]]:
    """Position scale and offset of the synthetic workload in the model's own units,
    so that its z-scored features are O(1) for any model: the workload's speeds
    are about 3 times its scale, and the model's first two features are the
    velocity, normalised by its RMS. The features hold no absolute position, so
    the offset is 0."""
    norm = model.config["normalisation"]
    return {"scale": (float(norm["std"][0]) / 3.0, float(norm["std"][1]) / 3.0),
            "offset": (0.0, 0.0)}


# ---------------------------------------------------------------------------
# Measuring
#
# Every measurement is a "bench" with a fixed number of samples, taken in
# `rounds` slices. The benches take turns slice by slice (alternating the
# order every round), so a noisy neighbour on a shared machine slows all of
# them alike instead of whichever happened to run during the burst; the
# same-run ratios stay meaningful even when absolute numbers move.


ROUNDS = 20     # every bench runs in this many slices, taking turns with the others
WARMUP = 2_000  # untimed calls before every timed loop


def round_slice(n: int, r: int, rounds: int) -> tuple[int, int]:
    """Samples [lo, hi) of round r when n samples are split into ``rounds`` slices."""
    return n * r // rounds, n * (r + 1) // rounds


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's garbage collector off for a timed loop (and back on after)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# ---------------------------------------------------------------------------
# Output


def write_json(result: Any, path: Path) -> None:
    """Write a typed result as indented JSON (via a temporary file and a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_json(result), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
