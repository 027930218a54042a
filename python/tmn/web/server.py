"""The live demo's page and WebSocket, served by ``websockets`` (the ``tmn[web]`` extra).

``GET /`` and ``GET /demo.js`` answer the page from the package's ``static/``
folder; ``/ws`` is the WebSocket, one :class:`tmn.web.session.Session` per
connection. What a peer can do is bounded here and in the session:

* every request's ``Host`` must name this server (a loopback name, or the
  ``--host`` it was started with), against DNS rebinding; a WebSocket's
  ``Origin`` must be this page, against cross-site WebSocket hijacking;
* a message is at most ``Limits.max_message_bytes`` (the socket closes with
  1009 beyond it), compression is off (no inflation), at most 16 messages
  wait in the receive queue;
* at most ``Limits.max_clients`` connections: the next one gets an error
  message and is closed with 1013 (try again later).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tmn.web.session import Limits, Session, Sources

STATIC = Path(__file__).with_name("static")
#: URL path -> (file in static/, content type)
PAGES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/index.html": ("index.html", "text/html; charset=utf-8"),
         "/demo.js": ("demo.js", "text/javascript; charset=utf-8")}
WS_PATH = "/ws"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})
_HEADERS = [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", "default-src 'self'; connect-src 'self'; "
                                        "img-src 'self' data:; style-src 'self' 'unsafe-inline'")]


class DemoServer:
    """The request checks and the connection handler of one running demo."""

    def __init__(self, sources: Sources, limits: Limits, host: str) -> None:
        """Read the page into memory; ``host`` is the address it was asked to bind."""
        self.sources, self.limits = sources, limits
        self.pages = {path: ((STATIC / name).read_bytes(), kind)
                      for path, (name, kind) in PAGES.items()}
        self.any_host = host in WILDCARD_HOSTS
        self.allowed_hosts = LOOPBACK_NAMES | {host}

    def _respond(self, connection: ServerConnection, status: HTTPStatus, text: str) -> Response:
        response = connection.respond(status, text + "\n")
        for name, value in _HEADERS:
            response.headers[name] = value
        return response

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer a page, refuse a bad request, or let a WebSocket handshake go on (None)."""
        host = request.headers.get("Host", "")
        try:
            name = urlsplit("//" + host).hostname
        except ValueError:
            name = None
        if not self.any_host and name not in self.allowed_hosts:
            return self._respond(connection, HTTPStatus.FORBIDDEN,
                                 f"this demo answers to {sorted(self.allowed_hosts)}, not {host!r}")
        path = request.path.split("?", 1)[0]
        if path == WS_PATH:
            if request.headers.get("Origin") != f"http://{host}":
                return self._respond(connection, HTTPStatus.FORBIDDEN,
                                     "a WebSocket from another origin is refused")
            return None
        if path not in self.pages:
            return self._respond(connection, HTTPStatus.NOT_FOUND, f"no page at {path[:100]!r}")
        body, kind = self.pages[path]
        headers = Headers([("Content-Type", kind), ("Content-Length", str(len(body))), *_HEADERS])
        return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, body)

    async def handler(self, ws: ServerConnection) -> None:
        """One connection: a hello, then one reply per message until it closes."""
        stream = self.sources.open_stream()
        if stream is None:
            await ws.send(json.dumps({"type": "error", "message": (
                f"the demo is serving its maximum of {self.limits.max_clients} connections; "
                "try again later")}))
            await ws.close(1013, "too many connections")
            return
        session = Session(self.sources, stream, self.limits)
        try:
            await ws.send(json.dumps(session.hello()))
            async for message in ws:
                reply = session.handle(message)
                if reply is not None:
                    await ws.send(json.dumps(reply, allow_nan=False))
        except ConnectionClosed:
            pass
        finally:
            self.sources.close_stream(stream)


async def serve_demo(sources: Sources, limits: Limits, host: str, port: int,
                     on_ready: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM; ``on_ready`` gets the page's URL once listening
    (``port`` 0 picks a free port)."""
    demo = DemoServer(sources, limits, host)
    async with serve(demo.handler, host, port, process_request=demo.process_request,
                     max_size=limits.max_message_bytes, max_queue=16, compression=None,
                     server_header=None) as server:
        bound = server.sockets[0].getsockname()
        shown = "127.0.0.1" if host in WILDCARD_HOSTS else host
        on_ready(f"http://{f'[{shown}]' if ':' in shown else shown}:{bound[1]}/")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
