"""The FP32 single-step graph ``(x, h) -> (y, h_next)`` as ONNX, for baselines.

This is the ``model.onnx`` of a model artifact (docs/model-format.md): one GRU
step and the linear head, the same maths as stage 3 of the engine
(cpp/include/tmn/gru.hpp), so that onnxruntime can run the very model the
engine runs. The graph::

    x [1, F]   z-scored features (tmn.model.FEATURES of the system), as the engine's
               ingest makes them
    h [1, H]   hidden state carried from the previous step (zeros at a stream start)

      Unsqueeze(x) -> X [1, 1, F]        ONNX GRU wants [seq, batch, input]
      Unsqueeze(h) -> H0 [1, 1, H]       and [directions, batch, hidden]
      GRU(X, W, R, B, initial_h=H0, linear_before_reset=1) -> (_, Y_h [1, 1, H])
      Squeeze(Y_h) -> h_next [1, H]
      y = MatMul(h_next, W_o^T) + b_o    -> y [1, 2K]   (x, y interleaved per horizon)

Gate order. PyTorch stores the three gate blocks of ``gru.weight_ih`` etc. as
(r, z, n); ONNX's GRU wants (z, r, h), with h the candidate that PyTorch
calls n. ``linear_before_reset=1`` puts the reset gate outside the recurrent
product, ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, which is PyTorch's
(and the engine's) definition; the ONNX default (0) is a different network.

Only numpy is needed to call into this module; the ``onnx`` package is
imported when a graph is built, so the runtime package keeps working without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import onnx

    from tmn.model import Model

OPSET = 17
# IR version 8 is the one that goes with opset 17; pinning it keeps the file
# loadable by onnxruntime releases older than the installed onnx package.
IR_VERSION = 8
INPUT_NAMES = ("x", "h")
OUTPUT_NAMES = ("y", "h_next")


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "tmn.onnx_graph needs the 'onnx' package to build model.onnx; "
            "install it with `pip install onnx` (it is part of tmn's [test] extra)") from e
    return onnx


def pytorch_to_onnx_gates(w: np.ndarray) -> np.ndarray:
    """Reorder the gate blocks along axis 0 from PyTorch's (r, z, n) to ONNX's (z, r, h).

    ``w`` has 3H rows (a weight matrix or a bias vector); the result is a new
    contiguous float32 array of the same shape.
    """
    w = np.asarray(w, dtype=np.float32)
    if w.shape[0] % 3:
        raise ValueError(f"gate axis must have 3H rows, got {w.shape[0]}")
    r, z, n = np.split(w, 3, axis=0)
    return np.ascontiguousarray(np.concatenate([z, r, n], axis=0))


def build_step_graph(model: Model) -> onnx.ModelProto:
    """Build the FP32 single-step graph ``(x[1,F], h[1,H]) -> (y[1,2K], h_next[1,H])``
    from ``model``'s FP32 tensors (the INT8 ones are not used).

    The result passes ``onnx.checker.check_model``. Raises ``ImportError`` if the
    ``onnx`` package is missing.
    """
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    t = model.tensors
    w_ih = np.asarray(t["gru.weight_ih"], dtype=np.float32)  # [3H, F]
    w_hh = np.asarray(t["gru.weight_hh"], dtype=np.float32)  # [3H, H]
    b_ih = np.asarray(t["gru.bias_ih"], dtype=np.float32)    # [3H]
    b_hh = np.asarray(t["gru.bias_hh"], dtype=np.float32)    # [3H]
    w_o = np.asarray(t["head.weight"], dtype=np.float32)     # [2K, H]
    b_o = np.asarray(t["head.bias"], dtype=np.float32)       # [2K]
    H, F = w_hh.shape[1], w_ih.shape[1]
    O = w_o.shape[0]
    if w_ih.shape != (3 * H, F) or w_hh.shape != (3 * H, H) or w_o.shape != (O, H):
        raise ValueError(f"inconsistent GRU shapes: weight_ih {w_ih.shape}, "
                         f"weight_hh {w_hh.shape}, head.weight {w_o.shape}")

    # ONNX GRU: W [dirs, 3H, in], R [dirs, 3H, H], B [dirs, 6H] = [Wb | Rb], order (z, r, h)
    W = pytorch_to_onnx_gates(w_ih)[None]
    R = pytorch_to_onnx_gates(w_hh)[None]
    B = np.concatenate([pytorch_to_onnx_gates(b_ih), pytorch_to_onnx_gates(b_hh)])[None]
    initializers = [
        numpy_helper.from_array(W, "gru_W"),
        numpy_helper.from_array(R, "gru_R"),
        numpy_helper.from_array(B, "gru_B"),
        numpy_helper.from_array(np.ascontiguousarray(w_o.T), "head_W_t"),  # [H, 2K]
        numpy_helper.from_array(b_o.copy(), "head_b"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["x", "axis0"], ["x_seq"], name="x_as_sequence"),
        helper.make_node("Unsqueeze", ["h", "axis0"], ["h_dir"], name="h_as_direction"),
        helper.make_node("GRU", ["x_seq", "gru_W", "gru_R", "gru_B", "", "h_dir"],
                         ["", "h_next_dir"], name="gru_step", hidden_size=H,
                         linear_before_reset=1),
        helper.make_node("Squeeze", ["h_next_dir", "axis0"], ["h_next"], name="h_next"),
        helper.make_node("MatMul", ["h_next", "head_W_t"], ["y_lin"], name="head_matmul"),
        helper.make_node("Add", ["y_lin", "head_b"], ["y"], name="head_bias"),
    ]
    graph = helper.make_graph(
        nodes, "tmn_gru_step",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, F]),
                helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, H])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, O]),
                 helper.make_tensor_value_info("h_next", TensorProto.FLOAT, [1, H])],
        initializer=initializers)
    proto = helper.make_model(graph, producer_name="tmn.onnx_graph",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = IR_VERSION
    proto.doc_string = ("tmn FP32 single step: x = the z-scored features of config.json "
                        "'features', h = GRU hidden state; y = head outputs (x, y per "
                        "horizon), h_next = next hidden state")
    system = getattr(model, "config", {}).get("system")
    if system is not None:
        helper.set_model_props(proto, {"tmn.system": str(system), "tmn.hidden": str(H),
                                       "tmn.horizons": str(O // 2)})
    onnx.checker.check_model(proto)
    return proto


def write_step_graph(model: Model, path: str | Path) -> Path:
    """Build the step graph of ``model`` and write it to ``path`` (e.g. the
    artifact's ``model.onnx``), via a temporary file and a rename so a crash
    cannot leave a half-written file. Returns the path."""
    onnx = _import_onnx()
    proto = build_step_graph(model)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(proto, str(tmp))
    tmp.replace(path)
    return path
