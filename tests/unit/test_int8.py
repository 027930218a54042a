"""The INT8 network step does exactly the integer arithmetic of gru.hpp.

A numpy reference of the scheme in cpp/include/tmn/gru.hpp and
docs/model-format.md:

* weights: the artifact's per-row symmetric int8 values and scales;
* x: dynamic scale s_x = max|x| / 127 (1 when x = 0), quantised as the C++
  does it in float32: xq = clip(rint(x * (127 / max|x|)), -127, 127).
  (docs/model-format.md writes rint(x / s_x); in float32 the two differ by
  one step in about 5 of a million random inputs, so the reference follows
  the kernel);
* h and h': static scale 1/127, hq = clip(rint(127 h), -127, 127);
* int32 accumulators acc = Wq @ aq, which must be exact;
* rint rounds half to even, like the C++ nearbyint.

The integer parts are compared for exact equality; the float epilogue
(dequantisation, gates) to a float32-rounding tolerance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

import tmn
from tmn import _core
from tmn.artifact import write_artifact
from tmn.testing import random_model

ISAS = [
    pytest.param(isa, id=isa.name,
                 marks=pytest.mark.skipif(not _core.isa_available(isa),
                                          reason=f"{isa.name} not available on this CPU/build"))
    for isa in (_core.Isa.scalar, _core.Isa.avx2, _core.Isa.avx512)
]

F32_127 = np.float32(127.0)


@dataclass(frozen=True)
class Shape:
    hidden: int
    horizons: int

    @property
    def name(self) -> str:
        return f"H{self.hidden}-K{self.horizons}"


# hidden 32 (no padding in the pairs), 7 (odd: a zero-padded last column
# pair, 3H = 21 padded to 32), 5 with K = 3 (16-wide blocks, 2K = 6)
SHAPES = [Shape(32, 10), Shape(7, 10), Shape(5, 3)]


# --- the numpy reference ------------------------------------------------------

def quantise_x(x: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """(xq, s_x) exactly as step_int8 computes them, in float32."""
    x = np.asarray(x, dtype=np.float32)
    xmax = np.float32(np.abs(x).max())
    if xmax > 0:
        scale, inv = np.float32(xmax / F32_127), np.float32(F32_127 / xmax)
    else:
        scale, inv = np.float32(1.0), np.float32(0.0)
    xq = np.clip(np.rint(x * inv), -127, 127).astype(np.int8)
    return xq, scale


def quantise_h(h: np.ndarray) -> np.ndarray:
    """hq = clip(rint(127 h), -127, 127), the product in float32."""
    return np.clip(np.rint(np.asarray(h, dtype=np.float32) * F32_127), -127, 127).astype(np.int8)


def int_matvec(q: np.ndarray, a: np.ndarray) -> np.ndarray:
    return q.astype(np.int32) @ a.astype(np.int32)


def int8_model(folder: Path, shape: Shape, seed: int, weight_scale: float = 1.0) -> tmn.Model:
    random_model(folder, system="A", hidden=shape.hidden, seed=seed, weight_scale=weight_scale,
                 horizons_ms=[50.0 * (k + 1) for k in range(shape.horizons)])
    return tmn.load(folder)


def random_pairs(rng: np.random.Generator, hidden: int,
                 n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(z, h) pairs: ordinary, tiny, huge, zero z, h on and beyond +-1."""
    pairs = []
    for i in range(n):
        z = rng.normal(size=4) * 10.0 ** rng.uniform(-6, 3)
        h = np.tanh(rng.normal(size=hidden) * 2.0)
        kind = i % 10
        if kind == 0:
            z = np.zeros(4)
        elif kind == 1:
            z[rng.integers(4)] = 0.0
        elif kind == 2:
            h = rng.uniform(-1.5, 1.5, size=hidden)  # clipping at +-127
        elif kind == 3:
            h = rng.choice([-1.0, 1.0, 0.0], size=hidden)
        elif kind == 4:
            z = np.full(4, rng.normal())  # every element ties for the max
        pairs.append((z.astype(np.float32), h.astype(np.float32)))
    return pairs


