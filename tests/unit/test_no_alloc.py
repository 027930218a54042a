"""The tick path never allocates (DESIGN.md, "Hot-path rules").

Builds tests/unit/alloc_check.cpp against the engine sources with g++ and runs
it. That program replaces every global allocation function with a counting
one, checks that the counters see deliberate allocations, then drives the
engine's hot path (tick, reset, evict_idle, replay, network_step) for fp32 and
int8, System A and B (with pass and both fallback verdicts), on every ISA the
CPU supports, and fails if anything was allocated or freed while armed.

The build mirrors CMakeLists.txt: gru_kernels.cpp is compiled once per ISA
with -DTMN_ISA=<isa> and that ISA's flags; every other cpp/src/*.cpp gets
-DTMN_HAVE_AVX2 -DTMN_HAVE_AVX512 on x86-64. As in CMake, the objects go into a
static library, so the program links only what it uses (the ZeroMQ server
objects are compiled but not linked, and libzmq is not needed at link time).
The Python package is not needed.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "cpp" / "src"
INCLUDE = ROOT / "cpp" / "include"
PROGRAM = Path(__file__).resolve().with_name("alloc_check.cpp")
GXX = shutil.which("g++")
# binutils' ar comes with g++; gcc-ar is the same tool behind a wrapper.
AR = shutil.which("ar") or shutil.which("gcc-ar") or "ar"

pytestmark = pytest.mark.skipif(GXX is None, reason="g++ not found on PATH: cannot build alloc_check.cpp")

X86 = platform.machine().lower() in ("x86_64", "amd64")
COMMON = ["-std=c++20", "-O2", "-DNDEBUG", f"-I{INCLUDE}"]
# What CMakeLists.txt gives every kernel object, besides the per-ISA flags.
KERNEL_COMMON = ["-fno-trapping-math", "-fno-tree-loop-distribute-patterns"]
# Fallback copies of CMakeLists.txt's TMN_FLAGS_<isa>; the file is read first.
DEFAULT_ISA_FLAGS = {
    "scalar": ["-fno-tree-vectorize"],
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni",
               "-mprefer-vector-width=512"],
}


def isa_flags() -> dict[str, list[str]]:
    """TMN_FLAGS_<isa> from CMakeLists.txt, so this build tracks the real one."""
    flags = {isa: list(f) for isa, f in DEFAULT_ISA_FLAGS.items()}
    try:
        text = (ROOT / "CMakeLists.txt").read_text()
    except OSError:
        return flags
    for isa, body in re.findall(r"set\(\s*TMN_FLAGS_(\w+)\s+([^)]*)\)", text):
        flags[isa] = body.split()
    return flags


def compile_jobs(out: Path) -> tuple[list[str], list[list[str]]]:
    """(the test program's compile command, the engine library's commands)."""
    flags = isa_flags()
    isas = ["scalar", "avx2", "avx512"] if X86 else ["scalar"]
    have = ["-DTMN_HAVE_AVX2", "-DTMN_HAVE_AVX512"] if X86 else []
    program = [GXX, *COMMON, "-Wall", "-Wextra", *have, "-c", str(PROGRAM),
               "-o", str(out / "alloc_check.o")]
    library = []
    for isa in isas:
        library.append([GXX, *COMMON, f"-DTMN_ISA={isa}", *KERNEL_COMMON, *flags[isa],
                        "-c", str(SRC / "gru_kernels.cpp"), "-o", str(out / f"gru_kernels_{isa}.o")])
    for src in SRC.glob("*.cpp"):
        if src.name == "gru_kernels.cpp":
            continue
        library.append([GXX, *COMMON, "-pthread", *have, "-c", str(src),
                        "-o", str(out / f"{src.stem}.o")])
    return program, library


def output_of(cmd: list[str]) -> str:
    return cmd[cmd.index("-o") + 1]


def source_size(cmd: list[str]) -> int:
    return Path(cmd[cmd.index("-c") + 1]).stat().st_size


def run_checked(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def alloc_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("alloc_check")
    program, library = compile_jobs(out)
    # Largest sources first, so the two-core schedule ends together.
    jobs = sorted([program, *library], key=source_size, reverse=True)
    workers = max(2, os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda cmd: run_checked(cmd, timeout=180), jobs))
    archive = out / "libtmn_engine.a"
    run_checked([AR, "rcs", str(archive), *(output_of(cmd) for cmd in library)], timeout=60)
    exe = out / "alloc_check"
    # -rdynamic: the program names the functions in the stack trace of any
    # allocation it catches.
    run_checked([GXX, "-rdynamic", "-pthread", output_of(program), str(archive), "-o", str(exe),
                 "-ldl"], timeout=120)
    return exe


def test_tick_path_never_allocates(alloc_check: Path) -> None:
    proc = subprocess.run([str(alloc_check)], capture_output=True, text=True, timeout=60)
    report = f"exit code {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    print(proc.stdout)

    self_check = re.search(r"^self_check_allocs=(\d+) self_check_frees=(\d+)$", proc.stdout, re.M)
    assert self_check, "no self-check line\n" + report
    assert int(self_check.group(1)) > 0 and int(self_check.group(2)) > 0, (
        "the counters did not see deliberate allocations: the check would pass vacuously\n" + report)

    hot = re.search(r"^hot_path_allocs=(\d+) hot_path_frees=(\d+) hot_path_ticks=(\d+)$",
                    proc.stdout, re.M)
    assert hot, "no hot-path summary line\n" + report
    allocs, frees, ticks = (int(g) for g in hot.groups())
    assert allocs == 0 and frees == 0, (
        f"the hot path allocated {allocs} times and freed {frees} times\n" + report)
    assert ticks > 0, "no ticks were run\n" + report

    engines = re.search(r"^engines_checked=(\d+)$", proc.stdout, re.M)
    assert engines and int(engines.group(1)) >= 8, "too few engines were checked\n" + report
    assert proc.returncode == 0, report
    assert "RESULT: PASS" in proc.stdout, report
