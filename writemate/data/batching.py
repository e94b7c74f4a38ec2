"""Batches of variable-length sequences with little padding, in a reproducible order."""

from __future__ import annotations

import numpy as np
import torch


def bucketed_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, pool: int = 50) -> list[list[int]]:
    """Index batches for one epoch, a pure function of ``(seed, epoch)``.

    The data is shuffled, cut into pools of ``pool`` batches, each pool sorted
    by length (so batches hold sequences of similar length), and the batches
    are shuffled again.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = order[start : start + batch_size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Batches of similar length in a fixed order (for evaluation)."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def pad(sequences: list[np.ndarray], dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(T_i, ...)`` arrays into ``(B, T_max, ...)`` zeros-padded, with a ``(B, T_max)`` bool mask."""
    longest = max(len(s) for s in sequences)
    first = np.asarray(sequences[0])
    out = np.zeros((len(sequences), longest, *first.shape[1:]), dtype=first.dtype)
    mask = np.zeros((len(sequences), longest), dtype=bool)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = s
        mask[i, : len(s)] = True
    return torch.as_tensor(out, dtype=dtype), torch.as_tensor(mask)


def teacher_forcing(offsets: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch for teacher forcing: inputs are points 0..T-2, targets points 1..T-1.

    Returns x (B, T-1, 3), target (B, T-1, 3), mask (B, T-1).
    """
    seq, mask = pad(offsets)  # (B, T, 3), (B, T)
    return seq[:, :-1], seq[:, 1:], mask[:, 1:]
