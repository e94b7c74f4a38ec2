"""Labelled feature sequences from folders of ink, audio or plain vectors, and honest splits.

Three kinds of data folder are read (:func:`load_folder`):

* **ink**: InkML files (every trace group with a ``truth`` annotation is a
  sample, its writer the ``writer`` annotation or else the file name) and
  JSON files: Writemate stroke JSON (what ``writemate write -o x.json`` saves; each
  line is a sample labelled by its text), or simple sample JSON
  (``{"strokes": [[[x, y], ...], ...], "label": ..., "writer": ...}``, or a list of
  such objects; ``label`` and ``writer`` optional);
* **audio**: WAV files, labelled by an FSDD name ``{digit}_{speaker}_{take}.wav``
  or else by the name of their folder;
* **vectors**: one subfolder per class, each sample a ``.npy`` array or a
  ``.txt`` file with one feature vector per row (the seed projects' format).

Ink is turned into features by :func:`ink_features`, audio by
:func:`writemate.data.audio.mfcc`; :class:`FeatureConfig` records which, so a
trained model reads new files exactly as it read its training data.

Splits keep people apart: :func:`make_split` puts every writer or speaker
(the *group* of a sample) wholly in train, validation or test, chosen by a
seeded shuffle or named explicitly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from writemate import ink, render
from writemate.data import audio, inkml
from writemate.errors import WritemateError

KINDS = ("ink", "audio", "vectors")
INK_SUFFIXES = (".inkml", ".json")
AUDIO_SUFFIXES = (".wav",)
VECTOR_SUFFIXES = (".npy", ".txt")


class DataError(WritemateError):
    """A data folder or file cannot be used."""


# -- features ------------------------------------------------------------------------


@dataclass
class InkFeatureConfig:
    """Per point: normalised position (x, y), offset from the previous point (dx, dy) and
    pen state (1 where the pen lifts after the point). Positions are centred on the
    bounding box and divided by its larger side; strokes are first resampled to points
    ``step`` apart along the pen path (in the same units), which removes the tablets'
    different sampling rates (0 keeps the recorded points)."""

    position: bool = True
    offsets: bool = True
    pen: bool = True
    step: float = 0.1

    @property
    def size(self) -> int:
        return 2 * self.position + 2 * self.offsets + self.pen


@dataclass
class FeatureConfig:
    kind: str = "ink"  # "ink", "audio" or "vectors"
    ink: InkFeatureConfig = field(default_factory=InkFeatureConfig)
    audio: audio.MfccConfig = field(default_factory=audio.MfccConfig)
    vector_size: int = 0  # features per row of "vectors" data (set when the data is read)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise DataError(f"unknown data kind {self.kind!r}; choose from {', '.join(KINDS)}")

    @property
    def size(self) -> int:
        return {"ink": self.ink.size, "audio": self.audio.size, "vectors": self.vector_size}[self.kind]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        return cls(
            kind=d["kind"],
            ink=InkFeatureConfig(**d.get("ink", {})),
            audio=audio.MfccConfig(**d.get("audio", {})),
            vector_size=d.get("vector_size", 0),
        )


def resample_stroke(stroke: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` along the stroke's path, first and last point kept."""
    stroke = np.asarray(stroke, dtype=np.float64).reshape(-1, 2)
    if len(stroke) < 2:
        return stroke
    travelled = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(stroke, axis=0).T))])  # (N,)
    if travelled[-1] <= step:
        return stroke[[0, -1]]
    at = np.append(np.arange(0.0, travelled[-1], step), travelled[-1])
    return np.column_stack([np.interp(at, travelled, stroke[:, 0]), np.interp(at, travelled, stroke[:, 1])])


