"""Training pipelines: from a data folder to a trained model folder.

Each function builds its task from real data and hands it to the generic
:class:`writemate.train.Trainer`. They return the trainer's final state; the
CLI adds the progress bar.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from writemate import alphabet, checkpoint, ink
from writemate.data import iam_ondb
from writemate.models.prediction import FAMILY, Prediction, PredictionConfig, PredictionTask, weights_from_synthesis
from writemate.models.recognizer import FAMILY as RECOGNIZER
from writemate.models.recognizer import Augmentation, RecognitionNetwork, RecognizerConfig, RecognizerTask
from writemate.models.synthesis import Synthesis, SynthesisConfig, SynthesisTask
from writemate.recognize import DecodingConfig
from writemate.train import TrainConfig, Trainer


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


def _require_both_sides(data: Path, train_lines: int, val_lines: int) -> None:
    if not train_lines or not val_lines:
        raise iam_ondb.DatasetError(
            f"{data}: {train_lines} training and {val_lines} validation lines; the split holds out about "
            f"{iam_ondb.VALIDATION_PERCENT} % of the text groups (form ids without the writer letter), "
            "so it needs more forms"
        )


def _start_from(folder: Path, family: str, config_class):
    """The network config and normalisation of the trained ``family`` model in ``folder``, to start a run from."""
    meta = checkpoint.read_config(folder)
    if meta.get("family") != family:
        raise checkpoint.CheckpointError(f"{folder}: a {meta.get('family')} model cannot start a {family} run")
    return config_class(**meta["config"]["model"]), ink.OffsetStats(**meta["config"]["stats"])


def train_synthesis(
    data: Path,
    run_dir: Path,
    model_config: SynthesisConfig,
    train_config: TrainConfig,
    progress: Callable[[dict], None] | None = None,
    max_val_lines: int = 0,
    init: Path | None = None,
    input_noise: float = 0.0,
):
    """The synthesis network (Graves 2013 section 5). With ``init`` (a trained model folder), a new run
    starts from that model's weights, network config and normalisation (fine-tuning), with a fresh
    optimiser; resume such a run with the same ``init`` (its size and normalisation must match the
    checkpoint's). ``input_noise``: std of the noise added to the input pen moves (see
    :class:`SynthesisTask`)."""
    train, val, stats = iam_training_split(data)
    if init is not None:
        model_config, stats = _start_from(init, "synthesis", SynthesisConfig)
    model = Synthesis(model_config)
    if init is not None:
        checkpoint.load_weights(model, init)
    task = SynthesisTask(model, _pairs(train, stats), _pairs(val, stats), max_val_lines, input_noise)
    config = {"model": model_config.to_dict(), "stats": stats.to_dict()}
    if input_noise:
        config["training"] = {"input_noise": input_noise}  # not compared on resume: a resume may change it
    trainer = Trainer(task, train_config, run_dir, family="synthesis", model_config=config)
    return trainer.fit(progress)


def train_prediction(
    data: Path,
    run_dir: Path,
    model_config: PredictionConfig,
    train_config: TrainConfig,
    progress: Callable[[dict], None] | None = None,
    max_val_lines: int = 0,
    init: Path | None = None,
):
    """The prediction network (Graves 2013 section 4) on the same lines and split as the synthesis network;
    ``init`` as for :func:`train_synthesis`, or a trained synthesis model, whose network without its
    window starts the run (:func:`~writemate.models.prediction.weights_from_synthesis`)."""
    train, val, stats = iam_training_split(data)
    if init is None:
        model = Prediction(model_config)
    else:
        model, stats = _prediction_start(init)
    train_x, val_x = _pairs(train, stats)[0], _pairs(val, stats)[0]
    _require_both_sides(data, len(train_x), len(val_x))
    task = PredictionTask(model, train_x, val_x, max_val_lines=max_val_lines)
    config = {"model": model.config.to_dict(), "stats": stats.to_dict()}
    trainer = Trainer(task, train_config, run_dir, family=FAMILY, model_config=config)
    return trainer.fit(progress)


def _prediction_start(init: Path) -> tuple[Prediction, ink.OffsetStats]:
    """The network and normalisation a prediction run starts from: a trained prediction model's, or
    a synthesis model's network without its window."""
    if checkpoint.read_config(init).get("family") != "synthesis":
        model_config, stats = _start_from(init, FAMILY, PredictionConfig)
        model = Prediction(model_config)
        checkpoint.load_weights(model, init)
        return model, stats
    source, stats = _start_from(init, "synthesis", SynthesisConfig)
    model = Prediction(PredictionConfig(hidden=source.hidden, layers=source.layers, mixtures=source.mixtures))
    weights = weights_from_synthesis(checkpoint.load_tensors(init / checkpoint.WEIGHTS), source.alphabet_size)
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    return model, stats


