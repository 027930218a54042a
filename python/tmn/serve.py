"""tmn-serve: the ZeroMQ prediction daemon.

The C++ loop (tmn._core.Server) owns the sockets and the engine on its pinned
core. This module parses the command line, loads the model, starts the loop,
and serves the control plane (JSON: health, stats, reset, reload) from the
main thread. SIGTERM or SIGINT stops intake, drains, logs the final stats and
exits 0; SIGHUP reloads the served model. docs/security.md states the trust
model. With ``--cores`` the daemon runs one C++ loop per core, each with its
own engine (its own streams) on its own endpoint (docs/protocol.md, "Several
cores and several daemons"); the control plane answers on every endpoint for
the whole daemon.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tmn import _core
from tmn.argtypes import bounded
from tmn.engine import DEFAULT_MAX_STREAMS, Engine
from tmn.hub import HubError
from tmn.version import __version__
from tmn.keys import KeyFileError, load_public_keys, load_secret_key
from tmn.model import Model, ModelFormatError, load

log = logging.getLogger("tmn.serve")

DEFAULT_ENDPOINT = _core.DEFAULT_ENDPOINT
MAX_STREAMS = 65536  # live accuracy keeps ~1 KB per stream and horizon
READ_VERBS = ("health", "stats")
CHANGE_VERBS = ("reset", "reload")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The tmn-serve command line."""
    p = argparse.ArgumentParser(prog="tmn-serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--core", type=bounded(int, 0, 4095), default=None,
                   help="pin the tick loop to this CPU (default: not pinned)")
    p.add_argument("--cores", type=core_list, default=None, metavar="LIST",
                   help="one tick loop per CPU of LIST (e.g. 2-5 or 0,2), each with its own "
                        "engine and streams on its own endpoint: the first binds --endpoint, "
                        "the next ones the next ports (ipc: PATH.1, PATH.2, ...); clients "
                        "shard streams over them (tmn.Client with several endpoints)")
    p.add_argument("--io-core", type=bounded(int, 0, 4095), default=None,
                   help="pin libzmq's I/O thread to this CPU (default: the --core CPU "
                        "unless --spin, then not pinned)")
    p.add_argument("--model", default=None, metavar="DIR|OWNER/NAME[@REV]",
                   help="model folder, or a Hugging Face model repo id (needs tmn[hub]; an "
                        "existing folder of that name wins) (default: the built-in model)")
    p.add_argument("--model-root", type=Path, default=None,
                   help="reload takes only model folders under this one (default: the "
                        "folder that holds --model)")
    p.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    p.add_argument("--endpoint", default=DEFAULT_ENDPOINT,
                   help=f"ROUTER endpoint to bind (default {DEFAULT_ENDPOINT}); off loopback "
                        "it needs --curve-secret or --insecure")
    p.add_argument("--pub", default=None, metavar="EP",
                   help="also publish every prediction on a PUB socket bound here")
    p.add_argument("--curve-secret", type=Path, default=None, metavar="FILE",
                   help="the server's CURVE secret key file (tmn-client keygen); clients "
                        "must then present a key from --client-keys")
    p.add_argument("--client-keys", type=Path, default=None, metavar="DIR",
                   help="folder of the public key files (*.key) of the clients allowed")
    p.add_argument("--admin-keys", type=Path, default=None, metavar="DIR",
                   help="folder of the public keys allowed to reset any stream and reload")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback endpoint without CURVE (logged as a warning)")
    p.add_argument("--max-streams", type=bounded(int, 1, MAX_STREAMS), default=DEFAULT_MAX_STREAMS)
    p.add_argument("--idle-evict-s", type=bounded(float, 0), default=60.0,
                   help="forget streams with no tick for this long (default 60 s)")
    p.add_argument("--reclaim-idle-s", type=bounded(float, 0), default=2.0,
                   help="a full stream table reuses streams idle this long (default 2 s)")
    p.add_argument("--max-streams-per-client", type=bounded(int, 1, MAX_STREAMS), default=None,
                   metavar="N",
                   help="streams one client may hold: one CURVE key, or without CURVE one "
                        "connection (default: a quarter of --max-streams, at least 1)")
    p.add_argument("--spin", action="store_true",
                   help="busy-poll the socket: lowest latency, one core at 100%%")
    p.add_argument("--rt-priority", type=bounded(int, 0, 99), default=0, metavar="P",
                   help="SCHED_FIFO priority 1-99 for the loop (warns and goes on if denied)")
    p.add_argument("--no-mlock", action="store_true", help="do not lock memory")
    p.add_argument("--echo", action="store_true",
                   help="benchmark floor: answer each binary request with its own bytes, "
                        "run no model (control messages still work)")
    p.add_argument("--pidfile", type=Path, default=None)
    p.add_argument("--log-level", default="INFO",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p.parse_args(argv)


MAX_LOOPS = 64


def core_list(text: str) -> list[int]:
    """``2-5`` or ``0,2,4`` or ``0-1,4``: distinct CPUs, in the order given."""
    cores: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            first, last = int(lo), int(hi) if sep else int(lo)
            if not 0 <= first <= last <= 4095:
                raise ValueError
            cores.extend(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected CPUs like 2-5 or 0,2,4, got {text!r}") from None
    if len(set(cores)) != len(cores):
        raise argparse.ArgumentTypeError(f"a CPU is named twice in {text!r}")
    if len(cores) > MAX_LOOPS:
        raise argparse.ArgumentTypeError(f"at most {MAX_LOOPS} cores, got {len(cores)}")
    return cores


def loop_endpoint(endpoint: str, i: int) -> str:
    """The endpoint of loop ``i`` of a daemon bound at ``endpoint``: loop 0 binds
    ``endpoint``; loop i the port i above it (``tcp://host:5555`` -> 5555 + i; a
    wildcard port ``*`` or ``0`` stays a wildcard), or ``PATH.i`` for ipc and
    inproc."""
    if i == 0:
        return endpoint
    scheme, _, rest = endpoint.partition("://")
    if scheme != "tcp":
        return f"{endpoint}.{i}"
    host, _, port = rest.rpartition(":")
    if port in ("*", "0") or not port.isdigit():
        return endpoint
    if int(port) + i > 65535:
        raise ValueError(f"{endpoint}: loop {i} would need port {int(port) + i} > 65535")
    return f"tcp://{host}:{int(port) + i}"


def is_local_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on a loopback address."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name
        return False


def claim_ipc_path(endpoint: str) -> str | None:
    """For ``ipc://PATH``: an error if a live process listens there; a stale
    socket file (nobody listening) is removed. None when the path is free."""
    if not endpoint.startswith("ipc://"):
        return None
    path = endpoint[len("ipc://"):]
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return f"{endpoint}: {path} exists and is not a socket"
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"{endpoint}: {e.strerror}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except ConnectionRefusedError:
            log.info("removing the stale ipc socket %s", path)
            os.unlink(path)
            return None
        except OSError as e:
            return f"{endpoint}: {e.strerror}"
    return f"{endpoint} is in use by another process"


def write_pidfile(path: Path) -> str | None:
    """Write our pid; an error message if another live process holds the file or
    the write fails (a stale pidfile is replaced)."""
    if not path.parent.is_dir():
        return f"pidfile {path}: folder {path.parent} does not exist"
    try:
        with open(path, "rb") as f:  # bounded: the path may be a device
            old = int(f.read(32).split()[0])
    except (OSError, ValueError, IndexError):
        old = None
    if old is not None and old != os.getpid():
        try:
            os.kill(old, 0)
            return f"pidfile {path}: process {old} is running; is another tmn-serve up?"
        except ProcessLookupError:
            log.info("replacing the stale pidfile %s (pid %d is gone)", path, old)
        except PermissionError:
            return f"pidfile {path}: process {old} is running (another user's)"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            data = f"{os.getpid()}\n".encode()
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        if path.is_file():
            path.unlink(missing_ok=True)
        return f"cannot write the pidfile {path}: {e.strerror or e}"
    return None


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state; nothing without $NOTIFY_SOCKET."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())
    except OSError as e:
        log.warning("sd_notify(%s) failed: %s", message, e)


class ControlPlane:
    """Answers JSON control requests for the whole daemon: every loop (one per
    core) and its engine. ``handle`` may be called from several threads (one per
    loop's endpoint): one request runs at a time."""

    def __init__(self, servers: list[_core.Server], engines: list[Engine], precision: str,
                 max_streams: int, model_root: Path, curve: bool = False,
                 admin_keys: frozenset[str] = frozenset()) -> None:
        if not servers or len(servers) != len(engines):
            raise ValueError("one engine per loop, and at least one loop")
        self.servers = servers
        self.engines = engines
        self.lock = threading.Lock()
        self.precision = precision
        self.max_streams = max_streams
        self.model_root = model_root.resolve()
        self.curve = curve
        self.admin_keys = admin_keys
        self.started = time.monotonic()
        # names this daemon in health and stats, so a client of several endpoints
        # counts a daemon's loops once (random: it tells nothing about the host)
        self.daemon = secrets.token_hex(8)
        self.errors: dict[str, int] = {}

    @property
    def engine(self) -> Engine:
        """The engine of the first loop (every loop serves the same model)."""
        return self.engines[0]

    def model_info(self) -> dict[str, Any]:
        """What is being served."""
        m: Model = self.engine.model
        return {"path": str(m.path), "system": m.system, "horizons_ms": m.horizons_ms,
                "hidden": m.hidden, "precision": self.precision, "isa": self.engine.isa,
                "sha256": m.config["weights"]["sha256"]}

    def handle(self, payload: bytes, client_key: str = "") -> dict[str, Any]:
        """One request in, one JSON-able reply out. Never raises: any failure of a
        request becomes an error reply (``internal`` for what we did not foresee)."""
        try:
            with self.lock:
                return self._handle(payload, client_key)
        except Exception as e:  # noqa: BLE001 - the guard of every request
            log.exception("control request failed")
            return self.error("internal", f"the request failed: {type(e).__name__}")

    def _handle(self, payload: bytes, client_key: str) -> dict[str, Any]:
        try:
            req = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError, huge integers
            return self.error("bad_json", f"control message is not valid JSON: {e}")
        except RecursionError:
            return self.error("bad_json", "control message is not valid JSON: nested too deeply")
        if not isinstance(req, dict):
            return self.error("bad_json", "control message must be a JSON object")
        cmd = req.get("cmd")
        handler = {"health": self.health, "stats": self.stats, "reset": self.reset,
                   "reload": self.reload}.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            return self.error("unknown_command",
                              f"unknown cmd {str(cmd)[:64]!r}; known: health, stats, reset, reload")
        admin = self.is_admin(client_key)
        if cmd == "reload" and not admin:
            return self.error("forbidden", "reload needs an admin key (--admin-keys)")
        try:
            return handler({**req, "_client": client_key, "_admin": admin})
        except (ValueError, TypeError, KeyError) as e:
            return self.error("bad_request", str(e)[:512])

    def is_admin(self, client_key: str) -> bool:
        """Without CURVE every peer that can connect is trusted (docs/security.md);
        with CURVE only the admin keys may change what others see."""
        return not self.curve or client_key in self.admin_keys

    def error(self, code: str, message: str) -> dict[str, Any]:
        """An error reply, counted in stats."""
        self.errors[code] = self.errors.get(code, 0) + 1
        return {"ok": False, "error": code, "message": message}

    def health(self, req: dict[str, Any]) -> dict[str, Any]:
        """Is the loop alive and what does it serve."""
        running = all(s.running for s in self.servers)
        return {"ok": True, "status": "serving" if running else "stopped",
                "uptime_s": time.monotonic() - self.started,
                "streams": sum(s.stream_count for s in self.servers),
                "daemon": self.daemon, "endpoints": self.endpoints(), "model": self.model_info()}

    def endpoints(self) -> list[str]:
        """Every loop's bound endpoint, in order: the nodes a client's ring shards
        streams over (docs/protocol.md)."""
        return [s.bound_endpoint for s in self.servers]

    def stats(self, req: dict[str, Any]) -> dict[str, Any]:
        """Counters, latency and live accuracy; ``stream`` adds one stream's accuracy,
        ``per_stream`` adds every scored stream's."""
        import psutil

        s = _core.loops_stats(self.servers)
        s["daemon"], s["endpoints"] = self.daemon, self.endpoints()
        proc = psutil.Process()
        with proc.oneshot():
            cpu = proc.cpu_times()
            s["process"] = {"rss_bytes": proc.memory_info().rss,
                            "cpu_user_s": cpu.user, "cpu_system_s": cpu.system,
                            "cpu_percent": proc.cpu_percent(interval=None),
                            "threads": proc.num_threads()}
        s["control_errors"] = dict(self.errors)
        s["uptime_s"] = time.monotonic() - self.started
        s["model"] = self.model_info()
        s["report_rate"] = report_rate(s["latency_ns"]["report_interval"],
                                       float(self.engine.model.config["sample_rate_hz"]))
        if "stream" in req:
            s["stream_accuracy"] = self.stream_accuracy(req["_client"], _stream_id(req["stream"]))
        if req.get("per_stream"):
            s.update(self.per_stream(req["_client"], req["_admin"]))
        return {"ok": True, "stats": s}

    def stream_accuracy(self, client_key: str, stream: int) -> list[dict[str, Any]]:
        """A client's stream's live accuracy, from the loop that holds it ([] if none)."""
        for server in self.servers:
            acc = server.stream_accuracy(server.scoped_stream(client_key, stream))
            if acc:
                return acc
        return []

    def per_stream(self, client_key: str, admin: bool) -> dict[str, Any]:
        """Live accuracy per stream. Without CURVE every stream, by its id (one
        namespace). With CURVE a client sees only its own streams, by its own
        ids (never the engine's ids: docs/security.md); an admin also gets
        every client's, by key."""
        if not self.curve:
            return {"per_stream_accuracy": {str(i): server.stream_accuracy(i)
                                            for server in self.servers
                                            for i in server.scored_streams()}}
        held = []  # (accuracy, key, the client's id) of every scored stream, over the loops
        for server in self.servers:
            scored = set(server.scored_streams())
            held += [(server.stream_accuracy(eid), key, cid)
                     for eid, key, cid in server.held_streams() if eid in scored]
        out: dict[str, Any] = {"per_stream_accuracy": {
            str(cid): acc for acc, key, cid in held if key == client_key}}
        if admin:
            by_key: dict[str, dict[str, Any]] = {}
            for acc, key, cid in held:
                by_key.setdefault(key, {})[str(cid)] = acc
            out["per_client_stream_accuracy"] = by_key
        return out

    def reset(self, req: dict[str, Any]) -> dict[str, Any]:
        """Forget one of the caller's streams (an admin may name another client's
        key in ``client``)."""
        stream = _stream_id(req.get("stream"))
        owner = req["_client"]
        if "client" in req:
            if not req["_admin"]:
                return self.error("forbidden", "resetting another client's stream needs an "
                                               "admin key")
            owner = str(req["client"])
            if self.curve and not self.servers[0].knows_client(owner):
                return self.error("unknown_stream", f"stream {stream} is not held")
        # the loop that holds the stream forgets it (the others do not hold it)
        held = [s.reset_stream(s.scoped_stream(owner, stream)) == _core.Status.ok
                for s in self.servers]
        if not any(held):
            return self.error("unknown_stream", f"stream {stream} is not held")
        return {"ok": True, "stream": stream}

    def reload(self, req: dict[str, Any]) -> dict[str, Any]:
        """Load a model (default: the one being served, re-read) and swap it in
        between two requests. Streams start warming again. Only folders under
        the model root are read; outside it, nothing is looked at."""
        path = req.get("model", str(self.engine.model.path))
        precision = req.get("precision", self.precision)
        if not isinstance(path, str) or not isinstance(precision, str):
            return self.error("bad_request", "'model' and 'precision' must be strings")
        folder = Path(path)
        if folder != self.engine.model.path and not self._under_root(folder):
            return self.error("bad_request", f"reload refused: {path[:256]!r} is not under "
                                             "the model root (--model-root)")
        try:
            model = load(folder)
            new = [Engine(model, precision=precision, max_streams=self.max_streams)
                   for _ in self.servers]
        except (ModelFormatError, FileNotFoundError, MemoryError) as e:
            return self.error("bad_request", f"reload refused: {e}")
        for server, engine in zip(self.servers, new):  # each loop between two of its requests
            server.swap_engine(engine._core)
        self.engines, self.precision = new, precision  # drops the old engines
        log.info("reloaded model %s (%s)", model.path, precision)
        return {"ok": True, "model": self.model_info()}


    def _under_root(self, folder: Path) -> bool:
        try:
            return folder.resolve().is_relative_to(self.model_root)
        except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop
            return False


RATE_WARNING_FACTOR = 4.0  # a sensor this many times slower or faster than the grid is worth a word


def report_rate(interval: dict[str, Any], model_hz: float) -> dict[str, Any]:
    """The clients' sensor rate from the median tick interval, against the model's
    grid, with a warning when it is far from it (docs/protocol.md, "Any report rate")."""
    if not interval.get("count"):
        return {"observed_hz": None, "model_hz": model_hz, "warning": None}
    hz = 1e9 / interval["p50"]
    warning = None
    if hz * RATE_WARNING_FACTOR < model_hz:
        warning = (f"ticks arrive at about {hz:.0f} Hz, the model's grid is {model_hz:g} Hz: "
                   f"every tick steps the network about {model_hz / hz:.0f} times on "
                   "interpolated samples; a model trained at a rate nearer the sensor's "
                   "costs less and was trained on what it sees")
    elif hz > RATE_WARNING_FACTOR * model_hz:
        warning = (f"ticks arrive at about {hz:.0f} Hz, faster than the model's grid "
                   f"({model_hz:g} Hz): most ticks reach no new grid sample and repeat "
                   "the last prediction")
    return {"observed_hz": hz, "model_hz": model_hz, "warning": warning}


def _stream_id(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**64:
        raise ValueError(f"'stream' must be an integer in [0, 2^64), got {v!r}")
    return v


def _read_keys(args: argparse.Namespace) -> tuple[str, list[str], frozenset[str]] | str:
    """(server secret, client keys, admin keys), all Z85; or an error message."""
    if args.curve_secret is None:
        if args.client_keys or args.admin_keys:
            return "--client-keys and --admin-keys need --curve-secret"
        return "", [], frozenset()
    if args.client_keys is None and args.admin_keys is None:
        return "--curve-secret needs --client-keys (or --admin-keys): nobody could connect"
    try:
        secret = load_secret_key(args.curve_secret)
        admins = load_public_keys(args.admin_keys) if args.admin_keys else []
        clients = load_public_keys(args.client_keys) if args.client_keys else []
    except KeyFileError as e:
        return str(e)
    return secret, sorted(set(clients) | set(admins)), frozenset(admins)


def _check_exposure(args: argparse.Namespace, curve: bool) -> str | None:
    """Off loopback: CURVE, or --insecure with a warning."""
    for flag, ep in (("--endpoint", args.endpoint), ("--pub", args.pub)):
        if ep is None or is_local_endpoint(ep) or curve:
            continue
        if not args.insecure:
            return (f"{flag} {ep} is not a loopback or ipc endpoint: give it CURVE keys "
                    "(--curve-secret, --client-keys) or pass --insecure")
        log.warning("%s %s is reachable off this host WITHOUT authentication or encryption "
                    "(--insecure): any peer can read every stream and reload models", flag, ep)
    return None


class StartupError(Exception):
    """The daemon cannot start; the message says why (logged, exit code 2)."""


def _startup_checks(args: argparse.Namespace) -> tuple[str, list[str], frozenset[str]]:
    """Cores, keys, exposure and ipc paths; (secret, client keys, admin keys)."""
    allowed = sorted(os.sched_getaffinity(0))
    if args.cores is not None and (args.core is not None or args.io_core is not None):
        raise StartupError("--cores pins every loop (and, when blocking, its I/O thread) "
                           "itself: give it without --core and --io-core")
    for flag, core in (("--core", args.core), ("--io-core", args.io_core),
                       *(("--cores", c) for c in args.cores or [])):
        if core is not None and core not in allowed:
            raise StartupError(f"{flag} {core} is not available to this process; valid "
                               f"cores: {', '.join(map(str, allowed))}")
    keys = _read_keys(args)
    if isinstance(keys, str):
        raise StartupError(keys)
    problem = _check_exposure(args, bool(keys[0]))
    try:
        for ep in (args.endpoint, args.pub):
            for i in range(len(args.cores or [None])):
                problem = problem or (claim_ipc_path(loop_endpoint(ep, i)) if ep else None)
    except ValueError as e:
        problem = problem or str(e)
    if problem:
        raise StartupError(f"cannot start: {problem}")
    return keys


def _server_config(args: argparse.Namespace, secret: str, client_keys: list[str],
                   loop: int = 0) -> _core.ServerConfig:
    """The config of loop ``loop`` (the only one without --cores)."""
    cfg = _core.ServerConfig()
    cfg.endpoint = loop_endpoint(args.endpoint, loop)
    cfg.pub_endpoint = loop_endpoint(args.pub, loop) if args.pub else ""
    core = args.cores[loop] if args.cores else args.core
    cfg.core = -1 if core is None else core
    io_core = args.io_core if args.io_core is not None else (None if args.spin else core)
    cfg.io_core = -1 if io_core is None else io_core
    cfg.spin = args.spin
    cfg.rt_priority = args.rt_priority
    cfg.lock_memory = not args.no_mlock
    cfg.idle_evict_s = args.idle_evict_s
    cfg.reclaim_idle_s = args.reclaim_idle_s
    cfg.max_streams_per_client = args.max_streams_per_client or 0  # 0: a quarter of the table
    cfg.echo = args.echo
    cfg.curve_secret_key = secret
    cfg.client_keys = client_keys
    return cfg


def loop_streams(max_streams: int, loops: int) -> int:
    """Each loop's table: --max-streams is the daemon's, split evenly."""
    return max(1, -(-max_streams // loops))


def _start(args: argparse.Namespace) -> tuple[list[_core.Server], ControlPlane]:
    """Check, load the model, build the loops and the control plane (not started)."""
    secret, client_keys, admin_keys = _startup_checks(args)
    loops = len(args.cores) if args.cores else 1
    per_loop = loop_streams(args.max_streams, loops)
    too_many = f"cannot allocate {args.max_streams} streams: not enough memory " \
               "(lower --max-streams)"
    try:
        model = load(args.model)
        engines = [Engine(model, precision=args.precision, max_streams=per_loop)
                   for _ in range(loops)]
    except (ModelFormatError, FileNotFoundError, ValueError, HubError) as e:
        raise StartupError(f"cannot load the model: {e}") from e
    except MemoryError:
        raise StartupError(too_many) from None
    servers: list[_core.Server] = []
    try:
        for i, engine in enumerate(engines):
            servers.append(_core.Server(engine._core, _server_config(args, secret, client_keys,
                                                                      i)))
    except (RuntimeError, ValueError) as e:
        raise StartupError(f"cannot start: {e}") from e
    except MemoryError:
        raise StartupError(too_many) from None
    engine = engines[0]
    root = args.model_root or engine.model.path.parent
    plane = ControlPlane(servers, engines, args.precision, per_loop, root,
                         curve=bool(secret), admin_keys=admin_keys)
    where = (f"loops on cores {','.join(map(str, args.cores))}, {per_loop} streams each"
             if args.cores else
             f"core {'not pinned' if args.core is None else args.core}")
    log.info("loaded %s model %s (%s, %s kernels); endpoint %s%s; %d streams, %d per client%s; "
             "%s%s%s",
             engine.model.system, engine.model.path, args.precision, engine.isa, args.endpoint,
             f", PUB {args.pub}" if args.pub else "", args.max_streams,
             servers[0].stats()["max_streams_per_client"], " per loop" if loops > 1 else "",
             where, ", spinning" if args.spin else "",
             f"; CURVE with {len(client_keys)} keys ({len(admin_keys)} admin)" if secret else "")
    return servers, plane


def _answer_control(server: _core.Server, plane: ControlPlane, done: threading.Event) -> None:
    """Answer the control requests that arrive on one loop's endpoint until ``done``."""
    while not done.is_set():
        req = server.next_control(0.2)
        if req is not None:
            token, payload, client_key = req
            server.reply_control(token, json.dumps(plane.handle(payload, client_key)).encode())


def _serve(servers: list[_core.Server], plane: ControlPlane, stop: dict[str, Any]) -> None:
    """Answer control requests (and SIGHUP reloads) until a stop signal: the main
    thread answers the first loop's endpoint, one thread each other loop's."""
    done = threading.Event()
    others = [threading.Thread(target=_answer_control, args=(s, plane, done), daemon=True,
                               name=f"control-{i + 1}") for i, s in enumerate(servers[1:])]
    for t in others:
        t.start()
    try:
        while stop["signal"] is None:
            if stop["hup"]:  # SIGHUP: re-read the served model
                stop["hup"] = False
                with plane.lock:
                    reply = plane.reload({"_client": "", "_admin": True})
                log.info("SIGHUP: reload %s", "done" if reply["ok"] else reply["message"])
            req = servers[0].next_control(0.2)
            if req is not None:
                token, payload, client_key = req
                servers[0].reply_control(token,
                                         json.dumps(plane.handle(payload, client_key)).encode())
    finally:
        done.set()
        for t in others:
            t.join()


def _stop_all(servers: list[_core.Server]) -> None:
    """Stop every loop at once (each drains for at most 1 s), then wait for all."""
    threads = [threading.Thread(target=s.stop) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(argv: list[str] | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT. Returns the exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        servers, plane = _start(args)
    except StartupError as e:
        log.error("%s", e)
        return 2
    stop: dict[str, Any] = {"signal": None, "hup": False}

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    def on_hup(_signum: int, _frame: object) -> None:
        stop["hup"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    if args.pidfile:
        problem = write_pidfile(args.pidfile)
        if problem:
            log.error("%s", problem)
            return 2
    for server in servers:
        server.start()
    for w in sorted({w for server in servers for w in server.warnings()}):
        log.warning("%s", w)
    log.info("serving on %s", ", ".join(plane.endpoints()))
    sd_notify("READY=1")
    try:
        _serve(servers, plane, stop)
    finally:
        sd_notify("STOPPING=1")
        _stop_all(servers)
        final = _core.loops_stats(servers)
        log.info("stopped%s; final stats: %s",
                 f" on signal {stop['signal']}" if stop["signal"] else "",
                 json.dumps({k: final[k] for k in ("messages", "ticks", "ticks_ok",
                                                   "tick_errors", "frame_errors", "verdicts",
                                                   "gate_pass_rate", "dropped_replies",
                                                   "dropped_at_stop", "quota_refused")}))
        if args.pidfile:
            args.pidfile.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
