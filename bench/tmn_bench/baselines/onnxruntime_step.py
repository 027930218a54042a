"""onnxruntime on the model's own single-step graph, the baseline ``tmn-bench
engine`` times (bench/README.md, "onnxruntime")."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tmn.model import Model
from tmn_bench.baselines import Reference
from tmn_bench.common import WARMUP, gc_paused, round_slice
from tmn_bench.results import OnnxRuntimeStep, Percentiles

CONFIG = {"intra_op_num_threads": 1, "inter_op_num_threads": 1,
          "execution_mode": "ORT_SEQUENTIAL", "graph_optimization_level": "ORT_ENABLE_ALL",
          "io_binding": "preallocated OrtValues, ping-pong h"}


def session_options(ort: Any) -> Any:
    """1 intra-op and 1 inter-op thread, sequential execution, all graph
    optimisations: the baseline's settings (also the naive server's)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


class OnnxRuntimeBench:
    """onnxruntime on the same single-step graph, with :func:`session_options`
    and io_binding on preallocated OrtValues; the h output is fed back by
    alternating two bindings that swap the two hidden-state buffers. Also
    measures the per-call floor: an Identity graph with the same options and
    binding.

    Raises ImportError (the bench is then skipped) without onnxruntime or onnx.
    """

    FLOOR_RUNS = 20_000

    def __init__(self, model: Model, z: np.ndarray, ref: Reference) -> None:
        import onnxruntime as ort

        from tmn.onnx_graph import build_step_graph

        self.ort, self.z, self.ref = ort, z, ref
        so = session_options(ort)
        self.sess = ort.InferenceSession(build_step_graph(model).SerializeToString(), so,
                                         providers=["CPUExecutionProvider"])
        H, O = model.hidden, 2 * len(model.horizons_ms)
        # CPU OrtValues from numpy share the numpy buffer: writing x feeds the next run
        self.x = np.zeros((1, z.shape[1]), np.float32)
        self.h = [np.zeros((1, H), np.float32), np.zeros((1, H), np.float32)]
        self.y = np.zeros((1, O), np.float32)
        xv = ort.OrtValue.ortvalue_from_numpy(self.x)
        hv = [ort.OrtValue.ortvalue_from_numpy(a) for a in self.h]
        yv = ort.OrtValue.ortvalue_from_numpy(self.y)
        self.bindings = []
        for src in (0, 1):  # binding src reads h[src] and writes h[1 - src]
            b = self.sess.io_binding()
            b.bind_ortvalue_input("x", xv)
            b.bind_ortvalue_input("h", hv[src])
            b.bind_ortvalue_output("y", yv)
            b.bind_ortvalue_output("h_next", hv[1 - src])
            self.bindings.append(b)
        self.floor_sess, self.floor_binding = self._identity_session(so)
        for i in range(min(WARMUP, len(z))):  # warm up, then start from h = 0 again
            self.x[0] = z[i]
            self.sess.run_with_iobinding(self.bindings[i & 1])
            self.floor_sess.run_with_iobinding(self.floor_binding)
        self.h[0][...] = 0.0
        self.h[1][...] = 0.0
        self.ns = [0] * len(z)
        self.floor_runs = min(len(z), self.FLOOR_RUNS)
        self.floor_ns = [0] * self.floor_runs
        self.checksum = 0.0

    def _identity_session(self, so: Any) -> tuple[Any, Any]:
        from onnx import TensorProto, helper

        from tmn.onnx_graph import IR_VERSION, OPSET

        ort, width = self.ort, self.x.shape[1]
        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])], "identity",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        proto.ir_version = IR_VERSION
        sess = ort.InferenceSession(proto.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        self._floor_buffers = (np.zeros((1, width), np.float32), np.zeros((1, width), np.float32))
        b = sess.io_binding()
        b.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(self._floor_buffers[0]))
        b.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(self._floor_buffers[1]))
        return sess, b

    def run_round(self, r: int, rounds: int) -> None:
        """Run and time this round's slice of the steps, then of the floor."""
        lo, hi = round_slice(len(self.z), r, rounds)
        pc, run = time.perf_counter_ns, self.sess.run_with_iobinding
        x, y, z, ns, bindings = self.x, self.y, self.z, self.ns, self.bindings
        acc = 0.0
        with gc_paused():
            for i in range(lo, hi):
                x[0] = z[i]
                b = bindings[i & 1]
                t0 = pc()
                run(b)
                t1 = pc()
                ns[i] = t1 - t0
                acc += float(y[0, 0])
            f_lo, f_hi = round_slice(self.floor_runs, r, rounds)
            frun, fb, fns = self.floor_sess.run_with_iobinding, self.floor_binding, self.floor_ns
            for i in range(f_lo, f_hi):
                t0 = pc()
                frun(fb)
                fns[i] = pc() - t0
        self.checksum += acc

    def summary(self) -> OnnxRuntimeStep:
        n = len(self.z)
        h_last = self.h[n & 1][0]  # step i writes h[1 - (i & 1)]; the last step is i = n - 1
        return OnnxRuntimeStep(
            version=self.ort.__version__, steps=n, config=dict(CONFIG),
            step_ns=Percentiles.of(self.ns), checksum=self.checksum,
            **self.ref.agreement(n, h_last, self.checksum),
            providers=self.sess.get_providers(), run_floor_ns=Percentiles.of(self.floor_ns))
