"""The handwriting prediction network of Graves (2013) section 4.

Unconditional: the network sees only the pen offsets so far and predicts the
next one. Three stacked LSTM layers (eqs. 7-11); skip connections run from
the input to every layer and from every layer to the mixture density output
(eqs. 1-5), which has 20 bivariate Gaussians plus end-of-stroke (eqs. 17-22,
see :mod:`writemate.models.mdn`).

No layer depends on anything but the layer below, so training runs every
layer as one fused ``nn.LSTM`` over the whole sequence; sampling runs one
point at a time through :func:`writemate.models.lstm.lstm_step`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from writemate.data import batching
from writemate.models import mdn
from writemate.models.lstm import State, run_lstm
from writemate.train import LossResult

FAMILY = "prediction"


@dataclass
class PredictionConfig:
    hidden: int = 400
    layers: int = 3
    mixtures: int = 20  # M, bivariate Gaussians of the output

    def __post_init__(self):
        if self.hidden < 1 or self.layers < 1 or self.mixtures < 1:
            raise ValueError("hidden, layers and mixtures must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)


class Prediction(nn.Module):
    def __init__(self, config: PredictionConfig):
        super().__init__()
        self.config = config
        h = config.hidden
        # Layer 1 reads the input; layer n > 1 reads the input (skip connection) and layer n-1, eq. 3.
        self.layers = nn.ModuleList(
            nn.LSTM(3 if n == 0 else 3 + h, h, batch_first=True) for n in range(config.layers)
        )
        self.output = nn.Linear(config.layers * h, mdn.output_size(config.mixtures))  # eq. 4, from every layer
        with torch.no_grad():
            for lstm in self.layers:  # forget-gate bias 1: keeps memory early in training
                lstm.bias_ih_l0[h : 2 * h].fill_(1.0)

    def initial_state(self, batch: int) -> list[State]:
        zeros = torch.zeros(1, batch, self.config.hidden)
        return [(zeros, zeros) for _ in self.layers]

    def forward(self, x: torch.Tensor, state: list[State] | None = None) -> tuple[torch.Tensor, list[State]]:
        """x (B, T, 3) normalised offsets -> mixture outputs (B, T, 1 + 6M) and the final state.

        The outputs at step t are the distribution of point t + 1. Passing the
        returned state back in continues the sequence exactly.
        """
        state = state or self.initial_state(x.shape[0])
        hidden, new_state = [], []
        below = None
        for lstm, hc in zip(self.layers, state):
            inputs = x if below is None else torch.cat([x, below], dim=-1)  # (B, T, 3) or (B, T, 3 + H)
            below, hc = run_lstm(lstm, inputs, hc)  # (B, T, H)
            hidden.append(below)
            new_state.append(hc)
        return self.output(torch.cat(hidden, dim=-1)), new_state  # (B, T, 1 + 6M)


def weights_from_synthesis(synthesis: dict[str, torch.Tensor], alphabet_size: int) -> dict[str, torch.Tensor]:
    """A prediction network's weights from a trained synthesis network's (same size), without its window.

    The synthesis network (section 5) is this network plus a window: each
    layer also reads the window's output w (eqs. 52-53). Dropping the window
    and every weight that reads w leaves a prediction network that already
    knows how pen strokes go on, a far better start than random weights
    (docs/prediction.md).
    """
    a = alphabet_size
    hidden = synthesis["l1_input.weight"].shape[0] // 4
    recurrent = synthesis["l1_recurrent.weight"]  # (4H, A + H): [w_{t-1}, h_{t-1}]
    out = {
        "layers.0.weight_ih_l0": synthesis["l1_input.weight"],
        "layers.0.weight_hh_l0": recurrent[:, a:],
        "layers.0.bias_ih_l0": synthesis["l1_input.bias"],
        "layers.0.bias_hh_l0": torch.zeros(4 * hidden, dtype=recurrent.dtype),
        "output.weight": synthesis["output.weight"],
        "output.bias": synthesis["output.bias"],
    }
    n = 0
    while f"upper.{n}.weight_ih_l0" in synthesis:
        weight_ih = synthesis[f"upper.{n}.weight_ih_l0"]  # (4H, 3 + A + H): [x, w, h below]
        out[f"layers.{n + 1}.weight_ih_l0"] = torch.cat([weight_ih[:, :3], weight_ih[:, 3 + a :]], dim=1)
        for name in ("weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            out[f"layers.{n + 1}.{name}"] = synthesis[f"upper.{n}.{name}"]
        n += 1
    return out


# -- training and evaluation ---------------------------------------------------


def evaluate_lines(
    model: Prediction,
    offsets: list[np.ndarray],
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Mean NLL in nats per line and SSE per point of normalised offsets (Graves Table 2 protocol)."""

    def outputs(idx: list[int]):
        x, target, mask = batching.teacher_forcing([offsets[i] for i in idx])
        return model(x)[0], target, mask

    return mdn.score_lines(model, outputs, [len(o) for o in offsets], batch_size, progress)


