"""Evaluation of trained models on a user's copy of a dataset."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from writemate import alphabet, ink
from writemate.data import iam_ondb
from writemate.models.synthesis import evaluate_lines


def synthesis_nll(writer, data: Path, progress: Callable[[int], None] | None = None, limit: int = 0) -> dict:
    """Graves (2013) Table 3 protocol for the synthesis network on every line under ``data``.

    The offsets of the raw points of every line, normalised with the model's
    stored training statistics; no smoothing or resampling. The only points
    dropped are those the reader rejects as corrupt (counted in the result).
    Characters outside the alphabet in a transcription are replaced by their
    plain form (the IAM-OnDB transcriptions have none).
    """
    prepared = iam_ondb.prepare(data)
    keep = [i for i, o in enumerate(prepared.offsets) if len(o) > 1]
    if limit:
        keep = keep[:limit]
    offsets = [ink.normalise(prepared.offsets[i], writer.stats) for i in keep]
    texts = [alphabet.encode(alphabet.to_plain(prepared.texts[i]).replace("\n", " ")) for i in keep]
    started = time.perf_counter()
    result = evaluate_lines(writer.model, offsets, texts, progress=progress)
    result.update(
        seconds=round(time.perf_counter() - started, 1),
        corrupt_points_removed=prepared.report.get("corrupt_points_removed", 0),
        strokes_split_at_jumps=prepared.report.get("strokes_split_at_jumps", 0),
        mean_points_per_line=float(np.mean([len(o) for o in offsets])),
    )
    return result