def tie_pairs(hidden: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inputs whose scaled values are exact halves, to pin half-to-even."""
    # max|z| = 127 makes 127 / max|z| = 1 exactly, so z itself is scaled z
    zs = [np.array([127.0, 2.5, -3.5, 0.5], np.float32),
          np.array([-1.5, 127.0, 126.5, -0.5], np.float32)]
    # float32 h with 127 h (rounded to float32) exactly m + 0.5
    cand = ((np.arange(-127, 127) + 0.5) / 127.0).astype(np.float32)
    ties = cand[np.modf(cand * F32_127)[0] == np.float32(0.5)]
    ties = np.concatenate([ties, -ties])
    assert ties.size >= hidden, "not enough exact ties to fill h"
    h = ties[:hidden]
    return [(z, h) for z in zs] + [(zs[0], ties[-hidden:])]


# --- exactness of the integer arithmetic -------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_int8_quantised_inputs_and_accumulators_equal_numpy_exactly(
        tmp_path: Path, shape: Shape, isa: _core.Isa) -> None:
    model = int8_model(tmp_path / "m", shape, seed=shape.hidden)
    t = model.tensors
    q_ih, q_hh, q_out = t["gru.weight_ih.int8"], t["gru.weight_hh.int8"], t["head.weight.int8"]
    G, O = 3 * shape.hidden, 2 * shape.horizons
    eng = tmn.Engine(model, precision="int8", isa=isa.name)
    rng = np.random.default_rng(11)
    pairs = random_pairs(rng, shape.hidden, 1500) + tie_pairs(shape.hidden)
    for i, (z, h) in enumerate(pairs):
        h_new, _ = eng._core.network_step(z, h)
        s = eng._core.int8_scratch()
        xq, x_scale = quantise_x(z)
        hq = quantise_h(h)
        where = f"pair {i}: z={z.tolist()}"
        np.testing.assert_array_equal(s["xq"], xq, err_msg=where)
        assert np.float32(s["x_scale"]) == x_scale, where
        np.testing.assert_array_equal(s["acc_ih"][:G], int_matvec(q_ih, xq), err_msg=where)
        np.testing.assert_array_equal(s["acc_hh"][:G], int_matvec(q_hh, hq), err_msg=where)
        np.testing.assert_array_equal(s["hq_out"][:shape.hidden], quantise_h(h_new), err_msg=where)
        hq_out = s["hq_out"][:shape.hidden]
        np.testing.assert_array_equal(s["acc_out"][:O], int_matvec(q_out, hq_out), err_msg=where)


def test_tie_inputs_really_are_ties_and_round_half_to_even() -> None:
    z, h = tie_pairs(32)[0]
    xq, scale = quantise_x(z)
    assert scale == np.float32(1.0)
    np.testing.assert_array_equal(xq, [127, 2, -4, 0])
    assert (np.modf(np.abs(h) * F32_127)[0] == np.float32(0.5)).all()
    assert (quantise_h(h) % 2 == 0).all()


@pytest.mark.parametrize("isa", ISAS)
def test_int8_engine_uses_the_stored_int8_weights_and_scales_as_given(
        tmp_path: Path, isa: _core.Isa) -> None:
    # Training may store any int8/scale pair (e.g. after QAT): the engine must
    # run the artifact's integers, not re-quantise the float weights.
    shape = Shape(7, 10)
    model = int8_model(tmp_path / "base", shape, seed=3)
    rng = np.random.default_rng(5)
    tensors = dict(model.tensors)
    for name in ("gru.weight_ih", "gru.weight_hh", "head.weight"):
        q = tensors[name + ".int8"]
        tensors[name + ".int8"] = rng.integers(-127, 128, size=q.shape).astype(np.int8)
        tensors[name + ".scale"] = rng.uniform(1e-4, 1e-2, size=q.shape[0]).astype(np.float32)
    config = json.loads((model.path / "config.json").read_text(encoding="utf-8"))
    qat = tmn.load(write_artifact(tmp_path / "qat", config, tensors))
    eng = tmn.Engine(qat, precision="int8", isa=isa.name)
    G, O = 3 * shape.hidden, 2 * shape.horizons
    for z, h in random_pairs(rng, shape.hidden, 200):
        h_new, y = eng._core.network_step(z, h)
        s = eng._core.int8_scratch()
        np.testing.assert_array_equal(s["acc_hh"][:G], int_matvec(tensors["gru.weight_hh.int8"],
                                                                   quantise_h(h)))
        np.testing.assert_array_equal(s["acc_out"][:O], int_matvec(tensors["head.weight.int8"],
                                                                    quantise_h(h_new)))
        y_ref = (s["acc_out"][:O] * (tensors["head.weight.scale"].astype(np.float64) / 127.0)
                 + tensors["head.bias"])
        np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)


# --- the float epilogue --------------------------------------------------------

def int8_step_reference(t: dict[str, np.ndarray], z: np.ndarray,
                        h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The whole INT8 step in float64 after exact integer accumulation."""
    H = h.size
    xq, x_scale = quantise_x(z)
    acc_ih = int_matvec(t["gru.weight_ih.int8"], xq)
    acc_hh = int_matvec(t["gru.weight_hh.int8"], quantise_h(h))
    gi = acc_ih * (t["gru.weight_ih.scale"].astype(np.float64) * float(x_scale)) + t["gru.bias_ih"]
    gh = acc_hh * (t["gru.weight_hh.scale"].astype(np.float64) / 127.0) + t["gru.bias_hh"]
    r = expit(gi[:H] + gh[:H])
    u = expit(gi[H:2 * H] + gh[H:2 * H])
    n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
    h_new = (1.0 - u) * n + u * h.astype(np.float64)
    acc_out = int_matvec(t["head.weight.int8"], quantise_h(h_new.astype(np.float32)))
    y = acc_out * (t["head.weight.scale"].astype(np.float64) / 127.0) + t["head.bias"]
    return h_new, y


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_int8_dequantisation_and_gates_match_the_numpy_reference(
        tmp_path: Path, shape: Shape, isa: _core.Isa) -> None:
    model = int8_model(tmp_path / "m", shape, seed=21)
    eng = tmn.Engine(model, precision="int8", isa=isa.name)
    rng = np.random.default_rng(2)
    h_err = y_err = 0.0
    flips = 0
    for z, h in random_pairs(rng, shape.hidden, 500):
        h = np.clip(h, -1, 1)
        h_new, y = eng._core.network_step(z, h)
        h_ref, y_ref = int8_step_reference(model.tensors, z, h)
        h_err = max(h_err, float(np.abs(h_new - h_ref).max()))
        # y depends on rint(127 h'): where h' sits on a rounding boundary the
        # float32 and float64 h' may round apart; compare only where they agree
        if (quantise_h(h_new) == quantise_h(h_ref.astype(np.float32))).all():
            y_err = max(y_err, float(np.abs(y - y_ref).max()))
        else:
            flips += 1
    # measured ~2e-7 on both: float32 rounding plus the sigmoid/tanh approximation
    assert h_err <= 1e-6, f"h': max abs error {h_err:.3g}"
    assert y_err <= 1e-6, f"y: max abs error {y_err:.3g}"
    assert flips <= 5


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [Shape(32, 10), Shape(7, 10)], ids=lambda s: s.name)
def test_int8_stream_stays_close_to_fp32(tmp_path: Path, shape: Shape, isa: _core.Isa) -> None:
    # Documented tolerance: over a 5,000-step carried stream of unit-scale
    # features (weight_scale 1), INT8 h' and y stay within 0.03 (absolute) of
    # FP32 and their RMS difference within 0.005 (measured: max 0.013, RMS
    # 0.002). Per step, rint(127 h) alone moves h by up to 1/254 ~ 0.004, and
    # each weight moves by up to s_w / 2.
    model = int8_model(tmp_path / "m", shape, seed=8)
    fp = tmn.Engine(model, precision="fp32", isa=isa.name)
    q8 = tmn.Engine(model, precision="int8", isa=isa.name)
    rng = np.random.default_rng(4)
    n = 5000
    z = (np.cumsum(rng.normal(scale=0.05, size=(n, 4)), axis=0)
         + rng.normal(scale=0.5, size=(n, 4))).astype(np.float32)
    hf = np.zeros(shape.hidden, np.float32)
    hq = np.zeros(shape.hidden, np.float32)
    dh = np.empty((n, shape.hidden))
    dy = np.empty((n, 2 * shape.horizons))
    for i in range(n):
        hf, yf = fp._core.network_step(z[i], hf)
        hq, yq = q8._core.network_step(z[i], hq)
        dh[i], dy[i] = hq - hf, yq - yf
    assert np.abs(dh).max() <= 0.03 and np.sqrt((dh ** 2).mean()) <= 0.005
    assert np.abs(dy).max() <= 0.03 and np.sqrt((dy ** 2).mean()) <= 0.005
    assert np.abs(dh).max() > 0.0  # INT8 really ran


