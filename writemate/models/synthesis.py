"""The handwriting synthesis network of Graves (2013) section 5.

Three stacked LSTM layers; the first drives a soft window of K Gaussians over
the one-hot characters of the text (eqs. 46-51); the window vector feeds the
first layer at the next step and all layers above at the same step; skip
connections run from the input to every layer and from every layer to the
mixture density output (eqs. 52-53, section 4.1).

Only the first layer and the window are recurrent through the text, so they
run step by step; the upper layers see their whole input sequence at once and
use PyTorch's fused LSTM.
"""

from __future__ import annotations

import copy
import math
import re
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from writemate import alphabet, ink
from writemate.data import batching
from writemate.models import mdn
from writemate.models.lstm import cell, cell_numpy, run_lstm, stacked_weights
from writemate.train import LossResult


@dataclass
class SynthesisConfig:
    hidden: int = 400
    layers: int = 3
    window_mixtures: int = 10  # K, Gaussians of the soft window
    mixtures: int = 20  # M, bivariate Gaussians of the output
    alphabet_size: int = alphabet.SIZE
    # The window moves kappa += exp(kappa_hat) / kappa_scale (eq. 49 scaled):
    # with kappa_hat near 0 at initialisation, the window starts at one
    # character per `kappa_scale` points, close to the data's ~22, so the
    # alignment is learnt early (eq. 49 unscaled ran past the text at once).
    kappa_scale: float = 25.0

    def __post_init__(self):
        if min(self.hidden, self.layers, self.window_mixtures, self.mixtures) < 1 or not self.kappa_scale > 0:
            raise ValueError("hidden, layers, window_mixtures and mixtures must be at least 1, kappa_scale positive")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class WindowState:
    h: torch.Tensor  # (B, H) layer-1 output
    c: torch.Tensor  # (B, H) layer-1 cell
    kappa: torch.Tensor  # (B, K) window positions
    w: torch.Tensor  # (B, A) window vector
    upper: list[tuple[torch.Tensor, torch.Tensor]]  # (1, B, H) h and c of layers 2..N


WINDOW_CUTOFF = 50.0


def gaussian(q: torch.Tensor) -> torch.Tensor:
    """exp(q) for the window's exponents q <= 0, set to 0 below -WINDOW_CUTOFF.

    Characters far from the window give q of -1000 and less (half of all q in a
    trained model). exp there underflows to subnormal floats or zero and runs 20-60x
    slower than a normal exp; subnormal operands slow the products after it as much.
    exp(-50) < 2e-22, far below what a float32 sum of the other weights can hold.
    """
    return torch.exp(F.threshold(q, -WINDOW_CUTOFF, -math.inf))  # exp(-inf) = 0, its gradient 0 too


