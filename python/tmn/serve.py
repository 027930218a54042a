"""tmn-serve: the ZeroMQ prediction daemon.

The C++ loop (tmn._core.Server) owns the sockets and the engine on its pinned
core. This module parses the command line, loads the model, starts the loop,
and serves the control plane (JSON: health, stats, reset, reload) from the
main thread. SIGTERM or SIGINT stops intake, drains, logs the final stats and
exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tmn import _core
from tmn.engine import DEFAULT_MAX_STREAMS, Engine
from tmn.model import Model, ModelFormatError, load

log = logging.getLogger("tmn.serve")

DEFAULT_ENDPOINT = _core.DEFAULT_ENDPOINT


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The tmn-serve command line."""
    p = argparse.ArgumentParser(prog="tmn-serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--core", type=int, default=None,
                   help="pin the tick loop to this CPU (default: not pinned)")
    p.add_argument("--io-core", type=int, default=None,
                   help="pin libzmq's I/O thread to this CPU (default: the --core CPU "
                        "unless --spin, then not pinned)")
    p.add_argument("--model", type=Path, default=None,
                   help="model folder (default: the built-in model)")
    p.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    p.add_argument("--endpoint", default=DEFAULT_ENDPOINT,
                   help=f"ROUTER endpoint to bind (default {DEFAULT_ENDPOINT})")
    p.add_argument("--pub", default=None, metavar="EP",
                   help="also publish every prediction on a PUB socket bound here")
    p.add_argument("--max-streams", type=int, default=DEFAULT_MAX_STREAMS)
    p.add_argument("--idle-evict-s", type=float, default=60.0,
                   help="forget streams with no tick for this long (default 60 s)")
    p.add_argument("--spin", action="store_true",
                   help="busy-poll the socket: lowest latency, one core at 100%%")
    p.add_argument("--rt-priority", type=int, default=0, metavar="P",
                   help="SCHED_FIFO priority 1-99 for the loop (warns and goes on if denied)")
    p.add_argument("--no-mlock", action="store_true", help="do not lock memory")
    p.add_argument("--echo", action="store_true",
                   help="benchmark floor: answer each binary request with its own bytes, "
                        "run no model (control messages still work)")
    p.add_argument("--pidfile", type=Path, default=None)
    p.add_argument("--log-level", default="INFO",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p.parse_args(argv)


class ControlPlane:
    """Answers JSON control requests. Runs on one thread (the main thread)."""

    def __init__(self, server: _core.Server, engine: Engine, precision: str,
                 max_streams: int) -> None:
        self.server = server
        self.engine = engine
        self.precision = precision
        self.max_streams = max_streams
        self.started = time.monotonic()
        self.errors: dict[str, int] = {}

    def model_info(self) -> dict[str, Any]:
        """What is being served."""
        m: Model = self.engine.model
        return {"path": str(m.path), "system": m.system, "horizons_ms": m.horizons_ms,
                "hidden": m.hidden, "precision": self.precision, "isa": self.engine.isa,
                "sha256": m.config["weights"]["sha256"]}

    def handle(self, payload: bytes) -> dict[str, Any]:
        """One request in, one JSON-able reply out. Never raises on bad input."""
        try:
            req = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return self.error("bad_json", f"control message is not valid JSON: {e}")
        if not isinstance(req, dict):
            return self.error("bad_json", "control message must be a JSON object")
        cmd = req.get("cmd")
        handler = {"health": self.health, "stats": self.stats, "reset": self.reset,
                   "reload": self.reload}.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            return self.error("unknown_command",
                              f"unknown cmd {cmd!r}; known: health, stats, reset, reload")
        try:
            return handler(req)
        except (ValueError, TypeError, KeyError) as e:
            return self.error("bad_request", str(e))

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
        if "stream" in req:
            s["stream_accuracy"] = self.server.stream_accuracy(_stream_id(req["stream"]))
        if req.get("per_stream"):
            s["per_stream_accuracy"] = {str(i): self.server.stream_accuracy(i)
                                        for i in self.server.scored_streams()}
        return {"ok": True, "stats": s}

    def reset(self, req: dict[str, Any]) -> dict[str, Any]:
        """Forget one stream's state."""
        stream = _stream_id(req.get("stream"))
        st = self.server.reset_stream(stream)
        if st != _core.Status.ok:
            return self.error("unknown_stream", f"stream {stream} is not held")
        return {"ok": True, "stream": stream}

    def reload(self, req: dict[str, Any]) -> dict[str, Any]:
        """Load a model (default: the one being served, re-read) and swap it in
        between two requests. Streams start warming again."""
        path = req.get("model", str(self.engine.model.path))
        precision = req.get("precision", self.precision)
        try:
            new = Engine(load(path), precision=precision, max_streams=self.max_streams)
        except (ModelFormatError, FileNotFoundError) as e:
            return self.error("bad_request", f"reload refused: {e}")
        self.server.swap_engine(new._core)
        self.engine, self.precision = new, precision  # drops the old engine
        log.info("reloaded model %s (%s)", new.model.path, precision)
        return {"ok": True, "model": self.model_info()}


def _stream_id(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**64:
        raise ValueError(f"'stream' must be an integer in [0, 2^64), got {v!r}")
    return v


def main(argv: list[str] | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT. Returns the exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    allowed = sorted(os.sched_getaffinity(0))
    for flag, core in (("--core", args.core), ("--io-core", args.io_core)):
        if core is not None and core not in allowed:
            log.error("%s %d is not available to this process; valid cores: %s", flag, core,
                      ", ".join(map(str, allowed)))
            return 2
    try:
        engine = Engine(args.model, precision=args.precision, max_streams=args.max_streams)
    except (ModelFormatError, FileNotFoundError, ValueError) as e:
        log.error("cannot load the model: %s", e)
        return 2

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
    cfg.echo = args.echo
    try:
        server = _core.Server(engine._core, cfg)
    except (RuntimeError, ValueError) as e:
        log.error("cannot start: %s", e)
        return 2

    stop = {"signal": None}

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    for w in server.warnings():
        log.warning("%s", w)
    if args.pidfile:
        args.pidfile.write_text(f"{os.getpid()}\n", encoding="utf-8")
    plane = ControlPlane(server, engine, args.precision, args.max_streams)
    log.info("serving %s model %s (%s, %s kernels) on %s%s; core %s%s", engine.model.system,
             engine.model.path, args.precision, engine.isa, args.endpoint,
             f", PUB {args.pub}" if args.pub else "",
             "not pinned" if args.core is None else args.core, ", spinning" if args.spin else "")
    try:
        while stop["signal"] is None:
            req = server.next_control(0.2)
            if req is not None:
                token, payload = req
                server.reply_control(token, json.dumps(plane.handle(payload)).encode())
    finally:
        server.stop()
        final = server.stats()
        log.info("stopped%s; final stats: %s",
                 f" on signal {stop['signal']}" if stop["signal"] else "",
                 json.dumps({k: final[k] for k in ("messages", "ticks", "ticks_ok",
                                                   "tick_errors", "frame_errors", "verdicts",
                                                   "gate_pass_rate", "dropped_replies")}))
        if args.pidfile:
            args.pidfile.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
