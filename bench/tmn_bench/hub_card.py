"""A Hugging Face model-repo folder from a tmn artifact (docs/hub.md).

The folder is the artifact (config.json, model.safetensors, model.onnx, byte
for byte) plus a model card whose YAML front matter and figures come from a
real ``tmn-bench accuracy --json`` result (read back typed, with
:func:`tmn_bench.results.from_json`, so a missing figure is an error), an
optional ``tmn-bench latency --json`` result, the examples and a description
of the training data. It lives in tmn_bench because only tmn_bench sees all
three of its sources: the artifact (tmn), the benchmark results (tmn_bench)
and the synthetic generator that describes the data (tmn_train).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import tmn
from tmn.artifact import TMN_CHECKOUT_MARK
from tmn.hub import repo_files
from tmn.model import CONFIG_FILE, WEIGHTS_FILE, Model
from tmn.onnx_graph import write_step_graph
from tmn_bench.results import (AccuracyResult, DatasetResult, EngineModel, Machine,
                               ModelEntry, ResultFormatError, TickLatency, from_json)

ONNX_FILE, CARD_FILE, DATA_CARD_FILE = "model.onnx", "README.md", "DATASET.md"
PIPELINE_TAG = "time-series-forecasting"
PLOTS = ("error_vs_horizon_*.png", "error_cdf_*.png")  # copied from the report into eval/


class CardError(ValueError):
    """The inputs of a model card do not fit together (one line)."""


@dataclass(frozen=True)
class Evaluation:
    """The accuracy result's figures for one model: its entry and its data set."""

    entry: ModelEntry
    dataset: DatasetResult
    precision: str
    source: Path

    def figure(self, predictor: str, name: str) -> float:
        """A distribution figure (``"p99"``, ``"mse"``) at the headline horizon."""
        errors = self.dataset.predictors[predictor].errors
        return (errors.mse if name == "mse" else errors[name])[-1]

    def jitter(self, predictor: str) -> float:
        """The 500 ms point's jitter (data units per tick)."""
        return self.dataset.predictors[predictor].jitter[-1]


def evaluation_of(model: Model, accuracy_json: Path, label: str | None = None) -> Evaluation:
    """The entry of ``accuracy_json`` that evaluated ``model``: by ``label``, or
    the one whose system, seed, training data and git sha are the model's
    provenance; either way they must agree."""
    result = _typed(AccuracyResult, _read_json(accuracy_json), accuracy_json, "$")
    p = model.config.get("provenance", {})
    mine = (model.system, p.get("seed"), p.get("data"), p.get("git_sha"))

    def identity(m: ModelEntry) -> tuple[Any, ...]:
        return (m.system, m.seed, m.trained_on, m.git_sha)

    if label is None:
        found = [m for m in result.models if identity(m) == mine]
    else:
        found = [m for m in result.models if m.label == label]
        if found and identity(found[0]) != mine:
            raise CardError(f"{accuracy_json}: model {label} (system, seed, data, git sha "
                            f"{identity(found[0])}) is not {model.path} {mine}")
    if len(found) != 1:
        raise CardError(f"{accuracy_json}: {len(found)} models match {model.path} "
                        f"(system, seed, data, git sha {mine}); pass --label")
    entry = found[0]
    data = [d for d in result.datasets if d.data in (entry.trained_on or [])] or result.datasets
    precision = result.settings.precision
    if f"{entry.label} {precision}" not in data[0].predictors:
        raise CardError(f"{accuracy_json}: no figures for {entry.label} {precision}")
    return Evaluation(entry, data[0], precision, accuracy_json)


@dataclass(frozen=True)
class Latency:
    """Where and with which model ``tmn-bench latency`` timed the engine."""

    machine: Machine
    model: EngineModel
    tick: TickLatency


def latency_of(latency_json: Path, precision: str) -> Latency:
    """The engine's tick latency at ``precision`` from a ``tmn-bench latency``
    result (its ``engine`` part, read typed)."""
    d = _read_json(latency_json).get("engine")
    if not isinstance(d, dict) or not isinstance(d.get("engine"), dict):
        raise CardError(f"{latency_json}: not a tmn-bench latency result (no engine)")
    ticks = _typed(dict[str, TickLatency], d["engine"], latency_json, "$.engine.engine")
    if precision not in ticks:
        raise CardError(f"{latency_json}: no {precision} tick latency")
    return Latency(_typed(Machine, d.get("machine"), latency_json, "$.engine.machine"),
                   _typed(EngineModel, d.get("model"), latency_json, "$.engine.model"),
                   ticks[precision])


