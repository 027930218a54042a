"""The baselines tmn is measured against, in the same run on the same model.

* :mod:`.onnxruntime_step` and :mod:`.torch_eager`: the model's single step
  in onnxruntime and in PyTorch eager, called from Python (``tmn-bench
  engine``). Each imports its package only when it is built, and raises
  ImportError without it (the baseline is then reported as skipped).
* :mod:`.naive_server`: a plain pyzmq + onnxruntime server speaking the same
  protocol (``tmn-bench serve``), run as its own process.

A step baseline is checked against :class:`Reference`, the engine's FP32
network over the same inputs: a wrongly configured baseline shows up as a
large difference, not as a fast number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import tmn


@dataclass(frozen=True)
class Reference:
    """The engine's FP32 network over some inputs: the hidden state after every
    step (so that a baseline of any length can be checked) and the running sum
    of y[0]."""

    h: np.ndarray          # [n, H]
    y0_cumsum: np.ndarray  # [n]

    @classmethod
    def of(cls, engine: tmn.Engine, z: np.ndarray) -> Reference:
        """Step ``engine``'s network over the z-scored inputs ``z`` [n, F] from h = 0."""
        h = np.zeros(engine._core.hidden, np.float32)
        hs = np.empty((z.shape[0], h.size), np.float32)
        y0 = np.empty(z.shape[0], np.float64)
        step = engine._core.network_step
        for i in range(z.shape[0]):
            h, y = step(z[i], h)
            hs[i], y0[i] = h, y[0]
        return cls(hs, np.cumsum(y0))

    def agreement(self, n: int, h_last: np.ndarray, checksum: float) -> dict[str, float]:
        """How far a baseline's last hidden state and y[0] sum over ``n`` steps are
        from the engine's (the ``*_vs_engine_fp32`` fields of BaselineStep)."""
        return {"max_abs_h_diff_vs_engine_fp32": float(np.abs(self.h[n - 1] - h_last).max()),
                "mean_abs_y0_diff_vs_engine_fp32":
                    abs(float(self.y0_cumsum[n - 1]) - checksum) / n}
