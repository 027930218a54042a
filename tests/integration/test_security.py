"""The trust model of docs/security.md, against a real daemon with real keys.

Loopback by default; off loopback only with CURVE or a logged --insecure.
With CURVE, an unknown key is refused and a known one served; streams are
scoped per client key; reading (health, stats) is open to every known key,
changing (reload, resetting another client's stream) needs an admin key.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from serve_daemon import STARTUP_TIMEOUT_S, DaemonFactory, free_tcp_endpoint, serve_argv
from test_serve import local_replay, new_streams, smooth_track
from test_cli_errors import tmn_client

import tmn
from tmn.keys import generate


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A server key pair, two clients, an admin and a stranger (each NAME.key,
    NAME.key_secret), with the clients' and the admin's public keys in folders."""
    root = tmp_path_factory.mktemp("keys")
    out: dict[str, Path] = {}
    for name in ("server", "alice", "bob", "admin", "stranger"):
        folder = root / name
        out[name], out[name + "_secret"] = generate(folder, name)
    clients, admins = root / "clients", root / "admins"
    clients.mkdir()
    admins.mkdir()
    for name in ("alice", "bob"):
        (clients / f"{name}.key").write_bytes(out[name].read_bytes())
    (admins / "admin.key").write_bytes(out["admin"].read_bytes())
    out["clients"], out["admins"] = clients, admins
    return out


def curve_daemon(serve: DaemonFactory, model: Path, keys: dict[str, Path], *extra: str):
    """A CURVE daemon on loopback. start_daemon's health probe has no key, so
    the factory is given a probe key through the endpoint's own flags."""
    return serve(model, "--curve-secret", str(keys["server_secret"]), "--client-keys",
                 str(keys["clients"]), "--admin-keys", str(keys["admins"]), *extra,
                 probe_keys=(keys["admin_secret"], keys["server"]))


def client(d, keys: dict[str, Path], who: str, timeout_s: float = 3.0) -> tmn.Client:
    return tmn.Client(d.endpoint, timeout_s=timeout_s, key_file=keys[who + "_secret"],
                      server_key_file=keys["server"])


def test_a_known_key_is_served_and_an_unknown_one_refused(serve: DaemonFactory, models,
                                                         keys) -> None:
    d = curve_daemon(serve, models["B"], keys)
    (sid,) = new_streams()
    ticks = smooth_track(5, sid)
    with client(d, keys, "alice") as c:
        rec = c.ticks(ticks).records
    np.testing.assert_array_equal(rec["path"], local_replay(models["B"], ticks).paths)
    for who in ("stranger", None):
        c = (client(d, keys, who, timeout_s=1.0) if who else
             tmn.Client(d.endpoint, timeout_s=1.0))  # no key at all
        with c, pytest.raises(TimeoutError):
            c.health()
    with client(d, keys, "bob") as c:
        st = c.stats()["stats"]
    assert st["refused_peers"] >= 1


def test_streams_are_scoped_per_client_key(serve: DaemonFactory, models, keys) -> None:
    """Defect 3 and 8: any peer could poison or lock another's stream."""
    d = curve_daemon(serve, models["B"], keys)
    (sid,) = new_streams()
    ticks = smooth_track(300, sid)
    hostile = smooth_track(300, sid, seed=7, radius=50.0)
    with client(d, keys, "alice") as a, client(d, keys, "bob") as b:
        got = []
        for i in range(0, 300, 50):  # interleaved, same stream id
            got.append(a.ticks(ticks[i:i + 50]).records)
            b.ticks(hostile[i:i + 50])
        assert b.reset(sid)["ok"]  # bob resets his own stream `sid`, not alice's
        got.append(a.ticks(smooth_track(310, sid)[300:]).records)
    rec = np.concatenate(got)
    ref = local_replay(models["B"], smooth_track(310, sid))
    np.testing.assert_array_equal(rec["path"], ref.paths)
    np.testing.assert_array_equal(rec["stream"], sid)


def test_changing_needs_an_admin_key_reading_does_not(serve: DaemonFactory, models,
                                                     keys) -> None:
    d = curve_daemon(serve, models["B"], keys)
    (sid,) = new_streams()
    with client(d, keys, "alice") as a:
        assert a.health()["ok"] and a.stats()["ok"]
        assert a.reload()["error"] == "forbidden"
        a.ticks(smooth_track(3, sid))
        assert a.control({"cmd": "reset", "stream": sid, "client": "x" * 40})["error"] == \
            "forbidden"
    alice_key = keys["alice"].read_text().split('public-key = "')[1].split('"')[0]
    with client(d, keys, "admin") as adm:
        assert adm.reload()["ok"]
        with client(d, keys, "alice") as a:
            a.ticks(smooth_track(3, sid))
        reply = adm.control({"cmd": "reset", "stream": sid, "client": alice_key})
        assert reply == {"ok": True, "stream": sid}


def test_tmn_client_speaks_curve_from_the_command_line(serve: DaemonFactory, models,
                                                      keys) -> None:
    d = curve_daemon(serve, models["B"], keys)
    r = tmn_client("--endpoint", d.endpoint, "--key", str(keys["alice_secret"]),
                   "--server-key", str(keys["server"]), "health")
    assert r.returncode == 0 and '"serving"' in r.stdout, r.stderr


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:{port}", "tcp://*:{port}"])
def test_a_non_loopback_endpoint_needs_curve_or_insecure(models, endpoint: str) -> None:
    ep = endpoint.format(port=free_tcp_endpoint().rsplit(":", 1)[1])
    r = subprocess.run(serve_argv(models["A"], ep), capture_output=True, text=True,
                       timeout=STARTUP_TIMEOUT_S)
    assert r.returncode == 2 and "--insecure" in r.stderr and "Traceback" not in r.stderr


def test_insecure_is_logged_as_a_warning(serve: DaemonFactory, models) -> None:
    port = free_tcp_endpoint().rsplit(":", 1)[1]
    d = serve(models["A"], "--insecure", "--endpoint", f"tcp://0.0.0.0:{port}",
              endpoint=f"tcp://127.0.0.1:{port}")
    assert "WARNING" in d.log() and "WITHOUT authentication" in d.log()


def test_the_default_endpoint_is_loopback() -> None:
    from tmn import serve

    assert serve.DEFAULT_ENDPOINT == "tcp://127.0.0.1:5555"
    assert serve.is_local_endpoint(serve.parse_args([]).endpoint)
