"""The live browser demo, ``tmn-client web`` (docs/web-demo.md).

* The session: every source's prediction, every kind of bad input answered
  with an error message (never an exception), the rate limits, the stream ids,
  and the uncertainty radius passed on when a record carries one.
* The bridge as a process on loopback, through a real WebSocket client: the
  page and its headers, Host and Origin checks, the size limit, the connection
  limit, a clean exit on SIGTERM, and one-line errors for a bad invocation.
* The page in a real headless Chromium (Debian's ``chromium``, driven by
  playwright): synthesised pointer moves give predictions drawn on the canvas
  in every view, a radius draws circles, a bad message shows the bridge's
  error, killing the bridge shows a lost connection, and a screenshot is
  saved: into the test's temporary folder, or where ``TMN_WEB_SCREENSHOT``
  says (``TMN_WEB_SCREENSHOT=docs/web-demo.png`` renews the docs' one).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

import tmn
from tmn import _core
from tmn.testing import random_model
from tmn.web.launch import running_demo
from tmn.web.session import VERDICT_COLOURS, Limits, Session, Sources, source_entry

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"   # Debian's package: no browser is downloaded
STARTUP_TIMEOUT_S = 30.0
BROWSER_BUDGET_S = 60.0          # issue 12's target for the browser test


@pytest.fixture(scope="module")
def model_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid System A model with random weights (its paths mean nothing; the
    plumbing they go through is the real one)."""
    return random_model(tmp_path_factory.mktemp("web") / "A", system="A", seed=3,
                        weight_scale=0.3)


@pytest.fixture(scope="module")
def sources(model_a: Path) -> Sources:
    return Sources(tmn.load(), tmn.load(model_a), max_streams=4)


def circle(n: int, rate_hz: float = 125.0, t0: float = 1.0) -> list[list[float]]:
    """A mouse-like circle of radius 150 px at 0.5 turns per second."""
    t = t0 + np.arange(n) / rate_hz
    a = 2 * np.pi * 0.5 * t
    return np.stack([t, 400 + 150 * np.cos(a), 300 + 150 * np.sin(a)], axis=1).tolist()


def ticks_message(ticks: list[list[float]], seq: int = 1) -> str:
    return json.dumps({"type": "ticks", "id": seq, "ticks": ticks})


class Clock:
    """A clock the test moves by hand (the rate limits read it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ----------------------------------------------------------------------------- session


@pytest.fixture
def stream(sources: Sources) -> Iterator[int]:
    """A stream id of the shared engines, forgotten and given back afterwards."""
    stream = sources.open_stream()
    yield stream
    sources.close_stream(stream)


def test_a_prediction_carries_every_source_with_its_verdict_name(sources: Sources,
                                                                 stream: int) -> None:
    session = Session(sources, stream)
    hello = session.hello()
    assert set(hello["sources"]) == {"B", "prior", "A"}
    assert [m["id"] for m in hello["modes"]] == ["B", "prior", "A", "A+B"]
    assert set(hello["verdict_colours"]) <= set(_core.VERDICT_NAMES.values())
    reply = session.handle(ticks_message(circle(100), seq=7))
    assert reply["type"] == "prediction" and reply["id"] == 7 and reply["refused"] == {}
    assert set(reply["sources"]) == {"B", "prior", "A"}
    for name, entry in reply["sources"].items():
        assert np.asarray(entry["path"]).shape == (10, 2), name
        assert np.all(np.isfinite(np.asarray(entry["path"], dtype=float))), name
    assert reply["sources"]["B"]["verdict"] in _core.VERDICT_NAMES.values()
    assert reply["sources"]["A"]["verdict"] == _core.VERDICT_NAMES[_core.Verdict.ungated.value]
    # the built-in B is calibrated (docs/uncertainty.md); the random A is not
    assert len(reply["sources"]["B"]["radius"]) == 10
    assert all(r is not None and r > 0 for r in reply["sources"]["B"]["radius"])
    assert "radius" not in reply["sources"]["A"] and "radius" not in reply["sources"]["prior"]
    assert reply["t"] == pytest.approx(circle(100)[-1][0]) and reply["engine_us"] > 0
    json.dumps(reply, allow_nan=False)


def test_the_prior_is_the_engines_own_prior_path(sources: Sources, stream: int) -> None:
    """The "prior" source is replay(candidates=True)'s prior of the same B engine."""
    ticks = np.array(circle(200))
    reply = Session(sources, stream).handle(ticks_message(ticks.tolist()))
    ref = tmn.Engine(tmn.load()).replay(*ticks.T, candidates=True)
    np.testing.assert_allclose(reply["sources"]["prior"]["path"], ref.prior[-1], atol=0.006)
    np.testing.assert_allclose(reply["sources"]["B"]["path"], ref.paths[-1], atol=0.006)


