"""The Python API for free-running handwriting: ``writemate.load("prediction").scribble()``.

    >>> import writemate
    >>> scribbler = writemate.load("prediction")
    >>> page = scribbler.scribble(steps=700, bias=0.5, seed=3)
    >>> page.save("scribble.svg")   # or page.to_svg(), page.to_png(), page.strokes

The prediction network (Graves 2013 section 4) knows no text: it writes
letter-like shapes and word-like gaps. Priming it with a line of ink makes
it continue that line in the same hand.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from writemate import checkpoint, ink, render
from writemate.api import Handwriting, user_ink_to_offsets
from writemate.errors import WritemateError
from writemate.models import mdn
from writemate.models.prediction import Prediction, PredictionConfig, sample


class Scribbler:
    """A ready prediction network. Make one with ``writemate.load("prediction")`` or a model folder."""

    def __init__(self, model: Prediction, stats: ink.OffsetStats, info: dict):
        self.model = model.eval()
        self.stats = stats
        self.info = info

    @classmethod
    def from_folder(cls, folder: str | Path) -> "Scribbler":
        meta = checkpoint.read_config(Path(folder))
        try:
            model = Prediction(PredictionConfig(**meta["config"]["model"]))
            stats = ink.OffsetStats(**meta["config"]["stats"])
        except (KeyError, TypeError, ValueError) as e:
            raise checkpoint.CheckpointError(f"{folder}: not a prediction model config ({e})") from e
        checkpoint.load_weights(model, Path(folder))
        return cls(model, stats, meta)

    def scribble(
        self,
        steps: int = 700,
        bias: float = 0.5,
        seed: int = 0,
        prime_strokes: list[np.ndarray] | None = None,
        lines: int = 1,
        show_prime: bool = True,
        page: render.PageStyle | None = None,
    ) -> Handwriting:
        """``lines`` lines of ``steps`` freely sampled pen points each.

        ``prime_strokes`` (one line of ink, any units, e.g. from
        :func:`writemate.api.read_prime_file`) is read first and continued;
        ``show_prime`` draws it before the new ink. ``bias`` trades variety
        for neatness (0: as sampled, 1-2: neater). Same seed, same result.
        """
        if steps < 1 or lines < 1:
            raise WritemateError("steps and lines must be at least 1")
        mdn.check_bias_and_seed(bias, seed)
        prime = None if prime_strokes is None else user_ink_to_offsets(prime_strokes, None, self.stats)  # (P, 3)
        started = time.perf_counter()
        sampled = sample(self.model, steps, lines=lines, bias=bias, seed=seed, prime=prime)
        strokes = []
        for offsets in sampled:  # (steps + 1, 3), normalised
            if prime is not None and show_prime:
                offsets = np.concatenate([prime, offsets[1:]])  # row 1 moves on from the prime's last point
            strokes.append(ink.offsets_to_strokes(ink.denormalise(offsets, self.stats)))
        page = page or render.PageStyle()
        meta = {
            "steps": steps,
            "bias": bias,
            "seed": seed,
            "primed": prime is not None,
            "seconds": round(time.perf_counter() - started, 3),
        }
        return Handwriting(texts=[""] * lines, lines=render.place_lines(strokes, page), page=page, meta=meta)
