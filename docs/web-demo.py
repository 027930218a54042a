#!/usr/bin/env python3
"""Record docs/web-demo.gif: the live demo (``tmn-client web``) in headless
Chromium while the pointer follows the built-in figure-eight
(``tmn.client.demo_trajectory``): both predicted paths (A and B), the truth
trail and B's verdict, frame by frame (README.md, docs/web-demo.md).

    # an A trained like the evaluation's A seed 0 (about 6 minutes on 2 cores)
    tmn-train fit --config configs/A_traditional.yaml --data synth:20 --seeds 0 \\
        --out build/train/web-A --set data.passes=4
    python docs/web-demo.py --model-a build/train/web-A/model

Needs ``pip install ".[test]" ./bench`` (playwright, websockets, and Pillow
through matplotlib) and Debian's ``chromium``. The frames come from Chromium's
screencast (CDP ``Page.startScreencast``), so taking them never pauses the
pointer: the moves are real pointer events paced in real time.
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright

from tmn.client import demo_trajectory
from tmn.web.launch import running_demo
from tmn.web.session import PRIOR_COLOUR, VERDICT_COLOURS

CHROMIUM = "/usr/bin/chromium"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-a", default=None, help="a System A model folder (none: B only)")
    p.add_argument("--model-b", default=None, help="a System B model (default: the built-in)")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("web-demo.gif"))
    p.add_argument("--seconds", type=float, default=5.0, help="length of the recording")
    p.add_argument("--warmup", type=float, default=2.0, help="pointer motion before recording")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--size", type=int, nargs=2, default=(720, 480), metavar=("W", "H"))
    p.add_argument("--max-kb", type=float, default=300.0, help="fail above this size")
    return p.parse_args()


def pointer_path(seconds: float, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(t, (N, 2) positions in CSS px): the demo's figure-eight (1 unit = 1 px),
    centred between the page's bars."""
    ticks = demo_trajectory(seconds, rate_hz=1000.0)
    xy = np.stack([ticks["x"] - 500 + size[0] / 2, ticks["y"] - 500 + size[1] / 2 + 20], axis=1)
    return ticks["t"], xy


def record(page, cdp, seconds: float, size: tuple[int, int]) -> list[tuple[float, str]]:  # noqa: ANN001
    """Move the pointer for ``seconds`` in real time; every screencast frame as
    (seconds since the start, base64 PNG)."""
    t, xy = pointer_path(seconds + 1.0, size)
    frames: list[tuple[float, str]] = []
    acks: list[int] = []
    start = time.perf_counter()

    def on_frame(ev: dict) -> None:
        frames.append((time.perf_counter() - start, ev["data"]))
        acks.append(ev["sessionId"])

    cdp.on("Page.screencastFrame", on_frame)
    cdp.send("Page.startScreencast", {"format": "png", "maxWidth": size[0], "maxHeight": size[1]})
    while (now := time.perf_counter() - start) < seconds:
        page.mouse.move(float(np.interp(now, t, xy[:, 0])), float(np.interp(now, t, xy[:, 1])))
        while acks:  # the screencast sends the next frame once this one is acknowledged
            cdp.send("Page.screencastFrameAck", {"sessionId": acks.pop()})
        time.sleep(0.004)
    cdp.send("Page.stopScreencast")
    return frames


def palette() -> Image.Image:
    """The GIF's one palette: 24 greys, and every colour the page draws with (the
    verdicts' and the prior's) at four strengths over white, for the line edges.
    A fixed palette keeps the small legend dots their own colour, which an
    adaptive one merges away."""
    rgb = [(v, v, v) for v in np.linspace(0, 255, 24).round().astype(int)]
    for colour in (*VERDICT_COLOURS.values(), PRIOR_COLOUR):
        c = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        rgb += [tuple((a * c + (1 - a) * 255).round().astype(int)) for a in (1, .75, .5, .25)]
    image = Image.new("P", (1, 1))
    image.putpalette([v for c in rgb for v in c])
    return image


def write_gif(frames: list[tuple[float, str]], start: float, fps: float, out: Path) -> int:
    """One frame per 1/fps s from ``start`` on (the newest frame at each instant);
    returns how many."""
    times = np.array([f[0] for f in frames])
    picks = []
    for when in np.arange(start, times[-1], 1.0 / fps):
        i = int(np.searchsorted(times, when, side="right")) - 1
        if i >= 0:
            picks.append(i)
    pal = palette()
    images = [Image.open(io.BytesIO(base64.b64decode(frames[i][1]))).convert("RGB")
              .quantize(palette=pal, dither=Image.Dither.NONE) for i in picks]
    images[0].save(out, save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0, optimize=True)
    return len(images)


def main() -> int:
    args = parse_args()
    size = tuple(args.size)
    demo_args = [*(["--model-a", args.model_a] if args.model_a else []),
                 *(["--model-b", args.model_b] if args.model_b else [])]
    with tempfile.TemporaryDirectory() as tmp, \
            running_demo(*demo_args, log=Path(tmp) / "web.log") as (_, url), \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": size[0], "height": size[1]})
        page.goto(url)
        page.wait_for_function("() => window.tmnDemo && tmnDemo.state.hello !== null")
        page.evaluate("id => tmnDemo.setMode(id)", "A+B" if args.model_a else "B")
        frames = record(page, page.context.new_cdp_session(page), args.warmup + args.seconds,
                        size)
        counts = page.evaluate("() => JSON.parse(JSON.stringify(tmnDemo.state.counts))")
        rtt = page.evaluate("() => tmnDemo.state.rtts.slice()")
        browser.close()
    n = write_gif(frames, args.warmup, args.fps, args.out)
    kb = args.out.stat().st_size / 1024
    print(f"{args.out}: {n} frames of {size[0]}x{size[1]} at {args.fps:g} fps, {kb:.0f} KB; "
          f"page: {counts['ticks']} ticks, {counts['replies']} replies, {counts['refused']} "
          f"refused; verdicts (replies) {counts['verdicts']}; round trip p50 "
          f"{np.percentile(rtt, 50):.1f} ms, p99 {np.percentile(rtt, 99):.1f} ms (last {len(rtt)})")
    if kb > args.max_kb:
        print(f"web-demo.py: {kb:.0f} KB is over --max-kb {args.max_kb:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