BAD_MESSAGES = {
    "not_json": ("{tick", "bad JSON"),
    "nan_literal": ('{"type": "ticks", "ticks": [[NaN, 1, 2]]}', "bad JSON"),
    "deep_nesting": ("[" * 30_000 + "]" * 30_000, "bad JSON"),
    "not_an_object": ("[1, 2, 3]", "JSON object"),
    "unknown_type": ('{"type": "launch"}', "unknown message type"),
    "no_ticks": ('{"type": "ticks"}', "'ticks' must be a list"),
    "empty_ticks": ('{"type": "ticks", "ticks": []}', "'ticks' must be a list"),
    "too_many_ticks": (ticks_message(circle(513)), "'ticks' must be a list of 1 to 512"),
    "short_tick": ('{"type": "ticks", "ticks": [[1, 2]]}', "tick 0 must be [t, x, y]"),
    "string_value": ('{"type": "ticks", "ticks": [[1, "2", 3]]}', "tick 0 must be"),
    "bool_value": ('{"type": "ticks", "ticks": [[1, true, 3]]}', "tick 0 must be"),
    "huge_int": ('{"type": "ticks", "ticks": [[1, 1' + "0" * 400 + ', 3]]}', "too large"),
    "infinite_float": ('{"type": "ticks", "ticks": [[1, 1e400, 3]]}', "all finite"),
    "negative_time": ('{"type": "ticks", "ticks": [[-1, 1, 3]]}', "0 <= t"),
    "far_position": ('{"type": "ticks", "ticks": [[1, 2e6, 3]]}', "|x|, |y| <="),
    "bad_id": ('{"type": "ticks", "id": -1, "ticks": [[1, 2, 3]]}', "'id' must be"),
    "float_id": ('{"type": "ticks", "id": 1.5, "ticks": [[1, 2, 3]]}', "'id' must be"),
    "binary": (b"\x00\x01", "binary messages"),
    "too_long": ('{"type": "ticks", "pad": "' + "x" * 70_000 + '"}', "over the limit"),
}


@pytest.mark.parametrize("case", list(BAD_MESSAGES))
def test_bad_input_gets_an_error_message_and_the_session_goes_on(sources: Sources, stream: int,
                                                                 case: str) -> None:
    message, words = BAD_MESSAGES[case]
    session = Session(sources, stream)
    reply = session.handle(message)
    assert reply["type"] == "error" and words in reply["message"], reply
    assert len(reply["message"]) < 400
    json.dumps(reply, allow_nan=False)
    assert session.handle(ticks_message(circle(5)))["type"] == "prediction"


def test_refused_ticks_are_counted_by_status_name(sources: Sources, stream: int) -> None:
    session = Session(sources, stream)
    good = circle(50)
    assert session.handle(ticks_message(good))["refused"] == {}
    reply = session.handle(ticks_message([good[10], good[20]]))   # time going backwards
    assert reply["refused"] == {"time_not_increasing": 2} and reply["sources"] == {}
    assert reply["t"] is None
    assert session.handle(ticks_message(circle(3, t0=good[-1][0] + 0.008)))["refused"] == {}


def test_a_reset_forgets_the_stream(sources: Sources, stream: int) -> None:
    session = Session(sources, stream)
    assert session.handle(ticks_message(circle(50, t0=5)))["refused"] == {}
    assert session.handle('{"type": "reset"}') == {"type": "reset"}
    reply = session.handle(ticks_message(circle(10, t0=1)))   # earlier times: a new stream
    assert reply["refused"] == {}
    assert reply["sources"]["B"]["verdict"] == _core.VERDICT_NAMES[_core.Verdict.warming.value]


