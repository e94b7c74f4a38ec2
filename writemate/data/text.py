"""Text for language models: the Penn Treebank files and any UTF-8 text.

A text becomes one stream of token ids. Two levels:

- ``char``: every character is a token, the end of every line included
  (``"\\n"``). In the Penn Treebank character files (``ptb.char.*``)
  characters are separated by spaces and ``_`` stands between words; those
  files are read back to plain text (``_`` becomes a space), so a character
  model sees the same text in either form. Blank lines of such files are skipped.
- ``word``: the whitespace-separated words of every non-blank line, then
  ``<eos>`` (Mikolov's Penn Treebank convention: one sentence a line).

Every stream starts with the end-of-line token (as if a line had just ended),
so the first real token is predicted too: a stream of N tokens of text gives
N predictions, which is what bits per character and perplexity count.

The vocabulary is built from the training part only; its first symbol stands
for every unknown one (``<unk>`` for words, U+FFFD for characters).

Files are read line by line and encoded into ``uint16`` (or ``int32``) files
under ``~/.cache/writemate`` (or ``$WRITEMATE_CACHE``), which are then memory-
mapped: a text larger than memory never has to fit in it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from writemate.errors import WritemateError

READER_VERSION = 1  # bump when tokenisation changes, to invalidate caches
LEVELS = ("char", "word")
UNK = {"char": "\ufffd", "word": "<unk>"}
EOL = {"char": "\n", "word": "<eos>"}
SPLITS = ("train", "valid", "test")
# Split files looked for in a folder, per level, in order of preference.
SPLIT_PREFIXES = {"char": ("ptb.char.", ""), "word": ("ptb.", "")}
_ENCODE_CHUNK = 1 << 20  # tokens buffered before they are written to the cache file


class TextDataError(WritemateError):
    """A text file or folder that cannot be read as asked."""


# -- vocabulary -----------------------------------------------------------------


@dataclass
class Vocabulary:
    """Symbols of one level; ``symbols[0]`` stands for every unknown symbol."""

    level: str
    symbols: list[str]

    def __post_init__(self):
        self.index = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def eol(self) -> int:
        return self.index[EOL[self.level]]

    @property
    def dtype(self):
        return np.uint16 if len(self.symbols) <= np.iinfo(np.uint16).max else np.int32

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.index.get(t, 0) for t in tokens]

    def decode(self, ids) -> str:
        """Token ids back to text (words joined by spaces, ``<eos>`` as a line end)."""
        if self.level == "char":
            return "".join(self.symbols[i] for i in ids)
        lines, words = [], []
        for i in ids:
            if i == self.eol:
                lines.append(" ".join(words) + "\n")
                words = []
            else:
                words.append(self.symbols[i])
        return "".join(lines) + " ".join(words)

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps([self.level, self.symbols]).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"level": self.level, "symbols": list(self.symbols)}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        return cls(level=d["level"], symbols=list(d["symbols"]))

    @classmethod
    def from_counts(cls, level: str, counts: Counter, max_size: int = 0, min_count: int = 1) -> "Vocabulary":
        """Unknown and end-of-line first, then the most frequent symbols (ties in code-point order)."""
        specials = [UNK[level], EOL[level]]
        kept = [s for s, n in counts.items() if n >= min_count and s not in specials]
        ranked = sorted(kept, key=lambda s: (-counts[s], s))
        if max_size:
            ranked = ranked[: max(max_size - len(specials), 0)]
        return cls(level=level, symbols=specials + ranked)


# -- reading lines as tokens ------------------------------------------------------


def text_files(path: Path) -> list[Path]:
    """The file itself, or every non-hidden file under a folder, sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise TextDataError(f"{path}: no such file or folder")
    files = []
    for p in sorted(path.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts):
            files.append(p)
    if not files:
        raise TextDataError(f"{path}: the folder holds no files")
    return files


