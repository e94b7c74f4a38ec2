"""Evaluation of trained models on a user's copy of a dataset."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from writemate import alphabet, ink
from writemate.data import iam_ondb
from writemate.models import prediction, synthesis

SPLITS = ("all", "validation", "training")


def _split(data: Path, split: str) -> iam_ondb.Prepared:
    """Every line under ``data``, or only those of one side of the training split (by text group)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    prepared = iam_ondb.prepare(data)
    return prepared if split == "all" else prepared.subset(validation=split == "validation")


def line_count(data: Path, split: str = "all") -> int:
    """How many lines an evaluation of ``data`` reads (for progress bars)."""
    return len(_split(data, split).ids)


def _evaluated_lines(
    data: Path, stats: ink.OffsetStats, limit: int, split: str
) -> tuple[iam_ondb.Prepared, list[int], list[np.ndarray]]:
    """The Graves (2013) Tables 2-3 protocol's lines: every line of the split with at least one move.

    The offsets of the raw points, normalised with the model's stored training
    statistics; no smoothing or resampling. The only points dropped are those
    the reader rejects as corrupt (counted by :func:`_report`). Returns the
    prepared data, the indices of the lines kept, and their offsets.
    """
    prepared = _split(data, split)
    keep = [i for i, o in enumerate(prepared.offsets) if len(o) > 1]
    if limit:
        keep = keep[:limit]
    return prepared, keep, [ink.normalise(prepared.offsets[i], stats) for i in keep]


def _report(result: dict, prepared: iam_ondb.Prepared, offsets: list[np.ndarray], started: float) -> dict:
    result.update(
        seconds=round(time.perf_counter() - started, 1),
        corrupt_points_removed=prepared.report.get("corrupt_points_removed", 0),
        strokes_split_at_jumps=prepared.report.get("strokes_split_at_jumps", 0),
        mean_points_per_line=float(np.mean([len(o) for o in offsets])),
    )
    return result


def synthesis_nll(
    writer, data: Path, progress: Callable[[int], None] | None = None, limit: int = 0, split: str = "all"
) -> dict:
    """Graves (2013) Table 3 protocol for the synthesis network on the lines of ``split`` under ``data``.

    Characters outside the alphabet in a transcription are replaced by their
    plain form (the IAM-OnDB transcriptions have none).
    """
    prepared, keep, offsets = _evaluated_lines(data, writer.stats, limit, split)
    texts = [alphabet.encode(alphabet.to_plain(prepared.texts[i]).replace("\n", " ")) for i in keep]
    started = time.perf_counter()
    result = synthesis.evaluate_lines(writer.model, offsets, texts, progress=progress)
    return _report(result, prepared, offsets, started)


def prediction_nll(
    scribbler, data: Path, progress: Callable[[int], None] | None = None, limit: int = 0, split: str = "all"
) -> dict:
    """Graves (2013) Table 2 protocol for the prediction network: the same lines as :func:`synthesis_nll`."""
    prepared, _, offsets = _evaluated_lines(data, scribbler.stats, limit, split)
    started = time.perf_counter()
    result = prediction.evaluate_lines(scribbler.model, offsets, progress=progress)
    return _report(result, prepared, offsets, started)
