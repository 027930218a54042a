"""The fast-math compute floor of ``tmn-bench engine`` (bench/README.md, "The
fast-math floor"): the model's GRU step and head, of its exact sizes, in plain
C++ compiled with ``-O3 -march=native -ffast-math -funroll-loops`` into a
temporary shared library (fastmath_floor.cpp), timed in C++ with the
engine's own clock. It is a measuring stick, never part of tmn.

Raises ImportError (the bench is then skipped, with the reason) when no C++
compiler is found or the library does not build.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tmn import _core
from tmn.model import Model
from tmn_bench.baselines import Reference
from tmn_bench.common import round_slice
from tmn_bench.results import FloorStep, Percentiles

SOURCE = Path(__file__).with_name("fastmath_floor.cpp")
FLAGS = ["-O3", "-march=native", "-ffast-math", "-funroll-loops", "-std=c++17", "-fPIC"]
# linked without -ffast-math: with it GCC (before 13) links crtfastmath.o into the
# library, whose constructor turns on flush-to-zero and denormals-are-zero in the
# MXCSR of the whole process that loads it (the engine's and numpy's floats too)
LINK = ["-shared"]
# libmvec: the vectorised expf/tanhf that -ffast-math calls on glibc
LIBS = (["-lmvec"], [])


def compiler() -> str | None:
    """The C++ compiler: $CXX, else c++, else g++."""
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def build(out_dir: Path, inputs: int, hidden: int, outputs: int) -> tuple[Path, str, list[str]]:
    """Compile the floor for these sizes into ``out_dir``: (library, compiler
    version, flags). Raises ImportError if it cannot be built."""
    cxx = compiler()
    if cxx is None:
        raise ImportError("no C++ compiler ($CXX, c++ or g++) to build the fast-math floor")
    lib = out_dir / "fastmath_floor.so"
    sizes = [f"-DTMN_F={inputs}", f"-DTMN_H={hidden}", f"-DTMN_O={outputs}"]
    errors = []
    for libs in LIBS:
        obj = out_dir / "fastmath_floor.o"
        proc = subprocess.run([cxx, *FLAGS, *sizes, "-c", str(SOURCE), "-o", str(obj)],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode == 0:
            proc = subprocess.run([cxx, *LINK, str(obj), "-o", str(lib), *libs],
                                  capture_output=True, text=True, timeout=300)
        if proc.returncode == 0:
            version = subprocess.run([cxx, "--version"], capture_output=True, text=True,
                                     timeout=30).stdout.splitlines()
            return lib, (version[0] if version else cxx), [*FLAGS, *sizes, *LINK, *libs]
        errors.append(proc.stderr.strip().splitlines()[-1:] or ["?"])
    raise ImportError(f"the fast-math floor did not build with {cxx}: {errors[-1][0]}")


class FloorBench:
    """The floor stepping through the same inputs as the other baselines (one
    stream's z-scored features, the hidden state carried), ``steps`` steps in
    the interleaved rounds, each step timed by two reads of the engine's clock
    (rdtsc, or CLOCK_MONOTONIC when the engine's clock is steady_clock)."""

    def __init__(self, model: Model, z: np.ndarray, ref: Reference) -> None:
        t = model.spec().tensors
        H, F, O = model.hidden, z.shape[1], 2 * len(model.horizons_ms)
        with tempfile.TemporaryDirectory(prefix="tmn-floor-") as tmp:
            path, self.version, self.flags = build(Path(tmp), F, H, O)
            self.lib = ctypes.CDLL(str(path))  # mapped now: the file may go
        self.lib.tmn_floor_run.restype = ctypes.c_double
        sizes = (ctypes.c_int(), ctypes.c_int(), ctypes.c_int())
        self.lib.tmn_floor_sizes(*(ctypes.byref(s) for s in sizes))
        assert tuple(s.value for s in sizes) == (F, H, O), "the floor was built for other sizes"
        self._weights = [np.ascontiguousarray(t[k], np.float32)
                         for k in ("w_ih", "w_hh", "b_ih", "b_hh", "w_out", "b_out")]
        self.lib.tmn_floor_set(*(w.ctypes.data_as(ctypes.c_void_p) for w in self._weights))
        self.z, self.ref = np.ascontiguousarray(z, np.float32), ref
        self.tsc = bool(_core.clock_uses_tsc())
        self.ns_per_tick = float(_core.clock_ns_per_tick())
        self.ticks = np.zeros(len(z), np.uint64)
        self.h = np.zeros(H, np.float32)
        self._run(0, min(2000, len(z)))  # warm up, then start from h = 0 again
        self.h[...] = 0.0
        self.checksum = 0.0

    def _run(self, lo: int, hi: int) -> float:
        return float(self.lib.tmn_floor_run(
            self.z[lo:].ctypes.data_as(ctypes.c_void_p), ctypes.c_long(hi - lo),
            ctypes.c_int(self.tsc), self.ticks[lo:].ctypes.data_as(ctypes.c_void_p),
            self.h.ctypes.data_as(ctypes.c_void_p)))

    def run_round(self, r: int, rounds: int) -> None:
        lo, hi = round_slice(len(self.z), r, rounds)
        if hi > lo:
            self.checksum += self._run(lo, hi)

    def summary(self) -> FloorStep:
        n = len(self.z)
        return FloorStep(
            version=self.version, steps=n,
            config={"flags": " ".join(self.flags), "clock": "tsc" if self.tsc else "steady"},
            step_ns=Percentiles.of(self.ticks.astype(np.float64) * self.ns_per_tick),
            checksum=self.checksum, **self.ref.agreement(n, self.h, self.checksum))
