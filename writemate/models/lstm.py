"""Running a one-layer ``nn.LSTM`` over a whole sequence or one step at a time.

Training feeds whole sequences to PyTorch's fused LSTM. Sampling feeds one
point at a time, where the fused kernel's set-up cost dominates; there
:func:`lstm_step` computes the same thing (Graves 2013 eqs. 7-11, in
PyTorch's gate order) with two matrix products, and :func:`cell_numpy` the
cell in numpy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

State = tuple[torch.Tensor, torch.Tensor]  # h and c, each (1, B, H)


def cell(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM cell (eqs. 7-11) from pre-activation gates (B, 4H) in PyTorch's order
    i, f, g, o and the previous cell (B, H); returns the new h and c."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def cell_numpy(gates: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cell` in numpy, for sampling one point at a time (see ``synthesis.Stepper``)."""
    h = c.shape[-1]
    s = 0.5 * np.tanh(0.5 * gates) + 0.5  # sigmoid of all four gates; this form cannot overflow
    c = s[:, h : 2 * h] * c + s[:, :h] * np.tanh(gates[:, 2 * h : 3 * h])
    return s[:, 3 * h :] * np.tanh(c), c


def stacked_weights(lstm: nn.LSTM) -> tuple[torch.Tensor, torch.Tensor]:
    """A one-layer ``nn.LSTM``'s weights as one (4H, I + H) matrix and one bias (4H,):
    the gates of input x and state h are then ``linear(cat([x, h]), weight, bias)``."""
    return torch.cat([lstm.weight_ih_l0, lstm.weight_hh_l0], dim=1), lstm.bias_ih_l0 + lstm.bias_hh_l0


def lstm_step(lstm: nn.LSTM, x: torch.Tensor, hc: State) -> tuple[torch.Tensor, State]:
    """One step of a one-layer ``nn.LSTM`` with its own weights; x (B, 1, I), h and c (1, B, H).

    Same result as ``lstm(x, hc)``, without the fused kernel's set-up cost.
    """
    h, c = hc
    gates = torch.addmm(lstm.bias_ih_l0 + lstm.bias_hh_l0, x[:, 0], lstm.weight_ih_l0.t())
    gates = torch.addmm(gates, h[0], lstm.weight_hh_l0.t())  # (B, 4H)
    h_new, c_new = cell(gates, c[0])
    return h_new.unsqueeze(1), (h_new.unsqueeze(0), c_new.unsqueeze(0))


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, hc: State) -> tuple[torch.Tensor, State]:
    """``lstm(x, hc)`` for x (B, T, I): the fused kernel for T > 1, :func:`lstm_step` for T == 1."""
    return lstm(x, hc) if x.shape[1] > 1 else lstm_step(lstm, x, hc)
