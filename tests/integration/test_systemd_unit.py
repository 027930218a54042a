"""docs/tmn-serve.service: hardened, notify-ready (issue 13, Build 7).

`systemd-analyze security` must rate the unit <= 3.0 where systemd-analyze
exists (.ci/run installs systemd), and tmn-serve must send READY=1 and
STOPPING=1 to $NOTIFY_SOCKET as Type=notify expects.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from serve_daemon import STARTUP_TIMEOUT_S, STOP_TIMEOUT_S, free_tcp_endpoint, serve_argv

UNIT = Path(__file__).resolve().parents[2] / "docs" / "tmn-serve.service"
MAX_EXPOSURE = 3.0


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_the_unit_runs_as_its_own_user_with_two_capabilities_and_notify() -> None:
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["DynamicUser"] == ["yes"]
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
        assert s[key] == ["CAP_SYS_NICE CAP_IPC_LOCK"]
    core = re.search(r"--core (\d+)", s["ExecStart"][0])
    assert core and s["CPUAffinity"] == [core.group(1)]
    assert "127.0.0.1" in s["ExecStart"][0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_security_rates_the_unit_at_most_3() -> None:
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout[-2000:] + r.stderr[-2000:]
    print(f"systemd-analyze security: {m.group(1)}")
    assert float(m.group(1)) <= MAX_EXPOSURE


def test_tmn_serve_tells_systemd_when_it_is_ready_and_when_it_stops(models, tmp_path: Path
                                                                   ) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(STARTUP_TIMEOUT_S)
        proc = subprocess.Popen(serve_argv(models["A"], free_tcp_endpoint()),
                                env={**os.environ, "NOTIFY_SOCKET": str(path)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert sock.recv(256) == b"READY=1"
            proc.send_signal(signal.SIGTERM)
            assert sock.recv(256) == b"STOPPING=1"
            assert proc.wait(timeout=STOP_TIMEOUT_S) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
