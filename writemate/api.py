"""The Python API for writing: ``writemate.load().write("Hello")``.

    >>> import writemate
    >>> writer = writemate.load()
    >>> page = writer.write("Dear Ada,\\nthank you!", style=3, bias=1.0, seed=7)
    >>> page.save("note.svg")   # or page.to_svg(), page.to_png(), page.strokes
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from writemate import alphabet, checkpoint, ink, loading, metrics, render
from writemate.errors import WritemateError
from writemate.models import mdn
from writemate.models.synthesis import Judge, LineStarts, Prime, Progress, Synthesis, SynthesisConfig, line_starts, sample

STYLES_FILE = "styles.json"
STYLE_BIAS = 0.75  # the bias styles are chosen at (tools/make_styles.py), when styles.json gives none
MAX_LINES_PER_BATCH = 32  # lines sampled together; larger pages run in several batches
KEPT_STARTS = 8  # readings of primed lines a Writer keeps for later writes (Writer.prepare)
# A line that runs to the step cap, or whose window jumps over a word, has lost its place in its
# text (10 of the first 64 validation texts for the bundled model at bias 0.75, docs/synthesis.md); it is replaced by
# new lines in the running batch, up to 1 + RETRIES lines per text line (synthesis.sample_batch).
RETRIES = 2
# With a recognizer to check lines (the bundled one, for the bundled model), each line is written
# CANDIDATES times at once, up to CANDIDATES * (1 + RETRIES) times in all, and each is read back
# as soon as it ends: the first that ends by the paper's rule with a character error rate of at
# most MAX_LINE_CER (the failure threshold of `evaluate legibility`) is kept and stops the others.
# When none is, the one read best is kept.
CANDIDATES = 2
MAX_LINE_CER = 0.25
# Below bias LOW_BIAS the network writes close to how it learnt, and with the rule above about one
# word in three was hard to read; there each line is written LOW_BIAS_CANDIDATES times at once and
# must be read with a CER of at most LOW_BIAS_MAX_CER. At bias 0 on 48 validation texts (style 0)
# the CER as read back fell from 13.1 % to 5.8 %; a hard 20-line page takes ~12 s instead of ~5 s
# (docs/synthesis.md).
LOW_BIAS = 0.5
LOW_BIAS_CANDIDATES = 3
LOW_BIAS_MAX_CER = 0.10
# A line that begins with a false start (ink.starts_with_stray_mark) is judged as if this share of it
# were misread: more than either highest CER above, so it is never kept while a candidate without
# one reads well enough, but it still beats a line misread by a third. The recognizer reads such a
# mark as nothing or as one stray character, so its CER alone lets it through.
STRAY_MARK_ERROR = 0.3

# A user's ink is scaled so that one character is this wide, as in IAM-OnDB
# (median line width / characters), and resampled to the data's point spacing.
UNITS_PER_CHAR = 185.0
TYPICAL_STEP = 18.0  # median distance between consecutive IAM-OnDB points
# Without a text, a user's ink is scaled by its height instead: the median over
# IAM-OnDB lines of the spread between the 5th and 95th percentile of y.
TYPICAL_HEIGHT = 350.0


def selection(bias: float) -> tuple[int, float]:
    """Candidates written at once per line, and the highest CER at which one is kept, at ``bias``."""
    if bias < LOW_BIAS:
        return LOW_BIAS_CANDIDATES, LOW_BIAS_MAX_CER
    return CANDIDATES, MAX_LINE_CER


@dataclass
class Style:
    """A hand to write in: a primed line (normalised offsets) with its text."""

    id: int
    name: str
    text: str
    offsets: np.ndarray  # (T, 3), normalised
    bias: float = STYLE_BIAS  # the bias this style was chosen at

    @property
    def prime(self) -> Prime:
        return Prime(self.offsets, self.text)

    @property
    def sample_text(self) -> str:
        """The line `writemate styles --preview` writes in this style."""
        return f"Style {self.id}: the quick brown fox"


@dataclass
class Handwriting:
    """A written page: its lines of text and their strokes (mm, y down), ready to save."""

    texts: list[str]
    lines: list[list[np.ndarray]]  # per text line, one (N, 2) array per pen-down stroke
    page: render.PageStyle = field(default_factory=render.PageStyle)
    meta: dict = field(default_factory=dict)

    @property
    def strokes(self) -> list[np.ndarray]:
        """Every pen-down stroke of the page, in writing order."""
        return [s for line in self.lines for s in line]

    def with_page(self, **changes) -> "Handwriting":
        """The same handwriting with other page settings (stroke width, colour, smoothing...)."""
        return replace(self, page=replace(self.page, **changes))

    def to_svg(self) -> str:
        return render.to_svg(self.lines, self.page)

    def to_png(self, dpi: int = 150) -> bytes:
        return render.to_png(self.lines, self.page, dpi)

    def to_json(self) -> str:
        return render.to_json(self.lines, self.texts, self.meta)

    def to_inkml(self) -> bytes:
        """W3C InkML: one trace per stroke (mm, y down), one trace group per written line with its text as ``truth``."""
        from writemate.data import inkml

        written = [(text, strokes) for text, strokes in zip(self.texts, self.lines) if strokes]
        return inkml.write_inkml(inkml.document_from_samples(written))

    def save(self, path: str | Path) -> None:
        """Save as .svg, .png, .json or .inkml, chosen by the file name."""
        path = Path(path)
        kind = output_kind(path)
        data = {"svg": self.to_svg, "png": self.to_png, "json": self.to_json, "inkml": self.to_inkml}[kind]()
        render.save(path, data)


def output_kind(path: Path) -> str:
    kind = Path(path).suffix.lower().lstrip(".")
    if kind not in ("svg", "png", "json", "inkml"):
        raise WritemateError(f"{path}: output must end in .svg, .png, .json or .inkml")
    return kind


def prepare_text(text: str, replace_unknown: bool = False) -> str:
    """Check (or with ``replace_unknown``, fix) the characters of a text before writing it."""
    if replace_unknown:
        text = alphabet.to_plain(text)
    bad = alphabet.unknown_characters(text)
    if bad:
        raise alphabet.AlphabetError(bad)
    if not text.strip():
        raise WritemateError("nothing to write: the text is empty")
    return text


def user_ink_to_offsets(strokes: list[np.ndarray], text: str | None, stats: ink.OffsetStats) -> np.ndarray:
    """Any user's line of ink (any units) to normalised offsets on the scale of the training data.

    With its ``text`` the ink is scaled by its width per character; without
    (``None``, for the prediction network) by its height.
    """
    strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes if len(s)]
    if not strokes:
        raise WritemateError("the priming ink has no points")
    x0, _, x1, _ = ink.bounding_box(strokes)
    width = x1 - x0
    if width <= 0:
        raise WritemateError("the priming ink has no width")
    if text is None:
        ys = np.concatenate(strokes)[:, 1]
        height = np.percentile(ys, 95) - np.percentile(ys, 5)
        if height <= 0:
            raise WritemateError("the priming ink has no height")
        scale = TYPICAL_HEIGHT / height
    else:
        scale = UNITS_PER_CHAR * max(len(text.strip()), 1) / width
    strokes = [(s - strokes[0][0]) * scale for s in strokes]
    strokes = ink.resample(ink.remove_jitter(strokes, TYPICAL_STEP / 4), TYPICAL_STEP)
    return ink.normalise(ink.strokes_to_offsets(strokes), stats)


def read_prime_file(path: Path) -> list[np.ndarray]:
    """Strokes of one handwritten line from an IAM-OnDB line XML or a Writemate stroke JSON."""
    from writemate.data import iam_ondb

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WritemateError(f"{path}: cannot read ({e.strerror})") from e
    if path.suffix.lower() == ".json":
        try:
            lines = [strokes for _, strokes in render.read_json(data) if strokes]
        except WritemateError as e:
            raise WritemateError(f"{path}: {e}") from e
        if len(lines) != 1:
            raise WritemateError(f"{path}: a priming file must hold exactly one line of ink, found {len(lines)}")
        return lines[0]
    try:
        strokes = iam_ondb.parse_line_xml(data)
    except Exception as e:  # defusedxml and ElementTree raise several kinds
        raise WritemateError(f"{path}: not an IAM-OnDB line XML or Writemate JSON file ({e})") from e
    strokes, _ = ink.reject_corrupt(strokes, iam_ondb.MAX_STEP)
    return strokes


# Called while a page is written, with (page line, new points (K, 3): x and y in mm from where the
# line's pen first touched, y down, and 1 where the pen lifts after the point; restart): restart
# means the points shown so far for that line are dropped, because another copy of it is shown.
Watch = Callable[[int, np.ndarray, bool], None]
# Seconds between updates of Watch; 25 a second look smooth. The browser drawing them shares the CPU
# with sampling: a 4-line Studio write took 4.9 s when it was updated every 4 steps (the browser used
# 1.9 CPU seconds), 7.5-8.4 s every step, and 4.4 s at this period (1.1 CPU seconds).
LIVE_SECONDS = 0.04


class LiveLines:
    """Shows a batch of lines as :func:`synthesis.sample_batch` writes them (its ``watch``).

    Each line is written by several copies at once; one copy per line is
    shown: the first still writing, until one is accepted. When the shown
    copy ends without being accepted, or another is accepted, that one is
    shown from its start instead.
    """

    def __init__(self, page_lines: list[int], stats: ink.OffsetStats, watch: Watch, every: float = LIVE_SECONDS):
        self.page_lines = page_lines  # the page line of each text of the batch
        self.stats = stats
        self.watch = watch
        self.every = every  # seconds from one update sent to the next; the first and the last are sent at once
        self.shown: dict[int, int] = {}  # text -> the row shown
        self.sent: dict[int, tuple[int, np.ndarray]] = {}  # row -> (points sent, pen position in mm)
        self.last = -math.inf

    def __call__(self, progress: Progress) -> None:
        now = time.perf_counter()
        if len(progress.active) and now - self.last < self.every:
            return
        best = {}  # text -> the row to show: its accepted row, else its first row still writing
        for r in progress.active[::-1].tolist():
            best[int(progress.texts[r])] = r
        for r in np.flatnonzero(progress.accepted).tolist():
            best[int(progress.texts[r])] = r
        for i, page_line in enumerate(self.page_lines):
            row, restart = self.shown.get(i), False
            if i in best and row != best[i] and not (row is not None and progress.accepted[row]):
                restart, row = row is not None, best[i]
                self.shown[i], self.sent[row] = row, (0, np.zeros(2))
            if row is None:
                continue
            sent, pen = self.sent[row]
            new = progress.line(row)[sent:]
            if not len(new) and not restart:
                continue
            offsets = ink.denormalise(new, self.stats)
            if sent == 0:
                offsets[0, :2] = 0  # primed, the move from the primed line's end: the line starts where the pen touches
            points = pen + np.cumsum(offsets[:, :2], axis=0) / render.UNITS_PER_MM
            self.sent[row] = (sent + len(new), points[-1] if len(points) else pen)
            self.watch(page_line, np.column_stack([points, offsets[:, 2]]), restart)
            self.last = now  # a call with nothing new to show (a primed line's first step) waits for nothing


def batches(lines: list[str]) -> list[list[int]]:
    """The lines of a page that hold ink (their indices), in batches of up to ``MAX_LINES_PER_BATCH``."""
    todo = [i for i, line in enumerate(lines) if line.strip()]
    return [todo[at : at + MAX_LINES_PER_BATCH] for at in range(0, len(todo), MAX_LINES_PER_BATCH)]


class Writer:
    """A ready synthesis model with its styles. Make one with ``writemate.load()``."""

    def __init__(self, model: Synthesis, stats: ink.OffsetStats, styles: list[Style], info: dict, checker=None):
        self.model = model.eval()
        self.stats = stats
        self.styles = styles
        self.info = info
        # A Recognizer that reads written lines back (see ``write(check=True)``). The bundled
        # synthesis model, when this is None, loads the bundled recognizer (if installed) on its
        # first checked write; other models are checked only when given one.
        self.checker = checker
        self.bundled = False
        self._starts: OrderedDict[tuple, LineStarts] = OrderedDict()  # see _line_starts

    @classmethod
    def from_folder(cls, folder: str | Path) -> "Writer":
        folder = Path(folder)
        meta = checkpoint.read_config(folder)
        try:
            config = meta["config"]
            model = Synthesis(SynthesisConfig(**config["model"]))
            stats = ink.OffsetStats(**config["stats"])
        except (KeyError, TypeError, ValueError) as e:
            raise checkpoint.CheckpointError(f"{folder}: not a synthesis model config ({e!r})") from e
        checkpoint.load_weights(model, folder)
        styles = []
        styles_path = folder / STYLES_FILE
        if styles_path.exists():
            try:
                for s in json.loads(styles_path.read_text()):
                    offsets = np.asarray(s["offsets"], np.float32)
                    styles.append(Style(s["id"], s["name"], s["text"], offsets, s.get("bias", STYLE_BIAS)))
            except (KeyError, TypeError, ValueError) as e:
                raise checkpoint.CheckpointError(f"{styles_path}: not a styles file ({e!r})") from e
        writer = cls(model, stats, styles, meta)
        writer.bundled = folder.resolve().parent == loading.WEIGHTS_DIR.resolve()
        return writer

    def style(self, style: int | None) -> Style | None:
        if style is None:
            return None
        for s in self.styles:
            if s.id == style:
                return s
        ids = ", ".join(str(s.id) for s in self.styles) or "none bundled"
        raise WritemateError(f"no style {style}; choose one of: {ids}")

    def write(
        self,
        text: str,
        style: int | None = None,
        bias: float = 0.75,
        seed: int = 0,
        width: int = 45,
        prime_strokes: list[np.ndarray] | None = None,
        prime_text: str | None = None,
        replace_unknown: bool = False,
        page: render.PageStyle | None = None,
        progress: Callable[[int], None] | None = None,
        retries: int = RETRIES,
        check: bool = True,
        watch: Watch | None = None,
    ) -> Handwriting:
        """Write ``text`` (any length: it is wrapped to ``width`` characters a line).

        ``style`` picks a bundled hand; ``prime_strokes`` with ``prime_text``
        writes in the hand of a given line instead. ``bias`` trades variety
        for legibility (0: as sampled, 1-2: neater). Raises AlphabetError for
        characters outside the alphabet unless ``replace_unknown``.
        ``progress`` is called with the number of lines written after each
        batch of up to ``MAX_LINES_PER_BATCH`` lines. A line that loses its
        place in the text (it reaches the step cap or skips a word) is
        replaced by new lines in the running batch, up to ``retries`` times.
        With ``check`` and a recognizer (``self.checker``; for the bundled
        model, the bundled one), each line
        is written ``CANDIDATES`` times at once and read back as each ends;
        the first read with a character error rate of at most
        ``MAX_LINE_CER`` is kept (slower: on the 2-core machine a 20-line page
        took 4.8-6.1 s instead of 4.1-4.9 s, docs/synthesis.md); below bias
        ``LOW_BIAS``, ``LOW_BIAS_CANDIDATES`` and ``LOW_BIAS_MAX_CER`` (:func:`selection`).
        ``watch`` (see :data:`Watch`) is shown each line's points as they are written.
        """
        lines, prime = self.plan(text, style, bias, seed, width, prime_strokes, prime_text, replace_unknown)
        started = time.perf_counter()
        checker = self._checker() if check else None
        strokes_per_line = self._sample_lines(lines, bias, seed, prime, progress, retries, checker, watch)
        page = page or render.PageStyle()
        placed = render.place_lines(strokes_per_line, page)
        meta = {"style": style, "bias": bias, "seed": seed, "seconds": round(time.perf_counter() - started, 3)}
        return Handwriting(texts=lines, lines=placed, page=page, meta=meta)

    def plan(
        self,
        text: str,
        style: int | None = None,
        bias: float = 0.75,
        seed: int = 0,
        width: int = 45,
        prime_strokes: list[np.ndarray] | None = None,
        prime_text: str | None = None,
        replace_unknown: bool = False,
    ) -> tuple[list[str], Prime | None]:
        """The lines :meth:`write` writes and the primed line it starts from, for the same arguments;
        raises what it raises for input it cannot write (AlphabetError, WritemateError), before any sampling."""
        text = prepare_text(text, replace_unknown)
        mdn.check_bias_and_seed(bias, seed)
        prime = None
        if prime_strokes is not None:
            if not prime_text or not prime_text.strip():
                raise WritemateError("priming with your own ink needs the text of that ink (prime_text)")
            prime_text = prepare_text(" ".join(prime_text.split()), replace_unknown)
            prime = Prime(user_ink_to_offsets(prime_strokes, prime_text, self.stats), prime_text)
        elif style is not None:
            prime = self.style(style).prime
        return render.wrap(text, width), prime

    def prepare(self, lines: list[str], prime: Prime | None, going_on: Callable[[], bool] | None = None) -> bool:
        """Read the primed line ahead of a :meth:`write` whose :meth:`plan` gave ``lines`` and
        ``prime``, whatever its bias and seed: ``writer.prepare(*writer.plan(text, style=3))``.
        How the network reads a primed line depends on the text that follows it, and for a short
        text that reading is most of the wait before the first point (0.2-0.3 s for a style on the
        2-core machine); the Studio prepares while the user is still choosing. Returns whether a
        reading is kept: False without a primed line, or when ``going_on()`` turned false (see
        :func:`synthesis.line_starts`)."""
        chunks = batches(lines)
        if prime is None or not chunks:
            return False
        return self._line_starts([lines[i] for i in chunks[0]], prime, going_on) is not None

    def _line_starts(self, texts: list[str], prime: Prime | None, going_on: Callable[[], bool] | None = None) -> LineStarts | None:
        """:func:`synthesis.line_starts`, kept for the last ``KEPT_STARTS`` primed batches read: a page
        written again with another seed or bias starts from the same reading."""
        if prime is None:
            return line_starts(self.model, texts)
        key = (tuple(texts), prime.text, prime.offsets.tobytes())
        starts = self._starts.pop(key, None)
        if starts is None:
            starts = line_starts(self.model, texts, prime, going_on)
        if starts is not None:
            self._starts[key] = starts  # the last used last
            while len(self._starts) > KEPT_STARTS:
                self._starts.popitem(last=False)
        return starts

    def _checker(self):
        if self.checker is None and self.bundled and "recognizer" in loading.bundled():
            self.checker = loading.load("recognizer")
        return self.checker

    def _sample_lines(
        self,
        lines: list[str],
        bias: float,
        seed: int,
        prime: Prime | None,
        progress: Callable[[int], None] | None,
        retries: int,
        checker,
        watch: Watch | None = None,
    ) -> list[list[np.ndarray]]:
        """Strokes (whiteboard units) per line; blank lines get none."""
        out: list[list[np.ndarray]] = [[] for _ in lines]
        judge = self.judge(checker) if checker is not None else None
        candidates, max_error = selection(bias)
        for number, chunk in enumerate(batches(lines)):
            texts = [lines[i] for i in chunk]
            sampled = sample(
                self.model,
                texts,
                bias=bias,
                seed=seed + number * MAX_LINES_PER_BATCH,
                prime=prime,
                retries=retries,
                candidates=candidates if judge else 1,
                judge=judge,
                max_error=max_error,
                watch=LiveLines(chunk, self.stats, watch) if watch else None,
                starts=self._line_starts(texts, prime),
            )
            for i, offsets in zip(chunk, sampled):
                out[i] = self._strokes(offsets)
            if progress:
                progress(len(chunk))
        return out

    def _strokes(self, offsets: np.ndarray) -> list[np.ndarray]:
        return ink.offsets_to_strokes(ink.denormalise(offsets, self.stats))

    def judge(self, checker) -> Judge:
        """Lines judged by their character error rate as ``checker`` (a Recognizer) reads them, by best path,
        straightened as on the page (the reading of a line near the threshold can change with its slant),
        plus ``STRAY_MARK_ERROR`` for a line that begins with a false start; and where the first word
        read wrong starts (the first word for a false start), for sampling to write on from there."""

        def judge(texts: list[str], lines: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            strokes = [self._strokes(offsets) for offsets in lines]
            readings = [r.text for r in checker.read_lines([render.straighten(s) for s in strokes], beam=0)]
            cer = np.array([metrics.line_cer(t, r) for t, r in zip(texts, readings)])
            stray = np.array([ink.starts_with_stray_mark(s, t) for s, t in zip(strokes, texts)])
            misread = np.array([metrics.first_misread_word(t, r) for t, r in zip(texts, readings)])
            return cer + STRAY_MARK_ERROR * stray, np.where(stray, 0, misread)

        return judge
