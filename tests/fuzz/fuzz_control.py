"""atheris target: tmn-serve's JSON control plane (tmn.serve.ControlPlane.handle).

Each input is a control payload as the daemon's control thread receives it,
handled by a real ControlPlane over a real (unstarted) tmn._core.Server and
engine, with a model root holding a valid and a broken model. A finding is
any exception out of handle(), a reply that is not a JSON object with a
boolean "ok", or an "internal" error (an exception nobody foresaw).

    python tests/fuzz/fuzz_control.py -runs=100000 [corpus dir]   # atheris/libFuzzer flags
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from tmn import _core
    from tmn import serve
    from tmn.engine import Engine
    from tmn.testing import random_model

SEEDS = [b'{"cmd": "health"}', b'{"cmd": "stats", "stream": 1, "per_stream": true}',
         b'{"cmd": "reset", "stream": 5}', b'{"cmd": "reload", "model": "good"}',
         b'{"cmd": "reload", "model": "broken", "precision": "fp32"}',
         b'{"cmd": "reset", "stream": 1, "client": "x"}']


def plane(root: Path) -> serve.ControlPlane:
    good = random_model(root / "good", system="B", hidden=8, horizons_ms=[50.0, 100.0])
    shutil.copytree(good, root / "broken")
    (root / "broken" / "config.json").write_text('{"format_version": 1, "hidden": [')
    engine = Engine(good, max_streams=16)
    cfg = _core.ServerConfig()
    cfg.endpoint = f"ipc://{root}/fuzz.ipc"
    cfg.lock_memory = False
    server = _core.Server(engine._core, cfg)
    return serve.ControlPlane([server], [engine], "int8", 16, root)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="tmn-fuzz-"))
    p = plane(root)

    def one(data: bytes) -> None:
        payload = data if data[:1] == b"{" else b'{"cmd": ' + data
        payload = payload.replace(b'"good"', f'"{root}/good"'.encode()).replace(
            b'"broken"', f'"{root}/broken"'.encode())
        reply = p.handle(payload, "")
        text = json.dumps(reply)
        assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), text
        assert reply.get("error") != "internal", text

    args = sys.argv[:]
    if not any(not a.startswith("-") for a in args[1:]):  # no corpus given: seed one
        corpus = root / "corpus"
        corpus.mkdir()
        for i, s in enumerate(SEEDS):
            (corpus / f"seed{i}").write_bytes(s)
        args.append(str(corpus))
    atheris.Setup(args, one)
    try:
        atheris.Fuzz()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
