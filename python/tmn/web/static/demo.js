"use strict";
// The tmn live demo page (docs/web-demo.md).
//
//   pointer events (and their coalesced events)
//     -> position-only ticks [t in s, x in px, y in px], t from the event's timeStamp
//     -> WebSocket /ws -> the bridge's engines (B with its Kalman prior, and A)
//     -> the newest prediction of every source -> drawn on the next animation frame.
//
// Everything the page knows about the sources, view modes, verdict names and
// colours and the limits comes from the bridge's hello message: nothing here
// repeats a constant of the engine.
(function () {
  const canvas = document.getElementById("stage");
  const ctx = canvas.getContext("2d");
  const $ = (id) => document.getElementById(id);
  const TRAIL_S = 1.5;          // seconds of truth trail drawn behind the pointer
  const MAX_IN_FLIGHT = 256;    // send times remembered, for the round trip
  const NOTICE_MS = 5000;       // how long a bridge's error notice stays up

  const state = {
    ws: null, hello: null, mode: null, latest: null, latestAt: -Infinity,
    trail: [], lastT: -Infinity, nextId: 1, sentAt: new Map(), rtts: [], engineUs: [],
    errorSticky: false, errorAt: -Infinity,
    coalesced: typeof PointerEvent !== "undefined" && "getCoalescedEvents" in PointerEvent.prototype,
    counts: { ticks: 0, messages: 0, replies: 0, drawn: 0, circles: 0, errors: 0, refused: 0,
              unsent: 0, drawnBy: {}, verdicts: {} },   // verdicts: "source:verdict" -> replies
  };

  // ------------------------------------------------------------------ messages

  function showError(text, sticky) {
    const e = $("error");
    e.textContent = text;
    e.hidden = false;
    state.errorSticky = sticky;
    state.errorAt = performance.now();
    state.counts.errors++;
  }

  function clearError() {
    $("error").hidden = true;
    state.errorSticky = false;
  }

  function connect() {
    $("reconnect").hidden = true;
    $("verdict").textContent = "connecting…";
    const ws = new WebSocket(`ws://${location.host}/ws`);
    state.ws = ws;
    ws.onopen = clearError;
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        showError("an unreadable message came from the bridge", false);
        return;
      }
      receive(msg);
    };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      state.ws = null;
      state.latest = null;
      showError(`connection to the bridge lost (code ${ev.code}${ev.reason ? ", " + ev.reason : ""}):`
                + " is tmn-client web still running?", true);
      $("reconnect").hidden = false;
    };
  }

  // One message from the bridge (also the tests' way in: tmnDemo.receive).
  function receive(msg) {
    if (msg.type === "hello") {
      state.hello = msg;
      buildModes(msg);
      buildLegend(msg);
    } else if (msg.type === "prediction") {
      state.counts.replies++;
      const sent = state.sentAt.get(msg.id);
      if (sent !== undefined) {
        state.sentAt.delete(msg.id);
        push(state.rtts, performance.now() - sent);
      }
      if (typeof msg.engine_us === "number") push(state.engineUs, msg.engine_us);
      for (const n of Object.values(msg.refused || {})) state.counts.refused += n;
      for (const [name, e] of Object.entries(msg.sources || {})) {
        if (!e.verdict) continue;
        const key = `${name}:${e.verdict}`;
        state.counts.verdicts[key] = (state.counts.verdicts[key] || 0) + 1;
      }
      if (msg.sources && Object.keys(msg.sources).length) {
        state.latest = msg;
        state.latestAt = performance.now();
      }
    } else if (msg.type === "error") {
      showError("bridge: " + msg.message, false);
    }
  }

  function push(ring, v) {
    ring.push(v);
    if (ring.length > 200) ring.shift();
  }

  // ------------------------------------------------------------------ input

  function onPointer(e) {
    const rect = canvas.getBoundingClientRect();
    const coalesced = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    const ticks = [];
    for (const c of (coalesced.length ? coalesced : [e])) {
      const t = c.timeStamp / 1000;
      if (!(t > state.lastT)) continue;   // the engine needs strictly increasing time
      state.lastT = t;
      const tick = [Math.round(t * 1e6) / 1e6, Math.round((c.clientX - rect.left) * 100) / 100,
                    Math.round((c.clientY - rect.top) * 100) / 100];
      ticks.push(tick);
      state.trail.push(tick);
    }
    $("hint").hidden = true;
    send(ticks);
  }

  function send(ticks) {
    if (!ticks.length) return;
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !state.hello) {
      state.counts.unsent += ticks.length;
      return;
    }
    const max = state.hello.limits.max_ticks_per_message;
    for (let i = 0; i < ticks.length; i += max) {
      const id = state.nextId++;
      ws.send(JSON.stringify({ type: "ticks", id: id, ticks: ticks.slice(i, i + max) }));
      state.sentAt.set(id, performance.now());
      if (state.sentAt.size > MAX_IN_FLIGHT) state.sentAt.delete(state.sentAt.keys().next().value);
      state.counts.messages++;
    }
    state.counts.ticks += ticks.length;
  }

  // ------------------------------------------------------------------ controls

  function buildModes(hello) {
    const box = $("modes");
    box.textContent = "";
    hello.modes.forEach((m, i) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "mode";
      input.value = m.id;
      input.checked = state.mode ? state.mode.id === m.id : i === 0;
      input.addEventListener("change", () => setMode(m.id));
      label.append(input, ` ${i + 1} ${m.label}`);
      box.append(label);
    });
    setMode(state.mode && hello.modes.some((m) => m.id === state.mode.id)
      ? state.mode.id : hello.modes[0].id);
  }

  function setMode(id) {
    const mode = state.hello && state.hello.modes.find((m) => m.id === id);
    if (!mode) return false;
    state.mode = mode;
    for (const input of document.querySelectorAll("#modes input")) input.checked = input.value === id;
    showVerdict(state.latest);
    return true;
  }

  function buildLegend(hello) {
    const box = $("legend");
    box.textContent = "";
    const item = (colour, text) => {
      const span = document.createElement("span");
      const dot = document.createElement("i");
      dot.className = "dot";
      dot.style.background = colour;
      span.append(dot, text);
      box.append(span);
    };
    item("#bbbbbb", "truth trail");
    const h = hello.sources.B.horizons_ms;
    const span = document.createElement("span");
    span.textContent = `dots: +${h[0]} … +${h[h.length - 1]} ms`;
    box.append(span);
    for (const [name, colour] of Object.entries(hello.verdict_colours)) item(colour, name);
    const prior = hello.sources.prior;
    if (prior && prior.colour) item(prior.colour, "Kalman prior");
  }

  addEventListener("keydown", (e) => {
    const i = Number(e.key) - 1;
    if (state.hello && i >= 0 && i < state.hello.modes.length) setMode(state.hello.modes[i].id);
  });

  // ------------------------------------------------------------------ drawing

  function resize() {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(innerWidth * dpr);
    canvas.height = Math.round(innerHeight * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }

  function drawTrail(nowS) {
    while (state.trail.length && state.trail[0][0] < nowS - TRAIL_S) state.trail.shift();
    if (state.trail.length < 2) return;
    ctx.strokeStyle = "#bbbbbb";
    ctx.lineWidth = 2;
    ctx.beginPath();
    state.trail.forEach((p, i) => (i ? ctx.lineTo(p[1], p[2]) : ctx.moveTo(p[1], p[2])));
    ctx.stroke();
  }

  function drawSource(name, entry, desc, row) {
    const colour = desc.colour || state.hello.verdict_colours[entry.verdict] || "#000000";
    const path = entry.path.filter((p) => p[0] !== null && p[1] !== null);
    if (!path.length) return;
    const head = state.trail[state.trail.length - 1];
    ctx.save();
    ctx.strokeStyle = ctx.fillStyle = colour;
    ctx.lineWidth = 3;
    ctx.setLineDash(desc.dashed ? [8, 6] : []);
    ctx.beginPath();
    ctx.moveTo(head ? head[1] : path[0][0], head ? head[2] : path[0][1]);
    for (const p of path) ctx.lineTo(p[0], p[1]);
    ctx.stroke();
    ctx.setLineDash([]);
    path.forEach((p, k) => {
      ctx.beginPath();
      ctx.arc(p[0], p[1], k === path.length - 1 ? 5 : 3, 0, 2 * Math.PI);
      ctx.fill();
    });
    if (Array.isArray(entry.radius)) {   // the calibrated uncertainty, when the model has one
      ctx.globalAlpha = 0.35;
      ctx.lineWidth = 1.5;
      entry.radius.forEach((r, k) => {
        const p = entry.path[k];
        if (typeof r !== "number" || !(r > 0) || !p || p[0] === null || p[1] === null) return;
        ctx.beginPath();
        ctx.arc(p[0], p[1], r, 0, 2 * Math.PI);
        ctx.stroke();
        state.counts.circles++;
      });
      ctx.globalAlpha = 1;
    }
    const last = path[path.length - 1];
    ctx.font = "bold 12px system-ui, sans-serif";
    ctx.fillText(name, last[0] + 8 + 12 * row, last[1] - 6);   // side by side when both are drawn
    ctx.restore();
    state.counts.drawn++;
    state.counts.drawnBy[name] = (state.counts.drawnBy[name] || 0) + 1;
  }

  function pct(ring, q) {
    if (!ring.length) return NaN;
    const s = [...ring].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(q * s.length))];
  }

  // The verdicts of what is drawn, coloured by B's: checked every frame, written on change.
  function showVerdict(msg) {
    const parts = [];
    if (state.mode && msg) {
      for (const name of state.mode.draw) {
        const e = msg.sources[name];
        if (e && e.verdict) parts.push(`${name}: ${e.verdict}`);
      }
    }
    const v = $("verdict");
    const text = !state.ws ? "disconnected" : parts.length ? parts.join(" · ") : "move the pointer";
    const b = msg && msg.sources.B;
    const colour = (b && state.hello && state.hello.verdict_colours[b.verdict]) || "#222222";
    if (v.textContent !== text) v.textContent = text;
    if (v.dataset.colour !== colour) {
      v.dataset.colour = colour;
      v.style.color = colour;
    }
  }

  function showStats() {
    const c = state.counts;
    $("stats").textContent = `ticks ${c.ticks} · replies ${c.replies} · round trip p50 `
      + `${pct(state.rtts, 0.5).toFixed(1)} ms p99 ${pct(state.rtts, 0.99).toFixed(1)} ms · engine `
      + `${pct(state.engineUs, 0.5).toFixed(0)} µs/message · refused ${c.refused} · coalesced events `
      + (state.coalesced ? "yes" : "no");
  }

  let lastStatus = 0;
  function frame(now) {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    drawTrail(now / 1000);
    const maxGap = state.hello ? state.hello.max_gap_ms : 100;
    // after max_gap_ms without a tick the engine restarts the stream: stop drawing
    const msg = state.latest && now - state.latestAt <= maxGap ? state.latest : null;
    if (msg && state.mode) {
      state.mode.draw.forEach((name, row) => {
        const entry = msg.sources[name];
        if (entry) drawSource(name, entry, state.hello.sources[name], row);
      });
    }
    if (!state.errorSticky && !$("error").hidden && now - state.errorAt > NOTICE_MS) clearError();
    if (state.hello) showVerdict(msg || state.latest);
    if (now - lastStatus > 250) {
      lastStatus = now;
      showStats();
    }
    requestAnimationFrame(frame);
  }

  canvas.addEventListener("pointermove", onPointer);
  canvas.addEventListener("pointerdown", onPointer);
  $("reconnect").addEventListener("click", connect);
  addEventListener("resize", resize);
  resize();
  connect();
  requestAnimationFrame(frame);

  // For the tests and the curious: the page's state, its message handler and the view switch.
  window.tmnDemo = { state: state, receive: receive, setMode: setMode };
})();
