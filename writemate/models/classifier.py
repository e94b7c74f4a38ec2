"""Recurrent sequence classifiers: RNN (tanh), LSTM or GRU, 1 to 3 layers.

A sequence of feature vectors (pen points, MFCC frames, ...) goes through a
stack of recurrent layers, optionally bidirectional; the final hidden state
of the top layer (both directions) or the mean of its outputs over time
feeds a linear layer with one output per class. Sequences of different
lengths are packed (``pack_padded_sequence``), so padding never reaches the
network or the loss. Features are standardised inside the model with the
training set's mean and deviation (buffers saved with the weights).

Also here: the :class:`ClassifierTask` for the generic trainer, evaluation
(accuracy, per-class precision and recall, confusion matrix as text and
PNG), training from a data folder with a split that keeps people apart,
the experiment runner (cell types times depths), and :class:`Classifier`,
the ready model behind ``writemate.load``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from writemate import checkpoint
from writemate.data import batching, sequences
from writemate.data.sequences import FeatureConfig, SequenceSet
from writemate.errors import WritemateError
from writemate.train import LossResult, TrainConfig, Trainer

FAMILY = "classifier"
CELLS = ("rnn", "lstm", "gru")
POOLING = ("last", "mean")
SELECT_BY = ("error", "nll")


class ClassifierError(WritemateError):
    """A classifier cannot be built, trained or applied as asked."""


@dataclass
class ClassifierConfig:
    input_size: int
    classes: list[str]
    cell: str = "gru"  # rnn (tanh) | lstm | gru
    hidden: int = 128
    layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.0  # between recurrent layers and before the output layer
    pooling: str = "last"  # last: final hidden states; mean: mean of the top layer's outputs
    # SpecAugment-style masking while training (Park et al. 2019): in each sequence one span
    # of up to mask_time of its steps and one band of up to mask_features features are set
    # to the training mean (0 after standardising).
    mask_time: float = 0.0
    mask_features: int = 0
    # Members trained alike with seeds seed .. seed + ensemble - 1; their log-probabilities are averaged.
    ensemble: int = 1

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ClassifierError(f"unknown cell {self.cell!r}; choose from {', '.join(CELLS)}")
        if self.pooling not in POOLING:
            raise ClassifierError(f"unknown pooling {self.pooling!r}; choose from {', '.join(POOLING)}")
        if not 1 <= self.layers <= 3:
            raise ClassifierError("layers must be 1, 2 or 3")
        if self.hidden < 1 or self.input_size < 1 or not 0 <= self.dropout < 1:
            raise ClassifierError("hidden and input size must be positive, dropout in [0, 1)")
        if not 0 <= self.mask_time < 1 or not 0 <= self.mask_features < self.input_size:
            raise ClassifierError("mask_time must be in [0, 1) and mask_features below the number of features")
        if not 1 <= self.ensemble <= 9:
            raise ClassifierError("ensemble must be 1 to 9 members")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ClassifierError(f"need at least two distinct classes, got {self.classes}")

    def to_dict(self) -> dict:
        return asdict(self)


class SequenceClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[config.cell]
        self.rnn = rnn(
            config.input_size,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        directions = 2 if config.bidirectional else 1
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(directions * config.hidden, len(config.classes))
        self.register_buffer("feature_mean", torch.zeros(config.input_size))
        self.register_buffer("feature_std", torch.ones(config.input_size))
        if config.cell == "lstm":  # forget-gate bias 1: remembers early in training
            with torch.no_grad():
                for name, p in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):
                        p[config.hidden : 2 * config.hidden].fill_(1.0)

    def set_normalisation(self, data: list[np.ndarray]) -> None:
        """Standardise inputs with the mean and deviation of every frame of ``data``."""
        frames = np.concatenate(data).astype(np.float64)  # (sum T, F)
        std = frames.std(axis=0)
        with torch.no_grad():
            self.feature_mean.copy_(torch.as_tensor(frames.mean(axis=0)))
            self.feature_std.copy_(torch.as_tensor(np.where(std > 1e-6, std, 1.0)))

    def mask(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Training-time masking of standardised x (B, T, F): a span of steps inside each
        sequence and a band of features, random widths from 0 up to the configured ones."""
        b, t, f = x.shape
        if self.config.mask_time > 0:
            width = torch.floor(torch.rand(b) * (self.config.mask_time * lengths + 1))  # (B,)
            start = torch.floor(torch.rand(b) * (lengths - width + 1))  # (B,), span ends by the length
            steps = torch.arange(t)
            hide = (steps >= start[:, None]) & (steps < (start + width)[:, None])  # (B, T)
            x = x.masked_fill(hide.unsqueeze(-1), 0.0)
        if self.config.mask_features > 0:
            width = torch.randint(0, self.config.mask_features + 1, (b,)).float()  # (B,)
            start = torch.floor(torch.rand(b) * (f - width + 1))
            features = torch.arange(f)
            hide = (features >= start[:, None]) & (features < (start + width)[:, None])  # (B, F)
            x = x.masked_fill(hide.unsqueeze(1), 0.0)
        return x

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T, F) zero-padded; lengths (B,) of the real steps. Returns logits (B, C)."""
        x = (x - self.feature_mean) / self.feature_std
        if self.training:
            x = self.mask(x, lengths)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.rnn(packed)
        if self.config.pooling == "last":
            h = h[0] if isinstance(h, tuple) else h  # (layers * directions, B, H), in batch order
            directions = 2 if self.config.bidirectional else 1
            summary = torch.cat(list(h[-directions:]), dim=-1)  # (B, directions * H)
        else:
            padded, _ = pad_packed_sequence(out, batch_first=True)  # (B, T, directions * H), zeros past the end
            summary = padded.sum(dim=1) / lengths.to(padded.dtype).unsqueeze(1)
        return self.output(self.dropout(summary))  # (B, C)


class Ensemble(nn.Module):
    """Members of one configuration; the output is their mean log-probability (B, C),
    whose softmax is the normalised geometric mean of the members' probabilities."""

    def __init__(self, members: list[SequenceClassifier]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.stack([F.log_softmax(m(x, lengths), dim=-1) for m in self.members]).mean(dim=0)


def build_model(config: ClassifierConfig) -> nn.Module:
    """The network of ``config``: one classifier, or an ensemble of ``config.ensemble``."""
    if config.ensemble == 1:
        return SequenceClassifier(config)
    return Ensemble([SequenceClassifier(config) for _ in range(config.ensemble)])


def collate(seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T_max, F) zero-padded batch and (B,) lengths."""
    x, mask = batching.pad(seqs)
    return x, mask.sum(dim=1)


@torch.inference_mode()
def predict_probabilities(model: SequenceClassifier, data: list[np.ndarray], batch_size: int = 1024) -> np.ndarray:
    """Class probabilities (N, C), in the order of ``data``."""
    model.eval()
    out = np.zeros((len(data), len(model.config.classes)), dtype=np.float32)
    for idx in batching.sorted_batches([len(s) for s in data], batch_size):
        x, lengths = collate([data[i] for i in idx])
        out[idx] = torch.softmax(model(x, lengths).float(), dim=-1).numpy()
    return out


# -- training ------------------------------------------------------------------------


def teacher_targets(
    folder: Path, features: FeatureConfig, classes: list[str], test_groups: list[str], temperature: float, data: list[np.ndarray]
) -> np.ndarray:
    """The probabilities (N, C) of the trained model in ``folder`` on ``data``, softened:
    softmax(log p / temperature). The teacher must know the same classes, read its input
    alike, and never have seen the test people (or the test would leak into the student)."""
    if temperature <= 0:
        raise ClassifierError("the distillation temperature must be positive")
    teacher = Classifier.from_folder(folder)  # refuses other model families
    if teacher.classes != classes:
        raise ClassifierError(f"{folder}: the teacher knows classes {teacher.classes}, the data has {classes}")
    if _reading({"model": {}, "features": teacher.features.to_dict()}) != _reading({"model": {}, "features": features.to_dict()}):
        raise ClassifierError(f"{folder}: the teacher reads its input with other feature settings")
    leaked = sorted(teacher.seen_groups & set(test_groups))
    if leaked:
        raise ClassifierError(f"{folder}: the teacher was trained on test people ({', '.join(leaked)}); choose one trained without them")
    log_p = np.log(np.clip(predict_probabilities(teacher.model, data), 1e-12, None)) / temperature
    soft = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    return (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)


class ClassifierTask:
    """Cross-entropy of each sequence's label.

    ``select_by`` names the validation metric that picks the saved model: ``error``
    (the share misclassified), or ``nll`` (mean negative log-probability of the true
    label; smoother, for validation sets the model soon classifies without error).
    """

    def __init__(
        self,
        model: SequenceClassifier,
        train: SequenceSet,
        val: SequenceSet,
        select_by: str = "error",
        soft: np.ndarray | None = None,
        temperature: float = 1.0,
    ):
        """``soft``, for distillation: a teacher's softened probabilities (N, C) of the training samples."""
        if select_by not in SELECT_BY:
            raise ClassifierError(f"unknown selection metric {select_by!r}; choose from {', '.join(SELECT_BY)}")
        self.model = model
        self.metric = f"val_{select_by}"
        index = {c: i for i, c in enumerate(model.config.classes)}
        self.train_x = train.sequences
        self.train_y = [index[label] for label in train.labels]
        self.val_x = val.sequences
        self.val_y = np.array([index[label] for label in val.labels])
        self.train_sequences = len(self.train_x)
        self._lengths = [len(s) for s in self.train_x]
        self.soft = torch.as_tensor(soft) if soft is not None else None
        self.temperature = temperature

    def batches(self, epoch: int, seed: int, batch_size: int) -> list[list[int]]:
        return batching.bucketed_batches(self._lengths, batch_size, seed, epoch)

    def loss(self, forward, idx: list[int]) -> LossResult:
        x, lengths = collate([self.train_x[i] for i in idx])
        logits = forward(x, lengths).float()  # (B, C)
        target = torch.as_tensor([self.train_y[i] for i in idx])
        nats = F.cross_entropy(logits, target, reduction="sum")
        if self.soft is not None:  # Hinton et al. 2015: half the labels, half the teacher's softened view
            t = self.temperature
            soft = -(self.soft[idx] * F.log_softmax(logits / t, dim=-1)).sum()
            nats = 0.5 * nats + 0.5 * t * t * soft  # t^2 keeps the soft part's gradients at the hard part's scale
        return LossResult(nats=nats, units=len(idx), sequences=len(idx))

    def evaluate(self, model: SequenceClassifier) -> dict[str, float]:
        probs = predict_probabilities(model, self.val_x)
        error = float((probs.argmax(axis=1) != self.val_y).mean())
        nll = float(-np.log(probs[np.arange(len(self.val_y)), self.val_y] + 1e-12).mean())
        return {"val_error": error, "val_nll": nll}


# -- evaluation ------------------------------------------------------------------------


def report(true: list[str], predicted: list[str], classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/support and the confusion matrix (rows: true, columns: predicted).

    Labels outside ``classes`` (classes the model does not know) count as errors and
    are listed under ``unknown_labels``.
    """
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    unknown: dict[str, int] = {}
    for t, p in zip(true, predicted):
        if t in index:
            confusion[index[t], index[p]] += 1
        else:
            unknown[t] = unknown.get(t, 0) + 1
    n = len(true)
    per_class = {}
    for i, c in enumerate(classes):
        predicted_c, support = int(confusion[:, i].sum()), int(confusion[i].sum())
        per_class[c] = {
            "precision": float(confusion[i, i] / predicted_c) if predicted_c else 0.0,
            "recall": float(confusion[i, i] / support) if support else 0.0,
            "support": support,
        }
    return {
        "accuracy": float(np.trace(confusion) / n) if n else 0.0,
        "samples": n,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "classes": list(classes),
        "unknown_labels": unknown,
    }


def confusion_text(result: dict) -> str:
    """The confusion matrix as an aligned text table (rows: true label, columns: predicted)."""
    classes, matrix = result["classes"], result["confusion"]
    first = max(len("true\\pred"), *(len(c) for c in classes)) + 1
    width = max(*(len(c) for c in classes), *(len(str(v)) for row in matrix for v in row)) + 1
    lines = ["true\\pred".ljust(first) + "".join(c.rjust(width) for c in classes)]
    lines += [c.ljust(first) + "".join(str(v).rjust(width) for v in row) for c, row in zip(classes, matrix)]
    return "\n".join(lines)


def report_text(result: dict) -> str:
    """Accuracy, a per-class table and the confusion matrix, for people."""
    lines = [
        f"accuracy {result['accuracy']:.4f} on {result['samples']} samples",
        "",
        "class  precision  recall  support",
    ]
    for c, m in result["per_class"].items():
        lines.append(f"{c:<6} {m['precision']:>9.4f} {m['recall']:>7.4f} {m['support']:>8}")
    if result["unknown_labels"]:
        lines.append(f"labels the model does not know (counted as errors): {result['unknown_labels']}")
    return "\n".join(lines + ["", confusion_text(result)])


def save_confusion_png(result: dict, path: Path, title: str = "") -> None:
    """The confusion matrix as a heat map with counts, rows normalised for colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = result["classes"]
    matrix = np.asarray(result["confusion"], dtype=np.float64)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {result['accuracy']:.2%} ({result['samples']} samples)")
    if len(classes) <= 30:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if matrix[i, j]:
                    color = "white" if share[i, j] > 0.5 else "black"
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(result: dict, folder: Path, name: str = "test") -> None:
    """``{name}_metrics.json``, ``{name}_confusion.txt`` and ``{name}_confusion.png`` in ``folder``."""
    folder = Path(folder)
    checkpoint.atomic_write_json(folder / f"{name}_metrics.json", result)
    checkpoint.atomic_write_bytes(folder / f"{name}_confusion.txt", (report_text(result) + "\n").encode())
    save_confusion_png(result, folder / f"{name}_confusion.png")


# -- the ready model --------------------------------------------------------------------


@dataclass
class Prediction:
    source: str  # the file (and sample id) the input came from, or its position
    label: str
    probability: float
    true_label: str = ""  # the label the file carries, if any


class Classifier:
    """A trained classifier with its feature extraction: ``writemate.load("unipen-digits")``."""

    def __init__(self, model: SequenceClassifier, features: FeatureConfig, meta: dict | None = None):
        self.model = model.eval()
        self.features = features
        self.meta = meta or {}

    @property
    def classes(self) -> list[str]:
        return self.model.config.classes

    @property
    def seen_groups(self) -> set[str]:
        """Writers or speakers of the training and validation data (empty if it was split by sample)."""
        return set(self.meta.get("seen_groups", []))

    @classmethod
    def from_folder(cls, folder: Path) -> "Classifier":
        meta = checkpoint.read_config(folder)
        if meta.get("family") != FAMILY:
            raise checkpoint.CheckpointError(f"{folder}: not a classifier (family {meta.get('family')!r})")
        config = meta["config"]
        model = build_model(ClassifierConfig(**config["model"]))
        checkpoint.load_weights(model, folder)
        return cls(model, FeatureConfig.from_dict(config["features"]), config)

    def predict(self, data: list[np.ndarray], batch_size: int = 1024) -> list[tuple[str, float]]:
        """``(label, probability)`` for each feature sequence ``(T, F)``."""
        for s in data:
            if np.ndim(s) != 2 or np.shape(s)[1] != self.model.config.input_size or len(s) == 0:
                raise ClassifierError(
                    f"expected (T, {self.model.config.input_size}) sequences, got shape {np.shape(s)}"
                )
        probs = predict_probabilities(self.model, [np.asarray(s, dtype=np.float32) for s in data], batch_size)
        best = probs.argmax(axis=1)
        return [(self.classes[k], float(probs[i, k])) for i, k in enumerate(best)]

    def predict_ink(self, samples: list[list[np.ndarray]]) -> list[tuple[str, float]]:
        """``(label, probability)`` for each sample given as strokes of absolute ``(x, y)`` points."""
        if self.features.kind != "ink":
            raise ClassifierError(f"this model reads {self.features.kind}, not ink")
        return self.predict([sequences.ink_features(s, self.features.ink) for s in samples])

    def read(self, paths: list[Path], labelled: bool = False) -> SequenceSet:
        """Features of every sample in the files or folders ``paths``, as this model reads them."""
        return sequences.load_folder(list(paths), self.features, labelled)[0]

    def predict_files(self, paths: list[Path]) -> list[Prediction]:
        data = self.read(paths)
        results = self.predict(data.sequences)
        return [Prediction(src, label, p, true) for src, (label, p), true in zip(data.sources, results, data.labels)]

    def evaluate(self, data: SequenceSet) -> dict:
        predicted = [label for label, _ in self.predict(data.sequences)]
        return report(data.labels, predicted, self.classes)


# -- from a data folder to a trained model ------------------------------------------------


@dataclass
class SplitConfig:
    by: str = "writer"  # writer | speaker: whole people held out; sample: random samples
    seed: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    test_groups: list[str] = field(default_factory=list)
    val_groups: list[str] = field(default_factory=list)
    val_by: str = "group"  # group: validation people are held out too; sample: drawn from the training people
    select_by: str = "error"  # validation metric that picks the saved model: error or nll

    def to_dict(self) -> dict:
        return asdict(self)


SPLITS = ("writer", "speaker", "sample")


def split_data(data: SequenceSet, features: FeatureConfig, split: SplitConfig) -> sequences.Split:
    """Check that the split suits the data (writers for ink, speakers for audio) and make it."""
    if split.by not in SPLITS:
        raise ClassifierError(f"unknown split {split.by!r}; choose from {', '.join(SPLITS)}")
    if split.by == "writer" and features.kind != "ink":
        raise ClassifierError(f"{features.kind} data has no writers; split by speaker (audio) or sample")
    if split.by == "speaker" and features.kind != "audio":
        raise ClassifierError(f"{features.kind} data has no speakers; split by writer (ink) or sample")
    by_group = split.by != "sample"
    return sequences.make_split(
        data.groups,
        by_group,
        split.seed,
        split.test_fraction,
        split.val_fraction,
        split.test_groups or None,
        split.val_groups or None,
        val_by_group=by_group and split.val_by == "group",
    )


@dataclass
class TrainResult:
    state: object  # the trainer's final TrainState
    test: dict  # report() on the test split (empty if there is none)
    best_folder: Path


def train_classifier(
    data: SequenceSet,
    features: FeatureConfig,
    model_config: ClassifierConfig,
    split: SplitConfig,
    train_config: TrainConfig,
    run_dir: Path,
    progress: Callable[[dict], None] | None = None,
    test_data: SequenceSet | None = None,
    command: str = "",
    teacher: Path | None = None,
    temperature: float = 2.0,
) -> TrainResult:
    """Split, train with the generic trainer, then test the best model and write its report.

    With ``teacher`` (a trained model folder, often an ensemble), the network learns from the
    teacher's softened outputs at ``temperature`` as well as from the labels (distillation).

    ``test_data``, if given, is the test set (the split then only takes validation data).
    The run folder gets ``best/`` (the model, with a ``MODEL_CARD.md``), ``test_metrics.json``,
    ``test_confusion.txt`` and ``test_confusion.png``.
    """
    parts = split_data(data, features, replace(split, test_fraction=0.0) if test_data is not None else split)
    train, val = data.subset(parts.train), data.subset(parts.val)
    test = test_data if test_data is not None else data.subset(parts.test)
    if features.kind == "audio" and features.audio.train_copies:  # after the split: copies stay in training
        train = sequences.with_audio_copies(train, features.audio, train_config.seed)
    if not len(val):
        raise ClassifierError("the split leaves no validation samples; raise --val-fraction or name --val-groups")
    config = {
        "model": model_config.to_dict(),
        "features": features.to_dict(),
        "split": split.to_dict(),
        "seen_groups": sorted(set(train.groups) | set(val.groups)) if split.by != "sample" else [],
        "test_groups": parts.test_groups,
        "data_samples": {"train": len(train), "val": len(val), "test": len(test)},
    }
    soft = None
    if teacher is not None:
        people = sorted(set(test.groups)) if split.by != "sample" else []
        soft = teacher_targets(Path(teacher), features, model_config.classes, people, temperature, train.sequences)
        config["distilled_from"] = {"folder": str(teacher), "temperature": temperature}
    best = Path(run_dir) / "best"
    learn = dict(soft=soft, temperature=temperature, progress=progress)
    if model_config.ensemble == 1:
        state = _train_member(model_config, train, val, split, train_config, Path(run_dir), config, **learn)
    else:  # each member a run of its own (resumable), then one model folder holding them all
        single = replace(model_config, ensemble=1)
        members, seconds = [], 0.0
        for k in range(model_config.ensemble):
            member_dir = Path(run_dir) / f"member-{k + 1}"
            state = _train_member(
                single,
                train,
                val,
                split,
                replace(train_config, seed=train_config.seed + k),
                member_dir,
                {**config, "model": single.to_dict()},
                **learn,
            )
            seconds += state.train_seconds
            members.append(Classifier.from_folder(member_dir / "best").model)
        ensemble = Ensemble(members)
        state = replace(state, train_seconds=seconds)
        metrics = ClassifierTask(ensemble, train, val, split.select_by).evaluate(ensemble)
        checkpoint.save_model(best, ensemble, FAMILY, config, train_seconds=round(seconds), metrics=metrics)
    result = {}
    if len(test):
        result = Classifier.from_folder(best).evaluate(test)
        write_report(result, Path(run_dir))
    card = model_card(checkpoint.read_config(best), result, command)
    checkpoint.atomic_write_bytes(best / "MODEL_CARD.md", card.encode())
    return TrainResult(state, result, best)


# Settings that only shape training; models that differ in them still read inputs alike.
_TRAINING_ONLY = {"model": ("mask_time", "mask_features", "ensemble"), "audio": ("train_copies", "max_warp", "max_tilt_db")}


def _reading(config: dict) -> dict:
    """The part of a model folder's config that must agree for models to be combined."""
    model = {k: v for k, v in config["model"].items() if k not in _TRAINING_ONLY["model"]}
    features = dict(config["features"])
    features["audio"] = {k: v for k, v in features["audio"].items() if k not in _TRAINING_ONLY["audio"]}
    return {"model": model, "features": features}


def combine(folders: list[Path], out: Path) -> Path:
    """One ensemble from the trained classifiers in ``folders`` (each one network or an ensemble).

    The networks must have the same shape, classes and input features; they may have
    been trained differently (augmentation, masking, seeds). ``out`` gets the model
    and a MODEL_CARD.md listing where each member came from; it is written only when
    every source has been read, and never over an existing model.
    """
    if len(folders) < 2:
        raise ClassifierError("name at least two models to combine")
    out = Path(out)
    if (out / checkpoint.CONFIG).exists():
        raise ClassifierError(f"{out}: already holds a model; choose a new folder")
    metas = [checkpoint.read_config(f) for f in folders]
    for folder, meta in zip(folders, metas):
        if meta.get("family") != FAMILY:
            raise ClassifierError(f"{folder}: not a classifier (family {meta.get('family')!r})")
        if _reading(meta["config"]) != _reading(metas[0]["config"]):
            raise ClassifierError(
                f"{folder}: reads its input differently from {folders[0]} (network shape, classes or features); "
                "only models of the same shape on the same features can be combined"
            )
    members = []
    for folder in folders:
        model = Classifier.from_folder(folder).model
        members += list(model.members) if isinstance(model, Ensemble) else [model]
    if len(members) > 9:
        raise ClassifierError(f"{len(members)} networks in all; an ensemble holds at most 9")
    first = metas[0]["config"]
    config = {
        **first,
        "model": {**first["model"], "ensemble": len(members)},
        "data_samples": {},  # each source trained on its own copies; see combined_from
        "seen_groups": sorted(set().union(*(m["config"].get("seen_groups", []) for m in metas))),
        "test_groups": sorted(set.intersection(*(set(m["config"].get("test_groups", [])) for m in metas))),
        "combined_from": [
            {"folder": str(f), "networks": m["config"]["model"].get("ensemble", 1), "config": m["config"]}
            for f, m in zip(folders, metas)
        ],
    }
    seconds = sum(m.get("train_seconds", 0) for m in metas)
    checkpoint.save_model(out, Ensemble(members), FAMILY, config, train_seconds=seconds)
    card = model_card(checkpoint.read_config(out), {})
    checkpoint.atomic_write_bytes(out / "MODEL_CARD.md", card.encode())
    return out


def _train_member(
    model_config: ClassifierConfig,
    train: SequenceSet,
    val: SequenceSet,
    split: SplitConfig,
    train_config: TrainConfig,
    run_dir: Path,
    config: dict,
    soft: np.ndarray | None,
    temperature: float,
    progress: Callable[[dict], None] | None,
):
    """Train one network with the generic trainer into ``run_dir`` (best model in ``run_dir/best``)."""
    torch.manual_seed(train_config.seed)
    model = SequenceClassifier(model_config)
    model.set_normalisation(train.sequences)
    task = ClassifierTask(model, train, val, split.select_by, soft, temperature)
    return Trainer(task, train_config, run_dir, family=FAMILY, model_config=config).fit(progress)


def model_card(meta: dict, test: dict, command: str = "") -> str:
    """A model card in markdown from a model folder's ``config.json`` and its test report."""
    config = meta["config"]
    model, features, split = config["model"], config["features"], config["split"]
    kind = features["kind"]
    if kind == "ink":
        ink = features["ink"]
        used = [name for name in ("position", "offsets", "pen") if ink[name]]
        feature_text = (
            f"pen points resampled every {ink['step']} (of the larger side of the bounding box): {', '.join(used)}"
        )
    elif kind == "audio":
        a = features["audio"]
        feature_text = (
            f"{a['n_mfcc']} MFCC{' + deltas + delta-deltas' if a['deltas'] else ''} at {a['sample_rate']} Hz, "
            f"{a['frame_ms']} ms frames every {a['hop_ms']} ms{', per-recording CMVN' if a['cmvn'] else ''}"
            f"{'' if a.get('c0') else ', static c0 (log energy) left out'}"
            f"{', normalised per speaker (CMVN over all recordings of the speaker read together)' if a.get('speaker_cmvn') else ''}"
        )
        if a.get("train_copies") and "combined_from" not in config:  # combined: each source says its own
            feature_text += (
                f"; training adds {a['train_copies']} copies of each training speaker, each as another voice and "
                f"microphone: the frequency axis warped by up to {a['max_warp']:.0%} and the spectrum tilted by up to "
                f"{a['max_tilt_db']} dB"
            )
    else:
        feature_text = f"{features['vector_size']} values per step, as given"
    held_out = {"writer": "writers", "speaker": "speakers", "sample": "samples"}[split["by"]]
    lines = [
        "# Sequence classifier",
        "",
        f"Classes ({len(model['classes'])}): {' '.join(model['classes'])}",
        "",
        "## Model",
        f"- {'bidirectional ' if model['bidirectional'] else ''}{model['cell'].upper()}, {model['layers']} layer(s) of "
        f"{model['hidden']} units, dropout {model['dropout']}, {model['pooling']} pooling, "
        f"training masks: up to {model['mask_time']} of the steps and {model['mask_features']} features",
        *(
            [f"- ensemble of {model['ensemble']} such networks trained with consecutive seeds; their log-probabilities are averaged"]
            if model.get("ensemble", 1) > 1 and "combined_from" not in config
            else []
        ),
        *_combined_lines(config),
        *(
            [f"- distilled from `{config['distilled_from']['folder']}` at temperature {config['distilled_from']['temperature']}: "
             "trained on half the labels' cross-entropy and half the teacher's softened outputs"]
            if "distilled_from" in config
            else []
        ),  # fmt: skip
        f"- input: {feature_text}",
        "",
        "## Data and split",
        f"- split by {split['by']} (seed {split['seed']}): test {held_out} never seen in training or validation",
    ]
    if config.get("data_samples"):
        lines.append("- samples: " + ", ".join(f"{n:,} {part}" for part, n in config["data_samples"].items()))
    if config.get("test_groups"):
        lines.append(f"- test {held_out}: {', '.join(config['test_groups'])}")
    saved = f"saved at step {meta['step']}, after" if "step" in meta else "all members:"
    lines += ["", "## Training", f"- {saved} {meta.get('train_seconds', '?')} s of training"]
    if meta.get("metrics"):
        shown = ", ".join(f"{k} {v:.4g}" for k, v in meta["metrics"].items())
        lines.append(f"- validation at that step: {shown}")
    if command:
        lines.append(f"- command: `{command}`")
    lines += ["", "## Test results"]
    if test:
        lines += [
            f"Accuracy {100 * test['accuracy']:.2f} % on {test['samples']} samples.",
            "",
            "```",
            report_text(test),
            "```",
        ]
    elif "combined_from" in config:
        lines.append(
            "Not tested when combined: `writemate classify evaluate --model FOLDER --data DATA` tests it on "
            "the writers or speakers it has not seen."
        )
    else:
        lines.append("No test set was held out for this model.")
    return "\n".join(lines) + "\n"


def _combined_lines(config: dict) -> list[str]:
    """Model-card lines naming the sources of a combined ensemble (see :func:`combine`)."""
    if "combined_from" not in config:
        return []
    lines = [f"- ensemble of {config['model']['ensemble']} networks combined from trained models; their log-probabilities are averaged:"]
    for source in config["combined_from"]:
        model, a = source["config"]["model"], source["config"]["features"]["audio"]
        trained = f"masks {model['mask_time']} of the steps and {model['mask_features']} features"
        if source["config"]["features"]["kind"] == "audio" and a.get("train_copies"):
            trained += f", {a['train_copies']} speaker copies (warp ±{a['max_warp']:.0%}, tilt ±{a['max_tilt_db']} dB)"
        folder = Path(source["folder"])
        name = folder.parent.name if folder.name == "best" else folder.name
        lines.append(f"  - {source['networks']} from `{name}`: {trained}")
    return lines


def classes_of(data: SequenceSet) -> list[str]:
    """Sorted class labels (numbers in numeric order)."""
    labels = sorted(set(data.labels))
    return sorted(labels, key=lambda c: (0, int(c), c) if c.isdigit() else (1, 0, c))


# -- the experiment runner -------------------------------------------------------------


def run_experiments(
    data: SequenceSet,
    features: FeatureConfig,
    base: ClassifierConfig,
    split: SplitConfig,
    train_config: TrainConfig,
    run_root: Path,
    cells: list[str],
    layer_counts: list[int],
    rotate: bool = False,
    progress: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train and test every (cell, layers) configuration; one row per configuration.

    With ``rotate``, each configuration is trained once per group (writer or
    speaker) with that group as the test set, and the row holds the mean test
    accuracy and each group's accuracy (leave-one-group-out).
    """
    rotations: list[list[str]] = [list(split.test_groups)]
    if rotate:
        rotations = [[g] for g in sorted(set(data.groups))]
    rows = []
    for cell in cells:
        for layers in layer_counts:
            config = replace(base, cell=cell, layers=layers)
            accuracies, seconds = {}, 0.0
            for test_groups in rotations:
                name = f"{cell}-{layers}" + (f"-{test_groups[0]}" if rotate else "")
                result = train_classifier(
                    data,
                    features,
                    config,
                    replace(split, test_groups=test_groups),
                    train_config,
                    Path(run_root) / name,
                    progress,
                )
                seconds += result.state.train_seconds
                accuracies[",".join(test_groups) or "test"] = result.test.get("accuracy", float("nan"))
            rows.append(
                {
                    "cell": cell,
                    "layers": layers,
                    "accuracy": float(np.mean(list(accuracies.values()))),
                    "accuracies": accuracies,
                    "train_seconds": seconds,
                    "parameters": sum(p.numel() for p in build_model(config).parameters()),
                }
            )
    return rows


def experiment_table(rows: list[dict], command: str = "") -> str:
    """A markdown table of the experiment rows, with the command that made it."""
    rotated = any(len(r["accuracies"]) > 1 for r in rows)
    head = "| cell | layers | parameters | test accuracy | training time |"
    if rotated:
        groups = list(rows[0]["accuracies"])
        head = "| cell | layers | parameters | mean test accuracy | " + " | ".join(groups) + " | training time |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [r["cell"].upper() if r["cell"] != "rnn" else "RNN (tanh)", str(r["layers"]), f"{r['parameters']:,}"]
        cells.append(f"{100 * r['accuracy']:.2f} %")
        if rotated:
            cells += [f"{100 * a:.2f} %" for a in r["accuracies"].values()]
        cells.append(f"{r['train_seconds'] / 60:.1f} min")
        lines.append("| " + " | ".join(cells) + " |")
    if command:
        lines += ["", f"Made by `{command}`."]
    return "\n".join(lines) + "\n"


def experiment_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2)