def _raw_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(byte offset, line without its end) for every line of a UTF-8 file, streamed."""
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TextDataError(f"{path}: line {number} is not UTF-8 ({e.reason} at byte {e.start})") from None
            yield offset, line.rstrip("\r\n")
            offset += len(raw)


def is_spaced_chars(path: Path, sample_lines: int = 50) -> bool:
    """True for files like ``ptb.char.*``: single characters separated by single spaces."""
    seen = 0
    for _, line in _raw_lines(path):
        line = line.strip(" ")
        if not line:
            continue
        if len(line) < 3 or any(c != " " for c in line[1::2]) or " " in line[0::2]:
            return False
        seen += 1
        if seen >= sample_lines:
            break
    return seen > 0


def line_tokens(line: str, level: str, spaced: bool) -> list[str]:
    """The tokens of one line, its end included; [] for a line that carries none."""
    if level == "word":
        words = line.split()
        return words + [EOL["word"]] if words else []
    if spaced:  # "a _ b" -> "a b": single characters, "_" between words
        chars = [" " if c == "_" else c for c in line.split()]
        return chars + ["\n"] if chars else []
    return list(line) + ["\n"]


def text_tokens(text: str, level: str) -> list[str]:
    """Tokens of a free text such as a prime: no end is added after its last line."""
    if level == "char":
        return list(text)
    tokens = []
    for number, line in enumerate(text.split("\n")):
        if number:
            tokens.append(EOL["word"])
        tokens.extend(line.split())
    return tokens


def line_counts(tokens: list[str], level: str) -> tuple[int, int]:
    """(characters, words) of one tokenised line: characters include spaces and the line end."""
    if level == "word":
        words = len(tokens) - 1  # <eos> is not a word
        return sum(len(t) for t in tokens[:-1]) + words, words  # words, the spaces between them, the end
    text = "".join(tokens)
    return len(text), len(text.split())


# -- encoding into cached, memory-mapped streams ------------------------------------


def default_cache_dir() -> Path:
    return Path(os.environ.get("WRITEMATE_CACHE", Path.home() / ".cache" / "writemate"))


def _fingerprint(*parts) -> str:
    h = hashlib.sha1(f"text-reader-v{READER_VERSION}".encode())
    for part in parts:
        if isinstance(part, Path):
            st = part.stat()
            part = f"{part.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        h.update(repr(part).encode())
    return h.hexdigest()[:16]


@dataclass
class Stream:
    """An encoded text: ``ids`` (N + 1,) starting with the line-end token, and its counts."""

    ids: np.ndarray  # memory-mapped, read-only
    characters: int  # characters of the text, spaces and line ends included
    words: int  # words of the text (line ends not counted)

    @property
    def tokens(self) -> int:
        """How many tokens are predicted: every token of the text."""
        return len(self.ids) - 1

    def head(self, tokens: int) -> "Stream":
        """The first ``tokens`` predictions only (counts scaled to match), e.g. for a quick validation."""
        if not tokens or tokens >= self.tokens:
            return self
        share = tokens / self.tokens
        return Stream(self.ids[: tokens + 1], round(self.characters * share), round(self.words * share))


def _open_stream(cache: Path, dtype) -> Stream:
    meta = json.loads(cache.with_suffix(".json").read_text())
    ids = np.memmap(cache, dtype=dtype, mode="r")
    if len(ids) != meta["tokens"] + 1:
        raise ValueError("cache length mismatch")
    return Stream(ids, meta["characters"], meta["words"])


def encode(lines: Iterator[list[str]], vocab: Vocabulary, cache: Path) -> Stream:
    """Write the ids of tokenised ``lines`` to ``cache`` (and its ``.json`` counts), chunk by chunk."""
    if cache.exists() and cache.with_suffix(".json").exists():
        try:
            return _open_stream(cache, vocab.dtype)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp")
    characters = words = tokens = 0
    buffer = [vocab.eol]
    with open(tmp, "wb") as f:
        for line in lines:
            buffer.extend(vocab.encode(line))
            c, w = line_counts(line, vocab.level)
            characters, words, tokens = characters + c, words + w, tokens + len(line)
            if len(buffer) >= _ENCODE_CHUNK:
                f.write(np.asarray(buffer, dtype=vocab.dtype).tobytes())
                buffer = []
        f.write(np.asarray(buffer, dtype=vocab.dtype).tobytes())
    os.replace(tmp, cache)
    cache.with_suffix(".json").write_text(json.dumps({"tokens": tokens, "characters": characters, "words": words}))
    return _open_stream(cache, vocab.dtype)


def _lines_of(files: list[Path], level: str, start: float = 0, stop: float = float("inf")) -> Iterator[list[str]]:
    """Tokenised lines of ``files`` read as one text, keeping lines that begin in bytes [start, stop)."""
    base = 0
    for path in files:
        spaced = level == "char" and is_spaced_chars(path)
        for offset, line in _raw_lines(path):
            if start <= base + offset < stop:
                tokens = line_tokens(line, level, spaced)
                if tokens:
                    yield tokens
        base += path.stat().st_size


@dataclass
class Source:
    """Where one split's text comes from: files read as one text, cut to bytes [start, stop)."""

    files: list[Path]
    start: float = 0
    stop: float = float("inf")

    def lines(self, level: str) -> Iterator[list[str]]:
        return _lines_of(self.files, level, self.start, self.stop)

    def key(self) -> tuple:
        return (*self.files, self.start, self.stop)


