"""Turning CTC outputs into text: best path, and prefix beam search with a character language model.

The network gives, for every frame t, log-probabilities ``log_probs[t, c]``
over the labels: 0 is the blank, 1.. the characters of
:mod:`writemate.alphabet`. A labelling ``l`` (a text) has probability
P(l | ink), the sum over every frame-by-frame path that collapses to it
(repeats merged, then blanks removed).

* :func:`best_path` takes the most likely label of every frame and collapses
  the result. Fast, but it finds the most likely *path*, not the most likely
  labelling.
* :func:`prefix_beam_search` keeps the ``beam`` best prefixes, each with the
  probability of the paths ending in a blank and in a non-blank, so paths
  that collapse to the same text are summed (Graves 2012, Hannun et al.
  2014). With a language model it ranks prefixes by shallow fusion:

      score(l) = log P(l | ink) + lm_weight * log P_LM(l, end of line) + bonus * |l|

  The bonus for every character offsets the LM's pull towards short texts.
  The LM part depends only on the prefix, so it is added when a prefix is
  ranked, never mixed into the summed path probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from writemate import alphabet

BLANK = 0
NEG_INF = -math.inf


def best_path(log_probs: np.ndarray) -> list[int]:
    """Labels of the most likely path through ``log_probs`` (T, C), repeats merged and blanks removed."""
    path = np.asarray(log_probs).argmax(axis=1)  # (T,)
    labels, previous = [], BLANK
    for label in path.tolist():
        if label != previous and label != BLANK:
            labels.append(label)
        previous = label
    return labels


def sequence_log_prob(log_probs: np.ndarray, labels: list[int]) -> float:
    """log P(labels | ink): the CTC forward algorithm over ``log_probs`` (T, C); -inf if they cannot align."""
    frames = torch.as_tensor(np.asarray(log_probs), dtype=torch.float32).unsqueeze(1)  # (T, 1, C)
    nll = F.ctc_loss(
        frames,
        torch.tensor([labels], dtype=torch.long).reshape(1, -1),
        torch.tensor([len(frames)]),
        torch.tensor([len(labels)]),
        blank=BLANK,
        reduction="sum",
    )
    return -float(nll)


class LanguageScorer(Protocol):
    """A character language model as beam search uses it.

    ``log_probs(prefixes)`` returns an ``(N, C)`` array: row i holds
    log P(next label | prefixes[i]) for every label c >= 1, and in column 0
    (the blank, which a language model never emits) log P(end of line | prefixes[i]).
    Prefixes are tuples of labels; the empty tuple is the start of a line.
    """

    def log_probs(self, prefixes: list[tuple[int, ...]]) -> np.ndarray: ...


@dataclass
class Hypothesis:
    labels: tuple[int, ...]
    score: float  # the fused score (equal to ctc_log_prob without a language model)
    ctc_log_prob: float  # log P(labels | ink), summed over every path
    lm_log_prob: float | None  # log P_LM(labels, end of line), or None without a language model


def _add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) for Python floats (math is faster than numpy on scalars)."""
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