def _transcribed(prepared: iam_ondb.Prepared) -> list[tuple[list, str]]:
    """(strokes, transcription) of every line with ink and text, characters outside the alphabet made plain."""
    out = []
    for offsets, text in zip(prepared.offsets, prepared.texts):
        text = alphabet.plain_line(text)
        if len(offsets) and text:
            out.append((ink.offsets_to_strokes(offsets), text))
    return out


def train_recognizer(
    data: Path,
    run_dir: Path,
    model_config: RecognizerConfig,
    train_config: TrainConfig,
    progress: Callable[[dict], None] | None = None,
    max_val_lines: int = 0,
    augmentation: Augmentation | None = None,
):
    """The BLSTM-CTC recognizer on the same IAM-OnDB lines and train/validation split as the synthesis network."""
    prepared = iam_ondb.prepare(data)
    train, val = _transcribed(prepared.subset(validation=False)), _transcribed(prepared.subset(validation=True))
    _require_both_sides(data, len(train), len(val))
    torch.manual_seed(train_config.seed)
    model = RecognitionNetwork(model_config)
    task = RecognizerTask(model, train, val, augmentation, max_val_lines)
    config = {
        "model": model_config.to_dict(),
        "decoding": DecodingConfig().to_dict(),
        "augmentation": asdict(augmentation) if augmentation else None,
    }
    trainer = Trainer(task, train_config, run_dir, family=RECOGNIZER, model_config=config)
    return trainer.fit(progress)


def write_lm_corpus(data: Path, folder: Path, extra: list[Path] = ()) -> dict:
    """Text for the recognizer's character language model, never from the validation split.

    ``folder/train.txt``: the transcriptions of IAM-OnDB training-side lines
    (each distinct line once), then the lines of every ``extra`` text (e.g.
    Penn Treebank; spaced character files are read back to plain text, its
    ``<unk>`` tokens dropped, characters outside the alphabet made plain).
    ``folder/valid.txt``: the transcriptions of another 5 % of the training
    side's text groups, held out for the language model's own validation.
    ``writemate lm train --data folder`` then uses these two files.
    """
    from writemate.data import text as text_data

    prepared = iam_ondb.prepare(data)
    train_lines: dict[str, None] = {}  # an ordered set
    valid_lines: dict[str, None] = {}
    for line_id, line in zip(prepared.ids, prepared.texts):
        line = alphabet.plain_line(line)
        if iam_ondb.is_validation(line_id) or not line:
            continue  # the recognizer's validation text is never seen
        held_out = zlib.crc32(("lm:" + iam_ondb.text_group(line_id)).encode()) % 100 < 5
        (valid_lines if held_out else train_lines)[line] = None
    for line in valid_lines:
        train_lines.pop(line, None)
    extra_lines = 0
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.txt", "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in train_lines)
        for path in extra:
            for tokens in text_data.Source(text_data.text_files(path)).lines("char"):  # characters, "\n" last
                line = "".join(tokens).replace("<unk>", " ")  # the Penn Treebank's rare-word token
                line = alphabet.plain_line(line)  # only what the recognizer can write
                if line:
                    f.write(line + "\n")
                    extra_lines += 1
    (folder / "valid.txt").write_text("".join(line + "\n" for line in valid_lines), encoding="utf-8")
    return {"train_lines": len(train_lines), "extra_lines": extra_lines, "valid_lines": len(valid_lines)}