def test_rate_limits_drop_messages_and_say_so_at_most_once_a_second(sources: Sources,
                                                                     stream: int) -> None:
    clock = Clock()
    session = Session(sources, stream, Limits(messages_per_s=50, ticks_per_s=400), clock=clock)
    replies = [session.handle(ticks_message(circle(1, t0=1 + i / 1000))) for i in range(30)]
    kinds = [r["type"] if r else None for r in replies]
    assert kinds[:10] == ["prediction"] * 10        # a burst of a fifth of a second
    assert kinds[10] == "error" and "messages per second" in replies[10]["message"]
    assert kinds[11:] == [None] * 19                  # dropped quietly within the second
    assert session.dropped == 20
    clock.now += 1.0
    assert session.handle(ticks_message(circle(400, t0=2)))["type"] == "prediction"
    r = session.handle(ticks_message(circle(100, t0=6)))
    assert r["type"] == "error" and "ticks per second" in r["message"]
    clock.now += 0.5   # 200 ticks' worth of tokens back
    assert session.handle(ticks_message(circle(100, t0=6)))["type"] == "prediction"


def test_a_record_with_a_radius_passes_its_circles_on() -> None:
    """The calibrated radius per horizon, when a record has one (None where a
    value is not finite); all NaN (warming, or no calibration): none."""
    paths = np.arange(12.0).reshape(1, 6, 2)
    record = SimpleNamespace(paths=paths, verdict=np.array([_core.Verdict.pass_.value]),
                             radius=np.array([[1.0, 2.0, np.nan, 4.0, 5.0, 6.0]]))
    entry = source_entry(record, 0)
    assert entry["radius"] == [1.0, 2.0, None, 4.0, 5.0, 6.0]
    assert entry["verdict"] == "pass" and entry["path"][5] == [10.0, 11.0]
    record.radius = np.full((1, 6), np.nan)
    assert "radius" not in source_entry(record, 0)


def test_stream_ids_are_handed_out_and_taken_back(model_a: Path) -> None:
    s = Sources(tmn.load(), max_streams=2)
    a, b = s.open_stream(), s.open_stream()
    assert {a, b} == {0, 1} and s.open_stream() is None
    s.close_stream(a)          # never ticked: closing it is fine
    assert s.open_stream() == a
    with pytest.raises(ValueError, match="System A model"):
        Sources(tmn.load(), tmn.load())
    with pytest.raises(ValueError, match="System B model"):
        Sources(tmn.load(model_a))


# ----------------------------------------------------------------------------- the bridge


@contextmanager
def bridge(log: Path, *args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """``tmn-client web --port 0 ARGS`` as a process: it and its page's URL."""
    with running_demo(*args, log=log, timeout_s=STARTUP_TIMEOUT_S) as (proc, url):
        assert url.startswith("http://127.0.0.1:"), url
        yield proc, url


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "ws"


def test_the_bridge_bounds_what_a_websocket_peer_can_do(tmp_path: Path) -> None:
    with bridge(tmp_path / "bridge.log", "--max-clients", "2") as (proc, url):
        host = url.split("/")[2]
        origin = f"http://{host}"
        with connect(ws_url(url), origin=origin) as ws:
            hello = json.loads(ws.recv(timeout=10))
            assert hello["type"] == "hello" and hello["limits"]["max_clients"] == 2
            ws.send("{not json")
            assert "bad JSON" in json.loads(ws.recv(timeout=10))["message"]
            ws.send(ticks_message(circle(20)))
            assert json.loads(ws.recv(timeout=10))["type"] == "prediction"
            with connect(ws_url(url), origin=origin) as second:
                assert json.loads(second.recv(timeout=10))["type"] == "hello"
                with connect(ws_url(url), origin=origin) as third:   # one too many
                    msg = json.loads(third.recv(timeout=10))
                    assert msg["type"] == "error" and "maximum of 2" in msg["message"]
                    with pytest.raises(ConnectionClosedError) as closed:
                        third.recv(timeout=10)
                    assert closed.value.rcvd.code == 1013
            ws.send("x" * (Limits.max_message_bytes + 1))          # over the socket's limit
            with pytest.raises(ConnectionClosedError) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
            assert closed.value.sent.code == 1009
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(url), origin="http://evil.example", open_timeout=10)
        assert refused.value.response.status_code == 403
        with connect(ws_url(url), origin=origin) as ws:   # the slots came back
            assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def http_get(url: str, path: str, host: str | None = None) -> http.client.HTTPResponse:
    netloc = url.split("/")[2]
    conn = http.client.HTTPConnection(netloc, timeout=10)
    conn.request("GET", path, headers={"Host": host or netloc})
    response = conn.getresponse()
    response.body = response.read()   # type: ignore[attr-defined]
    conn.close()
    return response


