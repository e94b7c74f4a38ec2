"""Evaluation of trained models on a user's copy of a dataset."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from writemate import alphabet, ink
from writemate.data import iam_ondb
from writemate.models import mdn, prediction, synthesis

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
    if not keep:
        raise iam_ondb.DatasetError(f"{data}: no lines with ink in the {split} split")
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


def synthesis_endings(
    writer,
    data: Path,
    biases: list[float],
    progress: Callable[[int], None] | None = None,
    limit: int = 0,
    split: str = "validation",
    seed: int = 0,
) -> dict:
    """How often unprimed samples of the transcriptions of ``split`` end by the paper's rule, per bias.

    A line that runs to the step cap (scribble, stalls) or whose window jumps
    over a word has lost its place in its text. Needs no recognizer, so it can
    choose between checkpoints cheaply; ``evaluate legibility`` measures more.
    Returns ``{"lines", "split", "seed", "biases": [{"bias", "ended", "lost"}]}``:
    ``ended`` is a fraction, ``lost`` lists the ids and texts of the other lines.
    """
    ids, texts, _ = _transcribed_lines(data, split, limit)
    if not texts:
        raise iam_ondb.DatasetError(f"{data}: no transcribed lines in the {split} split")
    started = time.perf_counter()
    rows = []
    for bias in biases:
        mdn.check_bias_and_seed(bias, seed)
        ended = synthesis.lines_ended(writer.model, texts, bias, seed)
        lost = [{"id": ids[i], "text": texts[i]} for i in np.flatnonzero(~ended)]
        rows.append({"bias": bias, "ended": float(ended.mean()), "lost": lost})
        if progress:
            progress(len(texts))
    return {"lines": len(texts), "split": split, "seed": seed, "biases": rows, "seconds": round(time.perf_counter() - started, 1)}


def prediction_nll(
    scribbler, data: Path, progress: Callable[[int], None] | None = None, limit: int = 0, split: str = "all"
) -> dict:
    """Graves (2013) Table 2 protocol for the prediction network: the same lines as :func:`synthesis_nll`."""
    prepared, _, offsets = _evaluated_lines(data, scribbler.stats, limit, split)
    started = time.perf_counter()
    result = prediction.evaluate_lines(scribbler.model, offsets, progress=progress)
    return _report(result, prepared, offsets, started)


# -- recognition ---------------------------------------------------------------------


def _transcribed_lines(data: Path, split: str, limit: int) -> tuple[list[str], list[str], list[list[np.ndarray]]]:
    """Ids, transcriptions and strokes of the lines of ``split`` under ``data`` that have ink and text."""
    prepared = _split(data, split)
    keep = [i for i, o in enumerate(prepared.offsets) if len(o) and prepared.texts[i].strip()]
    if limit:
        keep = keep[:limit]
    ids = [prepared.ids[i] for i in keep]
    texts = [alphabet.plain_line(prepared.texts[i]) for i in keep]  # as the recognizer was trained to write
    return ids, texts, [ink.offsets_to_strokes(prepared.offsets[i]) for i in keep]


def recognizer_rates(
    recognizer,
    data: Path,
    progress: Callable[[int], None] | None = None,
    limit: int = 0,
    split: str = "all",
    beam: int = 0,
) -> dict:
    """CER and WER (fractions) of best path and of beam search on the lines of ``split``, and lines per second.

    One forward pass serves both decoders. ``lines_per_second`` counts
    features, network and best-path decoding; ``beam_lines_per_second`` the
    same with beam search instead (``beam`` 0: the recognizer's configured beam).
    """
    from writemate import metrics

    _, texts, lines = _transcribed_lines(data, split, limit)
    if not lines:
        raise iam_ondb.DatasetError(f"{data}: no transcribed lines in the {split} split")
    beam = beam or recognizer.decoding.beam
    started = time.perf_counter()
    log_probs = recognizer.log_probs(lines, progress)
    network_seconds = time.perf_counter() - started
    started = time.perf_counter()
    best = [recognizer.decode(lp, 0).text for lp in log_probs]
    best_seconds = time.perf_counter() - started
    started = time.perf_counter()
    searched = [recognizer.decode(lp, beam).text for lp in log_probs]
    beam_seconds = time.perf_counter() - started
    d = recognizer.decoding
    return {
        "lines": len(lines),
        "characters": sum(len(t) for t in texts),
        "split": split,
        "best_path": metrics.error_rates(texts, best),
        "beam_lm": {
            **metrics.error_rates(texts, searched),
            "beam": beam,
            "lm": recognizer.lm is not None,
            "lm_weight": d.lm_weight if recognizer.lm is not None else 0.0,
            "bonus": d.bonus if recognizer.lm is not None else 0.0,
        },
        "lines_per_second": len(lines) / (network_seconds + best_seconds),
        "beam_lines_per_second": len(lines) / (network_seconds + beam_seconds),
        "seconds": round(network_seconds + best_seconds + beam_seconds, 1),
    }


def legibility(
    writer,
    recognizer,
    data: Path,
    progress: Callable[[int], None] | None = None,
    limit: int = 0,
    split: str = "all",
    bias: float = 0.75,
    style: int | None = None,
    seed: int = 0,
    beam: int = 0,
    failure_cer: float = 0.25,
    batch: int = 32,
    retries: int | None = None,
    check: bool = False,
) -> dict:
    """How well the recognizer reads the synthesis model's writing of each line's text, beside the real line.

    Each transcription under ``data`` is written by ``writer`` (``bias``,
    ``style``, ``seed``; ``batch`` lines sampled together), both inks are
    read by ``recognizer`` (``beam`` 0: best path, which judges the ink more
    than a language model's guesses), and CER/WER of both are reported with
    the failure rate: the share of generated lines whose CER exceeds
    ``failure_cer`` (skipped words, scribble after the text). ``worst`` lists
    the five generated lines read worst. ``retries`` (default: what
    ``writemate write`` does) rewrites lines that reach the step cap. With
    ``check``, lines are written as ``writemate write`` does by default with a
    recognizer (``recognizer`` itself reads them back and misread lines are
    written again); the same network then both chooses and judges the lines, so
    the result shows what users get, not an independent measure.
    """
    from writemate import api, metrics

    retries = api.RETRIES if retries is None else retries
    ids, texts, real = _transcribed_lines(data, split, limit)
    if not texts:
        raise iam_ondb.DatasetError(f"{data}: no transcribed lines in the {split} split")
    if check:
        writer.checker = recognizer
    started = time.perf_counter()
    generated = []
    width = max(len(t) for t in texts) + 1  # one text line stays one written line
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        page = writer.write(
            "\n".join(chunk), style=style, bias=bias, seed=seed + start, width=width, retries=retries, check=check
        )
        if len(page.lines) != len(chunk):
            raise RuntimeError(f"wrote {len(page.lines)} lines for {len(chunk)} texts")
        generated.extend(page.lines)
        if progress:
            progress(len(chunk))
    read_generated = [r.text for r in recognizer.read_lines(generated, beam)]
    read_real = [r.text for r in recognizer.read_lines(real, beam)]
    line_cers = [metrics.line_cer(t, r) for t, r in zip(texts, read_generated)]
    worst = sorted(range(len(texts)), key=lambda i: line_cers[i], reverse=True)[:5]
    return {
        "lines": len(texts),
        "split": split,
        "bias": bias,
        "style": style,
        "seed": seed,
        "retries": retries,
        "check": check,
        "decoder": f"beam {beam}" if beam else "best path",
        "generated": metrics.error_rates(texts, read_generated),
        "real": metrics.error_rates(texts, read_real),
        "failure_rate": float(np.mean([c > failure_cer for c in line_cers])),
        "worst": [{"id": ids[i], "text": texts[i], "read": read_generated[i], "cer": line_cers[i]} for i in worst],
        "seconds": round(time.perf_counter() - started, 1),
    }
