"""The Python API for reading handwriting: ``writemate.load("recognizer").read(ink)``.

    >>> import writemate
    >>> recognizer = writemate.load("recognizer")
    >>> recognizer.read("note.inkml")                 # a file: IAM-OnDB line XML, InkML or stroke JSON
    'Dear Ada,\\nthank you for the books.'
    >>> recognizer.read(strokes, beam=16)            # absolute (N, 2) arrays, any units, y down
    >>> reading = recognizer.read(strokes, scores=True)
    >>> reading.lines[0].score, reading.lines[0].alternatives

Ink holding several lines is split into lines first (:func:`writemate.ink.split_lines`).
``beam=0`` decodes by best path; ``beam=N`` runs prefix beam search, with the
character language model when the recognizer has one (see :mod:`writemate.decoding`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from writemate import alphabet, checkpoint, decoding, ink, render
from writemate.errors import WritemateError
from writemate.models.recognizer import RecognitionNetwork, RecognizerConfig, features, log_probs_of

LM_FOLDER = "lm"  # a language model saved inside a recognizer's folder is loaded with it


@dataclass
class DecodingConfig:
    """How beam search runs when not told otherwise (stored in the model's config.json)."""

    beam: int = 16
    lm_weight: float = 0.5  # weight of the language model's log-probability
    bonus: float = 1.0  # added per character, against the language model's preference for short texts
    prune: float = -8.0  # labels below this log-probability in a frame are not tried as new characters
    max_labels: int = 8  # nor more than this many per frame (the likeliest)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LineReading:
    """What one line of ink says, with its scores (natural logarithms)."""

    text: str
    score: float  # what the decoder ranked by: log P(text | ink), plus the language model's part if used
    ctc_log_prob: float  # log P(text | ink) under the network, summed over every alignment
    lm_log_prob: float | None = None  # log P_LM(text, end of line), when a language model was used
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # beam search's runners-up, with scores


@dataclass
class Reading:
    text: str  # the lines, top to bottom, joined by newlines
    lines: list[LineReading]
    truth: str | None = None  # what a file's annotations say it holds (InkML truth, stroke JSON text), if any


@dataclass
class InkPiece:
    """Ink read from a file: its strokes (any units, y down) and the text it is labelled with, if any."""

    strokes: list[np.ndarray]
    truth: str | None = None


# -- reading files ----------------------------------------------------------------


def load_ink(path: str | Path) -> list[InkPiece]:
    """The ink of an IAM-OnDB line XML, a W3C InkML file or a Writemate stroke JSON, told apart by content.

    InkML trace groups annotated with ``truth`` become one piece each; a file
    without them is one piece of all its traces. Each line of a stroke JSON
    is one piece. Raises :class:`WritemateError` naming the file.
    """
    from defusedxml import ElementTree as SafeET

    from writemate.data import iam_ondb, inkml

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WritemateError(f"{path}: cannot read ({e.strerror or e})") from e
    if data.lstrip()[:1] == b"{":
        try:
            pieces = [InkPiece(strokes, text or None) for text, strokes in render.read_json(data)]
        except WritemateError as e:
            raise WritemateError(f"{path}: {e}") from e
    else:
        try:
            root = SafeET.fromstring(data)
        except Exception as e:  # defusedxml and ElementTree raise several kinds
            raise WritemateError(f"{path}: not IAM-OnDB line XML, InkML or Writemate stroke JSON ({e})") from e
        if root.tag.rsplit("}", 1)[-1] == "ink":
            doc = inkml.read_inkml(path)  # its errors name the file
            samples = doc.samples()
            if samples:
                pieces = [InkPiece(s.strokes, s.label or None) for s in samples]
            else:
                pieces = [InkPiece(doc.strokes(list(doc.traces)), None)]
        elif root.tag == "WhiteboardCaptureSession":
            try:
                strokes = iam_ondb.parse_line_xml(data)
            except (ValueError, TypeError) as e:
                raise WritemateError(f"{path}: unreadable IAM-OnDB line XML ({e})") from e
            pieces = [InkPiece(ink.reject_corrupt(strokes, iam_ondb.MAX_STEP)[0])]
        else:
            raise WritemateError(f"{path}: XML root <{root.tag}> is neither InkML <ink> nor IAM-OnDB")
    pieces = [InkPiece(_finite(p.strokes), p.truth) for p in pieces]
    pieces = [p for p in pieces if p.strokes]
    if not pieces:
        raise WritemateError(f"{path}: holds no ink")
    return pieces


def _finite(strokes: list[np.ndarray]) -> list[np.ndarray]:
    """Strokes without points whose x or y is unknown (InkML's "?")."""
    out = []
    for s in strokes:
        s = np.asarray(s, dtype=np.float64).reshape(-1, 2)
        s = s[np.isfinite(s).all(axis=1)]
        if len(s):
            out.append(s)
    return out


# -- the ready recognizer --------------------------------------------------------------


class Recognizer:
    """A ready handwriting recognizer. Make one with ``writemate.load("recognizer")`` or a model folder."""

    def __init__(self, model: RecognitionNetwork, lm=None, decoding_config: DecodingConfig | None = None, info=None):
        self.model = model.eval()
        self.config: RecognizerConfig = model.config
        self.decoding = decoding_config or DecodingConfig()
        self.info = info or {}
        self.lm = None  # a writemate.models.language.TextPredictor, or None
        self._scorer = None
        if lm is not None:
            self.use_lm(lm)

    @classmethod
    def from_folder(cls, folder: str | Path, lm=None) -> "Recognizer":
        """The recognizer saved in ``folder``, with ``lm`` (a language model or its folder), else the
        language model in ``folder/lm`` if there is one."""
        folder = Path(folder)
        meta = checkpoint.read_config(folder)
        try:
            model = RecognitionNetwork(RecognizerConfig(**meta["config"]["model"]))
            decoding_config = DecodingConfig(**meta["config"].get("decoding", {}))
        except (KeyError, TypeError, ValueError) as e:
            raise checkpoint.CheckpointError(f"{folder}: not a recognizer config ({e})") from e
        checkpoint.load_weights(model, folder)
        if lm is None and (folder / LM_FOLDER / checkpoint.CONFIG).exists():
            lm = folder / LM_FOLDER
        return cls(model, lm, decoding_config, {k: v for k, v in meta.items() if k != "config"})

    def use_lm(self, lm) -> None:
        """Decode beam search with ``lm``: a character language model, its folder or bundled name (None: none)."""
        if lm is None:
            self.lm, self._scorer = None, None
            return
        if isinstance(lm, (str, Path)):
            from writemate import loading
            from writemate.models.language import FAMILY as LM_FAMILY

            folder = loading.resolve(lm)
            family = checkpoint.read_config(folder).get("family")
            if family != LM_FAMILY:
                raise WritemateError(f"{lm}: a {family} model, not a language model")
            lm = loading.load(folder)
        try:
            self._scorer = decoding.CharLanguageScorer(lm)
        except ValueError as e:
            raise WritemateError(str(e)) from e
        self.lm = lm

    # -- the steps, for callers that want them separately (evaluation) --------------

    def features(self, lines: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Network input (T_i, F) of each line of ink."""
        out = []
        for strokes in lines:
            try:
                out.append(features(strokes, self.config))
            except ValueError as e:
                raise WritemateError(str(e)) from e
        return out

    def log_probs(self, lines: list[list[np.ndarray]], progress=None) -> list[np.ndarray]:
        """Per-frame log-probabilities (T'_i, C) of each line (labels: blank, then the alphabet)."""
        return log_probs_of(self.model, self.features(lines), progress=progress)

    def decode(self, log_probs: np.ndarray, beam: int = 0) -> LineReading:
        """One line's text from its log-probabilities: best path (``beam`` 0) or beam search."""
        if beam <= 0:
            labels = decoding.best_path(log_probs)
            ctc = decoding.sequence_log_prob(log_probs, labels)
            return LineReading(alphabet.decode(labels), ctc, ctc)
        d = self.decoding
        if self._scorer is not None:
            self._scorer.reset()
        hypotheses = decoding.prefix_beam_search(
            log_probs, beam, self._scorer, d.lm_weight, d.bonus, d.prune, d.max_labels
        )
        best = hypotheses[0]
        others = [(alphabet.decode(h.labels), h.score) for h in hypotheses[1:]]
        return LineReading(alphabet.decode(best.labels), best.score, best.ctc_log_prob, best.lm_log_prob, others)

    def default_beam(self) -> int:
        """Beam search with the language model when there is one, else best path."""
        return self.decoding.beam if self.lm is not None else 0

    # -- reading ---------------------------------------------------------------------

    def read_lines(self, lines: list[list[np.ndarray]], beam: int | None = None) -> list[LineReading]:
        """Each of ``lines`` read as one line of text (no splitting); run through the network in batches."""
        beam = self.default_beam() if beam is None else beam
        return [self.decode(lp, beam) for lp in self.log_probs(lines)]

    def read(self, ink_or_path, beam: int | None = None, scores: bool = False) -> str | Reading:
        """The text of a file or of strokes, lines joined by newlines (a :class:`Reading` with ``scores``).

        ``ink_or_path``: a path to an IAM-OnDB line XML, InkML or stroke JSON
        file, or a list of strokes (``(N, 2)`` absolute points, any units,
        y down). ``beam``: 0 for best path, N for beam search (default: beam
        search with the language model if there is one, else best path).
        """
        if isinstance(ink_or_path, (str, Path)):
            pieces = load_ink(ink_or_path)
        else:
            pieces = [InkPiece(_finite(ink_or_path))]
        lines = [line for piece in pieces for line in ink.split_lines(piece.strokes)]
        if not lines:
            raise WritemateError("the ink has no points")
        readings = self.read_lines(lines, beam)
        text = "\n".join(r.text for r in readings)
        if not scores:
            return text
        truths = [p.truth for p in pieces if p.truth]
        return Reading(text, readings, "\n".join(truths) if truths else None)