def test_the_bridge_serves_the_page_to_its_own_host_only(tmp_path: Path) -> None:
    with bridge(tmp_path / "bridge.log") as (_, url):
        page = http_get(url, "/")
        assert page.status == 200 and b"demo.js" in page.body
        assert page.getheader("Content-Type").startswith("text/html")
        assert "default-src 'self'" in page.getheader("Content-Security-Policy")
        assert http_get(url, "/demo.js").getheader("Content-Type").startswith("text/javascript")
        assert http_get(url, "/../../etc/passwd").status == 404
        port = url.split(":")[2].rstrip("/")
        assert http_get(url, "/", host=f"localhost:{port}").status == 200
        assert http_get(url, "/", host=f"rebound.example:{port}").status == 403


def test_a_bad_invocation_is_one_line_without_a_traceback(model_a: Path) -> None:
    def web(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tmn.client", "web", *args], text=True,
                              capture_output=True, timeout=STARTUP_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)

    cases = [(["--model-a", "/nonexistent-model"], "/nonexistent-model"),
             (["--model-b", str(model_a)], "System B model"),
             (["--port", "70000"], "--port"),
             (["--max-clients", "0"], "--max-clients")]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cases.append((["--port", str(taken.getsockname()[1])], "address already in use"))
        for args, words in cases:
            r = web(*args)
            assert r.returncode != 0 and "Traceback" not in r.stderr, (args, r.stderr)
            assert words in r.stderr, (args, r.stderr)


# ----------------------------------------------------------------------------- the browser

COUNT_COLOUR = """([r, g, b]) => {
  const c = document.getElementById('stage');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (Math.abs(d[i] - r) < 8 && Math.abs(d[i+1] - g) < 8 && Math.abs(d[i+2] - b) < 8 && d[i+3] > 200) n++;
  return n;
}"""


def rgb(colour: str) -> list[int]:
    return [int(colour[i:i + 2], 16) for i in (1, 3, 5)]


class Pointer:
    """Synthesised mouse moves along a circle, paced in real time (each move is a
    trusted pointer event with its own timestamp). Between calls the pointer
    rests where it was, as a hand would: no jump across the time in between."""

    def __init__(self, page) -> None:  # noqa: ANN001 (playwright Page)
        self.page, self.moving_s = page, 0.0

    def move(self, seconds: float) -> None:
        """Move on along the circle for ``seconds``."""
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            a = 2 * math.pi * 0.6 * (self.moving_s + elapsed)
            self.page.mouse.move(400 + 150 * math.cos(a), 300 + 110 * math.sin(a))
            time.sleep(0.004)
        self.moving_s += elapsed


def counts(page) -> dict:  # noqa: ANN001
    return page.evaluate("() => JSON.parse(JSON.stringify(tmnDemo.state.counts))")


# B's verdict when the newest reply is fresh enough to be on the canvas, else null
FRESH_VERDICT = """() => {
  const s = tmnDemo.state;
  return s.latest && s.latest.sources.B && performance.now() - s.latestAt < s.hello.max_gap_ms / 2
    ? s.latest.sources.B.verdict : null;
}"""


def path_on_canvas(page, pointer: Pointer, tries: int = 60) -> str:  # noqa: ANN001
    """Move the pointer until a fresh reply's B path is on the canvas in its
    verdict's colour (over 100 pixels); that verdict."""
    for _ in range(tries):
        pointer.move(0.03)
        verdict = page.evaluate(FRESH_VERDICT)
        if verdict is not None:
            assert verdict in _core.VERDICT_NAMES.values(), verdict
            if page.evaluate(COUNT_COLOUR, rgb(VERDICT_COLOURS[verdict])) > 100:
                return verdict
    pytest.fail(f"no B path in its verdict's colour on the canvas after {tries} tries")


