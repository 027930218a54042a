"""tmn-serve: the ZeroMQ prediction daemon.

The C++ loop (tmn._core.Server) owns the sockets and the engine on its pinned
core. This module parses the command line, loads the model, starts the loop,
and serves the control plane (JSON: health, stats, reset, reload) from the
main thread. SIGTERM or SIGINT stops intake, drains, logs the final stats and
exits 0; SIGHUP reloads the served model. docs/security.md states the trust
model.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import logging
import os
import signal
import socket
import stat
import sys
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
    """Answers JSON control requests. Runs on one thread (the main thread)."""

    def __init__(self, server: _core.Server, engine: Engine, precision: str,
                 max_streams: int, model_root: Path, curve: bool = False,
                 admin_keys: frozenset[str] = frozenset()) -> None:
        self.server = server
        self.engine = engine
        self.precision = precision
        self.max_streams = max_streams
        self.model_root = model_root.resolve()
        self.curve = curve
        self.admin_keys = admin_keys
        self.started = time.monotonic()
        self.errors: dict[str, int] = {}

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
        return {"ok": True, "status": "serving" if self.server.running else "stopped",
                "uptime_s": time.monotonic() - self.started,
                "streams": self.server.stats()["streams"], "model": self.model_info()}

    def stats(self, req: dict[str, Any]) -> dict[str, Any]:
        """Counters, latency and live accuracy; ``stream`` adds one stream's accuracy,
        ``per_stream`` adds every scored stream's."""
        import psutil

        s = self.server.stats()
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
            s["stream_accuracy"] = self.server.stream_accuracy(
                self.server.scoped_stream(req["_client"], _stream_id(req["stream"])))
        if req.get("per_stream"):
            s.update(self.per_stream(req["_client"], req["_admin"]))
        return {"ok": True, "stats": s}

    def per_stream(self, client_key: str, admin: bool) -> dict[str, Any]:
        """Live accuracy per stream. Without CURVE every stream, by its id (one
        namespace). With CURVE a client sees only its own streams, by its own
        ids (never the engine's ids: docs/security.md); an admin also gets
        every client's, by key."""
        acc = self.server.stream_accuracy
        if not self.curve:
            return {"per_stream_accuracy": {str(i): acc(i) for i in self.server.scored_streams()}}
        scored = set(self.server.scored_streams())
        held = [h for h in self.server.held_streams() if h[0] in scored]
        out: dict[str, Any] = {"per_stream_accuracy": {
            str(cid): acc(eid) for eid, key, cid in held if key == client_key}}
        if admin:
            by_key: dict[str, dict[str, Any]] = {}
            for eid, key, cid in held:
                by_key.setdefault(key, {})[str(cid)] = acc(eid)
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
            if self.curve and not self.server.knows_client(owner):
                return self.error("unknown_stream", f"stream {stream} is not held")
        st = self.server.reset_stream(self.server.scoped_stream(owner, stream))
        if st != _core.Status.ok:
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
            new = Engine(load(folder), precision=precision, max_streams=self.max_streams)
        except (ModelFormatError, FileNotFoundError, MemoryError) as e:
            return self.error("bad_request", f"reload refused: {e}")
        self.server.swap_engine(new._core)
        self.engine, self.precision = new, precision  # drops the old engine
        log.info("reloaded model %s (%s)", new.model.path, precision)
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
    for flag, core in (("--core", args.core), ("--io-core", args.io_core)):
        if core is not None and core not in allowed:
            raise StartupError(f"{flag} {core} is not available to this process; valid "
                               f"cores: {', '.join(map(str, allowed))}")
    keys = _read_keys(args)
    if isinstance(keys, str):
        raise StartupError(keys)
    problem = _check_exposure(args, bool(keys[0]))
    for ep in (args.endpoint, args.pub):
        problem = problem or (claim_ipc_path(ep) if ep else None)
    if problem:
        raise StartupError(f"cannot start: {problem}")
    return keys


def _server_config(args: argparse.Namespace, secret: str, client_keys: list[str]
                   ) -> _core.ServerConfig:
    cfg = _core.ServerConfig()
    cfg.endpoint = args.endpoint
    cfg.pub_endpoint = args.pub or ""
    cfg.core = -1 if args.core is None else args.core
    io_core = args.io_core if args.io_core is not None else (None if args.spin else args.core)
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


def _start(args: argparse.Namespace) -> tuple[_core.Server, Engine, ControlPlane]:
    """Check, load the model, build the server and its control plane (not started)."""
    secret, client_keys, admin_keys = _startup_checks(args)
    too_many = f"cannot allocate {args.max_streams} streams: not enough memory " \
               "(lower --max-streams)"
    try:
        engine = Engine(args.model, precision=args.precision, max_streams=args.max_streams)
    except (ModelFormatError, FileNotFoundError, ValueError, HubError) as e:
        raise StartupError(f"cannot load the model: {e}") from e
    except MemoryError:
        raise StartupError(too_many) from None
    try:
        server = _core.Server(engine._core, _server_config(args, secret, client_keys))
    except (RuntimeError, ValueError) as e:
        raise StartupError(f"cannot start: {e}") from e
    except MemoryError:
        raise StartupError(too_many) from None
    root = args.model_root or engine.model.path.parent
    plane = ControlPlane(server, engine, args.precision, args.max_streams, root,
                         curve=bool(secret), admin_keys=admin_keys)
    log.info("loaded %s model %s (%s, %s kernels); endpoint %s%s; %d streams, %d per client; "
             "core %s%s%s",
             engine.model.system, engine.model.path, args.precision, engine.isa, args.endpoint,
             f", PUB {args.pub}" if args.pub else "", args.max_streams,
             server.stats()["max_streams_per_client"],
             "not pinned" if args.core is None else args.core, ", spinning" if args.spin else "",
             f"; CURVE with {len(client_keys)} keys ({len(admin_keys)} admin)" if secret else "")
    return server, engine, plane


def _serve(server: _core.Server, plane: ControlPlane, stop: dict[str, Any]) -> None:
    """Answer control requests (and SIGHUP reloads) until a stop signal."""
    while stop["signal"] is None:
        if stop["hup"]:  # SIGHUP: re-read the served model
            stop["hup"] = False
            reply = plane.reload({"_client": "", "_admin": True})
            log.info("SIGHUP: reload %s", "done" if reply["ok"] else reply["message"])
        req = server.next_control(0.2)
        if req is not None:
            token, payload, client_key = req
            server.reply_control(token, json.dumps(plane.handle(payload, client_key)).encode())


def main(argv: list[str] | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT. Returns the exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server, _engine, plane = _start(args)
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
    server.start()
    for w in server.warnings():
        log.warning("%s", w)
    log.info("serving on %s", server.bound_endpoint)
    sd_notify("READY=1")
    try:
        _serve(server, plane, stop)
    finally:
        sd_notify("STOPPING=1")
        server.stop()
        final = server.stats()
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
