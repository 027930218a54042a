"""tmn.Client, the reference client (pyzmq), and the tmn-client CLI."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from tmn import _core
from tmn.engine import PERCENTILES, VERDICT_NAMES, percentiles
from tmn._core import Status
from tmn.argtypes import bounded
from tmn.protocol import (MAX_BATCH, Predictions, ProtocolError, decode_reply, encode_ticks,
                          make_ticks)
from tmn.recording import check_columns, group_streams, read_table
from tmn.ring import HashRing
from tmn.version import __version__

DEFAULT_ENDPOINT = _core.DEFAULT_ENDPOINT


class Client:
    """A DEALER connection to tmn-serve, or to several endpoints at once.

    * ``tick()`` and ``ticks()`` are synchronous: send, then wait for the reply.
    * ``send()`` / ``recv()`` pipeline: many batches in flight; replies come back
      in order, each with the ``seq`` it was sent with.
    * ``control()`` (and ``stats()``, ``health()``, ``reset()``, ``reload()``)
      send JSON control requests.
    * Given several endpoints (the loops of a ``tmn-serve --cores`` daemon, the
      ``endpoints`` its ``health`` lists, and/or other daemons), each stream goes
      to one of them, chosen on a consistent-hash ring (:mod:`tmn.ring`): a batch
      is split by stream, each part sent to its endpoint, and the replies are put
      back together in the batch's order. ``stats()`` then sums every daemon's
      stats (:func:`merge_stats`); ``reset()`` goes to the stream's endpoint,
      ``health()`` and ``reload()`` to every endpoint.
    Not thread-safe (one socket per endpoint). Every wait is bounded by ``timeout_s``.
    """

    def __init__(self, endpoint: str | Sequence[str] = DEFAULT_ENDPOINT, timeout_s: float = 5.0,
                 context: zmq.Context | None = None, key_file: Path | None = None,
                 server_key_file: Path | None = None, routing_id: bytes | None = None) -> None:
        """Connect to ``endpoint`` (or to each of several). For a CURVE server pass
        this client's ``.key_secret`` file and the server's public ``.key`` file
        (docs/security.md; with several endpoints, every one has that key).
        ``routing_id`` fixes the connection's identity."""
        endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint)
        self.ring = HashRing(endpoints)  # refuses an empty list and a repeated endpoint
        if (key_file is None) != (server_key_file is None):
            raise ValueError("CURVE needs both key_file and server_key_file")
        self._ctx = context or zmq.Context.instance()
        self._socks: list[zmq.Socket] = []
        for ep in endpoints:
            sock = self._ctx.socket(zmq.DEALER)
            self._socks.append(sock)
            sock.setsockopt(zmq.LINGER, 0)
            if key_file is not None and server_key_file is not None:
                from tmn.keys import load_public_key, load_secret_key

                sock.curve_secretkey = load_secret_key(key_file).encode()
                sock.curve_publickey = load_public_key(key_file).encode()
                sock.curve_serverkey = load_public_key(server_key_file).encode()
            if routing_id is not None:
                sock.setsockopt(zmq.ROUTING_ID, routing_id)
            sock.connect(ep)
        self._sock = self._socks[0]
        self.endpoints = endpoints
        self.endpoint = endpoints[0] if len(endpoints) == 1 else ", ".join(endpoints)
        self.timeout_ms = int(timeout_s * 1000)
        self._seq = 0
        # several endpoints: per batch in flight, its seq and length and, per
        # endpoint it went to, (endpoint index, the batch's rows it took)
        self._parts: deque[tuple[int, int, list[tuple[int, np.ndarray]]]] = deque()

    def close(self) -> None:
        """Close the sockets (pending requests are dropped)."""
        for sock in self._socks:
            sock.close(linger=0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv_frame(self, timeout_ms: int | None = None, shard: int = 0) -> bytes:
        t = self.timeout_ms if timeout_ms is None else timeout_ms
        sock = self._socks[shard]
        if not sock.poll(t, zmq.POLLIN):
            raise TimeoutError(f"no reply from {self.endpoints[shard]} within {t} ms")
        return sock.recv()

    def send(self, ticks: np.ndarray, seq: int | None = None, velocity: bool = True,
             at: float | None = None) -> int:
        """Send a batch (TICK_DTYPE array, 1 to 4096 ticks) without waiting; returns its
        seq. ``velocity=False``: position-only ticks (the engine differentiates).
        ``at``: ask for the predicted point ``at`` seconds after each tick instead
        of the whole path (records of protocol.POINT_DTYPE)."""
        if seq is None:
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            seq = self._seq
        if len(self._socks) == 1:
            self._sock.send(encode_ticks(ticks, seq, velocity, at), copy=False)
            return seq
        shard = self.ring.shard_of(ticks["stream"])
        parts = []
        for i in np.unique(shard):
            rows = np.flatnonzero(shard == i)
            self._socks[i].send(encode_ticks(ticks[rows], seq, velocity, at), copy=False)
            parts.append((int(i), rows))
        self._parts.append((seq, len(ticks), parts))
        return seq

    def recv(self, timeout_s: float | None = None) -> Predictions:
        """The next prediction reply. Raises ProtocolError for an error reply,
        TimeoutError when none arrives in time."""
        timeout_ms = None if timeout_s is None else int(timeout_s * 1000)
        if len(self._socks) == 1:
            return _decode(self._recv_frame(timeout_ms))
        if not self._parts:
            raise TimeoutError("no request is waiting for its reply")
        seq, n, parts = self._parts.popleft()
        replies, error = [], None
        for i, rows in parts:  # read every part, so the next request's replies stay in step
            try:
                replies.append((rows, _decode(self._recv_frame(timeout_ms, i))))
            except ProtocolError as e:
                error = error or e
        if error is not None:
            raise error
        first = replies[0][1]
        records = np.empty(n, dtype=first.records.dtype)
        for rows, reply in replies:
            records[rows] = reply.records
        return Predictions(seq=seq, horizons=first.horizons, records=records)

    def ticks(self, ticks: np.ndarray, velocity: bool = True,
              at: float | None = None) -> Predictions:
        """Send one batch and wait for its predictions (``velocity=False``: position-only;
        ``at``: only the point ``at`` seconds after each tick)."""
        seq = self.send(ticks, velocity=velocity, at=at)
        reply = self.recv()
        if reply.seq != seq:
            raise ProtocolError("bad_request", f"reply seq {reply.seq} != request seq {seq}")
        return reply

    def tick(self, t: float, x: float, y: float, vx: float | None = None,
             vy: float | None = None, stream: int = 0, at: float | None = None) -> np.void:
        """One tick, one prediction record (fields as protocol.prediction_dtype: the
        path and each point's 90 % ``radius``); without ``vx``, ``vy`` a position-only
        tick, whose velocity the engine computes. With ``at`` (seconds), only the
        predicted point at ``t + at`` (fields as protocol.POINT_DTYPE: x, y, radius),
        e.g. ``at=1/60`` for the next display frame."""
        return self.ticks(make_ticks(t, x, y, vx, vy, stream),
                          velocity=vx is not None, at=at).records[0]

    def control(self, request: dict[str, Any], shard: int = 0) -> dict[str, Any]:
        """Send a JSON control request to one endpoint (the first by default) and
        return the JSON reply."""
        self._socks[shard].send(json.dumps(request).encode("utf-8"))
        while True:
            frame = self._recv_frame(shard=shard)
            if frame[:1] == b"{":
                return json.loads(frame)
            # a late prediction reply from pipelined use: skip it

    def _every_daemon(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """The reply of each daemon among the endpoints, asked once: a daemon
        answers for all its loops, so of its endpoints (known by the ``daemon``
        id of their health) only the first is asked."""
        replies, seen = [], set()
        for i in range(len(self._socks)):
            daemon = self.control({"cmd": "health"}, shard=i).get("daemon")
            if daemon is not None and daemon in seen:
                continue
            seen.add(daemon)
            replies.append(self.control(request, shard=i))
        return replies

    def stats(self, **options: Any) -> dict[str, Any]:
        """Server stats (``stream=ID`` or ``per_stream=True`` for live accuracy per
        stream). With several daemons: their sum (:func:`merge_stats`)."""
        if len(self._socks) == 1:
            return self.control({"cmd": "stats", **options})
        if "stream" in options:
            return self.control({"cmd": "stats", **options},
                                shard=int(self.ring.shard_of(np.uint64(options["stream"]))))
        replies = self._every_daemon({"cmd": "stats", **options})
        failed = [r for r in replies if not r.get("ok")]
        if failed:
            return failed[0]
        return {"ok": True, "stats": merge_stats([r["stats"] for r in replies])}

    def health(self) -> dict[str, Any]:
        """Liveness and the model served (with several daemons: ``daemons``, each one's)."""
        if len(self._socks) == 1:
            return self.control({"cmd": "health"})
        replies = self._every_daemon({"cmd": "health"})
        return {"ok": all(r.get("ok") for r in replies), "daemons": replies}

    def reset(self, stream: int) -> dict[str, Any]:
        """Forget a stream's state on the server (the endpoint that serves it)."""
        return self.control({"cmd": "reset", "stream": stream},
                            shard=int(self.ring.shard_of(np.uint64(stream))))

    def reload(self, model: str | None = None, precision: str | None = None) -> dict[str, Any]:
        """Swap in a model folder (default: re-read the current one); with several
        daemons on each (the first refusal is returned)."""
        req: dict[str, Any] = {"cmd": "reload"}
        if model is not None:
            req["model"] = model
        if precision is not None:
            req["precision"] = precision
        replies = self._every_daemon(req) if len(self._socks) > 1 else [self.control(req)]
        return next((r for r in replies if not r.get("ok")), replies[0])


def _decode(frame: bytes) -> Predictions:
    if frame[:1] == b"{":
        raise ProtocolError("bad_kind", f"expected predictions, got JSON: {frame[:200]!r}")
    return decode_reply(frame)


# Stats of several daemons: what is not a sum.
_LATEST = ("uptime_s",)                       # the longest
_SAME = ("max_streams_per_client", "model", "report_rate")  # the first daemon's


def merge_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The stats of several daemons as one: counters summed; a histogram's count
    summed, its mean weighted, its max the largest, and each percentile the
    LARGEST of the daemons' (an upper bound of the combined percentile: no
    daemon has more than its share above it; one daemon's loops are merged
    exactly by the daemon); the gate's pass rate and mean certificate error
    recomputed from the summed counts; ``endpoints`` and ``daemons`` listed."""
    if len(stats) == 1:
        return stats[0]
    out = _merge(stats)
    verdicts = out.get("verdicts", {})
    gated = sum(verdicts.get(v, 0) for v in ("pass", "fallback_implausible",
                                             "fallback_uncertified"))
    passed = verdicts.get("pass", 0)
    out["gate_pass_rate"] = passed / gated if gated else None
    weighted = [(s.get("mean_cert_error"), s.get("verdicts", {}).get("pass", 0)) for s in stats]
    out["mean_cert_error"] = (sum(m * n for m, n in weighted if m is not None) / passed
                              if passed else None)
    out["daemons"] = [s.get("daemon") for s in stats]
    return out


def _is_histogram(d: dict[str, Any]) -> bool:
    return "count" in d and "p50" in d


def _merge(values: list[Any], key: str = "") -> Any:
    values = [v for v in values if v is not None]
    if not values:
        return None
    first = values[0]
    if key in _SAME:
        return first
    if key in _LATEST:
        return max(values)
    if key == "endpoints":
        return [e for v in values for e in v]
    if isinstance(first, dict) and _is_histogram(first):
        return _merge_histograms(values)
    if isinstance(first, dict):
        keys = list(dict.fromkeys(k for v in values for k in v))
        return {k: _merge([v.get(k) for v in values], k) for k in keys}
    if isinstance(first, list):
        if all(isinstance(v, list) and len(v) == len(first) for v in values):
            return [_merge(list(items)) for items in zip(*values)]
        return first  # different models: not comparable
    if isinstance(first, bool) or not isinstance(first, (int, float)):
        return first
    return sum(values)


def _merge_histograms(hs: list[dict[str, Any]]) -> dict[str, Any]:
    full = [h for h in hs if h.get("count")]
    out = dict(hs[0])
    out["count"] = sum(h["count"] for h in hs)
    if not full:
        return out
    out["mean"] = sum(h["mean"] * h["count"] for h in full) / out["count"]
    for name, _ in PERCENTILES:
        out[name] = max(h[name] for h in full)
    out["max"] = max(h["max"] for h in full)
    return out


# ----------------------------------------------------------------------------- CLI


def percentiles_us(ns: np.ndarray) -> dict[str, float]:
    """P50/P90/P99/P99.9/max of nanosecond samples, in microseconds (NaN without any)."""
    if not len(ns):
        return dict.fromkeys([*(name for name, _ in PERCENTILES), "max"], float("nan"))
    return {k: v / 1e3 for k, v in percentiles(ns).items()}


def load_recording(path: Path) -> tuple[np.ndarray, bool]:
    """(ticks, has velocity) from a recording (tmn.recording: a CSV with a header
    t,x,y[,vx,vy][,stream] or an NPZ with those arrays). Stream ids that are not
    all non-negative integers are numbered in order of first appearance."""
    cols = read_table(path)
    check_columns(cols, str(path))
    ids = np.zeros(len(cols["t"]), np.uint64)
    try:
        given = np.asarray(cols.get("stream", ids), dtype=np.float64)
        integral = bool(np.all((given >= 0) & (given < 2.0**63) & (given == np.floor(given))))
    except ValueError:  # not numbers
        integral = False
    if integral:
        ids = given.astype(np.uint64)
    else:
        for i, (_, rows) in enumerate(group_streams(cols)):
            ids[rows] = i
    has_v = "vx" in cols
    return make_ticks(cols["t"], cols["x"], cols["y"], cols.get("vx"), cols.get("vy"),
                      ids), has_v


def demo_trajectory(seconds: float, rate_hz: float = 2000.0) -> np.ndarray:
    """A figure-eight with changing speed: the built-in demo trajectory. It lies in
    the 1000 x 1000 arena of the synthetic data the built-in model was trained on."""
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    phase = 2 * np.pi * 0.4 * t + 0.6 * np.sin(2 * np.pi * 0.1 * t)
    dphase = 2 * np.pi * 0.4 + 0.6 * 2 * np.pi * 0.1 * np.cos(2 * np.pi * 0.1 * t)
    x, y = 500 + 200 * np.sin(phase), 500 + 120 * np.sin(2 * phase)
    return make_ticks(t, x, y, 200 * np.cos(phase) * dphase, 240 * np.cos(2 * phase) * dphase)


def _pace(start: float, t0: float, t: float) -> None:
    delay = (t - t0) - (time.perf_counter() - start)
    if delay > 0:
        time.sleep(delay)


def _client(args: argparse.Namespace) -> Client:
    return Client(args.endpoint or [DEFAULT_ENDPOINT], key_file=args.key,
                  server_key_file=args.server_key)


def cmd_replay(args: argparse.Namespace) -> int:
    ticks, velocity = load_recording(args.file)
    if args.streams > 1:  # replicate the recording over N stream ids
        ticks = np.concatenate([np.sort(ticks, order="t")] * args.streams)
        ticks["stream"] = np.repeat(np.arange(args.streams, dtype=np.uint64), len(ticks) // args.streams)
        ticks = ticks[np.argsort(ticks["t"], kind="stable")]
    rtt, verdicts, statuses = [], np.zeros(256, dtype=np.int64), np.zeros(256, dtype=np.int64)
    with _client(args) as c:
        start, t0 = time.perf_counter(), float(ticks["t"][0])
        for i in range(0, len(ticks), args.batch):
            batch = ticks[i:i + args.batch]
            if args.rate == "real":
                _pace(start, t0, float(batch["t"][-1]))
            a = time.perf_counter_ns()
            reply = c.ticks(batch, velocity=velocity)
            rtt.append(time.perf_counter_ns() - a)
            np.add.at(verdicts, reply.records["verdict"], 1)
            np.add.at(statuses, reply.records["status"], 1)
            if i // args.batch % max(1, args.print_every) == 0:
                r = reply.records[-1]
                print(f"t={r['t']:.4f} stream={r['stream']} verdict={r['verdict']} "
                      f"status={r['status']} {r['path'][-1][0]:.3f},{r['path'][-1][1]:.3f}")
    lat = percentiles_us(np.asarray(rtt, dtype=np.float64))
    print(f"{len(ticks)} ticks in {len(rtt)} requests; round trip (us): " +
          " ".join(f"{k}={v:.1f}" for k, v in lat.items()))
    refused = len(ticks) - int(statuses[0])
    if refused:
        names = {s.value: s.name for s in Status.__members__.values()}
        by = ", ".join(f"{names.get(i, i)}: {n}" for i, n in enumerate(statuses) if n and i)
        print(f"tmn-client: the server refused {refused} of {len(ticks)} ticks ({by})",
              file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    ticks = demo_trajectory(args.seconds)
    with _client(args) as c:
        h = c.health()
        h = h.get("daemons", [h])[0] if h.get("ok") else h
        if not h.get("ok"):
            print(f"server unhealthy: {h}", file=sys.stderr)
            return 1
        horizons = h["model"]["horizons_ms"]
        print(f"tmn demo: {h['model']['system']} model, horizons {horizons[0]:g}..{horizons[-1]:g} ms;"
              f" streaming {args.seconds:g} s of a figure-eight at 2 kHz")
        print(f"{'t (s)':>7} {'position':>17} {'predicted +500 ms':>19} {'truth +500 ms':>17}"
              f" {'error':>7} {'verdict':>20} {'rtt us':>7}")
        pending: list[tuple[float, np.ndarray]] = []
        start, t0 = time.perf_counter(), float(ticks["t"][0])
        for i in range(len(ticks)):
            if args.rate == "real":
                _pace(start, t0, float(ticks["t"][i]))
            a = time.perf_counter_ns()
            r = c.ticks(ticks[i:i + 1]).records[0]
            rtt = (time.perf_counter_ns() - a) / 1e3
            if i % 200 == 0:  # every 100 ms
                pending.append((float(r["t"]), r["path"][-1].copy()))
            while pending and pending[0][0] + horizons[-1] / 1000 <= ticks["t"][i]:
                tp, pred = pending.pop(0)
                truth = np.array([ticks["x"][i], ticks["y"][i]])
                print(f"{tp:7.2f} {'':>17} {pred[0]:9.1f},{pred[1]:8.1f} {truth[0]:8.1f},{truth[1]:8.1f}"
                      f" {np.hypot(*(pred - truth)):7.2f}")
            if i % 200 == 0:
                print(f"{r['t']:7.2f} {ticks['x'][i]:8.1f},{ticks['y'][i]:8.1f} "
                      f"{r['path'][-1][0]:9.1f},{r['path'][-1][1]:8.1f} {'':>17} {'':>7}"
                      f" {VERDICT_NAMES.get(int(r['verdict']), '?'):>20} {rtt:7.1f}")
        s = c.stats()["stats"]
        acc = s["live_accuracy"]
        if acc:
            last = acc[-1]
            scored = (f"p50={last['p50']:.2f} p90={last['p90']:.2f} p99={last['p99']:.2f}"
                      if last["count"] else "no prediction scored yet")
            print(f"live accuracy at {last['horizon_ms']:g} ms: {scored} (n={last['count']})")
        lat = s["latency_ns"]["server"]
        print(f"server-side latency (recv->send): p50={lat['p50'] / 1e3:.1f} us "
              f"p99.9={lat['p99.9'] / 1e3:.1f} us")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from tmn.keys import generate

    public, secret = generate(args.dir, args.name)
    print(f"public key (give it to the other side): {public}\nsecret key (keep it): {secret}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The tmn-client command line."""
    p = argparse.ArgumentParser(prog="tmn-client", description="Talk to a running tmn-serve; "
                                "'web' serves the live browser demo.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--endpoint", action="append", default=None, metavar="EP",
                   help=f"a tmn-serve endpoint (default {DEFAULT_ENDPOINT}); repeat it for "
                        "several (the loops of tmn-serve --cores, several daemons): streams "
                        "are sharded over them on a consistent-hash ring and stats sums them")
    p.add_argument("--key", type=Path, default=None, metavar="FILE",
                   help="this client's CURVE .key_secret file (with --server-key)")
    p.add_argument("--server-key", type=Path, default=None, metavar="FILE",
                   help="the server's public CURVE .key file")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("replay", help="send a recording and print predictions and latency; "
                                      "exits 1 if the server refused any tick")
    r.add_argument("file", type=Path, help="CSV or NPZ with t,x,y,vx,vy[,stream]")
    r.add_argument("--rate", choices=("real", "max"), default="max")
    r.add_argument("--streams", type=bounded(int, 1, 1 << 20), default=1,
                   help="replay as N parallel streams")
    r.add_argument("--batch", type=bounded(int, 1, MAX_BATCH), default=1,
                   help=f"ticks per request (1 to {MAX_BATCH})")
    r.add_argument("--print-every", type=bounded(int, 1), default=1000,
                   help="print every Nth reply")
    st = sub.add_parser("stats", help="print the server's stats")
    st.add_argument("--format", choices=("json", "prometheus"), default="json",
                    help="JSON (default) or the Prometheus text format")
    sub.add_parser("health", help="print the server's health")
    d = sub.add_parser("demo", help="stream a built-in trajectory and compare with the truth")
    d.add_argument("--seconds", type=bounded(float, 0.001, 86400), default=10.0)
    d.add_argument("--rate", choices=("real", "max"), default="real")
    k = sub.add_parser("keygen", help="write a CURVE key pair NAME.key and NAME.key_secret")
    k.add_argument("name")
    k.add_argument("--dir", type=Path, default=Path("."), help="folder to write to")
    from tmn.web import cli as web_cli  # argparse only; the server loads when it runs

    web_cli.add_arguments(sub.add_parser(
        "web", help="serve the live browser demo: move the pointer, see the predicted path "
                    "(in-process engines; needs tmn[web]; docs/web-demo.md)"))
    args = p.parse_args(argv)
    try:
        if args.cmd == "keygen":
            return cmd_keygen(args)
        if args.cmd == "replay":
            return cmd_replay(args)
        if args.cmd == "demo":
            return cmd_demo(args)
        if args.cmd == "web":
            return web_cli.run(args)
        with _client(args) as c:
            reply = c.stats() if args.cmd == "stats" else c.health()
        if args.cmd == "stats" and args.format == "prometheus":
            from tmn.metrics import prometheus_text

            if not reply.get("ok"):
                raise ProtocolError(str(reply.get("error")), str(reply.get("message")))
            sys.stdout.write(prometheus_text(reply["stats"]))
        else:
            print(json.dumps(reply, indent=2))
        return 0
    except (TimeoutError, ProtocolError, ValueError, OSError, zmq.ZMQError) as e:
        print(f"tmn-client: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
