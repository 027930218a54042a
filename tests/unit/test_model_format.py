"""tmn.load refuses bad artifacts with a ModelFormatError naming the file and the field.

docs/model-format.md is the spec. Every variant starts from a valid random
model (tmn.testing.random_model) and changes one thing.
"""

from __future__ import annotations

import copy
import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import tmn
from tmn.artifact import git_sha, model_tensors, write_artifact
from tmn.model import file_sha256
from tmn.testing import random_model

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


@pytest.fixture
def base(tmp_path: Path) -> tmn.Model:
    return tmn.load(random_model(tmp_path / "base", system="B", hidden=8, seed=3))


def with_config(tmp_path: Path, base: tmn.Model, change: Callable[[dict], Any]) -> Path:
    cfg = copy.deepcopy(base.config)
    change(cfg)
    return write_artifact(tmp_path / "variant", cfg, dict(base.tensors))


def with_tensors(tmp_path: Path, base: tmn.Model,
                 change: Callable[[dict[str, np.ndarray]], Any]) -> Path:
    tensors = {k: v.copy() for k, v in base.tensors.items()}
    change(tensors)
    return write_artifact(tmp_path / "variant", copy.deepcopy(base.config), tensors)


def refused(folder: Path, file: str, *fields: str) -> str:
    with pytest.raises(tmn.ModelFormatError) as info:
        tmn.load(folder)
    msg = str(info.value)
    assert str(folder / file) in msg, msg
    for field in fields:
        assert f"'{field}'" in msg, msg
    assert isinstance(info.value, ValueError)
    return msg