def ink_features(strokes: list[np.ndarray], config: InkFeatureConfig) -> np.ndarray:
    """Strokes (absolute points, one array per pen-down stroke) to features ``(T, config.size)``."""
    strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    strokes = [s[np.isfinite(s).all(axis=1)] for s in strokes]
    strokes = [s for s in strokes if len(s)]
    if not strokes:
        raise DataError("a sample has no pen points")
    min_x, min_y, max_x, max_y = ink.bounding_box(strokes)
    scale = max(max_x - min_x, max_y - min_y) or 1.0
    centre = np.array([(min_x + max_x) / 2, (min_y + max_y) / 2])
    strokes = [(s - centre) / scale for s in strokes]  # now within [-0.5, 0.5]
    if config.step > 0:
        strokes = [resample_stroke(s, config.step) for s in strokes]
    points = np.concatenate(strokes)  # (T, 2)
    offsets = ink.strokes_to_offsets(strokes)  # (T, 3): dx, dy, pen lifts after the point
    columns = []
    if config.position:
        columns.append(points)
    if config.offsets:
        columns.append(offsets[:, :2])
    if config.pen:
        columns.append(offsets[:, 2:])
    return np.concatenate(columns, axis=1).astype(np.float32)


# -- labelled sequences ----------------------------------------------------------------


