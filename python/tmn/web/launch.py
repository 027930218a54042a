"""Start ``tmn-client web`` as a process and learn its page's URL: for the tests
and the script that records docs/web-demo.gif."""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def running_demo(*args: str, log: Path, timeout_s: float = 30.0
                 ) -> Iterator[tuple[subprocess.Popen, str]]:
    """``tmn-client web --port 0 ARGS`` with its stderr in ``log``; yields the process
    and the page's URL once it listens. At the end it is stopped (SIGTERM, then
    SIGKILL after 20 s) if it still runs. Raises RuntimeError if no URL comes
    within ``timeout_s``."""
    argv = [sys.executable, "-m", "tmn.client", "web", "--port", "0", *args]
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout_s)
        line = proc.stdout.readline().decode(errors="replace") if ready else ""
        if " open http://" not in line:
            raise RuntimeError(f"tmn-client web gave no URL within {timeout_s:g} s "
                               f"({line.strip()!r}); its stderr: {log.read_text()[-2000:]}")
        yield proc, line.split(" open ", 1)[1].split()[0]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)
        proc.stdout.close()