def find_splits(path: Path, level: str, valid_fraction: float = 0.05) -> dict[str, Source]:
    """Train/valid/(test) sources for a folder with split files, or a file or folder to hold out from.

    A folder holding ``ptb.char.train.txt`` (char level), ``ptb.train.txt``
    (word level) or ``train.txt``, with ``valid``/``test`` beside it, uses
    those. Anything else is one text whose last ``valid_fraction`` (by bytes,
    whole lines) is held out for validation.
    """
    path = Path(path)
    if path.is_dir():
        for prefix in SPLIT_PREFIXES[level]:
            named = {split: path / f"{prefix}{split}.txt" for split in SPLITS}
            if named["train"].is_file() and named["valid"].is_file():
                return {split: Source([p]) for split, p in named.items() if p.is_file()}
    files = text_files(path)
    if not 0 < valid_fraction < 1:
        raise TextDataError(f"valid_fraction must be between 0 and 1, not {valid_fraction}")
    cut = sum(p.stat().st_size for p in files) * (1 - valid_fraction)
    return {"train": Source(files, stop=cut), "valid": Source(files, start=cut)}


def find_test(path: Path, level: str) -> Path:
    """A file itself, or the test split file of a folder (``ptb.char.test.txt``, ``ptb.test.txt``, ``test.txt``)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        return find_split_file(path, level, "test")
    raise TextDataError(f"{path}: no such file or folder")


def find_split_file(folder: Path, level: str, split: str) -> Path:
    """The ``split`` file of a folder (``ptb.char.train.txt``, ``ptb.train.txt``, ``train.txt``, ...)."""
    for prefix in SPLIT_PREFIXES[level]:
        if (Path(folder) / f"{prefix}{split}.txt").is_file():
            return Path(folder) / f"{prefix}{split}.txt"
    names = ", ".join(f"{prefix}{split}.txt" for prefix in SPLIT_PREFIXES[level])
    raise TextDataError(f"{folder}: no {split} file for a {level} model ({names})")


def build_vocabulary(
    source: Source, level: str, max_size: int = 0, min_count: int = 1, cache_dir: Path | None = None
) -> Vocabulary:
    """The vocabulary of a training text, cached by the files' names, sizes and times."""
    if level not in LEVELS:
        raise TextDataError(f"unknown level {level!r}; choose from {', '.join(LEVELS)}")
    key = _fingerprint(level, max_size, min_count, *source.key())
    cache = (Path(cache_dir) if cache_dir else default_cache_dir()) / f"lm-vocab-{key}.json"
    if cache.exists():
        try:
            return Vocabulary.from_dict(json.loads(cache.read_text()))
        except (OSError, ValueError, KeyError):
            pass
    counts: Counter = Counter()
    for tokens in source.lines(level):
        counts.update(tokens)
    if not counts:
        raise TextDataError(f"{source.files[0]}: the training text is empty")
    vocab = Vocabulary.from_counts(level, counts, max_size, min_count)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(vocab.to_dict()))
    except OSError:
        pass  # caching is an optimisation; a read-only home still works
    return vocab


def encode_source(source: Source, vocab: Vocabulary, cache_dir: Path | None = None) -> Stream:
    """A split encoded with ``vocab`` (unknown symbols to id 0), cached and memory-mapped."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    suffix = "u16" if vocab.dtype == np.uint16 else "i32"
    cache = cache_dir / f"lm-{_fingerprint(vocab.fingerprint(), *source.key())}.{suffix}"
    stream = encode(source.lines(vocab.level), vocab, cache)
    if stream.tokens == 0:
        raise TextDataError(f"{source.files[0]}: no text to read")
    return stream


def encode_file(path: Path, vocab: Vocabulary, cache_dir: Path | None = None) -> Stream:
    """One file (or a folder read as one text) encoded with a model's vocabulary."""
    return encode_source(Source(text_files(path)), vocab, cache_dir)


@dataclass
class Corpus:
    vocab: Vocabulary
    train: Stream
    valid: Stream
    test: Stream | None


def load_corpus(
    path: Path,
    level: str,
    max_vocab: int = 0,
    min_count: int = 1,
    valid_fraction: float = 0.05,
    cache_dir: Path | None = None,
    vocab: Vocabulary | None = None,
) -> Corpus:
    """Vocabulary from the training part (or ``vocab``, a trained model's), and every split encoded with it."""
    sources = find_splits(path, level, valid_fraction)
    if vocab is None:
        vocab = build_vocabulary(sources["train"], level, max_vocab, min_count, cache_dir)
    streams = {split: encode_source(source, vocab, cache_dir) for split, source in sources.items()}
    return Corpus(vocab, streams["train"], streams["valid"], streams.get("test"))