# --- tmn.quantise_rows -----------------------------------------------------------

def test_quantise_rows_uses_max_abs_over_127_and_scale_one_for_zero_rows() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(40, 33)).astype(np.float32) * 10.0 ** rng.uniform(-4, 2, size=(40, 1))
    w = w.astype(np.float32)
    w[3] = 0.0
    w[7] = -0.0
    w[9, :] = 0.0
    w[9, 5] = -2.0  # a row whose only nonzero is negative
    q, scale = tmn.quantise_rows(w)
    assert q.dtype == np.int8 and q.shape == w.shape
    assert scale.dtype == np.float32 and scale.shape == (40,)
    nonzero = np.abs(w).max(axis=1) > 0
    np.testing.assert_array_equal(scale[nonzero],
                                  (np.abs(w).max(axis=1) / np.float32(127))[nonzero])
    np.testing.assert_array_equal(scale[~nonzero], 1.0)
    np.testing.assert_array_equal(q[~nonzero], 0)
    assert q.min() >= -127 and q.max() <= 127
    # the largest element of every nonzero row maps to +-127
    assert (np.abs(q[nonzero]).max(axis=1) == 127).all()
    assert q[9, 5] == -127
    # reconstruction error is at most half a step (plus float32 rounding)
    err = np.abs(q * scale[:, None].astype(np.float64) - w)
    assert (err <= 0.5 * scale[:, None] * (1 + 1e-6)).all()


def test_quantise_rows_rounds_half_to_even() -> None:
    w = np.array([[127.0, 2.5, 3.5, -0.5, -1.5, 126.5]], dtype=np.float32)
    q, scale = tmn.quantise_rows(w)
    assert scale[0] == np.float32(1.0)
    np.testing.assert_array_equal(q[0], [127, 2, 4, 0, -2, 126])


def test_quantise_rows_output_loads_and_matches_the_artifact_tensors(tmp_path: Path) -> None:
    model = int8_model(tmp_path / "m", Shape(7, 10), seed=1)
    for name in ("gru.weight_ih", "gru.weight_hh", "head.weight"):
        q, s = tmn.quantise_rows(model.tensors[name])
        np.testing.assert_array_equal(q, model.tensors[name + ".int8"])
        np.testing.assert_array_equal(s, model.tensors[name + ".scale"])
