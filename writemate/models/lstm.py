"""Running a one-layer ``nn.LSTM`` over a whole sequence or one step at a time.

Training feeds whole sequences to PyTorch's fused LSTM. Sampling feeds one
point at a time, where the fused kernel's set-up cost dominates; there
:func:`lstm_step` computes the same thing (Graves 2013 eqs. 7-11, in
PyTorch's gate order) with two matrix products.
"""

from __future__ import annotations

import torch
import torch.nn as nn

State = tuple[torch.Tensor, torch.Tensor]  # h and c, each (1, B, H)


def lstm_step(lstm: nn.LSTM, x: torch.Tensor, hc: State) -> tuple[torch.Tensor, State]:
    """One step of a one-layer ``nn.LSTM`` with its own weights; x (B, 1, I), h and c (1, B, H).

    Same result as ``lstm(x, hc)``, without the fused kernel's set-up cost.
    """
    h, c = hc
    gates = torch.addmm(lstm.bias_ih_l0 + lstm.bias_hh_l0, x[:, 0], lstm.weight_ih_l0.t())
    gates = torch.addmm(gates, h[0], lstm.weight_hh_l0.t())  # (B, 4H), PyTorch's gate order i, f, g, o
    i, f, g, o = gates.chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c[0] + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    return h_new.unsqueeze(1), (h_new.unsqueeze(0), c_new.unsqueeze(0))


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, hc: State) -> tuple[torch.Tensor, State]:
    """``lstm(x, hc)`` for x (B, T, I): the fused kernel for T > 1, :func:`lstm_step` for T == 1."""
    return lstm(x, hc) if x.shape[1] > 1 else lstm_step(lstm, x, hc)