def metadata(model: Model, ev: Evaluation, name: str) -> dict[str, Any]:
    """The card's YAML front matter, model-index included."""
    me = f"{ev.entry.label} {ev.precision}"
    h = f"{ev.dataset.headline_ms:g} ms"
    metrics = [
        {"type": f"{q}_error", "name": f"{q.upper()} absolute error @{h} ({ev.precision})",
         "value": ev.figure(me, q)} for q in ("p50", "p90", "p99")]
    metrics += [{"type": "mse", "name": f"MSE @{h} ({ev.precision})", "value": ev.figure(me, "mse")},
                {"type": "jitter", "name": f"jitter of the {h} point", "value": ev.jitter(me)}]
    if me in ev.dataset.gate:
        g = ev.dataset.gate[me]
        metrics += [{"type": "gate_pass_rate", "name": "gate pass rate", "value": g.pass_rate},
                    {"type": "certificate_mean", "name": "mean certificate (output units)",
                     "value": g.cert_mean}]
    data = [str(d) for d in model.config.get("provenance", {}).get("data", [])]
    return {
        "license": "mit", "library_name": "tmn", "pipeline_tag": PIPELINE_TAG,
        "tags": ["motion-prediction", "latency-compensation", "gru", "kalman-filter",
                 "int8", "onnx", f"system-{model.system}"],
        "datasets": data,
        "model-index": [{"name": name, "results": [{
            "task": {"type": PIPELINE_TAG, "name": f"2-D motion prediction, {h} ahead"},
            "dataset": {"type": "synthetic" if all(d.startswith("synth") for d in data)
                        else "recordings", "name": f"{ev.dataset.data} ({ev.dataset.split} split)"},
            "metrics": metrics}]}],
    }


def write_repo_folder(model_dir: Path, out: Path, accuracy_json: Path, recipe: Path,
                      latency_json: Path | None = None, label: str | None = None,
                      repo: str | None = None, plots: bool = True,
                      refer_to_recipe: bool = False) -> list[str]:
    """Write the model-repo folder ``out`` for the artifact ``model_dir``
    (``out`` may be ``model_dir``: then only the card and the extra files are
    rewritten, the weights untouched). ``repo`` (owner/name) is the id the card
    and examples load it by; ``plots`` copies the report's plots into eval/;
    ``refer_to_recipe`` makes examples/train.sh run ``recipe`` in a tmn
    checkout (:func:`recipe_reference`) instead of holding a copy of it.
    Returns the folder's files."""
    if not recipe.is_file():
        raise CardError(f"--recipe {recipe}: no such file")
    model = tmn.load(model_dir)
    train = recipe_reference(recipe, model) if refer_to_recipe else None
    ev = evaluation_of(model, accuracy_json, label)
    lat = latency_of(latency_json, ev.precision) if latency_json is not None else None
    name = repo.split("/")[-1] if repo else f"tmn-{model_dir.resolve().name}"
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != model_dir.resolve():
        for f in (CONFIG_FILE, WEIGHTS_FILE):
            shutil.copyfile(model_dir / f, out / f)
        if (model_dir / ONNX_FILE).is_file():
            shutil.copyfile(model_dir / ONNX_FILE, out / ONNX_FILE)
    if not (out / ONNX_FILE).is_file():
        write_step_graph(model, out / ONNX_FILE)
    copied = _copy_plots(accuracy_json.parent, out / "eval") if plots else []
    (out / "examples").mkdir(exist_ok=True)
    ref = repo or (None if _is_builtin(model) else str(out))
    for file, text in examples(ref).items():
        (out / "examples" / file).write_text(text, encoding="utf-8")
    if train is None:
        shutil.copyfile(recipe, out / "examples" / "train.sh")
    else:
        (out / "examples" / "train.sh").write_text(train, encoding="utf-8")
    (out / DATA_CARD_FILE).write_text(dataset_card(model), encoding="utf-8")
    front = yaml.safe_dump(metadata(model, ev, name), sort_keys=False, allow_unicode=True)
    body = card_body(model, ev, lat, name, ref, copied)
    (out / CARD_FILE).write_text(f"---\n{front}---\n\n{body}", encoding="utf-8")
    tmn.load(out)  # the folder is still a valid artifact
    return repo_files(out)


