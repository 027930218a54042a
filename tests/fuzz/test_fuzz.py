"""Bounded coverage-guided fuzz runs (issue 13, Build 3); docs/reliability.md has
the longer documented runs.

* The frame decoder and the engine behind it: libFuzzer (clang, with ASan
  and UBSan) on tests/fuzz/fuzz_frames.cpp, for TMN_FUZZ_S seconds.
* The JSON control plane: atheris on tests/fuzz/fuzz_control.py, for
  TMN_FUZZ_RUNS inputs.

A crash, a sanitizer report or a broken contract makes the fuzzer exit
non-zero and fails the test; each prints its executions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tmn.protocol import encode_ticks, make_ticks

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SECONDS = int(os.environ.get("TMN_FUZZ_S", "30"))
RUNS = int(os.environ.get("TMN_FUZZ_RUNS", "50000"))
# the engine's sources: every one but the per-ISA kernels (built once, scalar, below)
# and the server (it needs libzmq, which the fuzz target does not use)
SOURCES = sorted(p.stem for p in (ROOT / "cpp" / "src").glob("*.cpp")
                 if p.stem not in ("gru_kernels", "server"))
CLANG = shutil.which("clang++-14") or shutil.which("clang++")


def build_frame_fuzzer(out: Path) -> Path:
    """clang++ -fsanitize=fuzzer,address,undefined over the engine's sources
    (the portable kernels only: the target is the decoder and the maths)."""
    exe = out / "fuzz_frames"
    cmd = [CLANG, "-std=c++20", "-O1", "-g", "-fsanitize=fuzzer,address,undefined",
           "-fno-sanitize-recover=undefined", f"-I{ROOT / 'cpp' / 'include'}",
           "-DTMN_ISA=scalar", str(ROOT / "cpp" / "src" / "gru_kernels.cpp"),
           *(str(ROOT / "cpp" / "src" / f"{s}.cpp") for s in SOURCES),
           str(HERE / "fuzz_frames.cpp"), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0 and "fuzzer" in r.stderr and "cannot find" in r.stderr:
        pytest.skip(f"{CLANG} has no libFuzzer runtime (Debian: libclang-rt-14-dev)")
    assert r.returncode == 0, r.stderr
    return exe


def seed_frames(corpus: Path) -> None:
    t = 1.0 + np.arange(8) / 2000.0
    ids = np.array([1, 2, 1, 3, 1, 2, 1, 99], dtype=np.uint64)
    good = make_ticks(t, np.cos(t), np.sin(t), -np.sin(t), np.cos(t), ids)
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "good").write_bytes(encode_ticks(good, seq=7))
    bad = good.copy()
    bad["x"][3], bad["t"][5] = 1e300, 0.5
    (corpus / "refused").write_bytes(encode_ticks(bad, seq=14))
    (corpus / "truncated").write_bytes(encode_ticks(good)[:40])


def executions(output: str) -> int:
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", output)
    return int(m.group(1)) if m else -1


@pytest.mark.skipif(CLANG is None, reason="clang++ not installed (.ci/run installs clang-14)")
def test_libfuzzer_on_the_frame_decoder_and_engine(tmp_path: Path) -> None:
    exe = build_frame_fuzzer(tmp_path)
    seed_frames(tmp_path / "corpus")
    r = subprocess.run([str(exe), f"-max_total_time={SECONDS}", "-print_final_stats=1",
                        "-rss_limit_mb=2048", str(tmp_path / "corpus")], capture_output=True,
                       text=True, timeout=SECONDS + 300)
    n = executions(r.stderr)
    print(f"libFuzzer fuzz_frames: {n} executions in {SECONDS} s, exit {r.returncode}")
    assert r.returncode == 0, r.stderr[-4000:]
    assert n > 1000


def test_atheris_on_the_json_control_plane() -> None:
    pytest.importorskip("atheris", reason="atheris not installed (pip install '.[fuzz]')")
    r = subprocess.run([sys.executable, str(HERE / "fuzz_control.py"), f"-runs={RUNS}",
                        "-print_final_stats=1"], capture_output=True, text=True,
                       timeout=1200)
    n = executions(r.stderr)
    print(f"atheris fuzz_control: {n} executions, exit {r.returncode}")
    assert r.returncode == 0, r.stderr[-4000:]
    assert n >= RUNS
