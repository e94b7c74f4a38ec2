"""Reader for the IAM On-Line Handwriting Database (IAM-OnDB).

Reads the official archives as a registered user downloads them:
``lineStrokes-all.tar.gz`` (one XML file per text line) and ``ascii-all.tar.gz``
(one transcription per form), or the folders they unpack to, and pairs every
stroke file ``<form>-<nn>.xml`` with the n-th non-empty line after ``CSR:`` of
``<form>.txt``. Stroke files without a transcription line are skipped and
counted.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from defusedxml import ElementTree as SafeET

from writemate import ink
from writemate.errors import WritemateError

STROKES_ARCHIVE = "lineStrokes-all.tar.gz"
ASCII_ARCHIVE = "ascii-all.tar.gz"
# Longest move between two samples of one pen-down stroke, in whiteboard units.
# In-stroke moves above the 99.99th percentile (about 250) are missed pen
# lifts or spikes; see writemate.ink.reject_corrupt.
MAX_STEP = 200.0
VALIDATION_PERCENT = 5
READER_VERSION = 1  # bump when parsing or cleaning changes, to invalidate caches

_LINE_FILE = re.compile(r"(?P<form>[a-z0-9]+-[a-z0-9]+[a-z]?)-(?P<nn>\d+)\.xml$")


class DatasetError(WritemateError):
    """The given path does not hold IAM-OnDB data in a form we can read."""


@dataclass
class Line:
    id: str  # e.g. "a01-000u-01"
    text: str
    strokes: list[np.ndarray]  # absolute points, one (N, 2) array per stroke

    @property
    def group(self) -> str:
        return text_group(self.id)


@dataclass
class ReadReport:
    stroke_files: int = 0
    transcribed_forms: int = 0
    lines: int = 0
    without_transcription: int = 0
    unreadable: int = 0
    points: int = 0
    cleaning: ink.CleanReport = field(default_factory=ink.CleanReport)

    def to_dict(self) -> dict:
        return {
            "stroke_files": self.stroke_files,
            "transcribed_forms": self.transcribed_forms,
            "lines": self.lines,
            "without_transcription": self.without_transcription,
            "unreadable": self.unreadable,
            "points": self.points,
            "corrupt_points_removed": self.cleaning.spikes_removed,
            "strokes_split_at_jumps": self.cleaning.strokes_split,
        }


def text_group(line_id: str) -> str:
    """The text a line was copied from: the form id without its writer letter ("a01-000u-01" -> "a01-000")."""
    form = line_id.rsplit("-", 1)[0] if line_id.count("-") >= 2 else line_id
    return form[:-1] if form and form[-1].isalpha() else form


def is_validation(line_id: str) -> bool:
    """Deterministic split by text group: about 5 % of groups are validation, whatever forms are present."""
    return zlib.crc32(text_group(line_id).encode()) % 100 < VALIDATION_PERCENT


def parse_line_xml(data: bytes) -> list[np.ndarray]:
    """Strokes of one IAM-OnDB line file (``WhiteboardCaptureSession/StrokeSet/Stroke/Point``)."""
    root = SafeET.fromstring(data)
    strokes = []
    for stroke in root.iter("Stroke"):
        points = [(float(p.get("x")), float(p.get("y"))) for p in stroke.iter("Point")]
        if points:
            strokes.append(np.array(points, dtype=np.float64))
    if not strokes:
        raise ValueError("no Stroke/Point elements found")
    return strokes


def parse_transcription(text: str) -> list[str]:
    """Non-empty lines after ``CSR:`` of one form's transcription file."""
    if "CSR:" not in text:
        return []
    body = text.split("CSR:", 1)[1]
    return [" ".join(line.split()) for line in body.splitlines() if line.strip()]


def detokenise(text: str) -> str:
    """Undo the typesetting spaces of the transcriptions ("Mr . Foot ," -> "Mr. Foot,")."""
    text = re.sub(r" ([.,;:?!])", r"\1", text)
    return re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", text)


# -- finding the two sources -------------------------------------------------


def _iter_archive(path: Path, suffix: str) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(suffix):
                    yield member.name, tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: not a readable tar archive ({e})") from e


def _iter_folder(path: Path, suffix: str) -> Iterator[tuple[str, bytes]]:
    for f in sorted(path.rglob(f"*{suffix}")):
        yield str(f), f.read_bytes()