def _is_builtin(model: Model) -> bool:
    """Whether ``model`` has the built-in model's weights (then ``tmn.load()`` loads it)."""
    try:
        builtin = tmn.load()
    except (FileNotFoundError, tmn.ModelFormatError):
        return False
    return bool(builtin.config["weights"]["sha256"] == model.config["weights"]["sha256"])


def _copy_plots(report: Path, to: Path) -> list[str]:
    found = sorted(p for pattern in PLOTS for p in report.glob(pattern))
    if found:
        to.mkdir(exist_ok=True)
    for p in found:
        shutil.copyfile(p, to / p.name)
    return [f"eval/{p.name}" for p in found]


def _typed(cls: Any, data: Any, file: Path, where: str) -> Any:
    try:
        return from_json(cls, data, where)
    except ResultFormatError as e:
        raise CardError(f"{file}: not the result expected: {e}") from e


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CardError(f"{path}: cannot be read as JSON: {e}") from e


# ---------------------------------------------------------------------------
# The texts: the card's body, the data set's description, the examples


def _g(v: float) -> str:
    return f"{v:.4g}"


def _load_call(ref: str | None) -> str:
    return "tmn.load()" if ref is None else f'tmn.load("{ref}")'


def _serve_call(ref: str | None) -> str:
    return "tmn-serve" if ref is None else f"tmn-serve --model {ref}"


def card_body(model: Model, ev: Evaluation, lat: Latency | None, name: str,
              ref: str | None, plots: list[str]) -> str:
    """The model card's Markdown, after its front matter; ``ref`` is what
    ``tmn.load`` takes to load it (None: the built-in model)."""
    c, p = model.config, model.config.get("provenance", {})
    gate = c.get("gate")
    what = ("a residual over a constant-velocity Kalman prior, let through by the certified "
            "gate (docs/gate.md)" if model.system == "B" else
            "the displacement from the newest position (no prior, no gate)")
    lines = [
        f"# {name}: tmn System {model.system} motion predictor", "",
        "## Description", "",
        f"A GRU micro-net (hidden {c['hidden']}) for the tmn "
        f"engine that predicts where a moving 2-D point will be at "
        f"{', '.join(f'{h:g}' for h in model.horizons_ms)} ms, from sensor ticks (t, x, y[, vx, "
        f"vy]) on a {c['sample_rate_hz']:g} Hz grid. It predicts {what}. The engine runs "
        "ingest, the Kalman prior, one GRU step (INT8 or FP32), the gate and the output in "
        "C++, in microseconds per tick.", "",
        "| file | what |", "|---|---|",
        "| config.json | the model (docs/model-format.md), provenance included |",
        "| model.safetensors | FP32 weights and their INT8 per-row quantisation |",
        "| model.onnx | one FP32 GRU step (x, h) -> (y, h'), for baselines |",
        f"| {DATA_CARD_FILE} | the training data |", "| examples/ | inference, a ZeroMQ client, "
        "the training command |", "",
        "## Intended use", "",
        "Latency compensation and short-term prediction of pen, touch, cursor, gaze or tracked "
        f"targets moving like the training data, in its units. Load it with `{_load_call(ref)}` "
        f"or serve it with `{_serve_call(ref)}` (a Hub repo id needs `pip install \"tmn[hub]\"`);"
        " see examples/.", "",
        "## Training procedure", "",
        f"Trained by `{p.get('trainer', 'tmn-train fit')}` on {', '.join(map(str, p.get('data', [])))}"
        f" (seed {p.get('seed')}, tmn git {p.get('git_sha')}, torch {p.get('torch')}); ticks per "
        f"split: {json.dumps(p.get('ticks'))}. The exact command is examples/train.sh; the "
        f"data is described in {DATA_CARD_FILE}. The resolved config:", "",
        "```json", json.dumps(p.get("config", {}), indent=1), "```", "",
    ]
    if gate:
        lines += [f"Gate: eps {gate['eps']:g}, budget {gate['budget']}, lambda {gate['lambda']:g}, "
                  f"threshold {gate['threshold']:g}, variance {json.dumps(gate['variance'])}; "
                  f"calibration: {json.dumps(p.get('gate_calibration'))}.", ""]
    lines += _evaluation(ev, plots) + _latency(model, lat) + _limitations(model, ev) + _cite()
    return "\n".join(lines)


