"""The tick path never allocates (DESIGN.md, "Hot-path rules").

Builds CMake's C++ test target (``-DTMN_BUILD_TESTS=ON``, without the Python
module) and runs its allocation checker, tests/unit/alloc_check.cpp. That
program replaces every global allocation function with a counting one,
checks that the counters see deliberate allocations, then drives the engine's
hot path (tick, reset, evict_idle, replay, network_step) for fp32 and int8,
System A and B (with pass and both fallback verdicts), on every ISA the CPU
supports, and fails if anything was allocated or freed while armed.

The engine is compiled exactly as the module is (same CMakeLists.txt, same
flags). The build directory is ``build/cpp-tests`` in the checkout (git
ignores ``build/``), so a second run only rebuilds what changed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "cpp-tests"
CMAKE = shutil.which("cmake")

pytestmark = pytest.mark.skipif(CMAKE is None or shutil.which("g++") is None,
                                reason="cmake and g++ are needed to build the C++ tests")


def run_checked(cmd: list[str], timeout: float) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")


@pytest.fixture(scope="module")
def alloc_check() -> Path:
    assert CMAKE is not None
    run_checked([CMAKE, "-S", str(ROOT), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release",
                 "-DTMN_BUILD_TESTS=ON", "-DTMN_BUILD_PYTHON=OFF"], timeout=120)
    run_checked([CMAKE, "--build", str(BUILD), "--target", "alloc_check", "--parallel",
                 str(max(2, os.cpu_count() or 2))], timeout=600)
    exe = BUILD / "alloc_check"
    assert exe.is_file(), f"CMake did not build {exe}"
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
