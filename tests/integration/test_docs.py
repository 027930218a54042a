"""The user documentation stays true.

* docs/tutorial.md: every ```bash block, in order, runs as one script in a
  fresh folder (with the repo's configs/) on the tiny data it makes: train,
  evaluate, serve and replay, the Hub folder and a dry-run publish. A block
  right after a ``<!-- not run by the test`` comment (the install) is skipped.
* docs/api.md: ``docs/gen_api.py --check`` regenerates it from the installed
  code (docstrings, the ``_core.pyi`` stub, every CLI's ``--help``) and fails
  when it differs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NOT_RUN = "<!-- not run by the test"
BLOCK = re.compile(r"^```bash\n(.*?)^```$", re.S | re.M)


def runnable_blocks(markdown: str) -> list[str]:
    """The ```bash blocks of a page, without those right after a NOT_RUN comment."""
    blocks = []
    for m in BLOCK.finditer(markdown):
        before = markdown[:m.start()].rstrip().splitlines()
        if before and before[-1].startswith(NOT_RUN):
            continue
        blocks.append(m.group(1))
    return blocks


def test_runnable_blocks_skip_only_the_marked_install() -> None:
    page = "a\n\n<!-- not run by the test: x -->\n```bash\npip install .\n```\n\n```bash\necho 1\n```\n"
    assert runnable_blocks(page) == ["echo 1\n"]


@pytest.mark.slow
def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    blocks = runnable_blocks((DOCS / "tutorial.md").read_text())
    assert len(blocks) >= 5, "the tutorial lost its steps"
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    script = "set -euo pipefail\n" + "\n".join(blocks)
    start = time.monotonic()
    try:
        proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
    finally:  # a failed step must not leave the tutorial's daemon running
        pidfile = tmp_path / "tmn.pid"
        if pidfile.exists() and pidfile.read_text().strip().isdigit():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
    print(f"tutorial: {len(blocks)} blocks in {time.monotonic() - start:.0f} s")
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    for made in ("run/model/config.json", "acc/accuracy.json", "acc/accuracy.md",
                 "hf/README.md", "hf/examples/train.sh"):
        assert (tmp_path / made).is_file(), f"the tutorial did not make {made}"
    assert "15000 ticks" in proc.stdout, proc.stdout  # the replay reached the daemon
    assert re.search(r"would upload \d+ files from hf", proc.stdout), proc.stdout
    assert "verdict" in proc.stdout.splitlines()[-1], proc.stdout  # inference.py's line


def test_api_md_is_what_gen_api_writes() -> None:
    page = (DOCS / "api.md").read_text()
    made_with = re.search(r"Generated with Python (\d+)\.(\d+)\.", page)
    assert made_with, "docs/api.md does not say which Python generated it"
    if tuple(map(int, made_with.groups())) != sys.version_info[:2]:
        pytest.skip(f"docs/api.md was generated with Python {'.'.join(made_with.groups())}; "
                    "argparse's --help layout differs between versions")
    proc = subprocess.run([sys.executable, str(DOCS / "gen_api.py"), "--check"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_api_md_lists_every_field_of_the_compiled_prediction() -> None:
    """tmn.Prediction is a C type whose fields are getset descriptors, not
    properties: api.md names each one, with its type from the stub."""
    import tmn

    page = (DOCS / "api.md").read_text()
    section = page.split("### `tmn.Prediction`", 1)[1].split("\n### ", 1)[0]
    fields = [n for n, m in vars(tmn.Prediction).items()
              if not n.startswith("_") and type(m).__name__ == "getset_descriptor"]
    assert {"path", "radius", "verdict", "stage_ns"} <= set(fields)
    missing = [n for n in fields if f"- `{n}: " not in section]
    assert missing == [], f"docs/api.md lacks tmn.Prediction's {missing}"
