"""Pure numpy functions on pen ink.

Two representations are used throughout Writemate:

* **strokes**: a list of ``(N_i, 2)`` float arrays of absolute ``(x, y)`` points,
  one array per pen-down stroke, y growing downwards (as on screen, in
  IAM-OnDB and in InkML from tablets).
* **offsets**: one ``(T, 3)`` float array, the input/target format of Graves
  (2013) section 4: row ``t`` is ``(dx_t, dy_t, eos_t)`` where ``(dx, dy)`` is
  the move from point ``t-1`` to point ``t`` and ``eos_t`` is 1 when point ``t``
  is the last point of its stroke (the pen lifts after it). Row 0 has
  ``dx = dy = 0``: a line starts wherever the pen first touches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def strokes_to_offsets(strokes: list[np.ndarray]) -> np.ndarray:
    """Absolute strokes to Graves offsets ``(T, 3)``; empty strokes are ignored."""
    strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    strokes = [s for s in strokes if len(s)]
    if not strokes:
        return np.zeros((0, 3), dtype=np.float32)
    points = np.concatenate(strokes)  # (T, 2)
    eos = np.zeros(len(points))
    eos[np.cumsum([len(s) for s in strokes]) - 1] = 1.0
    deltas = np.diff(points, axis=0, prepend=points[:1])  # row 0 becomes (0, 0)
    return np.column_stack([deltas, eos]).astype(np.float32)


def offsets_to_strokes(offsets: np.ndarray, start: tuple[float, float] = (0.0, 0.0)) -> list[np.ndarray]:
    """Graves offsets ``(T, 3)`` back to absolute strokes, the first point at ``start``.

    The last stroke is kept even when the final row does not lift the pen.
    """
    offsets = np.asarray(offsets, dtype=np.float64).reshape(-1, 3)
    if len(offsets) == 0:
        return []
    points = np.cumsum(offsets[:, :2], axis=0) + np.asarray(start, dtype=np.float64)
    ends = np.flatnonzero(offsets[:, 2] > 0.5) + 1
    return [s for s in np.split(points, ends) if len(s)]


def last_stroke_size(offsets: np.ndarray) -> float:
    """The longer side of the bounding box of the last stroke of offsets ``(T, 3)``, in their units
    (whether or not the final row lifts the pen); 0 for a stroke of one point."""
    offsets = np.asarray(offsets, dtype=np.float64).reshape(-1, 3)
    lifts = np.flatnonzero(offsets[:-1, 2] > 0.5)
    first = lifts[-1] + 1 if len(lifts) else 0  # the stroke's first point; its row is the move to it, not ink
    points = np.cumsum(offsets[first:, :2], axis=0)
    return float(np.ptp(points, axis=0).max()) if len(points) else 0.0


# A false start: a first stroke smaller than STRAY_SIZE character widths, with all the rest of the
# line's ink more than STRAY_GAP character widths to its right. Of the 10,278 IAM-OnDB lines that
# begin with a word of two or more letters or digits, 5 (0.05 %) start so, four of them with a stray
# dot or tick in the data itself; unbiased samples do in about 1 line of 100 (docs/synthesis.md, "False starts").
STRAY_SIZE = 0.7
STRAY_GAP = 1.0


def starts_with_stray_mark(strokes: list[np.ndarray], text: str) -> bool:
    """Whether a line of ink ``strokes`` that writes ``text`` begins with a false start: a small mark
    set apart to the left of the rest (``STRAY_SIZE``, ``STRAY_GAP``). A character width is the
    ink's width over the text's characters. Only for a text that begins with a word of two or more
    letters or digits: a first word "a" or "I" is such a mark, and a quote or a dash may be."""
    text = text.strip()
    strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes if len(s)]
    if len(strokes) < 2 or len(text) < 2 or not text[:2].isalnum():
        return False
    x0, _, x1, _ = bounding_box(strokes)
    char_width = (x1 - x0) / len(text)
    first, rest = strokes[0], np.concatenate(strokes[1:])
    size = np.ptp(first, axis=0).max()
    gap = rest[:, 0].min() - first[:, 0].max()
    return bool(size < STRAY_SIZE * char_width and gap > STRAY_GAP * char_width)


@dataclass(frozen=True)
class OffsetStats:
    """Scale of the pen moves, used to normalise offsets for the networks.

    Offsets are divided by ``std`` and not shifted, so that a zero move stays
    zero (row 0 of every line, and the priming start state).
    """

    mean_x: float
    mean_y: float
    std_x: float
    std_y: float

    @property
    def scale(self) -> np.ndarray:
        return np.array([self.std_x, self.std_y], dtype=np.float32)

    def to_dict(self) -> dict:
        return {"mean_x": self.mean_x, "mean_y": self.mean_y, "std_x": self.std_x, "std_y": self.std_y}


def offset_stats(sequences: list[np.ndarray]) -> OffsetStats:
    """Mean and standard deviation of ``dx`` and ``dy`` over all moves (row 0 of each line excluded)."""
    moves = np.concatenate([np.asarray(s)[1:, :2] for s in sequences if len(s) > 1]).astype(np.float64)
    if len(moves) == 0:
        raise ValueError("no pen moves to compute statistics from")
    mean = moves.mean(axis=0)
    std = moves.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return OffsetStats(float(mean[0]), float(mean[1]), float(std[0]), float(std[1]))


def normalise(offsets: np.ndarray, stats: OffsetStats) -> np.ndarray:
    out = np.array(offsets, dtype=np.float32, copy=True)
    out[:, :2] /= stats.scale
    return out


def denormalise(offsets: np.ndarray, stats: OffsetStats) -> np.ndarray:
    out = np.array(offsets, dtype=np.float32, copy=True)
    out[:, :2] *= stats.scale
    return out


# ---------------------------------------------------------------------------
# Cleaning raw traces
#
# Whiteboard and tablet recordings have two kinds of fault:
#  * corrupt points: a single sample far from both its neighbours while the
#    neighbours lie close to each other (a spike), and missed pen lifts, where
#    one "stroke" jumps further in one sample than a pen moves between two
#    samples. `reject_corrupt` removes the spikes and ends the stroke at the
#    jump; it never moves a point. This is all the evaluation protocol allows.
#  * pen-down jitter: a pen resting on the surface records a cluster of
#    points a few units apart. `remove_jitter` drops points closer than
#    `min_step` to the last kept point of the stroke (stroke ends are kept).
#    It is for display and for priming from a user's ink, never for evaluation.
# ---------------------------------------------------------------------------


@dataclass
class CleanReport:
    spikes_removed: int = 0
    strokes_split: int = 0

    def __iadd__(self, other: "CleanReport") -> "CleanReport":
        self.spikes_removed += other.spikes_removed
        self.strokes_split += other.strokes_split
        return self


def reject_corrupt(strokes: list[np.ndarray], max_step: float) -> tuple[list[np.ndarray], CleanReport]:
    """Remove single-point spikes and split strokes at impossible in-stroke jumps.

    ``max_step`` is the longest move (in the ink's units) a pen can make between
    two samples of one stroke. A point is a spike when its moves to both
    neighbours exceed ``max_step`` but the neighbours are within ``max_step``
    of each other; a longer move that is not a spike is a missed pen lift.
    """
    report = CleanReport()
    out: list[np.ndarray] = []
    for stroke in strokes:
        s = np.asarray(stroke, dtype=np.float64).reshape(-1, 2)
        if len(s) >= 3:
            to_prev = np.hypot(*(s[1:-1] - s[:-2]).T)
            to_next = np.hypot(*(s[2:] - s[1:-1]).T)
            across = np.hypot(*(s[2:] - s[:-2]).T)
            spike = (to_prev > max_step) & (to_next > max_step) & (across <= max_step)
            if spike.any():
                keep = np.ones(len(s), dtype=bool)
                keep[1:-1] = ~spike
                report.spikes_removed += int(spike.sum())
                s = s[keep]
        if len(s) >= 2:
            jumps = np.flatnonzero(np.hypot(*np.diff(s, axis=0).T) > max_step) + 1
            report.strokes_split += len(jumps)
            out.extend(part for part in np.split(s, jumps) if len(part))
        elif len(s):
            out.append(s)
    return out, report


def remove_jitter(strokes: list[np.ndarray], min_step: float) -> list[np.ndarray]:
    """Drop points closer than ``min_step`` to the previous kept point of their stroke.

    The first and last point of every stroke are always kept, so strokes keep
    their extent and dots (one-point strokes) survive.
    """
    out = []
    for stroke in strokes:
        s = np.asarray(stroke, dtype=np.float64).reshape(-1, 2)
        if len(s) <= 2:
            out.append(s)
            continue
        kept = [s[0]]
        for p in s[1:-1]:
            if np.hypot(*(p - kept[-1])) >= min_step:
                kept.append(p)
        kept.append(s[-1])
        out.append(np.array(kept))
    return out


def bounding_box(strokes: list[np.ndarray]) -> tuple[float, float, float, float]:
    """``(min_x, min_y, max_x, max_y)`` of all points."""
    points = np.concatenate([np.asarray(s).reshape(-1, 2) for s in strokes])
    return (*points.min(axis=0).tolist(), *points.max(axis=0).tolist())


def smooth(strokes: list[np.ndarray], window: int = 3) -> list[np.ndarray]:
    """Moving-average smoothing of each stroke for display; end points stay put."""
    if window < 2:
        return [np.asarray(s, dtype=np.float64) for s in strokes]
    kernel = np.ones(window) / window
    out = []
    for stroke in strokes:
        s = np.asarray(stroke, dtype=np.float64).reshape(-1, 2)
        if len(s) <= window:
            out.append(s)
            continue
        pad = window // 2
        padded = np.pad(s, ((pad, window - 1 - pad), (0, 0)), mode="edge")
        sm = np.column_stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(2)])
        sm[0], sm[-1] = s[0], s[-1]
        out.append(sm)
    return out


def resample(strokes: list[np.ndarray], step: float) -> list[np.ndarray]:
    """Points every ``step`` units along each stroke (linear interpolation; ends kept).

    Used to give a user's ink the point density the networks were trained on.
    """
    out = []
    for stroke in strokes:
        s = np.asarray(stroke, dtype=np.float64).reshape(-1, 2)
        seg = np.hypot(*np.diff(s, axis=0).T)
        length = seg.sum()
        if len(s) < 2 or length == 0:
            out.append(s[:1])
            continue
        dist = np.concatenate([[0.0], np.cumsum(seg)])
        n = max(2, int(round(length / step)) + 1)
        targets = np.linspace(0.0, length, n)
        out.append(np.column_stack([np.interp(targets, dist, s[:, i]) for i in range(2)]))
    return out


def median_step(strokes: list[np.ndarray]) -> float:
    """Median distance between consecutive points of a stroke (0 when there are none)."""
    steps = [np.hypot(*np.diff(np.asarray(s).reshape(-1, 2), axis=0).T) for s in strokes if len(s) > 1]
    steps = np.concatenate(steps) if steps else np.zeros(0)
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else 0.0


def typical_stroke_height(strokes: list[np.ndarray]) -> float:
    """The median height of the strokes, each weighted by its points (so dots and commas count little)."""
    heights = np.array([np.ptp(np.asarray(s)[:, 1]) for s in strokes])
    points = np.array([len(s) for s in strokes])
    order = np.argsort(heights, kind="stable")
    return float(heights[order][np.searchsorted(np.cumsum(points[order]), points.sum() / 2)])


def split_lines(
    strokes: list[np.ndarray], back: float = 3.0, down: float = 0.5, gap: float = 1.5, min_width: float = 1.5
) -> list[list[np.ndarray]]:
    """Split a page of ink into its lines of text; strokes keep their order within a line.

    Two cues, in units of the typical stroke height h (:func:`typical_stroke_height`):

    1. Writing order. A stroke that starts more than ``back`` h left of the
       right end of the line so far and whose median y lies more than ``down``
       h below the line's starts a new line (the pen returned, as at the end
       of a line; dots and crossings go back but not down).
    2. Vertical gaps, for ink not in writing order: the strokes of each line
       from step 1, sorted by median y, are split where two consecutive
       medians lie more than ``gap`` h apart. A part narrower than
       ``min_width`` h (a stray quote mark) joins the nearest part instead.

    Measured on 1,500 IAM-OnDB lines: 99.9 % stay whole; pairs of lines
    stacked 0.8 to 3 line heights apart are split correctly 97.7 to 99.7 %
    of the time (docs/recognition.md).
    """
    strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    strokes = [s for s in strokes if len(s)]
    if len(strokes) < 2:
        return [strokes] if strokes else []
    h = typical_stroke_height(strokes)
    if h == 0:
        return [strokes]
    lines: list[list[np.ndarray]] = [[strokes[0]]]
    right, middles = strokes[0][:, 0].max(), [np.median(strokes[0][:, 1])]
    for s in strokes[1:]:
        middle = np.median(s[:, 1])
        if right - s[0, 0] > back * h and middle - np.median(middles) > down * h:
            lines.append([s])
            right, middles = s[:, 0].max(), [middle]
        else:
            lines[-1].append(s)
            right, middles = max(right, s[:, 0].max()), middles + [middle]
    return [part for line in lines for part in _split_by_gaps(line, gap * h, min_width * h)]


def _split_by_gaps(strokes: list[np.ndarray], gap: float, min_width: float) -> list[list[np.ndarray]]:
    """Step 2 of :func:`split_lines`: parts top to bottom, strokes in their order."""
    middles = np.array([np.median(s[:, 1]) for s in strokes])
    order = np.argsort(middles, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(middles[order]) > gap) + 1)

    def wide(group) -> bool:
        return np.ptp(np.concatenate([strokes[i][:, 0] for i in group])) >= min_width

    parts = [list(g) for g in groups if wide(g)]
    if len(parts) < 2:
        return [strokes]
    centres = [np.median(middles[p]) for p in parts]
    for g in groups:
        if not wide(g):  # a stray mark belongs to the nearest part
            parts[int(np.argmin([abs(np.median(middles[g]) - c) for c in centres]))].extend(g)
    return [[strokes[i] for i in sorted(p)] for p in parts]