def _evaluation(ev: Evaluation, plots: list[str]) -> list[str]:
    d, label = ev.dataset, ev.entry.label
    h = f"{d.headline_ms:g} ms"
    rows = [f"{label} {ev.precision}", f"{label} fp32", "Kalman only", "constant velocity"]
    lines = ["## Evaluation", "",
             f"`tmn-bench accuracy` ({ev.source.name}, model {label}) replayed the held-out "
             f"{d.split} split of {d.data} ({d.evaluated_ticks} evaluated ticks) through the C++ "
             f"engine. Absolute error in data units at {h}:", "",
             "| predictor | P50 | P90 | P99 | MSE | jitter |", "|---|---|---|---|---|---|"]
    lines += [f"| {r} | {_g(ev.figure(r, 'p50'))} | {_g(ev.figure(r, 'p90'))} | "
              f"{_g(ev.figure(r, 'p99'))} | {_g(ev.figure(r, 'mse'))} | {_g(ev.jitter(r))} |"
              for r in rows if r in d.predictors]
    g = d.gate.get(f"{label} {ev.precision}")
    if g is not None:
        lines += ["", f"Gate pass rate {g.pass_rate:.4g}, mean certificate {g.cert_mean:.3g} "
                      f"(max {g.cert_max:.3g}) output units, fallbacks {json.dumps(g.fallbacks)}."]
    lines += [""] + [f"![{p}]({p})" for p in plots] + ([""] if plots else [])
    return lines


def _latency(model: Model, lat: Latency | None) -> list[str]:
    if lat is None:
        return ["## Latency", "", "Not measured for this card: run `tmn-bench latency`.", ""]
    m, t = lat.machine, lat.tick
    same = (lat.model.system, lat.model.hidden, lat.model.horizons_ms) == \
        (model.system, model.hidden, model.horizons_ms)
    whose = ("this model" if lat.model.provenance.get("git_sha") ==
             model.config.get("provenance", {}).get("git_sha") and same else
             f"a model of the same architecture (System {lat.model.system}, hidden "
             f"{lat.model.hidden}, {lat.model.horizons} horizons; trained on "
             f"{', '.join(map(str, lat.model.provenance.get('data', [])))}): the cost does not "
             "depend on the weights"
             if same else f"a DIFFERENT architecture (System {lat.model.system}, hidden "
             f"{lat.model.hidden}): these figures do not describe this model")
    figures = ", ".join(f"{name.upper()} {_g(t.total_ns[name])}" for name, _ in tmn.PERCENTILES)
    return ["## Latency", "",
            f"Full tick ({t.precision}, {t.isa} kernels), timed in C++ by `tmn-bench latency` "
            f"on {m.cpu} ({m.cores} cores, {m.platform}, {m.date}) with {whose}, ns: {figures}, "
            f"max {_g(t.total_ns['max'])}. Absolute times hold for that machine only.", ""]


def _limitations(model: Model, ev: Evaluation) -> list[str]:
    gate = model.config.get("gate")
    lines = ["## Limitations", "",
             f"* Trained and evaluated on {', '.join(ev.entry.trained_on or [])} only; accuracy "
             "on other motion, units or rates is unknown: measure it with `tmn-bench accuracy`.",
             "* model.onnx holds only one FP32 GRU step with batch 1, (x, h) -> (y, h'): not "
             "the Kalman prior, the ingest (resampling, velocity, features) or the gate. It "
             "reproduces the network, not the engine's predictions."]
    g = ev.dataset.gate.get(f"{ev.entry.label} {ev.precision}")
    seen = (f" In this evaluation it passed {g.pass_rate:.2%} of the ticks (fallbacks "
            f"{json.dumps(g.fallbacks)}).") if g is not None else ""
    if gate is not None and gate["threshold"] >= 1e29:
        lines.append(f"* The calibrated gate threshold is {gate['threshold']:g}: calibration "
                     "found no threshold where the prior serves better, so the plausibility "
                     "test never falls back; only an uncertified projection (work budget "
                     f"spent) would.{seen} The gate certifies the projection; it does not "
                     "protect against motion unlike the training data.")
    elif gate is not None:
        lines.append(f"* The gate falls back to the Kalman prior when d2 > "
                     f"{gate['threshold']:g} or the projection is not certified.{seen}")
    if model.system == "A":
        lines.append("* System A has no gate: nothing checks its predictions.")
    return lines + ["* The errors include the sensor noise of the measured future position.", ""]