def save_screenshot(page, pointer: Pointer, max_gap_ms: float, path: Path) -> None:  # noqa: ANN001
    """A screenshot at ``path``, taken while a prediction is drawn (a test run never
    writes into the tree unless TMN_WEB_SCREENSHOT asks it to)."""
    for _ in range(10):
        pointer.move(0.3)
        page.screenshot(path=str(path))
        if page.evaluate("() => performance.now() - tmnDemo.state.latestAt") < max_gap_ms:
            return


def test_the_browser_draws_the_predictions_and_shows_a_lost_connection(
        tmp_path: Path, model_a: Path) -> None:
    from playwright.sync_api import sync_playwright

    began = time.perf_counter()
    with bridge(tmp_path / "bridge.log", "--model-a", str(model_a)) as (proc, url), \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 800, "height": 560})
        page_errors: list[str] = []
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.goto(url)
        page.wait_for_function("() => window.tmnDemo && tmnDemo.state.hello !== null",
                               timeout=20_000)
        hello = page.evaluate("() => tmnDemo.state.hello")
        assert page.evaluate("() => tmnDemo.state.coalesced"), "getCoalescedEvents is missing"
        pointer = Pointer(page)

        # 1. every view draws its paths while the pointer moves
        for mode in hello["modes"]:
            assert page.evaluate("id => tmnDemo.setMode(id)", mode["id"])
            before = counts(page)["drawnBy"]
            pointer.move(0.8)
            after = counts(page)
            for name in mode["draw"]:
                assert after["drawnBy"].get(name, 0) > before.get(name, 0) + 3, (mode, after)
        assert after["refused"] == 0 and after["replies"] > 20, after

        # 2. B's path is on the canvas in its verdict's colour, and the bar names a verdict
        page.evaluate("id => tmnDemo.setMode(id)", "B")
        path_on_canvas(page, pointer)
        shown = page.inner_text("#verdict")
        assert shown.startswith("B: ") and shown[3:] in _core.VERDICT_NAMES.values(), shown
        shot = Path(os.environ.get("TMN_WEB_SCREENSHOT", tmp_path / "web-demo.png"))
        save_screenshot(page, pointer, hello["max_gap_ms"], shot)
        assert shot.stat().st_size > 1000

        # 3. the built-in B's calibrated radius is drawn as circles while the pointer
        # moves; and a record with a radius per horizon draws one circle per horizon
        # (fed on every animation frame until drawn: a record older than max_gap_ms is not)
        circles = counts(page)["circles"]
        pointer.move(0.5)
        assert counts(page)["circles"] > circles + 10
        record = page.evaluate("() => tmnDemo.state.latest")
        record["sources"] = {"B": {**record["sources"]["B"],
                                   "radius": [8.0 + 4 * k for k in range(10)]}}
        circles = counts(page)["circles"]
        page.wait_for_function("([m, n]) => { tmnDemo.receive(m); "
                               "return tmnDemo.state.counts.circles >= n; }",
                               arg=[record, circles + 10], timeout=5_000)

        # 4. a bad message shows the bridge's error on the page
        page.evaluate("() => tmnDemo.state.ws.send('{oops')")
        page.wait_for_selector("#error:not([hidden])", timeout=5_000)
        assert "bridge: bad JSON" in page.inner_text("#error")

        # 5. killing the bridge shows a lost connection
        rtt = page.evaluate("() => tmnDemo.state.rtts.slice()")
        proc.kill()
        proc.wait(timeout=10)
        page.wait_for_function("() => document.getElementById('error').textContent"
                               ".includes('connection to the bridge lost')", timeout=10_000)
        assert page.is_visible("#reconnect") and page_errors == []
        browser.close()
    took = time.perf_counter() - began
    print(f"browser test: {took:.1f} s; round trip page->bridge->page over {len(rtt)} "
          f"messages: p50 {np.percentile(rtt, 50):.1f} ms, p99 {np.percentile(rtt, 99):.1f} ms")
    assert took < BROWSER_BUDGET_S
