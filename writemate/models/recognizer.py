"""Online handwriting recognition: a bidirectional LSTM with CTC over pen trajectories.

After Graves et al. (2009), "A Novel Connectionist System for Unconstrained
Handwriting Recognition": stacked bidirectional LSTM layers read a line of
ink as a sequence of feature vectors, and a softmax over the alphabet plus a
blank gives, for every frame, the probability of each character. Connectionist
temporal classification (CTC) sums over every alignment of the transcription
to the frames, so no segmentation is ever needed. The blank is index 0 of
:mod:`writemate.alphabet` (its "no character" index).

The input features (see docs/recognition.md for the measurements behind the
default):

* every line is scaled so that its height (the spread of y between the 5th
  and 95th percentile of its points) is 1, whatever the device's units;
* ``offsets``: the raw points' moves ``(dx, dy)`` and the end-of-stroke flag;
* ``resampled``: the same after resampling each stroke to one point every
  ``step`` line heights, which removes the speed of writing and the jitter of
  a resting pen;
* ``curve``: ``resampled`` plus the pen-up flag of each move, the point's
  height above or below the line's median, and the cosine and sine of the
  turning angle between consecutive moves (curvature).

Moves are divided by ``step`` so an in-stroke move of resampled ink has
length 1. After the first layer, ``subsample`` consecutive frames are joined
into one (a pyramid, as in Listen-Attend-Spell): the upper layers do a third
of the work, and in our measurements CTC learned several times faster with
about 4 output frames per character than with 6 or more (a character needs at
least one, its repeat one more).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from writemate import alphabet, decoding, ink, metrics
from writemate.data import batching
from writemate.train import LossResult

FAMILY = "recognizer"
FEATURES = {"offsets": 3, "resampled": 3, "curve": 7}  # name -> features per frame


@dataclass
class RecognizerConfig:
    features: str = "curve"
    step: float = 0.1  # resampling distance in line heights (also the unit of moves)
    hidden: int = 192  # LSTM cells per direction and layer
    layers: int = 3
    subsample: int = 3  # frames joined after the first layer (1: none)
    dropout: float = 0.2  # between layers and before the output

    def __post_init__(self):
        if self.features not in FEATURES:
            raise ValueError(f"unknown features {self.features!r}; choose from {', '.join(FEATURES)}")
        if self.step <= 0:
            raise ValueError("step must be positive")
        if self.hidden < 1 or self.layers < 1 or self.subsample < 1:
            raise ValueError("hidden, layers and subsample must be at least 1")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


# -- features -------------------------------------------------------------------


def line_height(strokes: list[np.ndarray]) -> float:
    """The spread of y between the 5th and 95th percentile of the points (the line's size).

    Of the estimates we measured on IAM-OnDB (this one, the 10-90 and 25-75
    spreads, the median stroke height), this one follows the width of a
    character most closely. A flat line (a dash) falls back to its width.
    """
    points = np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes])
    height = np.percentile(points[:, 1], 95) - np.percentile(points[:, 1], 5)
    if height <= 0:
        height = max(np.ptp(points[:, 0]), np.ptp(points[:, 1]))
    return float(height) if height > 0 else 1.0


@dataclass(frozen=True)
class Augmentation:
    """Random distortions of a training line, each drawn uniformly per line.

    ``slant``: shear x by up to this much of y (0.3 is about 17 degrees);
    ``stretch``: stretch x against y by up to exp(+-stretch);
    ``speed``: change the resampling step by up to exp(+-speed) (resampled features only).
    """

    slant: float = 0.0
    stretch: float = 0.0
    speed: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.slant or self.stretch or self.speed)

    def apply(self, strokes: list[np.ndarray], step: float, rng: np.random.Generator):
        shear = rng.uniform(-self.slant, self.slant)
        stretch = np.exp(rng.uniform(-self.stretch, self.stretch))
        step = step * np.exp(rng.uniform(-self.speed, self.speed))
        out = []
        for s in strokes:
            x, y = s[:, 0], s[:, 1]
            out.append(np.column_stack([(x + shear * y) * stretch, y]))
        return out, step


def features(
    strokes: list[np.ndarray],
    config: RecognizerConfig,
    augmentation: Augmentation | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One line of ink (absolute strokes in any units, y down) to network input ``(T, F)`` float32."""
    strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    strokes = [s for s in strokes if len(s)]
    if not strokes:
        raise ValueError("the ink has no points")
    origin, height = strokes[0][0], line_height(strokes)
    strokes = [(s - origin) / height for s in strokes]  # in line heights
    step = config.step
    if augmentation is not None and augmentation.active:
        strokes, step = augmentation.apply(strokes, step, rng or np.random.default_rng())
    if config.features != "offsets":
        strokes = ink.resample(strokes, step)
    offsets = ink.strokes_to_offsets(strokes).astype(np.float64)  # (T, 3): dx, dy, end of stroke
    moves, eos = offsets[:, :2] / config.step, offsets[:, 2]
    if config.features != "curve":
        return np.column_stack([moves, eos]).astype(np.float32)

    pen_up = np.zeros(len(offsets))
    pen_up[1:] = eos[:-1]  # the move into point t was made in the air
    ys = np.concatenate(strokes)[:, 1]
    height_above = np.median(ys) - ys  # (T,) in line heights, positive above the middle (y grows down)
    # Turning angle between the move into point t-1 and the move into point t, where both are pen-down moves.
    angle = np.arctan2(moves[:, 1], moves[:, 0])
    turn = np.zeros(len(offsets))
    turn[1:] = angle[1:] - angle[:-1]
    moving = np.hypot(moves[:, 0], moves[:, 1]) > 0
    valid = np.zeros(len(offsets), dtype=bool)
    valid[2:] = (pen_up[2:] == 0) & (pen_up[1:-1] == 0) & moving[2:] & moving[1:-1]
    cos_turn = np.where(valid, np.cos(turn), 1.0)  # no turn where it is undefined
    sin_turn = np.where(valid, np.sin(turn), 0.0)
    return np.column_stack([moves, eos, pen_up, height_above, cos_turn, sin_turn]).astype(np.float32)


def frames_after(length: int, config: RecognizerConfig) -> int:
    """Output frames of the network for ``length`` input frames."""
    return -(-length // config.subsample)


def frames_needed(labels: list[int]) -> int:
    """The fewest frames CTC can align ``labels`` to: one per label, plus a blank between repeats."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))


# -- the network -------------------------------------------------------------------


def reverse_valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first ``lengths[b]`` frames of each sequence of x (B, T, D); padding stays in place."""
    t = torch.arange(x.shape[1])
    index = torch.where(t[None] < lengths[:, None], lengths[:, None] - 1 - t[None], t[None])  # (B, T)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class BiLSTM(nn.Module):
    """One bidirectional LSTM layer over zero-padded sequences of different lengths.

    The backward LSTM reads each sequence reversed within its own length, so
    padding never reaches it: a line gives the same output alone as in any
    batch. (PyTorch's packed sequences do the same, but on the CPU their
    backward pass is about 100 times slower when the lengths differ.)
    """

    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.forward_lstm = nn.LSTM(inputs, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(inputs, hidden, batch_first=True)
        with torch.no_grad():  # forget-gate bias 1: keeps memory early in training
            for lstm in (self.forward_lstm, self.backward_lstm):
                lstm.bias_ih_l0[hidden : 2 * hidden].fill_(1.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T, I), lengths (B,) -> (B, T, 2H), zero after each sequence's end."""
        ahead, _ = self.forward_lstm(x)  # (B, T, H)
        behind, _ = self.backward_lstm(reverse_valid(x, lengths))  # (B, T, H), in reversed time
        y = torch.cat([ahead, reverse_valid(behind, lengths)], dim=-1)  # (B, T, 2H)
        mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]  # (B, T)
        return y * mask.unsqueeze(-1)


class RecognitionNetwork(nn.Module):
    def __init__(self, config: RecognizerConfig):
        super().__init__()
        self.config = config
        h, k = config.hidden, config.subsample
        sizes = [FEATURES[config.features]] + [2 * h * (k if n == 0 else 1) for n in range(config.layers - 1)]
        self.layers = nn.ModuleList(BiLSTM(size, h) for size in sizes)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(2 * h, alphabet.SIZE)  # blank (index 0) and every character

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, F) zero-padded features, lengths (B,) -> log-probabilities (B, T', C) and lengths (B,)."""
        lengths = lengths.cpu().long()
        for n, layer in enumerate(self.layers):
            if n:
                x = self.dropout(x)
            x = layer(x, lengths)  # (B, T, 2H)
            if n == 0 and self.config.subsample > 1:
                x, lengths = join_frames(x, lengths, self.config.subsample)  # (B, T / k, 2kH)
        return F.log_softmax(self.output(self.dropout(x)), dim=-1), lengths  # (B, T', C)


def join_frames(x: torch.Tensor, lengths: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate every ``k`` consecutive frames: (B, T, D) -> (B, ceil(T / k), k D); padding is zeros."""
    b, t, d = x.shape
    x = F.pad(x, (0, 0, 0, (-t) % k))  # (B, k ceil(T / k), D)
    return x.reshape(b, -1, k * d), (lengths + k - 1) // k


def batch_tensors(sequences: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of several lines as x (B, T_max, F) zero-padded and lengths (B,)."""
    x, mask = batching.pad(sequences)
    return x, mask.sum(1)


def ctc_nats(log_probs: torch.Tensor, lengths: torch.Tensor, labels: list[list[int]]) -> torch.Tensor:
    """Summed CTC negative log-likelihood of the batch's transcriptions (a scalar).

    An impossible alignment (fewer frames than :func:`frames_needed`) counts 0
    instead of infinity; training data is filtered so that none occurs.
    """
    targets = torch.tensor([c for line in labels for c in line], dtype=torch.long)
    target_lengths = torch.tensor([len(line) for line in labels], dtype=torch.long)
    return F.ctc_loss(
        log_probs.float().transpose(0, 1),  # (T', B, C), as ctc_loss wants
        targets,
        lengths,
        target_lengths,
        blank=alphabet.PAD,
        reduction="sum",
        zero_infinity=True,
    )


@torch.inference_mode()
def log_probs_of(
    model: RecognitionNetwork,
    sequences: list[np.ndarray],
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Per-frame log-probabilities ``(T'_i, C)`` of each line's features, in the order given.

    Lines are run in batches of similar length; ``progress`` is called with the
    number of lines done after each batch.
    """
    model.eval()
    out: list[np.ndarray | None] = [None] * len(sequences)
    for idx in batching.sorted_batches([len(s) for s in sequences], batch_size):
        x, lengths = batch_tensors([sequences[i] for i in idx])
        log_probs, out_lengths = model(x, lengths)
        for row, i in enumerate(idx):
            out[i] = log_probs[row, : out_lengths[row]].float().numpy()
        if progress:
            progress(len(idx))
    return out


def best_path_texts(log_probs: list[np.ndarray]) -> list[str]:
    return [alphabet.decode(decoding.best_path(lp)) for lp in log_probs]


# -- training ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """The lines of one training batch, and where its random augmentation comes from."""

    lines: list[int]
    seed: tuple[int, int, int]  # (training seed, epoch, batch number)


class RecognizerTask:
    """CTC training on (strokes, transcription) pairs; the metric is the validation CER (best path).

    ``train`` and ``val`` hold ``(strokes, text)`` pairs. Training lines too
    short for their transcription (:func:`frames_needed`) are left out and
    counted in ``skipped``.
    """

    metric = "val_cer"

    def __init__(
        self,
        model: RecognitionNetwork,
        train: list[tuple[list[np.ndarray], str]],
        val: list[tuple[list[np.ndarray], str]],
        augmentation: Augmentation | None = None,
        max_val_lines: int = 0,
    ):
        self.model, self.config = model, model.config
        self.augmentation = augmentation if augmentation is not None and augmentation.active else None
        # Augmentation may shorten a line by up to exp(-speed): keep a margin so CTC can still align it.
        margin = np.exp(self.augmentation.speed) if self.augmentation else 1.0
        self.train_strokes, self.train_labels, self._train_x = [], [], []
        self.skipped = 0
        for strokes, text in train:
            labels = alphabet.encode(text)
            x = features(strokes, self.config)  # (T, F), undistorted
            if not labels or frames_after(int(len(x) / margin), self.config) < frames_needed(labels):
                self.skipped += 1
                continue
            self.train_strokes.append(strokes)
            self.train_labels.append(labels)
            self._train_x.append(x)
        self.lengths = [len(x) for x in self._train_x]  # input frames of each training line
        val = val[:max_val_lines] if max_val_lines else val
        self.val_x = [features(strokes, self.config) for strokes, _ in val]
        self.val_texts = [text for _, text in val]
        self.val_labels = [alphabet.encode(text) for text in self.val_texts]
        self.train_sequences = len(self.train_labels)

    def batches(self, epoch: int, seed: int, batch_size: int) -> list[Batch]:
        lines = batching.bucketed_batches(self.lengths, batch_size, seed, epoch)
        return [Batch(idx, (seed, epoch, k)) for k, idx in enumerate(lines)]

    def inputs(self, batch: Batch) -> list[np.ndarray]:
        """The batch's features, freshly distorted when training with augmentation (seeded per batch)."""
        if self.augmentation is None:
            return [self._train_x[i] for i in batch.lines]
        rng = np.random.default_rng(batch.seed)
        return [features(self.train_strokes[i], self.config, self.augmentation, rng) for i in batch.lines]

    def loss(self, forward: Callable, batch: Batch) -> LossResult:
        x, lengths = batch_tensors(self.inputs(batch))
        log_probs, out_lengths = forward(x, lengths)
        labels = [self.train_labels[i] for i in batch.lines]
        nats = ctc_nats(log_probs, out_lengths, labels)
        return LossResult(nats=nats, units=sum(len(line) for line in labels), sequences=len(labels))

    def evaluate(self, model: RecognitionNetwork) -> dict[str, float]:
        log_probs = log_probs_of(model, self.val_x)
        rates = metrics.error_rates(self.val_texts, best_path_texts(log_probs))
        nats = 0.0
        for lp, labels in zip(log_probs, self.val_labels):
            frames = torch.from_numpy(lp).unsqueeze(0)  # (1, T', C)
            nats += float(ctc_nats(frames, torch.tensor([len(lp)]), [labels]))
        characters = sum(len(labels) for labels in self.val_labels)
        return {"val_cer": rates["cer"], "val_wer": rates["wer"], "val_loss": nats / max(characters, 1)}