def _cite() -> list[str]:
    return ["## How to cite", "", "```bibtex", "@software{tmn,",
            "  title  = {tmn: certified real-time 2-D motion prediction},",
            "  author = {{the tmn authors}},", "  year   = {2026},",
            f"  note   = {{version {tmn.__version__}}},", "  license = {MIT}", "}", "```", ""]


def dataset_card(model: Model) -> str:
    """DATASET.md: what the model was trained on, from its provenance."""
    from tmn_train import sources, synth

    p = model.config.get("provenance", {})
    data = [str(d) for d in p.get("data", [])]
    lines = ["# Training data", "", f"`--data {' '.join(data)}`, split "
             f"{json.dumps(p.get('config', {}).get('data', {}).get('split'))} into train, "
             f"validation and test; ticks per split {json.dumps(p.get('ticks'))}.", "",
             "No data is stored here: it is regenerated (synthetic) or read from installed "
             "packages by `tmn-train fit` (tmn_train.sources):", "", sources.__doc__ or "", ""]
    if any(d.startswith("synth") for d in data):
        lines += ["## The synthetic generator (tmn_train.synth)", "",
                  f"`synth:MINUTES[:SEED]` is MINUTES of {synth.RATE:g} Hz motion in the regimes "
                  f"{', '.join(synth.REGIMES)}; the same arguments give the same data.", "",
                  synth.__doc__ or "", ""]
    return "\n".join(lines)


def recipe_reference(recipe: Path, model: Model) -> str:
    """examples/train.sh for a recipe of the tmn repository itself (the
    built-in model's ``training/recipes/default.sh``): it runs the recipe in a
    checkout, by its path there, so the recipe stays the one copy of the
    training command."""
    where = recipe.resolve()
    root = next((p for p in where.parents if (p / TMN_CHECKOUT_MARK).is_file()), None)
    if root is None:
        raise CardError(f"--recipe {recipe}: not in a tmn checkout, so examples/train.sh "
                        "cannot refer to it (leave out --refer-to-recipe to copy it)")
    path = where.relative_to(root).as_posix()
    sha = model.config.get("provenance", {}).get("git_sha")
    return f'''#!/usr/bin/env bash
# This model was trained by {path} of the tmn repository
# (its provenance: tmn git {sha}).
# This runs that recipe in a checkout of the repository:
#
#   bash examples/train.sh TMN_CHECKOUT [RECIPE_ARGS...]
set -euo pipefail
checkout="${{1:?usage: bash examples/train.sh TMN_CHECKOUT [RECIPE_ARGS...]}}"
shift
exec bash "$checkout/{path}" "$@"
'''


def examples(ref: str | None) -> dict[str, str]:
    """examples/: in-process inference and a ZeroMQ client of tmn-serve, for
    the model ``tmn.load(ref)`` loads (None: the built-in one)."""
    needs = "tmn" if ref is None else '"tmn[hub]"'
    inference = f'''"""In-process inference (first: pip install {needs})."""
import numpy as np

import tmn

engine = tmn.Engine({_load_call(ref)}, precision="int8")
t = np.arange(2000) / 1000.0                      # 2 s of a circle at 1 kHz
x, y = 100 * np.cos(2 * t), 100 * np.sin(2 * t)
for ti, xi, yi in zip(t, x, y):
    p = engine.tick(float(ti), float(xi), float(yi), stream=1)
print("verdict", p.verdict, "500 ms ahead:", p.path[-1], "cert", p.cert_error)
'''
    client = f'''"""A ZeroMQ client; first run: {_serve_call(ref)}"""
import math

import tmn

with tmn.Client("tcp://127.0.0.1:5555") as c:
    for i in range(1000):
        t = i / 1000.0
        p = c.tick(t=t, x=100 * math.cos(2 * t), y=100 * math.sin(2 * t), stream=1)
    print("verdict", p["verdict"], "500 ms ahead:", p["path"][-1])
'''
    return {"inference.py": inference, "zmq_client.py": client}
