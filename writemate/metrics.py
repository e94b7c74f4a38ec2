"""Character and word error rates of recognised text (edit distance over reference length)."""

from __future__ import annotations

import re

from rapidfuzz.distance import Levenshtein


def character_errors(reference: str, hypothesis: str) -> int:
    """Insertions, deletions and substitutions of characters that turn ``reference`` into ``hypothesis``."""
    return Levenshtein.distance(reference, hypothesis)


def word_errors(reference: str, hypothesis: str) -> int:
    """The same over whitespace-separated words."""
    return Levenshtein.distance(reference.split(), hypothesis.split())


def first_misread_word(reference: str, hypothesis: str) -> int:
    """Where in ``reference`` the first word starts that ``hypothesis`` does not read as written (by
    the fewest word edits), -1 when every word is read; words read after the last one count against it."""
    words = list(re.finditer(r"\S+", reference))
    for op in Levenshtein.opcodes([w.group() for w in words], hypothesis.split()):
        if op.tag != "equal" and words:
            return words[min(op.src_start, len(words) - 1)].start()
    return -1


def line_cer(reference: str, hypothesis: str) -> float:
    """One line's character error rate; an empty reference counts every hypothesised character."""
    return character_errors(reference, hypothesis) / max(len(reference), 1)


def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus CER and WER as fractions: total edits over total reference characters (words)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    chars = sum(len(r) for r in references)
    words = sum(len(r.split()) for r in references)
    char_edits = sum(character_errors(r, h) for r, h in zip(references, hypotheses))
    word_edits = sum(word_errors(r, h) for r, h in zip(references, hypotheses))
    return {"cer": char_edits / max(chars, 1), "wer": word_edits / max(words, 1)}