def set_path(cfg: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        cfg = cfg[key]
    cfg[last] = value


def delete_path(cfg: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        cfg = cfg[key]
    del cfg[last]


def refresh_checksum(folder: Path) -> None:
    cfg = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    cfg["weights"]["sha256"] = file_sha256(folder / WEIGHTS)
    (folder / CONFIG).write_text(json.dumps(cfg), encoding="utf-8")


# --------------------------------------------------------------------------
# valid artifacts
# --------------------------------------------------------------------------

@pytest.mark.parametrize("system", ["A", "B"])
def test_valid_random_model_loads_and_round_trips(tmp_path: Path, system: str) -> None:
    m = tmn.load(random_model(tmp_path / "m", system=system, seed=5))
    assert m.system == system and m.hidden == 32 and len(m.horizons_ms) == 10
    again = tmn.load(write_artifact(tmp_path / "copy", m.config, m.tensors))
    assert again.config == m.config  # same tensors, same bytes, same checksum
    assert set(again.tensors) == set(m.tensors)
    for name, a in m.tensors.items():
        assert again.tensors[name].dtype == a.dtype
        np.testing.assert_array_equal(again.tensors[name], a)
    # and both run the same
    ticks = [(1.0 + 0.0005 * i, 0.001 * i, -0.002 * i, 2.0, -4.0) for i in range(300)]
    e1 = tmn.Engine(m, precision="int8", max_streams=1)
    e2 = tmn.Engine(again, precision="int8", max_streams=1)
    for t in ticks:
        assert e1.tick(*t).path.tobytes() == e2.tick(*t).path.tobytes()


def test_model_tensors_builds_the_int8_tensors_from_fp32_weights(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    H, O = 4, 6
    F = len(tmn.FEATURES["B"])
    w = [rng.standard_normal(s).astype(np.float32) for s in
         [(3 * H, F), (3 * H, H), (3 * H,), (3 * H,), (O, H), (O,)]]
    tensors = model_tensors(*w)
    cfg = copy.deepcopy(tmn.load(random_model(tmp_path / "m", hidden=H,
                                              horizons_ms=[40.0, 80.0, 120.0])).config)
    m = tmn.load(write_artifact(tmp_path / "built", cfg, tensors))
    q, s = m.tensors["head.weight.int8"], m.tensors["head.weight.scale"]
    np.testing.assert_allclose(q * s[:, None], w[4], atol=float(s.max()) / 2 * 1.0001)


def test_missing_folder_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        tmn.load(tmp_path / "nope")
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    with pytest.raises(FileNotFoundError):
        tmn.load(tmp_path / "a_file")


def test_unknown_top_level_fields_are_kept_and_ignored(tmp_path: Path, base: tmn.Model) -> None:
    folder = with_config(tmp_path, base, lambda c: c.update(model_card_extra={"x": 1}))
    assert tmn.load(folder).config["model_card_extra"] == {"x": 1}


# --------------------------------------------------------------------------
# config.json
# --------------------------------------------------------------------------

def test_missing_config_is_refused(tmp_path: Path, base: tmn.Model) -> None:
    folder = with_config(tmp_path, base, lambda c: None)
    (folder / CONFIG).unlink()
    assert "missing" in refused(folder, CONFIG)


@pytest.mark.parametrize("text", ["{", "", "not json", '{"a": 1,}', "\udcff"])
def test_config_that_is_not_valid_json_is_refused(tmp_path: Path, base: tmn.Model,
                                                  text: str) -> None:
    folder = with_config(tmp_path, base, lambda c: None)
    (folder / CONFIG).write_bytes(text.encode("utf-8", "surrogateescape"))
    assert "JSON" in refused(folder, CONFIG)


def test_config_that_is_not_an_object_is_refused(tmp_path: Path, base: tmn.Model) -> None:
    folder = with_config(tmp_path, base, lambda c: None)
    (folder / CONFIG).write_text("[1, 2, 3]", encoding="utf-8")
    refused(folder, CONFIG)


ONES = [1.0] * len(tmn.FEATURES["B"])  # the base model is System B
BAD_FIELDS = [
    ("format_version", 3), ("format_version", 1), ("format_version", "2"),
    ("format_version", None),
    ("system", "C"), ("system", "b"), ("system", None),
    ("features", ["x", "y", "vx", "vy"]), ("features", list(tmn.FEATURES["A"])),
    ("features", list(tmn.FEATURES["B"])[::-1]), ("features", "xyvv"),
    ("ingest.velocity_window", 1), ("ingest.velocity_window", 33),
    ("ingest.velocity_window", 8.0), ("ingest.highpass_ms", 0.0), ("ingest.highpass_ms", -1.0),
    ("max_gap_ms", 3000.0),  # 6000 grid samples in one tick at 2 kHz
    ("hidden", 0), ("hidden", -8), ("hidden", 1025), ("hidden", 8.0), ("hidden", "8"),
    ("hidden", True),
    ("sample_rate_hz", 0), ("window_ms", -1), ("max_gap_ms", 0), ("max_gap_ms", "100"),
    ("horizons_ms", [50.0, 100.0, 160.0]), ("horizons_ms", [50.0, 40.0]), ("horizons_ms", []),
    ("horizons_ms", [10.0 * (k + 1) for k in range(33)]), ("horizons_ms", [0.0, 0.0]),
    ("horizons_ms", [-50.0, -100.0]), ("horizons_ms", 50.0), ("horizons_ms", [50.0, "x"]),
    ("normalisation.std", [1.0, 0.0] + ONES[2:]), ("normalisation.std", [1.0, 1.0, -1.0] + ONES[3:]),
    ("normalisation.std", ONES[1:]), ("normalisation.mean", [0.0, float("nan")] + ONES[2:]),
    ("normalisation.output_scale", [1.0, 0.0]), ("normalisation.output_scale", [1.0]),
    ("kalman.q", -1.0), ("kalman.r_pos", 0.0), ("kalman.r_vel", -1e-3),
    ("kalman.q", float("inf")),
    ("gate.lambda", 0.0), ("gate.lambda", 0.25), ("gate.lambda", 0.3), ("gate.lambda", -0.1),
    ("gate.lambda", float("nan")), ("gate.eps", 0.0), ("gate.eps", -1.0),
    ("gate.threshold", 0.0), ("gate.budget", 0), ("gate.budget", "many"),
    ("gate.budget", 1.5),  # model-format.md: "int >= 1"
    ("gate.blend_ms", -1.0), ("gate.blend_ms", "20"), ("gate.variance", "posterior"),
    ("gate.variance", [1.0]), ("gate.variance", [1.0] * 9 + [0.0]),
    ("quantisation.scheme", "int4"), ("weights.sha256", None),
]


@pytest.mark.parametrize("field,value", BAD_FIELDS,
                         ids=[f"{f}={v!r}"[:40] for f, v in BAD_FIELDS])
def test_bad_config_field_is_refused_naming_the_field(tmp_path: Path, base: tmn.Model,
                                                      field: str, value: Any) -> None:
    folder = with_config(tmp_path, base, lambda c: set_path(c, field, value))
    if field == "weights.sha256":  # write_artifact fills in the checksum: undo it
        cfg = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        cfg["weights"]["sha256"] = None
        (folder / CONFIG).write_text(json.dumps(cfg), encoding="utf-8")
    refused(folder, CONFIG, field)


@pytest.mark.parametrize("field", [
    "format_version", "system", "features", "hidden", "sample_rate_hz", "window_ms",
    "max_gap_ms", "horizons_ms", "ingest", "ingest.velocity_window", "ingest.highpass_ms",
    "normalisation", "normalisation.mean", "normalisation.std",
    "normalisation.output_scale", "kalman", "kalman.q", "kalman.r_pos", "kalman.r_vel", "gate",
    "gate.eps", "gate.budget", "gate.lambda", "gate.threshold", "gate.blend_ms",
    "gate.variance", "quantisation",
])
def test_missing_config_field_is_refused_naming_the_field(tmp_path: Path, base: tmn.Model,
                                                          field: str) -> None:
    folder = with_config(tmp_path, base, lambda c: delete_path(c, field))
    msg = refused(folder, CONFIG)
    # a missing parent is reported through the first child that is looked up
    assert f"'{field}" in msg, msg


def test_a_version_1_artifact_is_refused_with_what_to_do(tmp_path: Path, base: tmn.Model) -> None:
    """Version 1 networks read absolute positions; version 2 reads translation-
    invariant features, so the weights cannot carry over: retrain."""
    folder = with_config(tmp_path, base, lambda c: c.update(format_version=1))
    msg = refused(folder, CONFIG, "format_version")
    assert "absolute positions" in msg and "retrain" in msg


def test_hidden_that_disagrees_with_the_tensors_is_refused(tmp_path: Path,
                                                           base: tmn.Model) -> None:
    folder = with_config(tmp_path, base, lambda c: c.update(hidden=16))
    assert "shape" in refused(folder, WEIGHTS, "gru.weight_ih")  # the first tensor checked


def test_horizon_count_that_disagrees_with_the_head_is_refused(tmp_path: Path,
                                                               base: tmn.Model) -> None:
    folder = with_config(tmp_path, base, lambda c: c.update(horizons_ms=[50.0, 100.0]))
    refused(folder, WEIGHTS, "head.weight")


def test_gate_fields_are_required_only_for_system_b(tmp_path: Path) -> None:
    m = tmn.load(random_model(tmp_path / "a", system="A", gate={"lambda": 0.3}))
    assert m.system == "A"
    with pytest.raises(tmn.ModelFormatError, match="gate.lambda"):
        tmn.load(random_model(tmp_path / "b", system="B", gate={"eps": 0.02, "budget": 100,
                                                               "lambda": 0.3, "threshold": 1}))


# --------------------------------------------------------------------------
# model.safetensors: the file
# --------------------------------------------------------------------------

def test_one_changed_byte_is_a_checksum_mismatch(tmp_path: Path, base: tmn.Model) -> None:
    folder = with_config(tmp_path, base, lambda c: None)
    raw = bytearray((folder / WEIGHTS).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (folder / WEIGHTS).write_bytes(bytes(raw))
    msg = refused(folder, WEIGHTS, "weights.sha256")
    assert "checksum" in msg


def test_missing_weights_file_is_refused(tmp_path: Path, base: tmn.Model) -> None:
    folder = with_config(tmp_path, base, lambda c: None)
    (folder / WEIGHTS).unlink()
    assert "missing" in refused(folder, WEIGHTS)


def corrupt(raw: bytes, how: str) -> bytes:
    n = struct.unpack("<Q", raw[:8])[0]
    if how == "truncated by one byte":
        return raw[:-1]
    if how == "truncated to half":
        return raw[: len(raw) // 2]
    if how == "truncated inside the length":
        return raw[:5]
    if how == "empty":
        return b""
    if how == "extra bytes":
        return raw + b"\0" * 8
    if how == "huge header length":
        return struct.pack("<Q", 10**15) + raw[8:]
    if how == "header longer than the file":
        return struct.pack("<Q", len(raw)) + raw[8:]
    if how == "garbage header":
        return raw[:8] + b"#" * n + raw[8 + n:]
    if how == "offsets past the data":
        header = json.loads(raw[8:8 + n])
        name = sorted(k for k in header if k != "__metadata__")[0]
        header[name]["data_offsets"][1] += 1 << 20
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        return struct.pack("<Q", len(h)) + h + raw[8 + n:]
    if how == "shape that disagrees with the offsets":
        header = json.loads(raw[8:8 + n])
        header["head.bias"]["shape"] = [header["head.bias"]["shape"][0] + 1]
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        return struct.pack("<Q", len(h)) + h + raw[8 + n:]
    raise AssertionError(how)


@pytest.mark.parametrize("how", [
    "truncated by one byte", "truncated to half", "truncated inside the length", "empty",
    "extra bytes", "huge header length", "header longer than the file", "garbage header",
    "offsets past the data", "shape that disagrees with the offsets",
])
def test_unparseable_safetensors_is_refused_even_with_a_matching_checksum(
        tmp_path: Path, base: tmn.Model, how: str) -> None:
    folder = with_config(tmp_path, base, lambda c: None)
    (folder / WEIGHTS).write_bytes(corrupt((folder / WEIGHTS).read_bytes(), how))
    refresh_checksum(folder)  # so that parsing, not the checksum, is what fails
    assert "safetensors" in refused(folder, WEIGHTS)


# --------------------------------------------------------------------------
# model.safetensors: the tensors
# --------------------------------------------------------------------------

TENSOR_NAMES = ["gru.weight_ih", "gru.weight_hh", "gru.bias_ih", "gru.bias_hh", "head.weight",
                "head.bias", "gru.weight_ih.int8", "gru.weight_ih.scale", "gru.weight_hh.int8",
                "gru.weight_hh.scale", "head.weight.int8", "head.weight.scale"]


@pytest.mark.parametrize("name", TENSOR_NAMES)
def test_missing_tensor_is_refused_naming_it(tmp_path: Path, base: tmn.Model, name: str) -> None:
    folder = with_tensors(tmp_path, base, lambda t: t.pop(name))
    assert "missing" in refused(folder, WEIGHTS, name)


@pytest.mark.parametrize("name", TENSOR_NAMES)
def test_wrong_dtype_is_refused_naming_the_tensor(tmp_path: Path, base: tmn.Model,
                                                  name: str) -> None:
    def change(t: dict[str, np.ndarray]) -> None:
        t[name] = t[name].astype(np.float64 if t[name].dtype == np.float32 else np.int16)
    assert "dtype" in refused(with_tensors(tmp_path, base, change), WEIGHTS, name)


@pytest.mark.parametrize("name", TENSOR_NAMES)
@pytest.mark.parametrize("reshape", ["drop a row", "flatten", "transpose"])
def test_wrong_shape_is_refused_naming_the_tensor(tmp_path: Path, base: tmn.Model, name: str,
                                                  reshape: str) -> None:
    def change(t: dict[str, np.ndarray]) -> None:
        a = t[name]
        if reshape == "drop a row":
            t[name] = np.ascontiguousarray(a[:-1])
        elif reshape == "flatten":
            t[name] = a.reshape(1, -1) if a.ndim == 1 else a.ravel()
        else:
            t[name] = np.ascontiguousarray(a.T if a.ndim == 2 else a[:, None])
    assert "shape" in refused(with_tensors(tmp_path, base, change), WEIGHTS, name)


FLOAT_NAMES = [n for n in TENSOR_NAMES if not n.endswith(".int8")]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", FLOAT_NAMES)
def test_non_finite_float_is_refused_naming_the_tensor(tmp_path: Path, base: tmn.Model,
                                                       name: str, value: float) -> None:
    def change(t: dict[str, np.ndarray]) -> None:
        t[name].flat[t[name].size // 2] = value
    refused(with_tensors(tmp_path, base, change), WEIGHTS, name)


@pytest.mark.parametrize("name", [n for n in TENSOR_NAMES if n.endswith(".int8")])
def test_int8_value_minus_128_is_refused_naming_the_tensor(tmp_path: Path, base: tmn.Model,
                                                           name: str) -> None:
    def change(t: dict[str, np.ndarray]) -> None:
        t[name].flat[-1] = -128
    assert "-127" in refused(with_tensors(tmp_path, base, change), WEIGHTS, name)


@pytest.mark.parametrize("value", [0.0, -0.0, -1e-3])
@pytest.mark.parametrize("name", [n for n in TENSOR_NAMES if n.endswith(".scale")])
def test_non_positive_scale_is_refused_naming_the_tensor(tmp_path: Path, base: tmn.Model,
                                                         name: str, value: float) -> None:
    def change(t: dict[str, np.ndarray]) -> None:
        t[name][0] = value
    assert "positive" in refused(with_tensors(tmp_path, base, change), WEIGHTS, name)


@pytest.mark.parametrize("extra", ["gru.weight_ih_l1", "head.weight.int4", "zzz"])
def test_unknown_extra_tensor_is_refused_naming_it(tmp_path: Path, base: tmn.Model,
                                                   extra: str) -> None:
    folder = with_tensors(tmp_path, base,
                          lambda t: t.update({extra: np.zeros(3, np.float32)}))
    assert "unknown" in refused(folder, WEIGHTS, extra)


def test_git_sha_names_only_a_tmn_checkout(tmp_path: Path) -> None:
    """An installed package may sit inside another repository (pyenv is one): its
    commit is not tmn's. The checkout this test runs from is."""
    other = tmp_path / "other"
    other.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", "-C", str(other), *cmd], check=True, env=env)
    assert git_sha(other) == "unknown"
    assert git_sha(tmp_path) == "unknown"  # no repository at all
    repo = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    if head:  # running from a git checkout of tmn
        assert git_sha(repo / "tests").split("-")[0] == head


def test_the_model_spec_takes_exactly_the_weight_arrays(base: tmn.Model) -> None:
    spec = base.spec()
    t = spec.tensors
    assert set(t) == {"w_ih", "w_hh", "b_ih", "b_hh", "w_out", "b_out", "q_ih", "q_hh",
                      "q_out", "s_ih", "s_hh", "s_out"}
    np.testing.assert_array_equal(t["q_ih"], base.tensors["gru.weight_ih.int8"].ravel())
    assert t["q_ih"].dtype == np.int8 and t["w_ih"].dtype == np.float32
    missing = {k: v for k, v in t.items() if k != "q_out"}
    for bad in (missing, {**t, "w_extra": t["b_ih"]}):
        with pytest.raises(ValueError, match="exactly"):
            spec.tensors = bad