@dataclass
class SequenceSet:
    sequences: list[np.ndarray] = field(default_factory=list)  # (T_i, F) float32
    labels: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # who made each sample: writer, speaker, or the sample itself
    sources: list[str] = field(default_factory=list)  # file, with "#id" for a sample inside a file

    def __len__(self) -> int:
        return len(self.sequences)

    def add(self, sequence: np.ndarray, label: str, group: str, source: str) -> None:
        self.sequences.append(sequence)
        self.labels.append(label)
        self.groups.append(group)
        self.sources.append(source)

    def subset(self, indices) -> "SequenceSet":
        indices = list(indices)
        return SequenceSet(
            [self.sequences[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.groups[i] for i in indices],
            [self.sources[i] for i in indices],
        )


def detect_kind(paths: list[Path]) -> str:
    """The data kind of a list of files; raises DataError for none or a mixture."""
    kinds = set()
    for path in paths:
        suffix = path.suffix.lower()
        kinds.add("ink" if suffix in INK_SUFFIXES else "audio" if suffix in AUDIO_SUFFIXES else "vectors")
    if len(kinds) != 1:
        found = ", ".join(sorted(kinds)) or "none"
        raise DataError(f"expected files of one kind (InkML/JSON ink, WAV audio or .npy/.txt vectors), found: {found}")
    return kinds.pop()


def data_files(path: Path) -> list[Path]:
    """Every readable sample file under ``path`` (or ``path`` itself), sorted."""
    path = Path(path)
    suffixes = INK_SUFFIXES + AUDIO_SUFFIXES + VECTOR_SUFFIXES
    names = ", ".join(suffixes)
    if path.is_file():
        if path.suffix.lower() not in suffixes:
            raise DataError(f"{path}: not a sample file (expected {names})")
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise DataError(f"{path}: no {names} files found")
    return files


def read_stroke_json(path: Path) -> list[inkml.InkSample]:
    """Samples of a stroke JSON file: Writemate stroke JSON or simple sample JSON (see the module notes)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not readable JSON ({e})") from e
    if isinstance(data, dict) and data.get("format") == render.STROKES_FORMAT:
        try:
            lines = render.read_json(json.dumps(data))
        except WritemateError as e:
            raise DataError(f"{path}: {e}") from e
        return [inkml.InkSample(text, strokes, {"label": text}, str(i)) for i, (text, strokes) in enumerate(lines) if strokes]
    items = data if isinstance(data, list) else [data]
    samples = []
    for i, item in enumerate(items):
        try:
            strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in item["strokes"]]
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f'{path}: item {i} needs "strokes": a list of [[x, y], ...] strokes') from e
        annotations = {k: str(item[k]) for k in ("label", "writer") if item.get(k) is not None}
        samples.append(inkml.InkSample(annotations.get("label", ""), strokes, annotations, str(i)))
    return samples


def ink_samples(path: Path) -> list[inkml.InkSample]:
    """Labelled (or, for prediction, unlabelled) ink samples of one InkML or stroke JSON file."""
    if path.suffix.lower() == ".json":
        return read_stroke_json(path)
    doc = inkml.read_inkml(path)
    samples = doc.samples()
    if not samples and doc.traces:  # unlabelled ink: the whole file is one sample
        samples = [inkml.InkSample("", doc.strokes(list(doc.traces)), dict(doc.annotations))]
    return samples


def read_vectors(path: Path, size: int = 0) -> np.ndarray:
    """A ``(T, F)`` float32 sequence from ``.npy`` or ``.txt`` (rows of numbers, spaces or commas)."""
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            array = np.loadtxt(path, delimiter="," if "," in path.read_text() else None, ndmin=2)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable feature file ({e})") from e
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or len(array) == 0 or not np.isfinite(array).all():
        raise DataError(f"{path}: expected a non-empty (T, F) array of finite numbers, got shape {array.shape}")
    if size and array.shape[1] != size:
        raise DataError(f"{path}: rows have {array.shape[1]} features, expected {size}")
    return array


def read_file(path: Path, features: FeatureConfig, labelled: bool = True) -> SequenceSet:
    """The samples of one file as features; labels come from the file (or its folder)."""
    out = SequenceSet()
    if features.kind == "ink":
        for sample in ink_samples(path):
            if labelled and not sample.label:
                continue
            group = sample.writer or path.stem
            source = f"{path}#{sample.id}" if sample.id is not None else str(path)
            out.add(ink_features(sample.strokes, features.ink), sample.label, group, source)
    elif features.kind == "audio":
        named = audio.fsdd_name(path)
        label, speaker = (named[0], named[1]) if named else (path.parent.name, path.stem)
        out.add(audio.wav_features(path, features.audio), label, speaker, str(path))
    else:
        out.add(read_vectors(path, features.vector_size), path.parent.name, str(path), str(path))
    return out


def load_folder(
    path: Path | list[Path], features: FeatureConfig | None = None, labelled: bool = True
) -> tuple[SequenceSet, FeatureConfig]:
    """Read every sample under ``path`` (a file or folder, or a list of them);
    ``features`` defaults to the kind's defaults.

    Returns the samples and the feature config used (with ``vector_size`` set for vectors).
    With ``labelled=False`` (for prediction) ink samples without a label are kept too.
    Audio with ``speaker_cmvn`` is normalised per speaker over everything read together.
    """
    paths = path if isinstance(path, list) else [path]
    files = [file for p in paths for file in data_files(p)]
    kind = detect_kind(files)
    features = features or FeatureConfig(kind=kind)
    if kind != features.kind:
        where = ", ".join(str(p) for p in paths)
        raise DataError(f"{where}: holds {kind} data, but the model reads {features.kind}")
    if kind == "vectors" and not features.vector_size:
        features.vector_size = read_vectors(files[0]).shape[1]
    out = SequenceSet()
    for file in files:
        part = read_file(file, features, labelled)
        for i in range(len(part)):
            out.add(part.sequences[i], part.labels[i], part.groups[i], part.sources[i])
    if not len(out):
        raise DataError(f"{', '.join(map(str, paths))}: no {'labelled ' if labelled else ''}samples found")
    if kind == "audio" and features.audio.speaker_cmvn:
        out = normalise_speakers(out)
    return out, features


def _by_group(groups: list[str]) -> dict[str, list[int]]:
    """Indices of the samples of each group (writer or speaker), groups in first-seen order."""
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    return members


def normalise_speakers(data: SequenceSet) -> SequenceSet:
    """Per-speaker CMVN: each group's features to zero mean and unit variance over all its frames.

    It removes what a speaker's voice and microphone add to every recording
    (a fixed filter is a constant offset in the cepstrum) while keeping what
    differs between their words; with one recording per group it is per-recording CMVN.
    """
    out = data.subset(range(len(data)))
    for indices in _by_group(out.groups).values():
        frames = np.concatenate([out.sequences[i] for i in indices])  # (sum T, F)
        mean, std = frames.mean(axis=0), frames.std(axis=0) + 1e-5
        for i in indices:
            out.sequences[i] = ((out.sequences[i] - mean) / std).astype(np.float32)
    return out


def with_audio_copies(data: SequenceSet, config: audio.MfccConfig, seed: int) -> SequenceSet:
    """``data`` plus ``config.train_copies`` copies of each speaker's recordings (training sets only).

    Each copy of a speaker is one imagined speaker: one frequency warp and one
    spectral tilt for all of that speaker's recordings.
    """
    rng = np.random.default_rng(seed)
    out = data.subset(range(len(data)))
    members = _by_group(data.groups)
    for group in sorted(members):
        indices = members[group]
        signals = [audio.load_wav(data.sources[i], config.sample_rate) for i in indices]  # read once for all copies
        for _ in range(config.train_copies):
            warp, tilt = audio.draw_voice(config, rng)
            copy = SequenceSet()
            for i, signal in zip(indices, signals):
                copy.add(audio.mfcc(signal, config, warp=warp, tilt_db=tilt), data.labels[i], group, data.sources[i])
            if config.speaker_cmvn:
                copy = normalise_speakers(copy)
            for i in range(len(copy)):
                out.add(copy.sequences[i], copy.labels[i], copy.groups[i], copy.sources[i])
    return out


def write_folder(root: Path, data: SequenceSet, fmt: str = "npy") -> None:
    """Write sequences in the generic format: ``root/<label>/<n>.npy`` (or ``.txt``)."""
    root = Path(root)
    counts: dict[str, int] = {}
    for sequence, label in zip(data.sequences, data.labels):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        n = counts[label] = counts.get(label, -1) + 1
        if fmt == "npy":
            np.save(folder / f"{n:05d}.npy", np.asarray(sequence, dtype=np.float32))
        else:
            np.savetxt(folder / f"{n:05d}.txt", np.asarray(sequence, dtype=np.float32), fmt="%.7g")


# -- splits ----------------------------------------------------------------------------


@dataclass
class Split:
    train: list[int]
    val: list[int]
    test: list[int]
    test_groups: list[str] = field(default_factory=list)  # empty when split by sample
    val_groups: list[str] = field(default_factory=list)


def _take_groups(order: list[str], counts: dict[str, int], target: int) -> list[str]:
    """Groups from the front of ``order`` until they hold at least ``target`` samples."""
    taken, total = [], 0
    for group in order:
        if total >= target:
            break
        taken.append(group)
        total += counts[group]
    return taken


def make_split(
    groups: list[str],
    by_group: bool,
    seed: int = 0,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    test_groups: list[str] | None = None,
    val_groups: list[str] | None = None,
    val_by_group: bool | None = None,
) -> Split:
    """Indices for training, validation and test.

    ``by_group``: whole groups (writers, speakers) go to the test set, either
    ``test_groups`` or, from a shuffle by ``seed``, groups until ``test_fraction``
    of the samples. Validation likewise from the remaining groups (``val_groups``
    or ``val_fraction``), or, with ``val_by_group=False``, ``val_fraction`` of the
    remaining samples (validation from known people: for data with few people).
    Without ``by_group`` samples are shuffled and cut.
    """
    n = len(groups)
    rng = np.random.default_rng(seed)
    if not 0 <= test_fraction < 1 or not 0 <= val_fraction < 1:
        raise DataError("test and validation fractions must be in [0, 1)")
    val_by_group = by_group if val_by_group is None else val_by_group
    if not by_group:
        if test_groups or val_groups:
            raise DataError("test and validation groups need a split by writer or speaker")
        order = rng.permutation(n).tolist()
        n_test, n_val = round(n * test_fraction), round(n * val_fraction)
        return Split(
            train=sorted(order[n_test + n_val :]),
            val=sorted(order[n_test : n_test + n_val]),
            test=sorted(order[:n_test]),
        )
    counts: dict[str, int] = {}
    for g in groups:
        counts[g] = counts.get(g, 0) + 1
    order = [str(g) for g in rng.permutation(sorted(counts))]
    for named in (test_groups or []) + (val_groups or []):
        if named not in counts:
            raise DataError(f"no samples of {named!r}; known: {', '.join(sorted(counts)[:20])}")
    test = list(test_groups) if test_groups else _take_groups(order, counts, round(n * test_fraction))
    rest = [g for g in order if g not in test]
    if val_groups:
        val = [g for g in val_groups if g not in test]
    elif val_by_group:
        val = _take_groups(rest, counts, round(n * val_fraction))
    else:
        val = []
    test_set, val_set = set(test), set(val)
    held = test_set | val_set
    train = [i for i in range(n) if groups[i] not in held]
    val_idx = [i for i in range(n) if groups[i] in val_set]
    if not val_by_group and not val_groups:  # validation samples drawn from the training people
        picked = rng.permutation(len(train))[: round(len(train) * val_fraction)]
        val_idx = sorted(train[i] for i in picked)
        train = sorted(set(train) - set(val_idx))
    split = Split(train, val_idx, [i for i in range(n) if groups[i] in test_set], sorted(test), sorted(val))
    if not split.train:
        raise DataError("the split leaves no training samples")
    return split