class Synthesis(nn.Module):
    def __init__(self, config: SynthesisConfig):
        super().__init__()
        self.config = config
        h, a, k = config.hidden, config.alphabet_size, config.window_mixtures
        # Layer 1 gates: input part precomputed for the whole sequence, recurrent part per step.
        self.l1_input = nn.Linear(3, 4 * h)
        self.l1_recurrent = nn.Linear(a + h, 4 * h, bias=False)  # [w_{t-1}, h1_{t-1}]
        self.window = nn.Linear(h, 3 * k)  # eq. 48: alpha_hat, beta_hat, kappa_hat
        self.upper = nn.ModuleList(nn.LSTM(3 + a + h, h, batch_first=True) for _ in range(config.layers - 1))
        self.output = nn.Linear(config.layers * h, mdn.output_size(config.mixtures))  # eq. 53
        self._init()

    def _init(self) -> None:
        h = self.config.hidden
        with torch.no_grad():
            for lstm in self.upper:  # forget-gate bias 1: keeps memory early in training
                lstm.bias_ih_l0[h : 2 * h].fill_(1.0)
            self.l1_input.bias[h : 2 * h].fill_(1.0)
            self.window.weight.mul_(0.1)
            self.window.bias.zero_()

    # -- the window, eqs. 46-51 ------------------------------------------------

    def _window(
        self, h1: torch.Tensor, kappa: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, extra: int = 0
    ):
        """One window step. h1 (B, H); kappa (B, K); text (B, U, A) one-hot; text_mask (B, U).

        Returns (w (B, A), kappa (B, K), phi (B, U + extra)); ``extra`` positions past
        the text are scored (for the end-of-text rule) but carry no character.
        """
        alpha, beta, kappa_hat = torch.exp(self.window(h1)).unsqueeze(-1).chunk(3, dim=1)  # (B, K, 1) each
        kappa = kappa + kappa_hat.squeeze(-1) / self.config.kappa_scale  # eq. 51
        u = torch.arange(text.shape[1] + extra, dtype=h1.dtype)  # (U',)
        phi = (alpha * gaussian(-beta * (kappa.unsqueeze(-1) - u) ** 2)).sum(1)  # eq. 46, (B, U')
        w = torch.bmm((phi[:, : text.shape[1]] * text_mask).unsqueeze(1), text).squeeze(1)  # eq. 47, (B, A)
        return w, kappa, phi

    def _layer1_step(self, gates_x: torch.Tensor, h, c, w):
        return cell(gates_x + self.l1_recurrent(torch.cat([w, h], dim=-1)), c)  # gates (B, 4H)

    def initial_state(self, batch: int) -> WindowState:
        cfg = self.config
        zeros = lambda *shape: torch.zeros(*shape)  # noqa: E731
        return WindowState(
            h=zeros(batch, cfg.hidden),
            c=zeros(batch, cfg.hidden),
            kappa=zeros(batch, cfg.window_mixtures),
            w=zeros(batch, cfg.alphabet_size),
            upper=[(zeros(1, batch, cfg.hidden), zeros(1, batch, cfg.hidden)) for _ in self.upper],
        )

    def forward(
        self,
        x: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        state: WindowState | None = None,
        return_phi: bool = False,
        phi_extra: int = 0,
    ):
        """x (B, T, 3) normalised offsets; text (B, U) character indices, 0 = padding.

        Returns mixture outputs (B, T, 1 + 6M), the final state, and, if asked,
        the window weights phi (B, T, U + phi_extra).
        """
        state = state or self.initial_state(x.shape[0])
        onehot = nn.functional.one_hot(text, self.config.alphabet_size).to(x.dtype)  # (B, U, A)
        text_mask = text_mask.to(x.dtype)
        characters = onehot * text_mask.unsqueeze(-1)  # (B, U, A), padding rows zeroed
        gates_x = self.l1_input(x)  # (B, T, 4H)
        if torch.is_grad_enabled() and not return_phi and not torch.is_autocast_enabled("cpu"):
            # Training: the same computation with a hand-written backward (see WindowLayer); layer 1 runs ~2x faster.
            h1, wseq, h, c, kappa, w = WindowLayer.apply(
                gates_x, state.h, state.c, state.kappa, state.w, self.l1_recurrent.weight,
                self.window.weight, self.window.bias, characters, self.config.kappa_scale,
            )  # fmt: skip
        elif not torch.is_grad_enabled() and not return_phi:
            h1, wseq, h, c, kappa, w = self._layer1_read(gates_x, state, characters)
        else:
            h1, wseq, h, c, kappa, w, phis = self._layer1_loop(gates_x, state, onehot, text_mask, phi_extra)
        hidden = [h1]
        upper_states = []
        below = h1
        for lstm, hc in zip(self.upper, state.upper):
            inputs = torch.cat([x, wseq, below], dim=-1)  # skip connections from input and window, plus layer below
            below, hc = run_lstm(lstm, inputs, hc)  # fused over T, or one fast step when sampling
            hidden.append(below)
            upper_states.append(hc)
        y = self.output(torch.cat(hidden, dim=-1))  # (B, T, 1 + 6M)
        new_state = WindowState(h=h, c=c, kappa=kappa, w=w, upper=upper_states)
        if return_phi:
            return y, new_state, phis
        return y, new_state

    def _layer1_loop(self, gates_x, state: WindowState, onehot, text_mask, phi_extra: int):
        """Layer 1 and the window step by step with autograd (sampling, figures, and the
        reference for WindowLayer). Returns h1 (B, T, H), w (B, T, A), the final h, c, kappa,
        w, and phi (B, T, U + phi_extra)."""
        h, c, kappa, w = state.h, state.c, state.kappa, state.w
        h1s, ws, phis = [], [], []
        for gx in gates_x.unbind(1):  # unbind, not indexing: its backward is O(T), not O(T^2)
            h, c = self._layer1_step(gx, h, c, w)
            w, kappa, phi = self._window(h, kappa, onehot, text_mask, phi_extra)
            h1s.append(h)
            ws.append(w)
            phis.append(phi)
        return torch.stack(h1s, 1), torch.stack(ws, 1), h, c, kappa, w, torch.stack(phis, 1)

    def _layer1_read(self, gates_x, state: WindowState, onehot):
        """Layer 1 and the window without autograd or phi, laid out for speed: reading a
        style's primed line (~1,000 points) is what a styled line waits for before its first
        stroke. onehot (B, U, A) with padding rows zeroed. Equal to _layer1_loop (tested).

        Each step is bound by the product with the recurrent weights (3 MB, read from
        L3 cache), so the rest is kept to few operations, in place where it can be.
        """
        weight_t = self.l1_recurrent.weight.T.contiguous()  # (A + H, 4H): faster products than a .T view
        win_weight_t = self.window.weight.T.contiguous()  # (H, 3K)
        u = torch.arange(onehot.shape[1], dtype=gates_x.dtype)  # (U,)
        h, c, w = state.h, state.c, state.w
        kappa = state.kappa.unsqueeze(-1)  # (B, K, 1)
        h1s, ws = [], []
        # Products of 2-4 rows ran faster as one product per row, batched (the rows run on both cores):
        # 64-127 against 115-182 µs a step on the 2-core machine, where a 2-line note's reading went
        # from 0.36-0.40 to 0.28-0.31 s. From 6 rows on, one matrix product is faster.
        rows = gates_x.shape[0]
        batched = 1 < rows <= 4
        weights = weight_t.expand(rows, -1, -1)  # (B, A + H, 4H), a view
        for gx in gates_x.unbind(1):
            if batched:
                gates = torch.baddbmm(gx.unsqueeze(1), torch.cat([w, h], dim=1).unsqueeze(1), weights).squeeze(1)
            else:
                gates = torch.addmm(gx, torch.cat([w, h], dim=1), weight_t)
            h, c = cell(gates, c)
            abk = torch.addmm(self.window.bias, h, win_weight_t).exp_()  # (B, 3K), eq. 48
            alpha, beta, kappa_hat = abk.unsqueeze(-1).chunk(3, dim=1)  # (B, K, 1) each
            kappa = torch.add(kappa, kappa_hat, alpha=1 / self.config.kappa_scale)  # eq. 51
            e = gaussian(torch.sub(kappa, u).square_().mul_(beta).neg_())  # (B, K, U)
            phi = torch.bmm(alpha.transpose(1, 2), e)  # eq. 46, (B, 1, U)
            w = torch.bmm(phi, onehot).squeeze(1)  # eq. 47, (B, A)
            h1s.append(h)
            ws.append(w)
        return torch.stack(h1s, 1), torch.stack(ws, 1), h, c, kappa.squeeze(-1), w


