"""The micro-GRU in PyTorch: GRU(4 -> H) then a linear head to 2K outputs.

The very network the engine runs (docs/model-format.md "The network"):
``torch.nn.GRU`` has PyTorch's gate order (r, z, n), which is the artifact's,
and its output at every step is ``h'``, to which the head is applied. The
head's 2K outputs are (x, y) pairs per horizon in output units.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tmn.artifact import model_tensors
from tmn.model import FEATURES


class MicroGru(nn.Module):
    def __init__(self, hidden: int = 32, horizons: int = 10, inputs: int = len(FEATURES["B"])
                 ) -> None:
        super().__init__()
        self.hidden, self.horizons = hidden, horizons
        self.gru = nn.GRU(inputs, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2 * horizons)

    def forward(self, z: torch.Tensor, h0: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """z [B, T, F] -> (y [B, T, 2K], h [1, B, H]); h0 None means zeros."""
        out, h = self.gru(z, h0)
        return self.head(out), h

    @torch.no_grad()
    def stream(self, z: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """Streaming predictions over one whole stream: [T, F] float32 -> [T, 2K],
        hidden state from zero at the first tick and carried to the last."""
        h = None
        out = []
        x = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))[None]
        for a in range(0, x.shape[1], chunk):
            y, h = self(x[:, a:a + chunk], h)
            out.append(y[0].numpy())
        return np.concatenate(out) if out else np.zeros((0, 2 * self.horizons), np.float32)

    def fp32_arrays(self) -> dict[str, np.ndarray]:
        """The six FP32 tensors in the artifact's names and PyTorch layout."""
        g, hd = self.gru, self.head
        return {
            "gru.weight_ih": g.weight_ih_l0.detach().numpy().copy(),
            "gru.weight_hh": g.weight_hh_l0.detach().numpy().copy(),
            "gru.bias_ih": g.bias_ih_l0.detach().numpy().copy(),
            "gru.bias_hh": g.bias_hh_l0.detach().numpy().copy(),
            "head.weight": hd.weight.detach().numpy().copy(),
            "head.bias": hd.bias.detach().numpy().copy(),
        }

    def artifact_tensors(self) -> dict[str, np.ndarray]:
        """FP32 tensors plus their per-row INT8 quantisation (tmn.quantise_rows)."""
        a = self.fp32_arrays()
        return model_tensors(a["gru.weight_ih"], a["gru.weight_hh"], a["gru.bias_ih"],
                             a["gru.bias_hh"], a["head.weight"], a["head.bias"])

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray]) -> MicroGru:
        hidden, horizons = t["gru.weight_hh"].shape[1], t["head.weight"].shape[0] // 2
        m = cls(hidden, horizons, t["gru.weight_ih"].shape[1])
        with torch.no_grad():
            m.gru.weight_ih_l0.copy_(torch.from_numpy(np.asarray(t["gru.weight_ih"])))
            m.gru.weight_hh_l0.copy_(torch.from_numpy(np.asarray(t["gru.weight_hh"])))
            m.gru.bias_ih_l0.copy_(torch.from_numpy(np.asarray(t["gru.bias_ih"])))
            m.gru.bias_hh_l0.copy_(torch.from_numpy(np.asarray(t["gru.bias_hh"])))
            m.head.weight.copy_(torch.from_numpy(np.asarray(t["head.weight"])))
            m.head.bias.copy_(torch.from_numpy(np.asarray(t["head.bias"])))
        return m
