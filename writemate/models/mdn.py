"""Mixture density output for pen offsets, Graves (2013) section 4.1.

The network emits ``1 + 6M`` numbers a step (M mixture components):
``e_hat`` (end of stroke), ``pi_hat`` (M), ``mu`` (2M), ``sigma_hat`` (2M),
``rho_hat`` (M). This module turns them into a distribution over the next
``(dx, dy, eos)`` (eqs. 18-22), its negative log-likelihood (eqs. 23-26), and
samples from it with the legibility bias of section 5.4 (eqs. 61-62).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from writemate.data import batching
from writemate.errors import WritemateError

LOG_2PI = math.log(2 * math.pi)
MIN_LOG_SIGMA = -7.0  # keeps the density finite on repeated points (zero moves)


def output_size(mixtures: int) -> int:
    return 1 + 6 * mixtures


@dataclass
class Mixture:
    eos_logit: torch.Tensor  # (..., )    logit of P(pen lifts after this point)
    log_pi: torch.Tensor  # (..., M)
    mu: torch.Tensor  # (..., M, 2)
    log_sigma: torch.Tensor  # (..., M, 2)
    rho: torch.Tensor  # (..., M)


def split(y: torch.Tensor, bias: float | torch.Tensor = 0.0) -> Mixture:
    """Network outputs ``(..., 1 + 6M)`` to mixture parameters, eqs. 18-22 with bias (61-62).

    ``bias`` may be a float or a tensor broadcastable to ``y.shape[:-1]`` (one bias per line).
    """
    m = (y.shape[-1] - 1) // 6
    e_hat, pi_hat, mu, sigma_hat, rho_hat = torch.split(y, [1, m, 2 * m, 2 * m, m], dim=-1)
    if torch.is_tensor(bias):
        bias = bias.unsqueeze(-1)
    log_pi = torch.log_softmax(pi_hat * (1 + bias), dim=-1)  # eq. 61
    log_sigma = (sigma_hat.unflatten(-1, (m, 2)) - (bias.unsqueeze(-1) if torch.is_tensor(bias) else bias)).clamp(
        min=MIN_LOG_SIGMA
    )  # eq. 62
    return Mixture(
        eos_logit=e_hat.squeeze(-1),
        log_pi=log_pi,
        mu=mu.unflatten(-1, (m, 2)),
        log_sigma=log_sigma,
        rho=torch.tanh(rho_hat) * 0.9999,  # |rho| < 1 strictly
    )


def log_density(mix: Mixture, xy: torch.Tensor) -> torch.Tensor:
    """``log sum_j pi_j N(xy | mu_j, sigma_j, rho_j)``; xy ``(..., 2)`` -> ``(...)``, eqs. 24-25."""
    z = (xy.unsqueeze(-2) - mix.mu) * torch.exp(-mix.log_sigma)  # (..., M, 2)
    one_minus_rho2 = 1 - mix.rho**2
    zz = z[..., 0] ** 2 + z[..., 1] ** 2 - 2 * mix.rho * z[..., 0] * z[..., 1]
    log_n = -LOG_2PI - mix.log_sigma.sum(-1) - 0.5 * torch.log(one_minus_rho2) - zz / (2 * one_minus_rho2)
    return torch.logsumexp(mix.log_pi + log_n, dim=-1)


def nll(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-point negative log-likelihood (nats) of targets ``(..., 3)`` under outputs ``y``, eq. 26."""
    mix = split(y)
    eos_nll = F.binary_cross_entropy_with_logits(mix.eos_logit, target[..., 2], reduction="none")
    return eos_nll - log_density(mix, target[..., :2])


def mean_xy(y: torch.Tensor) -> torch.Tensor:
    """The mixture's expected offset ``(..., 2)``: what SSE is measured against."""
    mix = split(y)
    return (mix.log_pi.exp().unsqueeze(-1) * mix.mu).sum(-2)


def check_bias_and_seed(bias: float, seed: int) -> None:
    """Raise WritemateError unless ``bias`` (eqs. 61-62) is a finite number >= 0 and ``seed`` an integer >= 0."""
    if isinstance(bias, bool) or not isinstance(bias, (int, float, np.number)) or not math.isfinite(bias) or bias < 0:
        raise WritemateError(f"bias must be a number of 0 or more, not {bias!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise WritemateError(f"seed must be a whole number of 0 or more, not {seed!r}")


def sample(y: np.ndarray, bias: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One ``(dx, dy, eos)`` per row of network outputs ``y`` ``(B, 1 + 6M)`` -> float32 ``(B, 3)``,
    with bias (eqs. 61-62).

    The same distribution as :func:`split`, drawn in numpy: sampling runs one point at
    a time, and on a few rows numpy's operations cost a fraction of torch's (a step's
    sampling went from 0.29 ms to 0.12 ms).
    """
    y = np.asarray(y, dtype=np.float64)
    b, m = y.shape[0], (y.shape[1] - 1) // 6
    bias = np.broadcast_to(np.asarray(bias, dtype=np.float64), (b,))[:, None]  # (B, 1)
    pi_hat = y[:, 1 : 1 + m] * (1 + bias)  # eq. 61
    cdf = np.cumsum(np.exp(pi_hat - pi_hat.max(axis=1, keepdims=True)), axis=1)
    comp = np.minimum((cdf < rng.random((b, 1)) * cdf[:, -1:]).sum(axis=1), m - 1)  # (B,) by inverse CDF
    rows = np.arange(b)
    mu = y[:, 1 + m : 1 + 3 * m].reshape(b, m, 2)[rows, comp]  # (B, 2)
    log_sigma = np.maximum(y[:, 1 + 3 * m : 1 + 5 * m].reshape(b, m, 2)[rows, comp] - bias, MIN_LOG_SIGMA)  # eq. 62
    sigma = np.exp(log_sigma)
    rho = np.tanh(y[rows, 1 + 5 * m + comp]) * 0.9999  # as in split()
    n = rng.standard_normal((b, 2))
    dx = mu[:, 0] + sigma[:, 0] * n[:, 0]
    dy = mu[:, 1] + sigma[:, 1] * (rho * n[:, 0] + np.sqrt(1 - rho**2) * n[:, 1])
    eos = rng.random(b) < 1 / (1 + np.exp(-y[:, 0]))
    return np.stack([dx, dy, eos], axis=1).astype(np.float32)


def score_lines(
    model: nn.Module,
    outputs: Callable[[list[int]], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    lengths: list[int],
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Mean NLL in nats per line and SSE per point over whole lines (Graves 2013 Tables 2-3 protocol).

    ``outputs(idx)`` runs ``model`` over the lines ``idx`` with teacher forcing
    and returns network outputs (B, T, 1 + 6M), targets (B, T, 3) and a mask
    (B, T). SSE is the squared distance between the mixture's expected offset
    and the true one, in normalised units. ``progress`` is called with the
    number of lines done after each batch.
    """
    total_nll, total_sse, points = 0.0, 0.0, 0
    model.eval()
    with torch.inference_mode():
        for idx in batching.sorted_batches(lengths, batch_size):
            y, target, mask = outputs(idx)
            total_nll += float((nll(y, target) * mask).sum())
            err = ((mean_xy(y) - target[..., :2]) ** 2).sum(-1)  # (B, T)
            total_sse += float((err * mask).sum())
            points += int(mask.sum())
            if progress:
                progress(len(idx))
    return {"nll": total_nll / len(lengths), "sse": total_sse / max(points, 1), "lines": len(lengths), "points": points}