class WindowLayer(torch.autograd.Function):
    """Layer 1 and the soft window (eqs. 46-51) over a whole sequence, with the backward
    pass written out: autograd's per-step graph cost more than the arithmetic, and the
    weight gradients become one matrix product over all steps instead of one per step.
    Equal to Synthesis._layer1_loop (tested); used for training only.
    """

    @staticmethod
    def forward(ctx, gates_x, h, c, kappa, w, weight, win_weight, win_bias, onehot, kappa_scale):
        # gates_x (B, T, 4H) input part of layer 1's gates; weight (4H, A + H) the recurrent part;
        # onehot (B, U, A) the text, padding rows zeroed.
        b, t, _ = gates_x.shape
        u = torch.arange(onehot.shape[1], dtype=gates_x.dtype)  # (U,)
        weight_t, win_weight_t = weight.T.contiguous(), win_weight.T.contiguous()  # faster products than .T views
        prev_w, prev_h, cells, acts, windows, kappas, es = [], [], [], [], [], [], []
        h1s, ws = [], []
        for step in range(t):
            prev_w.append(w)
            prev_h.append(h)
            cells.append(c)
            gates = torch.addmm(gates_x[:, step], torch.cat([w, h], dim=1), weight_t)  # (B, 4H)
            i, f, g, o = gates.chunk(4, dim=1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = f * c + i * g
            h = o * torch.tanh(c)
            abk = torch.exp(torch.addmm(win_bias, h, win_weight_t))  # (B, 3K): alpha, beta, kappa_hat (eq. 48)
            alpha, beta, kappa_hat = abk.chunk(3, dim=1)
            kappa = kappa + kappa_hat / kappa_scale  # eq. 51
            e = gaussian(-beta.unsqueeze(-1) * (kappa.unsqueeze(-1) - u) ** 2)  # (B, K, U)
            phi = (alpha.unsqueeze(-1) * e).sum(1)  # eq. 46, (B, U)
            w = torch.bmm(phi.unsqueeze(1), onehot).squeeze(1)  # eq. 47, (B, A)
            acts.append(torch.cat([i, f, g, o], dim=1))
            windows.append(abk)
            kappas.append(kappa)
            es.append(e)
            h1s.append(h)
            ws.append(w)
        h1s, ws = torch.stack(h1s, 1), torch.stack(ws, 1)  # (B, T, H), (B, T, A)
        ctx.save_for_backward(
            weight, win_weight, onehot, u, torch.stack(prev_w, 1), torch.stack(prev_h, 1), torch.stack(cells, 1),
            torch.stack(acts, 1), torch.stack(windows, 1), torch.stack(kappas, 1), torch.stack(es, 1), h1s,
        )  # fmt: skip
        ctx.kappa_scale = kappa_scale
        return h1s, ws, h, c, kappa, w

    @staticmethod
    def backward(ctx, d_h1s, d_ws, d_h, d_c, d_kappa, d_w):
        weight, win_weight, onehot, u, prev_w, prev_h, cells, acts, windows, kappas, es, h1s = ctx.saved_tensors
        b, t, hidden = h1s.shape
        a = onehot.shape[2]
        d_h, d_c, d_kappa, d_w = d_h.clone(), d_c.clone(), d_kappa.clone(), d_w.clone()  # from the final state
        d_gates, d_windows = [None] * t, [None] * t
        for step in reversed(range(t)):
            d_w = d_w + d_ws[:, step]
            d_h = d_h + d_h1s[:, step]
            # eq. 47: w = phi @ onehot
            d_phi = torch.bmm(onehot, d_w.unsqueeze(-1)).squeeze(-1)  # (B, U)
            alpha, beta, kappa_hat = windows[:, step].chunk(3, dim=1)  # (B, K) each
            e, dist = es[:, step], kappas[:, step].unsqueeze(-1) - u  # (B, K, U)
            # eq. 46: phi = sum_k alpha_k exp(-beta_k dist_k^2)
            d_alpha = (d_phi.unsqueeze(1) * e).sum(-1)  # (B, K)
            d_q = d_phi.unsqueeze(1) * alpha.unsqueeze(-1) * e  # (B, K, U), q = -beta dist^2
            d_beta = -(d_q * dist**2).sum(-1)
            d_kappa = d_kappa - 2 * (d_q * beta.unsqueeze(-1) * dist).sum(-1)
            d_kappa_hat = d_kappa / ctx.kappa_scale  # eq. 51; d_kappa itself flows on to step - 1
            d_window = torch.cat([d_alpha * alpha, d_beta * beta, d_kappa_hat * kappa_hat], dim=1)  # through exp
            d_h = d_h + d_window @ win_weight
            # LSTM cell
            i, f, g, o = acts[:, step].chunk(4, dim=1)
            tanh_c = torch.tanh(f * cells[:, step] + i * g)
            d_c = d_c + d_h * o * (1 - tanh_c**2)
            d_gate = torch.cat(
                [d_c * g * i * (1 - i), d_c * cells[:, step] * f * (1 - f), d_c * i * (1 - g**2), d_h * tanh_c * o * (1 - o)],
                dim=1,
            )  # (B, 4H), before the nonlinearities
            d_c = d_c * f
            d_inputs = d_gate @ weight  # (B, A + H)
            d_w, d_h = d_inputs[:, :a], d_inputs[:, a:]
            d_gates[step], d_windows[step] = d_gate, d_window
        d_gates, d_windows = torch.stack(d_gates, 1), torch.stack(d_windows, 1)  # (B, T, 4H), (B, T, 3K)
        inputs = torch.cat([prev_w, prev_h], dim=2).reshape(b * t, -1)  # (B T, A + H)
        d_weight = d_gates.reshape(b * t, -1).T @ inputs  # one product over all steps
        d_win_weight = d_windows.reshape(b * t, -1).T @ h1s.reshape(b * t, hidden)
        d_win_bias = d_windows.sum((0, 1))
        return d_gates, d_h, d_c, d_kappa, d_w, d_weight, d_win_weight, d_win_bias, None, None


# -- training and evaluation ---------------------------------------------------


def lines_to_tensors(offsets: list[np.ndarray], texts: list[list[int]]):
    """A batch for teacher forcing: inputs are points 0..T-2, targets points 1..T-1.

    Returns x (B, T-1, 3), target (B, T-1, 3), mask (B, T-1), text (B, U), text_mask (B, U).
    """
    x, target, mask = batching.teacher_forcing(offsets)
    text, text_mask = batching.pad([np.asarray(t, dtype=np.int64) for t in texts], dtype=torch.long)
    return x, target, mask, text, text_mask


def evaluate_lines(
    model: Synthesis,
    offsets: list[np.ndarray],
    texts: list[list[int]],
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Mean NLL in nats per line and SSE per point of normalised offsets (Graves Table 3 protocol).

    ``progress`` is called with the number of lines done after each batch.
    """

    def outputs(idx: list[int]):
        x, target, mask, text, text_mask = lines_to_tensors([offsets[i] for i in idx], [texts[i] for i in idx])
        return model(x, text, text_mask)[0], target, mask

    return mdn.score_lines(model, outputs, [len(o) for o in offsets], batch_size, progress)


class SynthesisTask:
    """Teacher-forced training on (normalised offsets, text) pairs."""

    metric = "val_nll"

    def __init__(
        self,
        model: Synthesis,
        train: tuple[list, list],
        val: tuple[list, list],
        max_val_lines: int = 0,
        input_noise: float = 0.0,
    ):
        if input_noise < 0:
            raise ValueError(f"input_noise must be 0 or more, not {input_noise}")
        self.model = model
        # std of Gaussian noise added to the input pen moves (normalised units), not to the targets:
        # when sampling, the network reads its own imperfect moves, never the clean data.
        self.input_noise = input_noise
        self.train_x, self.train_text = train
        self.val_x, self.val_text = val
        if max_val_lines:
            self.val_x, self.val_text = self.val_x[:max_val_lines], self.val_text[:max_val_lines]
        self.train_sequences = len(self.train_x)
        self._lengths = [len(o) for o in self.train_x]

    def batches(self, epoch: int, seed: int, batch_size: int) -> list[list[int]]:
        return batching.bucketed_batches(self._lengths, batch_size, seed, epoch)

    def loss(self, forward, idx: list[int]) -> LossResult:
        x, target, mask, text, text_mask = lines_to_tensors(
            [self.train_x[i] for i in idx], [self.train_text[i] for i in idx]
        )
        if self.input_noise:
            x = torch.cat([x[..., :2] + self.input_noise * torch.randn_like(x[..., :2]), x[..., 2:]], dim=-1)
        y, _ = forward(x, text, text_mask)
        nats = (mdn.nll(y.float(), target) * mask).sum()
        return LossResult(nats=nats, units=int(mask.sum()), sequences=len(idx))

    def evaluate(self, model: Synthesis) -> dict[str, float]:
        result = evaluate_lines(model, self.val_x, self.val_text)
        # Lower NLL alone does not choose a model that samples well (docs/synthesis.md): also
        # record how many of the first validation texts a biased sample writes to their end.
        texts = [alphabet.decode(t) for t in self.val_text[:ENDING_CHECK_LINES]]
        return {"val_nll": result["nll"], "val_sse": result["sse"], "val_ended": float(lines_ended(model, texts, bias=1.0).mean())}


# -- sampling --------------------------------------------------------------------


@dataclass
class Prime:
    """A line of handwriting to continue from: normalised offsets (T, 3) and its text."""

    offsets: np.ndarray
    text: str


class Stepper:
    """The whole network one point at a time, for sampling: the same arithmetic as
    :meth:`Synthesis.forward` on a single step (tested), laid out for it.

    At one point a step, each layer is a matrix product with a few rows, plus a
    few dozen operations on vectors of a few hundred numbers. Here each layer
    reads one stacked weight matrix (input, window and state together) in one
    torch product (:class:`Affine`), and everything else runs in numpy, whose
    operations on small arrays cost a fraction of torch's. The text is encoded
    once per batch, not once per point. Rows whose lines have ended leave the
    batch (:meth:`keep`), so the last lines of a page run alone.
    """

    def __init__(self, model: Synthesis, text: torch.Tensor, text_mask: torch.Tensor, state: WindowState):
        # layer 1 input [x, w_{t-1}, h1_{t-1}]; its gates' input part comes from l1_input
        self.l1 = Affine(torch.cat([model.l1_input.weight, model.l1_recurrent.weight], dim=1), model.l1_input.bias)
        self.window = Affine(model.window.weight, model.window.bias)
        self.upper = [Affine(*stacked_weights(lstm)) for lstm in model.upper]  # input [x, w_t, below, h]
        self.output = Affine(model.output.weight, model.output.bias)
        self.kappa_scale = model.config.kappa_scale
        onehot = nn.functional.one_hot(text, model.config.alphabet_size).float() * text_mask.unsqueeze(-1)
        self.onehot = onehot.numpy()  # (B, U, A), padding rows zero
        self.positions = np.arange(text.shape[1] + 1, dtype=np.float32)  # (U + 1,) the last one past the text
        self.h, self.c, self.kappa, self.w = (t.numpy() for t in (state.h, state.c, state.kappa, state.w))
        self.upper_hc = [(h[0].numpy(), c[0].numpy()) for h, c in state.upper]
        self.set_padding(pad_small_rows(self))

    def step(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x (B, 3) the last point -> mixture outputs (B, 1 + 6M) and phi (B, U + 1)."""
        self.h, self.c = cell_numpy(self.l1(np.concatenate([x, self.w, self.h], 1)), self.c)
        phi = self._window_step()
        hidden, below = [self.h], self.h
        for layer, (affine, (h, c)) in enumerate(zip(self.upper, self.upper_hc)):
            below, c = cell_numpy(affine(np.concatenate([x, self.w, below, h], 1)), c)
            self.upper_hc[layer] = (below, c)
            hidden.append(below)
        return self.output(np.concatenate(hidden, 1)), phi

    def keep(self, rows: np.ndarray) -> None:
        """Go on with only these rows of the batch (indices or a boolean mask)."""
        self._set_rows([a[rows] for a in self._row_arrays()])

    def add(self, other: Stepper, rows: np.ndarray) -> None:
        """Append rows ``rows`` of ``other`` (same model, same text length) to the batch."""
        self._set_rows([np.concatenate([a, b[rows]]) for a, b in zip(self._row_arrays(), other._row_arrays())])

    def take(self, rows: np.ndarray) -> Stepper:
        """A new Stepper of these rows (the weights are shared)."""
        taken = copy.copy(self)
        taken.keep(rows)
        return taken

    def affines(self) -> list[Affine]:
        return [self.l1, self.window, *self.upper, self.output]

    def set_padding(self, pad: bool) -> None:
        """Run products of 1 to 3 rows in bfloat16 padded to BF16_MIN_ROWS (True) or in float32 (see pad_small_rows)."""
        for affine in self.affines():
            affine.pad_small = pad

    def save(self, rows: np.ndarray) -> list[np.ndarray]:
        """A copy of the state of these rows, to :meth:`restore` later."""
        return [a[rows] for a in self._state()]

    def restore(self, rows: np.ndarray, saved: list[np.ndarray]) -> None:
        """Put back into these rows a state from :meth:`save` (of the same text)."""
        for a, s in zip(self._state(), saved):
            a[rows] = s

    def _state(self) -> list[np.ndarray]:
        return [self.h, self.c, self.kappa, self.w, *(a for hc in self.upper_hc for a in hc)]

    def _row_arrays(self) -> list[np.ndarray]:
        return [self.onehot, *self._state()]

    def _set_rows(self, arrays: list[np.ndarray]) -> None:
        self.onehot, self.h, self.c, self.kappa, self.w, *upper = arrays
        self.upper_hc = list(zip(upper[::2], upper[1::2]))

    def _window_step(self) -> np.ndarray:
        """:meth:`Synthesis._window` (eqs. 46-51) from self.h; updates kappa and w, returns phi (B, U + 1)."""
        k = self.kappa.shape[1]
        abk = np.exp(self.window(self.h))  # (B, 3K): alpha, beta, kappa_hat, eq. 48
        alpha, beta, kappa_hat = abk[:, :k], abk[:, k : 2 * k], abk[:, 2 * k :]
        self.kappa = self.kappa + kappa_hat / self.kappa_scale  # eq. 51
        q = -beta[:, :, None] * (self.kappa[:, :, None] - self.positions) ** 2  # (B, K, U + 1)
        near = q >= -WINDOW_CUTOFF  # as gaussian()
        phi = (alpha[:, :, None] * np.exp(np.maximum(q, -WINDOW_CUTOFF)) * near).sum(1)  # eq. 46
        self.w = np.einsum("bu,bua->ba", phi[:, :-1], self.onehot)  # eq. 47, (B, A); no BLAS call, see Affine
        return phi


# From this many rows on, sampling's matrix products run in bfloat16 where the CPU has it.
BF16_MIN_ROWS = 4
# Networks with fewer weights keep products of fewer rows in float32 (and match forward to 1e-5).
TIMED_MIN_WEIGHTS = 1_000_000
_PAD_SMALL: dict[tuple, bool] = {}  # per network shape, on this machine: see pad_small_rows


def pad_small_rows(stepper: Stepper) -> bool:
    """Whether ``stepper``'s products of 1 to 3 rows should run in bfloat16, padded to
    ``BF16_MIN_ROWS`` rows, because whole steps run faster so on this machine.

    Which is faster depends on the CPU, and only whole steps show it: a
    product timed alone keeps its weights in cache, while in a step each layer
    reads its weights afresh (15 MB in float32 for the paper-size network, half in
    bfloat16). On a 2-core AMD EPYC (AVX512-BF16) a step of 2 rows took 1.0 to
    4.3 ms in float32 and 0.9 ms padded; on a 2-core Xeon (AMX) 1.0 ms in float32
    and 1.5 to 1.9 ms padded. So the first Stepper of each network shape times
    both, and the choice is kept for the process.
    """
    if not Affine.bf16 or sum(a.weight.numel() for a in stepper.affines()) < TIMED_MIN_WEIGHTS:
        return False
    key = tuple(tuple(a.weight.shape) for a in stepper.affines())
    if key not in _PAD_SMALL:
        _PAD_SMALL[key] = _padding_is_faster(stepper)
    return _PAD_SMALL[key]


def _padding_is_faster(stepper: Stepper, rows: int = 2, steps: int = 20, rounds: int = 2) -> bool:
    """Time ``steps`` steps of ``rows`` rows both ways, ``rounds`` times each, alternating; the best of each."""
    trial = stepper.take(np.zeros(rows, dtype=np.int64))  # shares the Affines; the caller sets their choice after
    x = np.zeros((rows, 3), dtype=np.float32)
    best = {False: math.inf, True: math.inf}
    for _ in range(rounds):
        for pad in best:
            trial.set_padding(pad)
            start = time.perf_counter()
            for _ in range(steps):
                trial.step(x)
            best[pad] = min(best[pad], time.perf_counter() - start)
    return best[True] < best[False]


class Affine:
    """``x @ weight.T + bias`` on a numpy batch x (B, I), for :class:`Stepper`.

    On one to three rows a step is bound by reading the weights, and float32 in
    ``nn.Linear``'s (out, in) layout is fastest (about 1.0 ms a step of the
    paper-size network). On more rows it is bound by arithmetic, and bfloat16
    (AMX or AVX512-BF16) roughly halves it: a step of 20 rows took 2.7 ms instead
    of 3.7, 40 rows 4.3 instead of 5.2 (see ``benchmarks/synthesis_speed.py``).
    Fed the true points of 64 validation lines, the bundled model's Stepper
    scored -984.61 nats per line with bfloat16 products, -984.67 with float32. Every product goes through torch:
    numpy's would wake OpenBLAS's own threads, which spin beside torch's and, on
    two cores, made some pages 10x slower.
    """

    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()  # without hardware support bfloat16 is slower

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        self.weight, self.bias = weight.detach().float().contiguous(), bias.detach().float()
        self.weight16, self.bias16 = self.weight.to(torch.bfloat16), self.bias.to(torch.bfloat16)
        self.pad_small = False  # run fewer than BF16_MIN_ROWS rows in bfloat16 too, padded (pad_small_rows)
        # Padded products reuse these buffers: a step of 2 rows took 0.79 ms instead of 0.87 allocating
        # them each time (benchmarks/synthesis_speed.py). Rows past the input are never read back.
        out, inputs = self.weight.shape
        self.padded = torch.zeros(BF16_MIN_ROWS, inputs, dtype=torch.bfloat16)
        self.padded_out = torch.zeros(BF16_MIN_ROWS, out, dtype=torch.bfloat16)
        self.padded_out32 = torch.zeros(BF16_MIN_ROWS, out)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        rows = x.shape[0]
        if self.bf16 and rows < BF16_MIN_ROWS and self.pad_small:  # fewer rows run much slower in bfloat16 than padded ones
            self.padded[:rows] = torch.from_numpy(x)
            torch.addmm(self.bias16, self.padded, self.weight16.t(), out=self.padded_out)
            return self.padded_out32.copy_(self.padded_out).numpy()[:rows].copy()  # a copy: the buffer is reused
        if self.bf16 and rows >= BF16_MIN_ROWS:
            x16 = torch.from_numpy(x).to(torch.bfloat16)
            return nn.functional.linear(x16, self.weight16, self.bias16).float().numpy()
        return nn.functional.linear(torch.from_numpy(x), self.weight, self.bias).numpy()


# The paper ends a line once phi past the text exceeds phi at every character (ratio 1). After a
# final "." the window then often still sits on the dot at the pen lift, and the network writes a
# second dot or a stray mark before it moves on. At 0.35, of 128 sampled lines ending in "." (bias
# 0.75, 8 styles) 4 % had ink after the dot against 16 % at 0.5 (and more at 1), with as many dots
# missing (7 %); lines ending in a letter read the same (docs/synthesis.md, "Where a line ends").
END_RATIO = 0.35
# A line that ends in "." ends at the pen lift after the first stroke of at most DOT_SIZE (normalised
# units: about 16 whiteboard units across) written with the window's peak on that ".": the window
# often stays on the dot after it is written, and the network writes a second dot or a stray mark.
DOT_SIZE = 0.4
STEPS_PER_CHAR = 40  # the step cap per character; the data average about 22 points per character
ENDING_CHECK_LINES = 64  # validation texts sampled at each validation during training


def step_cap(characters, steps_per_char: int = STEPS_PER_CHAR):
    """The most points :func:`sample` writes for a text of ``characters`` characters (int or array)."""
    return np.maximum(characters, 1) * steps_per_char + 20


def word_spans(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """[start, end) positions of the words of ``text`` that hold a letter or digit, shifted by ``offset``."""
    return [(offset + m.start(), offset + m.end()) for m in re.finditer(r"\S+", text) if any(ch.isalnum() for ch in m.group())]


def skips_a_word(spans: list[tuple[int, int]], dwell: np.ndarray) -> bool:
    """Whether the window jumped over a word: ``dwell`` (U + 1,) counts the points written while each
    position had the window's largest weight; a word with fewer points than characters was skipped.

    Sampled lines show two kinds of word: written ones get at least 2 points a character (about 25 on
    average), while a window that jumps leaves whole words with none. Of 96 validation texts
    sampled by the bundled model at bias 0.75, 10 lines skipped words this way, all read with a CER
    above 25 %; at bias 0, 19 lines. Punctuation alone ("-", "'") can be passed over in a point or two.
    """
    return any(dwell[a:b].sum() < b - a for a, b in spans)


def lines_ended(model: Synthesis, texts: list[str], bias: float, seed: int = 0, batch: int = 32) -> np.ndarray:
    """Whether each of ``texts``, sampled unprimed, ends by the paper's rule before the step cap without
    skipping a word: bool (N,).

    A line stopped by the cap has lost its place in the text: it scribbles on
    after the text or stalls. One that skips a word lost it the other way: the
    window jumped ahead. Lines are sampled ``batch`` at a time, with seeds
    ``seed``, ``seed + batch``, ... as :meth:`Writer.write` does, but never
    retried nor taken back after a stall: this measures the model, not what users get.
    """
    ended = []
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        ended.append(sample_batch(model, chunk, np.full(len(chunk), bias), seed + start, stall_points=None).complete)
    return np.concatenate(ended) if ended else np.zeros(0, dtype=bool)


# Judges finished lines for sampling: (their texts, their normalised offsets (T_i, 3)) -> an
# error per line (N,), 0 for perfect, for example a recognizer's character error rate; and per
# line where in its text the first word starts that it got wrong (N,), -1 for none or unknown.
Judge = Callable[[list[str], list[np.ndarray]], tuple[np.ndarray, np.ndarray]]


# A row stalls when its window's peak has reached no new position of the text for this many points:
# the network goes on writing (scribble, or the same letters again) while the window stays. It
# then goes back to where the peak first reached a position REWIND_CHARS before the furthest one,
# and writes from there again with fresh random draws, at most MAX_REWINDS times. Sampled lines
# that ended by the rule had at most 73 points per position in 38 of 46, while all 26 that ran
# to the step cap had 300 or more on one position (docs/synthesis.md, "Stalls").
STALL_POINTS = 120
REWIND_CHARS = 2
MAX_REWINDS = 3


@dataclass
class Mark:
    """A row's state when its window's peak first reached ``position``, ``age`` points into its line."""

    position: int
    age: int
    state: list[np.ndarray]  # Stepper.save of the row
    dwell: np.ndarray  # (U + 1,)
    past_end: bool


class Rewinds:
    """Sends rows of :func:`sample_batch` whose window stalls back a few characters (``STALL_POINTS``).

    Each row gets a :class:`Mark` whenever its window's peak first reaches a
    new position (with ``stall_points``, or ``marking`` alone); a row sent back
    takes up the state of an earlier mark, and so can a new row that goes on
    from a finished one (:meth:`branch`).
    """

    def __init__(self, rows: int, stall_points: int | None, marking: bool = False):
        self.stall_points = stall_points  # None or 0: never
        self.marking = bool(stall_points) or marking
        self.reached = np.full(rows, -1)  # the furthest position each row's peak has reached
        self.since = np.zeros(rows, dtype=np.int64)  # points since it reached a new one
        self.counts = np.zeros(rows, dtype=np.int64)  # times each row was sent back
        self.marks: dict[int, list[Mark]] = {}

    def after_step(self, active, peak, stepper: Stepper, x, written, ages, dwell, past_end) -> np.ndarray:
        """After a step of the ``active`` rows (A,) whose peaks are ``peak`` (A,): mark rows that reached
        a new position, and send stalled ones back, in ``stepper``, ``x`` (A, 3) and the per-row arrays.
        Returns which rows were sent back (A,) bool."""
        back = np.zeros(len(active), dtype=bool)
        if not self.marking:
            return back
        new = peak > self.reached[active]
        self.reached[active] = np.maximum(self.reached[active], peak)
        self.since[active] = np.where(new, 0, self.since[active] + 1)
        if new.any():
            self.add(active[new], peak[new], ages[active[new]], stepper.save(new), dwell, past_end)
        if not self.stall_points:
            return back
        for i in np.flatnonzero((self.since[active] > self.stall_points) & (self.counts[active] < MAX_REWINDS)):
            r = active[i]
            mark = self.back(r, self.reached[r] - REWIND_CHARS)
            stepper.restore(np.array([i]), [a[None] for a in mark.state])
            x[i] = written[r, mark.age]  # the point the row had drawn there: its next input
            ages[r], dwell[r], past_end[r] = mark.age, mark.dwell, mark.past_end
            self.reached[r], self.since[r] = mark.position, 0
            self.counts[r] += 1
            back[i] = True
        return back

    def add(self, rows: np.ndarray, positions: np.ndarray, ages: np.ndarray, saved: list[np.ndarray], dwell, past_end) -> None:
        """Marks for batch rows ``rows`` (R,); ``saved`` their Stepper state, one array per part (R, ...)."""
        for j, r in enumerate(rows):
            mark = Mark(int(positions[j]), int(ages[j]), [a[j] for a in saved], dwell[r].copy(), bool(past_end[r]))
            self.marks.setdefault(int(r), []).append(mark)

    def back(self, row: int, position: int) -> Mark:
        """The row's latest mark at or before ``position`` (else its first); later marks are dropped."""
        marks = self.marks[row]
        k = max([i for i, m in enumerate(marks) if m.position <= position], default=0)
        del marks[k + 1 :]
        return marks[k]

    def branch(self, row: int, new: int, position: int) -> Mark:
        """Row ``new`` takes up row ``row``'s marks up to its latest at or before ``position`` (else its
        first), to go on from there; returns that mark. ``row`` must not go on itself."""
        mark = self.back(row, position)
        self.marks[new] = list(self.marks[row])
        self.reached[new], self.since[new] = mark.position, 0
        return mark

    def drop(self, rows) -> None:
        """Forget the marks of rows that have finished."""
        for r in rows:
            self.marks.pop(int(r), None)


@dataclass
class Samples:
    """What one batch of :func:`sample_batch` wrote, per row (a line of one of its texts), in the order rows started."""

    texts: np.ndarray  # (R,) the index of each row's text
    starts: np.ndarray  # (R,) the step of the batch before each row's first point
    lines: list[np.ndarray]  # normalised offsets (T_r, 3), the first row where the pen starts
    ended: np.ndarray  # (R,) bool: the line ended by the paper's rule, not at the step cap
    skipped: np.ndarray  # (R,) bool: it ended by the rule, but the window jumped over a word (skips_a_word)
    errors: np.ndarray  # (R,) the judge's error (0 without a judge); inf for rows stopped unfinished
    accepted: np.ndarray  # (R,) bool: ended by the rule, skipped no word, error at most max_error
    rewinds: np.ndarray  # (R,) times the row went back after its window stalled (STALL_POINTS)
    parents: np.ndarray  # (R,) the row whose line this one took up before a misread word, else -1
    stops: np.ndarray  # (R,) the step of the batch at the row's last point
    phis: list[np.ndarray] | None = None  # window weights (T_r, U_i), if asked for

    @property
    def complete(self) -> np.ndarray:
        """(R,) bool: the line ended by the rule and wrote every word."""
        return self.ended & ~self.skipped


@dataclass
class Progress:
    """What :func:`sample_batch` has written so far, handed to its ``watch`` after every step, to
    show lines as they are written. The arrays are the sampler's own, valid during the call only."""

    active: np.ndarray  # (A,) the rows writing now
    texts: np.ndarray  # (R,) the text of every row started so far
    accepted: np.ndarray  # (R,) bool: the row was accepted (the text's other rows stopped)
    ages: np.ndarray  # (R,) points in each row's line so far
    written: np.ndarray  # (R, T, 3) each row's points; see line()
    primed: bool

    def line(self, row: int) -> np.ndarray:
        """Row ``row``'s normalised offsets so far (T_r, 3), as :class:`Samples` will hold them."""
        return self.written[row, int(self.primed) : 1 + self.ages[row]]


# A primed line is read this many points at a time, so that a reading no longer wanted can stop
# between chunks (Writer.prepare). Every reading is chunked alike: one read ahead equals one read when needed.
PRIME_CHUNK = 256


@dataclass
class LineStarts:
    """Where :func:`sample_batch` starts the lines of ``texts``: their characters after the primed
    line's text, and the network's state once it has read the primed line."""

    texts: list[str]
    prime: Prime | None
    text: torch.Tensor  # (N, U) character indices of the primed line's text, a space and each text; 0 pads
    text_mask: torch.Tensor  # (N, U)
    state: WindowState
    x: np.ndarray  # (N, 3) each line's first input: the primed line's last point, or zeros

    @property
    def prefix(self) -> int:
        """Characters before each text: the primed line's text and a space."""
        return len(self.prime.text) + 1 if self.prime is not None else 0

    @property
    def continues(self) -> bool:
        """The lines go on from a primed line's last point."""
        return self.prime is not None and len(self.prime.offsets) > 1


def same_prime(a: Prime | None, b: Prime | None) -> bool:
    """Equal primed lines (a style's Prime is made anew at each use)."""
    if a is None or b is None:
        return a is b
    return a.text == b.text and np.array_equal(a.offsets, b.offsets)


@torch.inference_mode()
def line_starts(
    model: Synthesis, texts: list[str], prime: Prime | None = None, going_on: Callable[[], bool] | None = None
) -> LineStarts | None:
    """The starts of ``texts`` in the hand of ``prime``: the network reads the primed line with its
    text and a space before each text (teacher forcing). For a style's line (~1,000 points) that is
    most of what a one-line write waits for before its first point. None if ``going_on()`` turns
    false, which is asked between chunks of ``PRIME_CHUNK`` points."""
    model.eval()
    prefix = (prime.text + " ") if prime is not None else ""
    encoded = [np.asarray(alphabet.encode(prefix + t), dtype=np.int64) for t in texts]
    text, text_mask = batching.pad(encoded, dtype=torch.long)
    starts = LineStarts(list(texts), prime, text, text_mask, model.initial_state(len(texts)), np.zeros((len(texts), 3), np.float32))
    if starts.continues:
        primed = torch.as_tensor(prime.offsets, dtype=torch.float32).unsqueeze(0).expand(len(texts), -1, -1)  # (N, T, 3)
        for at in range(0, primed.shape[1] - 1, PRIME_CHUNK):  # inputs: every point but the last
            if going_on is not None and not going_on():
                return None
            _, starts.state = model(primed[:, at : min(at + PRIME_CHUNK, primed.shape[1] - 1)], text, text_mask, starts.state)
        starts.x[:] = prime.offsets[-1]
    return starts


def sample(
    model: Synthesis,
    texts: list[str],
    bias: float | list[float] = 0.0,
    seed: int = 0,
    prime: Prime | None = None,
    steps_per_char: int = STEPS_PER_CHAR,
    return_phi: bool = False,
    retries: int = 0,
    candidates: int = 1,
    judge: Judge | None = None,
    max_error: float = 0.0,
    stall_points: int | None = STALL_POINTS,
    watch: Callable[[Progress], None] | None = None,
    starts: LineStarts | None = None,
):
    """Write every text of ``texts`` as one batch; returns normalised offsets (T_i, 3) per line,
    the first row where the pen starts (and, with ``return_phi``, each line's window weights).

    Each text is written by ``candidates`` lines at once, up to
    ``candidates * (1 + retries)`` lines in all, until one is accepted (see
    :func:`sample_batch`): a line stopped by the step cap has lost its place
    in the text, as has one that skipped a word, and one the ``judge`` finds
    wrong is written again (from just before the first word it got wrong, and
    afresh). Each text keeps its accepted line, or else, of the
    lines that ran to their end, one that ended by the rule without skipping a
    word, with the lowest error, the latest on ties.
    """
    biases = np.asarray(bias if isinstance(bias, (list, tuple)) else [bias] * len(texts), dtype=np.float64)
    batch = sample_batch(
        model, texts, biases, seed, prime, steps_per_char, return_phi, candidates, candidates * (1 + retries), judge, max_error, stall_points,
        watch, starts,
    )
    lines: list = [None] * len(texts)
    phis: list = [None] * len(texts)
    best = [(np.inf,) * 3] * len(texts)  # (not accepted, capped or skipping, error) of the kept line: lower is better
    complete = batch.complete
    for r, i in enumerate(batch.texts):
        key = (float(not batch.accepted[r]), float(not complete[r]), float(batch.errors[r]))
        if np.isfinite(key[2]) and key <= best[i]:
            best[i], lines[i] = key, batch.lines[r]
            if return_phi:
                phis[i] = batch.phis[r]
    return (lines, phis) if return_phi else lines


# A line that fails is replaced by this many: a text that failed once is likely to fail again
# (digits, rare words), and one more row in the running batch costs little.
REPLACEMENTS = 2


@torch.inference_mode()
def sample_batch(
    model: Synthesis,
    texts: list[str],
    biases: np.ndarray,
    seed: int = 0,
    prime: Prime | None = None,
    steps_per_char: int = STEPS_PER_CHAR,
    return_phi: bool = False,
    candidates: int = 1,
    attempts: int = 1,
    judge: Judge | None = None,
    max_error: float = 0.0,
    stall_points: int | None = STALL_POINTS,
    watch: Callable[[Progress], None] | None = None,
    starts: LineStarts | None = None,
) -> Samples:
    """Write every text of ``texts`` as one batch, ``biases`` (N,) one per text.

    A line ends when the window has moved past its last character (Graves
    2013 section 5: phi at position U+1 exceeds phi at every character; here
    ``END_RATIO`` times phi at every character) and the pen has lifted, a
    line ending in "." also once it has written a dot there (``DOT_SIZE``), or
    after ``steps_per_char`` points per character. A row whose window stalls
    for ``stall_points`` points goes back a few characters and writes them
    again (see ``STALL_POINTS``; None never does).
    With ``prime``, the network first reads the primed line with its text
    (teacher forcing), then writes ``texts`` in the same hand; ``starts``
    (:func:`line_starts` of the same texts and prime) is that reading done before.

    A line that has ended is accepted if it ended by the rule without
    skipping a word (:func:`skips_a_word`) and ``judge`` (if given) finds an
    error of at most ``max_error`` in it. Each text is
    written by ``candidates`` lines at once: once one is accepted the others
    stop where they are (error inf); one that ends without being accepted is
    replaced at once by ``REPLACEMENTS`` new lines, until the text has had
    ``attempts``. So no text waits for another's rewrite, and a hard text
    spends its attempts in few rounds. When the judge names the first word a
    line got wrong, the first of its new lines takes up that line's ink and
    state from where the window first reached the character before that word
    (the space), and writes on from there with fresh random draws: the words
    before it were read right, and a line of many words rarely gets all right
    at once (``Samples.parents``).
    """
    n = len(texts)
    rng = np.random.default_rng(seed)
    if starts is None:
        starts = line_starts(model, texts, prime)
    elif starts.texts != list(texts) or not same_prime(starts.prime, prime):
        raise ValueError("these line starts were read for other texts or another primed line")
    model.eval()
    text, text_mask, state, start_x = starts.text, starts.text_mask, starts.state, starts.x
    prefix, continues = starts.prefix, starts.continues
    ends = text_mask.sum(1).numpy()  # index of the position past the last character
    starting = Stepper(model, text, text_mask, state)  # each text's state where a line of it starts
    cap = step_cap(ends - prefix, steps_per_char)  # (N,)
    characters = np.pad(text_mask.numpy(), ((0, 0), (0, 1)))  # (N, U + 1), the end position masked out
    spans = [word_spans(t, prefix) for t in texts]  # the words each line must write
    final_dot = np.array([t.endswith(".") for t in texts])  # (N,) see DOT_SIZE

    most = n * max(attempts, 1)  # rows the batch can start
    row_text = np.zeros(most, dtype=np.int64)
    row_start = np.zeros(most, dtype=np.int64)  # the step before the row's first point
    # Unprimed, the ink starts with the pen down at the origin (point 0). Primed, the origin is the
    # prime's last point, where the pen lifted: the move to the first new point is not ink.
    written = np.zeros((most, 1 + int(cap.max()), 3), dtype=np.float32)
    window = np.zeros((most, int(cap.max()), text.shape[1] + 1), dtype=np.float32) if return_phi else None
    lengths = np.zeros(most, dtype=np.int64)  # points written when the row ended or stopped
    past_end = np.zeros(most, dtype=bool)
    ended = np.zeros(most, dtype=bool)
    skipped = np.zeros(most, dtype=bool)
    dwell = np.zeros((most, text.shape[1] + 1), dtype=np.int32)  # points written with the window's peak at each position
    errors = np.full(most, np.inf)
    accepted = np.zeros(most, dtype=bool)
    ages = np.zeros(most, dtype=np.int64)  # points in each row's line so far; a rewind takes it back
    stops = np.zeros(most, dtype=np.int64)
    rewinds = Rewinds(most, stall_points, marking=judge is not None)
    parents = np.full(most, -1)
    started = np.zeros(n, dtype=np.int64)  # rows started per text
    text_done = np.zeros(n, dtype=bool)  # a row of the text was accepted
    steps = 0
    rows = 0  # rows started so far

    def start(which: list[int]) -> np.ndarray:
        nonlocal rows
        new = np.arange(rows, rows + len(which))
        row_text[new], row_start[new] = which, steps
        np.add.at(started, which, 1)
        rows += len(which)
        return new

    def go_on(r: int, word: int) -> tuple[int, Mark]:
        """A new row that takes up finished row ``r``'s line where the window first reached the
        character before the word at ``word`` in its text; returns it and the mark it starts from."""
        new = start([row_text[r]])[0]
        mark = rewinds.branch(r, new, prefix + word - 1)
        written[new, : mark.age + 1] = written[r, : mark.age + 1]
        if return_phi:
            window[new, : mark.age] = window[r, : mark.age]
        ages[new], dwell[new], past_end[new], parents[new] = mark.age, mark.dwell, mark.past_end, r
        return new, mark

    active = start([i for i in range(n) for _ in range(min(candidates, attempts))])  # the rows writing
    stepper = starting.take(row_text[active])
    x = start_x[row_text[active]]
    while len(active):
        if watch is not None:
            watch(Progress(active, row_text[:rows], accepted[:rows], ages[:rows], written[:rows], continues))
        texts_now = row_text[active]
        y, phi = stepper.step(x)  # (A, 1 + 6M), (A, U + 1) for the A active rows
        x = mdn.sample(y, biases[texts_now], rng)  # (A, 3)
        steps += 1
        ages[active] += 1
        age = ages[active]  # points each active row has written
        written[active, age] = x
        if return_phi:
            window[active, age - 1] = phi
        peak = phi.argmax(axis=1)
        dwell[active, peak] += 1
        past_end[active] |= phi[np.arange(len(active)), ends[texts_now]] > END_RATIO * (phi * characters[texts_now]).max(axis=1)
        sent_back = rewinds.after_step(active, peak, stepper, x, written, ages, dwell, past_end)
        age = ages[active]
        lifts = x[:, 2] > 0.5
        by_rule = past_end[active] & lifts
        on_dot = lifts & ~by_rule & ~sent_back & final_dot[texts_now] & (peak == ends[texts_now] - 1)
        for i in np.flatnonzero(on_dot):
            by_rule[i] = ink.last_stroke_size(written[active[i], 1 : age[i] + 1]) <= DOT_SIZE
        done = by_rule | (age >= cap[texts_now])
        if not done.any():
            continue
        finished = active[done]
        stops[finished] = steps
        lengths[finished], ended[finished] = age[done], by_rule[done]
        skipped[finished] = [ended[r] and skips_a_word(spans[row_text[r]], dwell[r]) for r in finished]
        misread = np.full(len(finished), -1)  # where in its text each finished line's first wrong word starts
        if judge is None:
            errors[finished] = 0.0
        else:
            lines = [written[r, int(continues) : 1 + lengths[r]] for r in finished]
            errors[finished], misread = judge([texts[row_text[r]] for r in finished], lines)
        accepted[finished] = ended[finished] & ~skipped[finished] & (errors[finished] <= max_error)  # Samples.complete
        text_done[row_text[finished[accepted[finished]]]] = True
        stopped = text_done[texts_now] & ~done  # candidates beaten by an accepted line
        lengths[active[stopped]] = age[stopped]
        keep = ~done & ~stopped
        rewinds.drop(active[stopped])
        stops[active[stopped]] = steps
        active, x = active[keep], x[keep]
        stepper.keep(keep)
        again = []  # texts that start new lines in place of one that failed
        resumed = []  # (failed row, its first wrong word): the first of its new lines goes on from there
        planned = np.zeros(n, dtype=np.int64)  # new lines per text so far in this step
        for r, word in zip(finished, misread):
            i = row_text[r]
            if accepted[r] or text_done[i]:
                continue
            new_lines = max(min(REPLACEMENTS, attempts - started[i] - planned[i]), 0)
            planned[i] += new_lines
            if new_lines and word >= 0:
                resumed.append((r, word))
                new_lines -= 1
            again += [i] * new_lines
        if again:
            active = np.concatenate([active, start(again)])
            stepper.add(starting, np.array(again))
            x = np.concatenate([x, start_x[again]])
        for r, word in resumed:
            new, mark = go_on(r, int(word))
            stepper.add(starting, row_text[[new]])
            stepper.restore(np.array([len(active)]), [a[None] for a in mark.state])
            active = np.append(active, new)
            x = np.concatenate([x, written[r, mark.age][None]])
        rewinds.drop(finished)
    if watch is not None:
        watch(Progress(active, row_text[:rows], accepted[:rows], ages[:rows], written[:rows], continues))
    result = Samples(
        texts=row_text[:rows],
        starts=row_start[:rows],
        lines=[written[r, int(continues) : 1 + lengths[r]] for r in range(rows)],
        ended=ended[:rows],
        skipped=skipped[:rows],
        errors=errors[:rows],
        accepted=accepted[:rows],
        rewinds=rewinds.counts[:rows],
        parents=parents[:rows],
        stops=stops[:rows],
    )
    if return_phi:
        result.phis = [window[r, : lengths[r], prefix : ends[row_text[r]]] for r in range(rows)]
    return result
