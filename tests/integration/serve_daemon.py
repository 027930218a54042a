"""Running a REAL ``tmn-serve`` daemon (``python -m tmn.serve``) on loopback, for tests.

A daemon is started as a subprocess on a free TCP port of 127.0.0.1 (or an
``ipc://`` path), and is ready once it answers ``health``. Teardown sends
SIGTERM and requires exit code 0 within a bounded wait; a daemon that does not
stop is killed and the test fails. Every wait here is bounded in time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zmq

from tmn.client import Client

STARTUP_TIMEOUT_S = 30.0   # a loaded 2-core machine can be slow to import and bind
STOP_TIMEOUT_S = 20.0
REPLY_TIMEOUT_S = 10.0
BIND_ATTEMPTS = 3          # a free port can be taken by someone else before we bind it

# The models every integration test uses: two systems with different horizon
# counts K, so that a reply tells which model answered it.
HORIZONS = {"A": [100.0, 200.0, 300.0], "B": [50.0 * (k + 1) for k in range(10)]}


def free_tcp_endpoint() -> str:
    """``tcp://127.0.0.1:PORT`` with a port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@dataclass
class Daemon:
    """One running tmn-serve process."""

    proc: subprocess.Popen
    endpoint: str
    argv: list[str]
    log_path: Path
    pub: str | None = None
    pidfile: Path | None = None
    returncode: int | None = field(default=None)

    def client(self, timeout_s: float = REPLY_TIMEOUT_S) -> Client:
        """A fresh ``tmn.Client`` (DEALER) connected to this daemon."""
        return Client(self.endpoint, timeout_s=timeout_s)

    def log(self) -> str:
        """Everything the daemon wrote to stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then wait (bounded). Kills and fails the test if it hangs."""
        if self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout_s)
            self.returncode = self.proc.returncode
            pytest.fail(f"tmn-serve ({' '.join(self.argv)}) did not exit within {timeout_s} s "
                        f"of SIGTERM; killed. Log:\n{self.log()}")
        return self.returncode


SERVE_MODULE = (sys.executable, "-m", "tmn.serve")  # tmn-serve of this interpreter


def serve_argv(model: Path | None, endpoint: str, *extra: str,
               launcher: Sequence[str] = SERVE_MODULE) -> list[str]:
    """The command line of a daemon (by default the module form of ``tmn-serve``;
    ``launcher`` is the command before the flags, e.g. another venv's script)."""
    argv = [*launcher, "--endpoint", endpoint]
    if model is not None:
        argv += ["--model", str(model)]
    return argv + list(extra)


def _health_ok(endpoint: str, proc: subprocess.Popen, deadline: float,
               probe_keys: tuple[Path, Path] | None = None) -> bool:
    """Poll ``health`` until it answers (True) or the process exits (False);
    fails the test at the deadline. ``probe_keys``: (client .key_secret, server
    .key) for a CURVE daemon."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if probe_keys is not None:
        from tmn.keys import load_public_key, load_secret_key

        sock.curve_secretkey = load_secret_key(probe_keys[0]).encode()
        sock.curve_publickey = load_public_key(probe_keys[0]).encode()
        sock.curve_serverkey = load_public_key(probe_keys[1]).encode()
    try:
        sock.connect(endpoint)
        sock.send(b'{"cmd": "health"}')  # queued until the daemon has bound
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            if sock.poll(200, zmq.POLLIN):
                reply = json.loads(sock.recv())
                assert reply["ok"] and reply["status"] == "serving", reply
                return True
        return False
    finally:
        sock.close(linger=0)


def start_daemon(model: Path | None, *extra: str, log_dir: Path, endpoint: str | None = None,
                 pub: bool = False, pidfile: Path | None = None,
                 probe_keys: tuple[Path, Path] | None = None,
                 launcher: Sequence[str] = SERVE_MODULE) -> Daemon:
    """Start tmn-serve and wait (bounded) until it answers ``health``.

    ``endpoint=None`` picks a free loopback TCP port (retrying if another
    process takes it first); ``pub=True`` adds ``--pub`` on another free port.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(BIND_ATTEMPTS):
        ep = endpoint or free_tcp_endpoint()
        pub_ep = free_tcp_endpoint() if pub else None
        args = list(extra)
        if pub_ep:
            args += ["--pub", pub_ep]
        if pidfile is not None:
            args += ["--pidfile", str(pidfile)]
        argv = serve_argv(model, ep, *args, launcher=launcher)
        log_path = log_dir / f"tmn-serve-{time.monotonic_ns()}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log,
                                    stdin=subprocess.DEVNULL)
        d = Daemon(proc, ep, argv, log_path, pub_ep, pidfile)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        if _health_ok(ep, proc, deadline, probe_keys):
            return d
        if proc.poll() is None:  # alive but silent: give up on it
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
            pytest.fail(f"tmn-serve did not answer health within {STARTUP_TIMEOUT_S} s: "
                        f"{' '.join(argv)}\n{d.log()}")
        if "cannot bind" in d.log() and endpoint is None and attempt + 1 < BIND_ATTEMPTS:
            continue  # the port was taken between our probe and its bind
        pytest.fail(f"tmn-serve exited with {proc.returncode} at startup: {' '.join(argv)}\n"
                    f"{d.log()}")
    raise AssertionError("unreachable")


def _stop_all(daemons: list[Daemon]) -> None:
    problems = []
    for d in daemons:
        if d.returncode is not None:  # the test stopped it and checked it itself
            continue
        rc = d.terminate()
        if rc != 0:
            problems.append(f"{' '.join(d.argv)} exited with {rc} after SIGTERM:\n{d.log()}")
    if problems:
        pytest.fail("\n\n".join(problems))


@contextmanager
def running_daemons() -> Iterator[list[Daemon]]:
    """Collects daemons; stops each with SIGTERM and requires exit code 0."""
    started: list[Daemon] = []
    try:
        yield started
    finally:
        _stop_all(started)


class DaemonFactory:
    """``serve(model, *flags, endpoint=None, pub=False, pidfile=None)`` starts a daemon
    that is stopped (SIGTERM, exit code 0 required) when the test ends."""

    def __init__(self, started: list[Daemon], log_dir: Path) -> None:
        self._started = started
        self._log_dir = log_dir

    def __call__(self, model: Path | None, *extra: str, **kw: object) -> Daemon:
        d = start_daemon(model, *extra, log_dir=self._log_dir, **kw)  # type: ignore[arg-type]
        self._started.append(d)
        return d


def tmn_client_argv() -> list[str]:
    """The installed ``tmn-client`` script, else its module form."""
    exe = shutil.which("tmn-client")
    return [exe] if exe else [sys.executable, "-m", "tmn.client"]


def short_ipc_endpoint(tmp_path: Path, name: str = "tmn.ipc") -> str:
    """An ``ipc://`` endpoint under tmp_path (Unix socket paths must stay < 108 bytes)."""
    path = tmp_path / name
    if len(str(path)) > 100:
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="tmn-", dir="/tmp")) / name
    assert not os.path.exists(path)
    return f"ipc://{path}"