def prefix_beam_search(
    log_probs: np.ndarray,
    beam: int = 16,
    lm: LanguageScorer | None = None,
    lm_weight: float = 0.5,
    bonus: float = 0.0,
    prune: float = -8.0,
    max_labels: int = 8,
) -> list[Hypothesis]:
    """The ``beam`` best labellings of ``log_probs`` (T, C), best first.

    At each frame only the ``max_labels`` likeliest labels whose
    log-probability is above ``prune`` are tried as new characters (``prune``
    -inf and ``max_labels`` 0 try every label). Without ``lm``, ``lm_weight``
    and ``bonus`` are ignored and the score is log P(l | ink).
    """
    if beam < 1:
        raise ValueError("beam must be at least 1")
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if lm is None:
        lm_weight, bonus = 0.0, 0.0
    # Per prefix: log-probability of the paths so far that end in a blank / in its last label.
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    lm_log: dict[tuple[int, ...], float] = {(): 0.0}  # log P_LM(prefix)
    lm_next: dict[tuple[int, ...], np.ndarray] = {}  # log P_LM(next label | prefix), column 0: end of line

    def ensure_lm(prefixes) -> None:
        missing = [p for p in prefixes if p not in lm_next]
        if lm is not None and missing:
            for p, row in zip(missing, lm.log_probs(missing)):
                lm_next[p] = row

    def fused(prefix: tuple[int, ...]) -> float:
        return lm_weight * lm_log[prefix] + bonus * len(prefix)

    for row in log_probs:  # (C,)
        ensure_lm(beams)
        frame = row.tolist()  # Python floats: much faster than numpy scalars one at a time
        blank = frame[BLANK]
        candidates = np.flatnonzero(row[1:] > prune) + 1  # characters only: the blank never starts one
        if max_labels and len(candidates) > max_labels:
            candidates = candidates[np.argsort(row[candidates])[-max_labels:]]
        candidates = candidates.tolist()
        grown: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_blank, p_label) in beams.items():
            total = _add(p_blank, p_label)
            entry = grown.setdefault(prefix, [NEG_INF, NEG_INF])
            entry[0] = _add(entry[0], total + blank)  # a blank: the prefix stays
            last = prefix[-1] if prefix else None
            if last is not None:  # the last label again, without a blank between: merged, the prefix stays
                entry[1] = _add(entry[1], p_label + frame[last])
            for c in candidates:
                # A repeated label only starts a new character after a blank.
                through = p_blank if c == last else total
                if through == NEG_INF:
                    continue
                longer = prefix + (c,)
                slot = grown.setdefault(longer, [NEG_INF, NEG_INF])
                slot[1] = _add(slot[1], through + frame[c])
                if longer not in lm_log:
                    lm_log[longer] = lm_log[prefix] + (float(lm_next[prefix][c]) if lm is not None else 0.0)
        ranked = sorted(grown.items(), key=lambda kv: _add(*kv[1]) + fused(kv[0]), reverse=True)
        beams = {prefix: (p_blank, p_label) for prefix, (p_blank, p_label) in ranked[:beam]}

    ensure_lm(beams)
    out = []
    for prefix, (p_blank, p_label) in beams.items():
        ctc = _add(p_blank, p_label)
        if lm is None:
            out.append(Hypothesis(prefix, ctc, ctc, None))
            continue
        lm_log_prob = lm_log[prefix] + float(lm_next[prefix][BLANK])  # the line ends after the prefix
        out.append(Hypothesis(prefix, ctc + lm_weight * lm_log_prob + bonus * len(prefix), ctc, lm_log_prob))
    out.sort(key=lambda h: h.score, reverse=True)
    return out


class CharLanguageScorer:
    """A trained character LSTM language model (:class:`writemate.models.language.TextPredictor`)
    as a :class:`LanguageScorer` over the labels of :mod:`writemate.alphabet`.

    Characters the model's vocabulary lacks are scored as its unknown symbol.
    A line starts after the model's end-of-line token, as its training text
    did. States are cached per prefix and new prefixes are run as one batch;
    call :meth:`reset` between lines to free the cache.
    """

    def __init__(self, predictor):
        if predictor.vocab.level != "char":
            raise ValueError(f"beam search needs a character language model, not a {predictor.vocab.level} model")
        self.model = predictor.model.eval()
        vocab = predictor.vocab
        # Column c of our rows reads column ids[c] of the model's output; column 0 reads end of line.
        self._ids = torch.tensor([vocab.eol] + [vocab.index.get(ch, 0) for ch in alphabet.CHARACTERS])
        with torch.inference_mode():
            logits, state = self.model(torch.tensor([[vocab.eol]]))  # (1, 1, V)
        self._root = (state, self._row(logits[:, -1]))
        self._cache: dict[tuple[int, ...], tuple] = {}
        self.reset()

    def _row(self, logits):
        """(N, V) logits of the model -> (N, C) log-probabilities in our label order."""
        return torch.log_softmax(logits.float(), dim=-1)[:, self._ids].numpy()

    def reset(self) -> None:
        self._cache = {(): self._root}

    def log_probs(self, prefixes: list[tuple[int, ...]]) -> np.ndarray:
        missing: set[tuple[int, ...]] = set()
        for p in prefixes:  # each prefix and those of its ancestors not yet run (usually none or one)
            while p not in self._cache and p not in missing:
                missing.add(p)
                p = p[:-1]
        todo = sorted(missing, key=len)
        with torch.inference_mode():
            while todo:  # one batched LSTM step for every prefix whose parent is known
                ready = [p for p in todo if p[:-1] in self._cache]
                todo = [p for p in todo if p[:-1] not in self._cache]
                states = [self._cache[p[:-1]][0] for p in ready]
                h = torch.cat([s[0] for s in states], dim=1)  # (L, N, H)
                c = torch.cat([s[1] for s in states], dim=1)
                tokens = self._ids[[p[-1] for p in ready]].unsqueeze(1)  # (N, 1)
                logits, (h, c) = self.model(tokens, (h, c))  # (N, 1, V)
                rows = self._row(logits[:, -1])
                for i, p in enumerate(ready):
                    self._cache[p] = ((h[:, i : i + 1], c[:, i : i + 1]), rows[i : i + 1])
        return np.concatenate([self._cache[p][1] for p in prefixes])
