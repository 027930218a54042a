"""tmn-serve's stats in the Prometheus text exposition format (version 0.0.4).

``tmn-client stats --format prometheus`` prints this; scrape it with
node_exporter's textfile collector or any exporter that runs a command.
Counters end in ``_total``; latency and live accuracy are summaries (the
server keeps log histograms and reports their quantiles, docs/protocol.md).
"""

from __future__ import annotations

from typing import Any

from tmn.engine import PERCENTILES

# (Prometheus quantile label, stats key) of every reported percentile (tmn._core)
QUANTILES = tuple((f"{p / 100:g}", name) for name, p in PERCENTILES)
COUNTERS = {
    "messages": "requests received", "batches": "tick batches accepted",
    "ticks": "ticks received", "ticks_ok": "ticks answered with a prediction",
    "dropped_replies": "replies refused by a full send queue",
    "dropped_pub": "publications refused by a full subscriber queue",
    "reloads": "model reloads", "evicted_streams": "streams forgotten after idling",
    "reclaimed_streams": "idle streams reused by a full table",
    "refused_peers": "connections refused by CURVE",
    "control_overloaded": "control requests refused (queue full or too big)",
    "dropped_at_stop": "requests left unanswered at shutdown",
    "quota_refused": "new streams refused by the per-client stream quota",
}


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: Any) -> str:
    return "NaN" if v is None else repr(float(v))


def _summary(out: list[str], name: str, help_: str, series: list[tuple[str, dict]]) -> None:
    out += [f"# HELP {name} {help_}", f"# TYPE {name} summary"]
    for labels, h in series:
        sep = "," if labels else ""
        for q, key in QUANTILES:
            out.append(f'{name}{{{labels}{sep}quantile="{q}"}} {_num(h.get(key))}')
        count = int(h.get("count") or 0)
        mean = h.get("mean") or 0.0
        lab = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{lab} {_num(mean * count)}")
        out.append(f"{name}_count{lab} {count}")


def prometheus_text(stats: dict[str, Any]) -> str:
    """The ``stats`` object of a stats reply, as Prometheus text."""
    out: list[str] = []
    for key, help_ in COUNTERS.items():
        name = f"tmn_{key}_total"
        out += [f"# HELP {name} {help_}", f"# TYPE {name} counter", f"{name} {int(stats[key])}"]
    for key, label, help_ in (("tick_errors", "status", "ticks refused, by status"),
                              ("frame_errors", "code", "frames refused, by error code"),
                              ("verdicts", "verdict", "predictions, by gate verdict"),
                              ("control_errors", "error", "control requests refused, by error")):
        name = f"tmn_{key}_total"
        out += [f"# HELP {name} {help_}", f"# TYPE {name} counter"]
        out += [f'{name}{{{label}="{_label(k)}"}} {int(v)}' for k, v in stats[key].items()]
    gauges = {"tmn_streams": ("streams held", stats["streams"]),
              "tmn_uptime_seconds": ("seconds since start", stats["uptime_s"]),
              "tmn_gate_pass_rate": ("share of gated ticks that passed", stats["gate_pass_rate"]),
              "tmn_mean_cert_error": ("mean certificate of passed ticks",
                                      stats["mean_cert_error"])}
    if "process" in stats:
        gauges["tmn_process_resident_memory_bytes"] = ("resident memory",
                                                       stats["process"]["rss_bytes"])
    for name, (help_, v) in gauges.items():
        out += [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {_num(v)}"]
    _summary(out, "tmn_latency_seconds", "engine stage, tick and server (receive to send) time",
             [(f'stage="{_label(k)}"', {q: (v / 1e9 if isinstance(v, (int, float)) and q != "count"
                                            else v) for q, v in h.items()})
              for k, h in stats["latency_ns"].items()])
    _summary(out, "tmn_live_error", "live accuracy: Euclidean error in data units, per horizon",
             [(f'horizon_ms="{a["horizon_ms"]:g}"', a) for a in stats["live_accuracy"]])
    return "\n".join(out) + "\n"
