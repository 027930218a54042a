"""``tmn-client web``: the live browser demo's command line (nothing imports it
but tmn.client's, which dispatches to it)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from tmn.argtypes import bounded

MAX_CLIENTS_LIMIT = 64


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``tmn-client web``."""
    p.add_argument("--model-b", default=None, metavar="MODEL",
                   help="a System B model folder or Hub repo id (default: the built-in model); "
                        "its gated path and its Kalman prior are shown")
    p.add_argument("--model-a", default=None, metavar="MODEL",
                   help="a System A model folder or Hub repo id, shown beside B (default: none)")
    p.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default loopback; the demo has no authentication)")
    p.add_argument("--port", type=bounded(int, 0, 65535), default=8765,
                   help="TCP port (0: any free port; the URL is printed)")
    p.add_argument("--max-clients", type=bounded(int, 1, MAX_CLIENTS_LIMIT), default=8,
                   help="browser connections served at once")


def run(args: argparse.Namespace) -> int:
    """Load the models and serve the page until SIGINT or SIGTERM. A user's mistake
    (a missing model, a busy port, no ``websockets``) is one line on stderr and 1."""
    try:
        from tmn.web.server import LOOPBACK_NAMES, serve_demo
    except ImportError as e:
        print(f"tmn-client: the web demo needs the 'web' extra: pip install 'tmn[web]' ({e})",
              file=sys.stderr)
        return 1
    from tmn.hub import HubError
    from tmn.model import load
    from tmn.web.session import Limits, Sources

    limits = Limits(max_clients=args.max_clients)
    try:
        model_a = load(args.model_a) if args.model_a is not None else None
        sources = Sources(load(args.model_b), model_a, args.precision, limits.max_clients)
    except HubError as e:
        print(f"tmn-client: {e}", file=sys.stderr)
        return 1
    if args.host not in LOOPBACK_NAMES:
        print(f"tmn-client: warning: listening on {args.host}, beyond loopback; the demo has no "
              "authentication (its input is bounded, docs/web-demo.md)", file=sys.stderr)
    names = ", ".join(f"{k}: {m.path.name}" for k, m in sources.models.items() if m is not None)

    def ready(url: str) -> None:
        print(f"tmn web demo ({names}): open {url} ; Ctrl-C stops", flush=True)

    asyncio.run(serve_demo(sources, limits, args.host, args.port, ready))
    return 0
