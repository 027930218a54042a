"""The ONNX single-step graph (model.onnx) computes the engine's FP32 network.

Reference chain: onnxruntime on tmn.onnx_graph's graph == the engine's FP32
``network_step`` == torch ``GRUCell`` + ``Linear``, each over a few hundred
steps with the hidden state carried, to 1e-5 (absolute, output units).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tmn
from tmn.onnx_graph import (INPUT_NAMES, OUTPUT_NAMES, build_step_graph, pytorch_to_onnx_gates,
                            write_step_graph)
from tmn.testing import random_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-5
STEPS = 300


@pytest.fixture(scope="module", params=[1.0, 3.0], ids=["init-scale", "saturating"])
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tmn.Model:
    """Random System B models: PyTorch's init range, and 3x it so gates saturate."""
    folder = tmp_path_factory.mktemp("model")
    return tmn.load(random_model(folder, system="B", seed=7, weight_scale=request.param))


F = len(tmn.FEATURES["B"])  # the models here are System B


def _inputs(steps: int = STEPS, seed: int = 3) -> np.ndarray:
    """z-scored features: mostly O(1), with some large excursions."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, (steps, F)).astype(np.float32)
    z[::17] *= 4.0
    return z


def _session(model: tmn.Model) -> "ort.InferenceSession":
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(build_step_graph(model).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def _run_onnx(model: tmn.Model, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sess = _session(model)
    h = np.zeros((1, model.hidden), np.float32)
    hs, ys = [], []
    for zi in z:
        y, h = sess.run(list(OUTPUT_NAMES), {"x": zi[None, :], "h": h})
        hs.append(h[0])
        ys.append(y[0])
    return np.array(hs), np.array(ys)


def _run_engine(model: tmn.Model, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    core = tmn.Engine(model, precision="fp32")._core
    h = np.zeros(model.hidden, np.float32)
    hs, ys = [], []
    for zi in z:
        h, y = core.network_step(zi, h)
        hs.append(h)
        ys.append(y)
    return np.array(hs), np.array(ys)


def test_graph_is_valid_onnx_with_the_documented_signature(model: tmn.Model) -> None:
    proto = build_step_graph(model)
    onnx.checker.check_model(proto, full_check=True)
    H, O = model.hidden, 2 * len(model.horizons_ms)

    def dims(v: "onnx.ValueInfoProto") -> list[int]:
        return [d.dim_value for d in v.type.tensor_type.shape.dim]

    assert [i.name for i in proto.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)
    assert [dims(v) for v in proto.graph.input] == [[1, F], [1, H]]
    assert [dims(v) for v in proto.graph.output] == [[1, O], [1, H]]
    gru = next(n for n in proto.graph.node if n.op_type == "GRU")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gru.attribute}
    assert attrs["linear_before_reset"] == 1  # PyTorch semantics, not the ONNX default


def test_gate_blocks_are_reordered_from_rzn_to_zrh() -> None:
    H = 2
    w = np.concatenate([np.full((H, 3), 1.0), np.full((H, 3), 2.0), np.full((H, 3), 3.0)])
    out = pytorch_to_onnx_gates(w)
    np.testing.assert_array_equal(out[:H], 2.0)      # z
    np.testing.assert_array_equal(out[H:2 * H], 1.0)  # r
    np.testing.assert_array_equal(out[2 * H:], 3.0)   # h (PyTorch's n)
    with pytest.raises(ValueError, match="3H"):
        pytorch_to_onnx_gates(np.zeros((4, 3)))


def test_onnxruntime_matches_the_engine_fp32_network_over_carried_steps(model: tmn.Model) -> None:
    z = _inputs()
    h_onnx, y_onnx = _run_onnx(model, z)
    h_eng, y_eng = _run_engine(model, z)
    assert np.abs(h_onnx - h_eng).max() <= TOL
    assert np.abs(y_onnx - y_eng).max() <= TOL
    assert np.abs(h_eng).max() > 0.1  # the state really moved


def test_onnxruntime_matches_torch_gru_cell_over_carried_steps(model: tmn.Model) -> None:
    torch = pytest.importorskip("torch")
    t = model.tensors
    H, O = model.hidden, 2 * len(model.horizons_ms)
    cell, head = torch.nn.GRUCell(F, H), torch.nn.Linear(H, O)
    with torch.no_grad():
        for p, name in ((cell.weight_ih, "gru.weight_ih"), (cell.weight_hh, "gru.weight_hh"),
                        (cell.bias_ih, "gru.bias_ih"), (cell.bias_hh, "gru.bias_hh"),
                        (head.weight, "head.weight"), (head.bias, "head.bias")):
            p.copy_(torch.from_numpy(np.asarray(t[name])))
    z = _inputs()
    hs, ys = [], []
    with torch.inference_mode():
        h = torch.zeros(1, H)
        for zi in torch.from_numpy(z):
            h = cell(zi[None, :], h)
            hs.append(h[0].numpy().copy())
            ys.append(head(h)[0].numpy().copy())
    h_onnx, y_onnx = _run_onnx(model, z)
    assert np.abs(h_onnx - np.array(hs)).max() <= TOL
    assert np.abs(y_onnx - np.array(ys)).max() <= TOL


def test_written_graph_loads_back_and_runs(model: tmn.Model, tmp_path: Path) -> None:
    path = write_step_graph(model, tmp_path / "model.onnx")
    assert path.is_file() and not (tmp_path / "model.onnx.tmp").exists()
    loaded = onnx.load(str(path))
    assert loaded.SerializeToString() == build_step_graph(model).SerializeToString()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y, h = sess.run(None, {"x": np.zeros((1, F), np.float32),
                           "h": np.zeros((1, model.hidden), np.float32)})
    assert y.shape == (1, 2 * len(model.horizons_ms)) and h.shape == (1, model.hidden)
