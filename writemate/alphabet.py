"""The characters Writemate can write and read.

The alphabet is every character of the IAM-OnDB transcriptions (83 symbols),
plus index 0, which stands for "no character" (padding). One-hot vectors over
it therefore have 84 entries.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from writemate.errors import WritemateError

CHARACTERS = " !\"#&'()*+,-./0123456789:;?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz"
PAD = 0
SIZE = len(CHARACTERS) + 1  # 84

_INDEX = {c: i + 1 for i, c in enumerate(CHARACTERS)}

# Replacements for characters outside the alphabet that have an obvious plain form.
_REPLACEMENTS = {
    "\u2018": "'", "\u2019": "'", "\u201a": ",", "\u201b": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-",
    "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\t": " ",
    "\u00d7": "x", "\u00df": "ss", "\u00e6": "ae", "\u00c6": "AE", "\u0153": "oe", "\u0152": "OE",
    "\u00f8": "o", "\u00d8": "O", "\u0142": "l", "\u0141": "L", "\u00f0": "d", "\u00fe": "th",
    "{": "(", "}": ")", "<": "(", ">": ")", "|": "/", "\\": "/", "$": "S", "%": " per cent", "=": "-",
    "~": "-", "^": "'",
}


@dataclass(frozen=True)
class BadCharacter:
    char: str
    position: int  # 0-based index into the text

    def __str__(self) -> str:
        name = unicodedata.name(self.char, f"U+{ord(self.char):04X}")
        return f"{self.char!r} ({name}) at position {self.position + 1}"


class AlphabetError(WritemateError, ValueError):
    """Text holds characters Writemate cannot write."""

    def __init__(self, bad: list[BadCharacter]):
        self.bad = bad
        listed = ", ".join(str(b) for b in bad[:20]) + (f" and {len(bad) - 20} more" if len(bad) > 20 else "")
        super().__init__(f"cannot write {len(bad)} character(s): {listed}")


def unknown_characters(text: str) -> list[BadCharacter]:
    """Every character of ``text`` outside the alphabet (newlines are allowed: they break lines)."""
    return [BadCharacter(c, i) for i, c in enumerate(text) if c not in _INDEX and c != "\n"]


def plain_line(text: str) -> str:
    """One line of text as the recognizer writes it: :func:`to_plain`, whitespace runs as one space."""
    return " ".join(to_plain(text).split())


def to_plain(text: str) -> str:
    """Replace characters outside the alphabet by their closest plain form.

    Curly quotes become straight, dashes become hyphens, accented letters lose
    their accents (é to e). What has no plain form is dropped.
    """
    out = []
    for c in text:
        if c in _INDEX or c == "\n":
            out.append(c)
        elif c in _REPLACEMENTS:
            out.append(_REPLACEMENTS[c])
        else:
            base = "".join(b for b in unicodedata.normalize("NFKD", c) if b in _INDEX)
            out.append(base)
    return "".join(out)


def encode(text: str) -> list[int]:
    """Indices of the characters of one line; raises AlphabetError naming every bad one."""
    bad = [BadCharacter(c, i) for i, c in enumerate(text) if c not in _INDEX]
    if bad:
        raise AlphabetError(bad)
    return [_INDEX[c] for c in text]


def decode(indices) -> str:
    return "".join(CHARACTERS[i - 1] for i in indices if 0 < i <= len(CHARACTERS))
