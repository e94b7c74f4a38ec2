"""Training pipelines: from a data folder to a trained model folder.

Each function builds its task from real data and hands it to the generic
:class:`writemate.train.Trainer`. They return the trainer's final state; the
CLI adds the progress bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from writemate import alphabet, ink
from writemate.data import iam_ondb
from writemate.models.prediction import FAMILY, Prediction, PredictionConfig, PredictionTask
from writemate.models.synthesis import Synthesis, SynthesisConfig, SynthesisTask
from writemate.train import Trainer, TrainConfig


def encode_lenient(text: str) -> list[int]:
    """Encode training text, mapping stray characters to plain ones (training data must not fail)."""
    return alphabet.encode("".join(c for c in alphabet.to_plain(text) if c != "\n"))


def iam_training_split(data: Path):
    """Prepared IAM-OnDB train and validation lines, and the training offset statistics."""
    prepared = iam_ondb.prepare(data)
    train, val = prepared.subset(validation=False), prepared.subset(validation=True)
    stats = ink.offset_stats(train.offsets)
    return train, val, stats


def _pairs(prepared: iam_ondb.Prepared, stats: ink.OffsetStats):
    keep = [i for i, o in enumerate(prepared.offsets) if len(o) > 1 and prepared.texts[i]]
    return (
        [ink.normalise(prepared.offsets[i], stats) for i in keep],
        [encode_lenient(prepared.texts[i]) for i in keep],
    )


def train_synthesis(
    data: Path,
    run_dir: Path,
    model_config: SynthesisConfig,
    train_config: TrainConfig,
    progress: Callable[[dict], None] | None = None,
    max_val_lines: int = 0,
):
    train, val, stats = iam_training_split(data)
    model = Synthesis(model_config)
    task = SynthesisTask(model, _pairs(train, stats), _pairs(val, stats), max_val_lines=max_val_lines)
    config = {"model": model_config.to_dict(), "stats": stats.to_dict()}
    trainer = Trainer(task, train_config, run_dir, family="synthesis", model_config=config)
    return trainer.fit(progress)


def train_prediction(
    data: Path,
    run_dir: Path,
    model_config: PredictionConfig,
    train_config: TrainConfig,
    progress: Callable[[dict], None] | None = None,
    max_val_lines: int = 0,
):
    """The prediction network (Graves 2013 section 4) on the same lines and split as the synthesis network."""
    train, val, stats = iam_training_split(data)
    train_x, val_x = _pairs(train, stats)[0], _pairs(val, stats)[0]
    if not train_x or not val_x:
        raise iam_ondb.DatasetError(
            f"{data}: {len(train_x)} training and {len(val_x)} validation lines; the split holds out about "
            f"{iam_ondb.VALIDATION_PERCENT} % of the text groups (form ids without the writer letter), so it needs more forms"
        )
    model = Prediction(model_config)
    task = PredictionTask(model, train_x, val_x, max_val_lines=max_val_lines)
    config = {"model": model_config.to_dict(), "stats": stats.to_dict()}
    trainer = Trainer(task, train_config, run_dir, family=FAMILY, model_config=config)
    return trainer.fit(progress)