class PredictionTask:
    """Teacher-forced training on normalised offsets: inputs points 0..T-2, targets 1..T-1."""

    metric = "val_nll"

    def __init__(self, model: Prediction, train: list[np.ndarray], val: list[np.ndarray], max_val_lines: int = 0):
        self.model = model
        self.train_x = train
        self.val_x = val[:max_val_lines] if max_val_lines else val
        self.train_sequences = len(train)
        self._lengths = [len(o) for o in train]

    def batches(self, epoch: int, seed: int, batch_size: int) -> list[list[int]]:
        return batching.bucketed_batches(self._lengths, batch_size, seed, epoch)

    def loss(self, forward, idx: list[int]) -> LossResult:
        x, target, mask = batching.teacher_forcing([self.train_x[i] for i in idx])
        y, _ = forward(x)
        nats = (mdn.nll(y.float(), target) * mask).sum()  # eq. 26 summed over the batch's points
        return LossResult(nats=nats, units=int(mask.sum()), sequences=len(idx))

    def evaluate(self, model: Prediction) -> dict[str, float]:
        result = evaluate_lines(model, self.val_x)
        return {"val_nll": result["nll"], "val_sse": result["sse"]}


# -- sampling --------------------------------------------------------------------


@torch.inference_mode()
def sample(
    model: Prediction,
    steps: int,
    lines: int = 1,
    bias: float = 0.0,
    seed: int = 0,
    prime: np.ndarray | None = None,
) -> list[np.ndarray]:
    """``lines`` free-running lines of ``steps`` new points each, sampled as one batch.

    Each line is normalised offsets (steps + 1, 3) whose row 0 is (0, 0, 0).
    With ``prime`` (normalised offsets (P, 3)), every line first reads the
    primed ink (teacher forcing) and continues it: row 1 is then the move
    from the prime's last point. ``bias`` sharpens the mixture (eqs. 61-62).
    """
    model.eval()
    rng = np.random.default_rng(seed)
    state = model.initial_state(lines)
    x = torch.zeros(lines, 1, 3)
    if prime is not None and len(prime) > 1:
        primed = torch.as_tensor(prime, dtype=torch.float32).unsqueeze(0).expand(lines, -1, -1)  # (B, P, 3)
        _, state = model(primed[:, :-1], state)
        x = primed[:, -1:].clone()
    points = [np.zeros((lines, 3), dtype=np.float32)]
    for _ in range(steps):
        y, state = model(x, state)  # (B, 1, 1 + 6M)
        point = mdn.sample(y[:, 0].numpy(), bias, rng)  # (B, 3)
        points.append(point)
        x = torch.from_numpy(point).unsqueeze(1)
    out = np.stack(points, axis=1)  # (B, steps + 1, 3)
    return list(out)