def _sources(root: Path) -> tuple[Path, Path]:
    """Locate the strokes and transcriptions (archive or unpacked folder) under ``root``."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder")
    candidates = {
        "strokes": [root / STROKES_ARCHIVE, root / "lineStrokes", root / "lineStrokes-all"],
        "ascii": [root / ASCII_ARCHIVE, root / "ascii", root / "ascii-all"],
    }
    if root.is_file():
        raise DatasetError(f"{root}: give the folder that holds {STROKES_ARCHIVE} and {ASCII_ARCHIVE}")
    found = {}
    for key, paths in candidates.items():
        found[key] = next((p for p in paths if p.exists()), None)
    missing = [name for name, key in ((STROKES_ARCHIVE, "strokes"), (ASCII_ARCHIVE, "ascii")) if found[key] is None]
    if missing:
        raise DatasetError(f"{root}: missing {' and '.join(missing)} (or the folder it unpacks to)")
    return found["strokes"], found["ascii"]


def _iter(path: Path, suffix: str) -> Iterator[tuple[str, bytes]]:
    return _iter_folder(path, suffix) if path.is_dir() else _iter_archive(path, suffix)


def source_fingerprint(root: Path) -> str:
    """A key that changes when the data or the reader changes (for caches)."""
    h = hashlib.sha1(f"v{READER_VERSION}:{MAX_STEP}".encode())
    for p in _sources(root):
        st = p.stat()
        h.update(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def read(root: str | Path, clean: bool = True) -> tuple[list[Line], ReadReport]:
    """All transcribed lines under ``root``, sorted by id, with a report of what was read and skipped.

    With ``clean`` (the default) corrupt points are removed by
    :func:`writemate.ink.reject_corrupt`; no point is moved or resampled.
    """
    strokes_src, ascii_src = _sources(Path(root))
    report = ReadReport()
    texts: dict[str, list[str]] = {}
    for name, data in _iter(ascii_src, ".txt"):
        form = Path(name).stem
        lines = parse_transcription(data.decode("latin-1"))
        if lines:
            texts[form] = lines
    report.transcribed_forms = len(texts)
    if not texts:
        raise DatasetError(f"{ascii_src}: no transcriptions (.txt files with a CSR: section) found")

    out = []
    for name, data in _iter(strokes_src, ".xml"):
        m = _LINE_FILE.search(Path(name).name)
        if not m:
            continue
        report.stroke_files += 1
        form, nn = m["form"], int(m["nn"])
        lines = texts.get(form)
        if lines is None or not 1 <= nn <= len(lines):
            report.without_transcription += 1
            continue
        try:
            strokes = parse_line_xml(data)
        except (SafeET.ParseError, ValueError, TypeError) as e:
            del e
            report.unreadable += 1
            continue
        if clean:
            strokes, cleaning = ink.reject_corrupt(strokes, MAX_STEP)
            report.cleaning += cleaning
        report.points += sum(len(s) for s in strokes)
        out.append(Line(id=Path(name).stem, text=lines[nn - 1], strokes=strokes))
    if not out:
        raise DatasetError(f"{strokes_src}: no stroke files matched a transcription")
    out.sort(key=lambda line: line.id)
    report.lines = len(out)
    return out, report


# -- prepared (cached) form for training and evaluation ----------------------


@dataclass
class Prepared:
    """Lines as raw (unnormalised) offsets, ready for the networks."""

    ids: list[str]
    texts: list[str]  # detokenised transcriptions
    offsets: list[np.ndarray]  # (T_i, 3) float32 each
    report: dict

    def subset(self, validation: bool) -> "Prepared":
        keep = [i for i, line_id in enumerate(self.ids) if is_validation(line_id) == validation]
        return Prepared(
            [self.ids[i] for i in keep], [self.texts[i] for i in keep], [self.offsets[i] for i in keep], self.report
        )

    def save(self, path: Path) -> None:
        lengths = np.array([len(o) for o in self.offsets], dtype=np.int64)
        buf = io.BytesIO()
        np.savez(
            buf,
            ids=np.array(self.ids),
            texts=np.array(self.texts),
            lengths=lengths,
            offsets=np.concatenate(self.offsets) if self.offsets else np.zeros((0, 3), np.float32),
            report=np.array([repr(sorted(self.report.items()))]),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Prepared":
        import ast

        with np.load(path) as z:
            ends = np.cumsum(z["lengths"])
            offsets = np.split(z["offsets"], ends[:-1]) if len(ends) else []
            return cls(
                ids=z["ids"].tolist(),
                texts=z["texts"].tolist(),
                offsets=offsets,
                report=dict(ast.literal_eval(str(z["report"][0]))),
            )


def default_cache_dir() -> Path:
    import os

    return Path(os.environ.get("WRITEMATE_CACHE", Path.home() / ".cache" / "writemate"))


def prepare(root: str | Path, cache_dir: Path | None = None) -> Prepared:
    """Read ``root`` once and cache the offsets outside the project (``~/.cache/writemate``)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cache = cache_dir / f"iam-ondb-{source_fingerprint(Path(root))}.npz"
    if cache.exists():
        try:
            return Prepared.load(cache)
        except (OSError, ValueError, KeyError, SyntaxError):
            pass  # a damaged cache is rebuilt below
    lines, report = read(root)
    prepared = Prepared(
        ids=[line.id for line in lines],
        texts=[detokenise(line.text) for line in lines],
        offsets=[ink.strokes_to_offsets(line.strokes) for line in lines],
        report=report.to_dict(),
    )
    try:
        prepared.save(cache)
    except OSError:
        pass  # caching is an optimisation; a read-only home still works
    return prepared
