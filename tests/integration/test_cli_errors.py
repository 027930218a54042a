"""Every bad invocation of tmn-serve, tmn-client and tmn-train ends with a clear
one-line error and a non-zero exit code, never a traceback (issue 13, defect 11)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from serve_daemon import STARTUP_TIMEOUT_S, DaemonFactory, free_tcp_endpoint, serve_argv
from test_serve import new_streams, smooth_track


def run(argv: list[str], timeout_s: float = STARTUP_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                          stdin=subprocess.DEVNULL)


def tmn_client(*args: str) -> subprocess.CompletedProcess:
    """``python -m tmn.client ARGS``."""
    return run([sys.executable, "-m", "tmn.client", *args])


def tmn_train(*args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "tmn_train", *args], timeout_s=120)


def assert_clean_failure(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


SERVE_CASES = {
    "max_streams_2000000": (["--max-streams", "2000000"], "--max-streams"),
    "max_streams_zero": (["--max-streams", "0"], "--max-streams"),
    "max_streams_per_client_zero": (["--max-streams-per-client", "0"],
                                    "--max-streams-per-client"),
    "idle_evict_nan": (["--idle-evict-s", "nan"], "--idle-evict-s"),
    "idle_evict_negative": (["--idle-evict-s", "-1"], "--idle-evict-s"),
    "reclaim_inf": (["--reclaim-idle-s", "inf"], "--reclaim-idle-s"),
    "rt_priority_100": (["--rt-priority", "100"], "--rt-priority"),
    "core_text": (["--core", "three"], "--core"),
    "pidfile_missing_folder": (["--pidfile", "/nonexistent-dir/tmn.pid"], "does not exist"),
    "pidfile_disk_full": (["--pidfile", "/dev/full"], "pidfile"),
    "curve_secret_missing": (["--curve-secret", "/nonexistent.key_secret", "--client-keys",
                              "/tmp"], "nonexistent"),
    "client_keys_without_secret": (["--client-keys", "/tmp"], "--curve-secret"),
    "model_missing": (["--model", "/nonexistent-model"], "/nonexistent-model"),
    "bad_endpoint": (["--endpoint", "bogus://x"], "bogus://x"),
    "ipc_path_is_a_file": (["--endpoint", "ipc:///etc/hostname"], "not a socket"),
}


@pytest.mark.parametrize("case", list(SERVE_CASES))
def test_tmn_serve_refuses_a_bad_invocation_without_a_traceback(case: str, models) -> None:
    extra, word = SERVE_CASES[case]
    model = [] if "--model" in extra else ["--model", str(models["A"])]
    r = run(serve_argv(None, free_tcp_endpoint(), *model, *extra))
    assert_clean_failure(r, word)


def test_a_stale_pidfile_is_replaced_and_a_live_one_refused(serve: DaemonFactory, models,
                                                           tmp_path: Path) -> None:
    pidfile = tmp_path / "tmn.pid"
    pidfile.write_text("999999999\n")  # no such process
    d = serve(models["A"], pidfile=pidfile)
    assert pidfile.read_text().strip() == str(d.proc.pid)
    r = run(serve_argv(models["A"], free_tcp_endpoint(), "--pidfile", str(pidfile)))
    assert_clean_failure(r, "is running")
    assert pidfile.read_text().strip() == str(d.proc.pid)


CLIENT_CASES = {
    "batch_zero": (["replay", "x.csv", "--batch", "0"], "--batch"),
    "batch_too_big": (["replay", "x.csv", "--batch", "5000"], "--batch"),
    "streams_zero": (["replay", "x.csv", "--streams", "0"], "--streams"),
    "seconds_nan": (["demo", "--seconds", "nan"], "--seconds"),
    "missing_file": (["replay", "/nonexistent.csv"], "nonexistent"),
    "no_server": (["--endpoint", "tcp://127.0.0.1:1", "health"], "no reply"),
    "bad_endpoint": (["--endpoint", "nonsense", "health"], "tmn-client"),
    "key_without_server_key": (["--key", "/nonexistent", "health"], "server_key_file"),
}


@pytest.mark.parametrize("case", list(CLIENT_CASES))
def test_tmn_client_refuses_a_bad_invocation_without_a_traceback(case: str) -> None:
    args, word = CLIENT_CASES[case]
    if case == "no_server":
        args = ["--endpoint", free_tcp_endpoint(), "health"]
    r = tmn_client(*args)
    assert_clean_failure(r, word)


def test_tmn_client_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    assert tmn_client("keygen", "me", "--dir", str(tmp_path)).returncode == 0
    assert (tmp_path / "me.key").is_file() and (tmp_path / "me.key_secret").stat().st_mode & 0o077 == 0
    assert_clean_failure(tmn_client("keygen", "me", "--dir", str(tmp_path)), "exists")


def test_replay_exits_1_when_the_server_refused_ticks(serve: DaemonFactory, models,
                                                     tmp_path: Path) -> None:
    """It exited 0 after the server refused all 6,000 ticks."""
    d = serve(models["B"])
    (sid,) = new_streams()
    rec = smooth_track(6000, sid)
    rec["x"] = 1e300  # out of range, every one
    csv = tmp_path / "bad.csv"
    rows = np.stack([rec[k] for k in ("t", "x", "y", "vx", "vy")], axis=1)
    np.savetxt(csv, rows, delimiter=",", header="t,x,y,vx,vy", comments="", fmt="%.17g")
    r = tmn_client("--endpoint", d.endpoint, "replay", str(csv), "--batch", "500")
    assert_clean_failure(r, "refused 6000 of 6000", "out_of_range")


def test_stats_in_the_prometheus_text_format(serve: DaemonFactory, models) -> None:
    d = serve(models["B"])
    (sid,) = new_streams()
    with d.client() as c:
        for i in range(0, 1500, 100):
            c.ticks(smooth_track(1500, sid)[i:i + 100])
    r = tmn_client("--endpoint", d.endpoint, "stats", "--format", "prometheus")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "# TYPE tmn_ticks_total counter" in lines and "tmn_ticks_total 1500" in lines
    assert any(x.startswith('tmn_latency_seconds{stage="server",quantile="0.999"}') for x in lines)
    assert any(x.startswith('tmn_live_error{horizon_ms="500",quantile="0.5"}') for x in lines)
    assert 'tmn_tick_errors_total{status="out_of_range"} 0' in lines
    for x in lines:  # every sample line: name{labels} value
        if not x.startswith("#"):
            name, value = x.rsplit(" ", 1)
            float(value)
            assert name.startswith("tmn_")


def test_tmn_train_export_refuses_a_text_file_and_an_out_file(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    assert_clean_failure(tmn_train("export", str(text), "--out", str(tmp_path / "m")),
                         "not a checkpoint")
    out = tmp_path / "taken"
    out.write_text("x")
    assert_clean_failure(tmn_train("export", str(text), "--out", str(out)), "not a folder")
