"""PyTorch eager single step: the baseline ``tmn-bench engine`` times.

torch is imported when the bench is built, never at import time, so
``tmn-bench`` runs without it and reports this baseline as skipped.
"""

from __future__ import annotations

import time

import numpy as np

from tmn.model import Model
from tmn_bench.baselines import Reference
from tmn_bench.common import WARMUP, gc_paused, round_slice
from tmn_bench.results import BaselineStep, Percentiles


class TorchBench:
    """PyTorch eager: ``GRUCell`` + ``Linear`` with the model's weights, one
    thread, ``inference_mode``, timed per step. Raises ImportError (the bench
    is then skipped) without torch."""

    def __init__(self, model: Model, z: np.ndarray, ref: Reference) -> None:
        import torch

        self.torch, self.ref = torch, ref
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only settable before the first parallel work in the process
            pass
        t = model.tensors
        H, O = model.hidden, 2 * len(model.horizons_ms)
        self.cell, self.head = torch.nn.GRUCell(z.shape[1], H), torch.nn.Linear(H, O)
        with torch.no_grad():
            for param, name in ((self.cell.weight_ih, "gru.weight_ih"),
                                (self.cell.weight_hh, "gru.weight_hh"),
                                (self.cell.bias_ih, "gru.bias_ih"),
                                (self.cell.bias_hh, "gru.bias_hh"),
                                (self.head.weight, "head.weight"), (self.head.bias, "head.bias")):
                param.copy_(torch.from_numpy(np.asarray(t[name], dtype=np.float32)))
        self.cell.eval()
        self.head.eval()
        zt = torch.from_numpy(np.ascontiguousarray(z))
        self.rows = [zt[i:i + 1] for i in range(len(z))]  # slicing stays out of the timing
        with torch.inference_mode():
            h = torch.zeros(1, H)
            for i in range(min(WARMUP, len(z))):
                h = self.cell(self.rows[i], h)
                self.head(h)
            self.h = torch.zeros(1, H)  # start from h = 0 again
        self.ns = [0] * len(z)
        self.checksum = 0.0

    def run_round(self, r: int, rounds: int) -> None:
        """Run and time this round's slice of the steps (h carried across rounds)."""
        lo, hi = round_slice(len(self.rows), r, rounds)
        pc, cell, head, rows, ns = time.perf_counter_ns, self.cell, self.head, self.rows, self.ns
        acc = 0.0
        with self.torch.inference_mode(), gc_paused():
            h = self.h
            for i in range(lo, hi):
                xi = rows[i]
                t0 = pc()
                h = cell(xi, h)
                y = head(h)
                t1 = pc()
                ns[i] = t1 - t0
                acc += float(y[0, 0])
            self.h = h
        self.checksum += acc

    def summary(self) -> BaselineStep:
        torch, n = self.torch, len(self.rows)
        return BaselineStep(
            version=torch.__version__, steps=n,
            config={"num_threads": torch.get_num_threads(),
                    "num_interop_threads": torch.get_num_interop_threads(),
                    "inference_mode": True},
            step_ns=Percentiles.of(self.ns), checksum=self.checksum,
            **self.ref.agreement(n, self.h[0].numpy().copy(), self.checksum))
