"""Page layout and output: SVG (single-line, for pen plotters), PNG, and stroke JSON.

All page geometry is in millimetres, y growing downwards. A page is a list of
lines; each line is a list of strokes, one ``(N, 2)`` array per pen-down
stroke, already placed on the page.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from writemate import ink
from writemate.errors import WritemateError

STROKES_FORMAT = "writemate-strokes"
# IAM-OnDB whiteboard units per millimetre of output: a character is ~185
# units wide on the whiteboard, ~2.6 mm on the page.
UNITS_PER_MM = 70.0


@dataclass
class PageStyle:
    line_height: float = 12.0  # mm between baselines
    margin: float = 10.0  # mm around the text
    stroke_width: float = 0.5  # mm (a fine-liner)
    color: str = "#1a1a2e"
    smoothing: int = 0  # moving-average window for display (0/1: raw points, as a plotter wants)
    background: str | None = None  # SVG/PNG background colour; None: transparent SVG, white PNG


def wrap(text: str, width: int) -> list[str]:
    """Text to lines of at most ``width`` characters; newlines and blank lines are kept.

    Words longer than ``width`` are broken. Runs of spaces inside a line collapse to one.
    """
    if width < 1:
        raise WritemateError("line width must be at least 1 character")
    lines = []
    for paragraph in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        words = " ".join(paragraph.split())
        lines.extend(textwrap.wrap(words, width=width, break_on_hyphens=False) or [""])
    while lines and not lines[-1]:
        lines.pop()
    return lines


def straighten(strokes: list[np.ndarray]) -> list[np.ndarray]:
    """Rotate a line so its least-squares baseline is horizontal (sampled lines drift)."""
    points = np.concatenate(strokes)
    if len(points) < 3 or np.ptp(points[:, 0]) == 0:
        return strokes
    slope = np.polyfit(points[:, 0], points[:, 1], 1)[0]
    angle = -np.arctan(slope)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    centre = points.mean(axis=0)
    return [(st - centre) @ rot.T + centre for st in strokes]


def place_lines(line_strokes: list[list[np.ndarray]], style: PageStyle) -> list[list[np.ndarray]]:
    """Scale whiteboard-unit lines to mm and stack them down the page (empty lines stay blank)."""
    placed = []
    for i, strokes in enumerate(line_strokes):
        if not strokes:
            placed.append([])
            continue
        strokes = [s / UNITS_PER_MM for s in straighten(strokes)]
        points = np.concatenate(strokes)
        # Baseline: y grows downwards, so a high percentile of y (descenders are the few above it).
        baseline = np.percentile(points[:, 1], 80)
        shift = np.array([style.margin - points[:, 0].min(), style.margin + (i + 0.75) * style.line_height - baseline])
        placed.append([s + shift for s in strokes])
    return placed


def page_size(lines: list[list[np.ndarray]], style: PageStyle) -> tuple[float, float]:
    """Width and height in mm that hold every line with the margin around it."""
    points = [p for line in lines for p in line]
    width = max((s[:, 0].max() for s in points), default=style.margin) + style.margin
    bottom = max((s[:, 1].max() for s in points), default=0.0)
    height = max(bottom, len(lines) * style.line_height + style.margin) + style.margin
    return float(width), float(height)


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def to_svg(lines: list[list[np.ndarray]], style: PageStyle) -> str:
    """One ``<path>`` per pen-down stroke, stroked and never filled, sized in mm."""
    width, height = page_size(lines, style)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_fmt(width)}mm" height="{_fmt(height)}mm" '
        f'viewBox="0 0 {_fmt(width)} {_fmt(height)}">',
    ]
    if style.background:
        out.append(f'<rect width="100%" height="100%" fill="{style.background}"/>')
    out.append(
        f'<g fill="none" stroke="{style.color}" stroke-width="{_fmt(style.stroke_width)}" '
        'stroke-linecap="round" stroke-linejoin="round">'
    )
    for strokes in lines:
        for s in ink.smooth(strokes, style.smoothing):
            if len(s) == 1:  # a dot: a zero-length segment draws a round cap
                s = np.vstack([s, s])
            d = "M" + " L".join(f"{_fmt(x)} {_fmt(y)}" for x, y in s)
            out.append(f'<path d="{d}"/>')
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def to_png(lines: list[list[np.ndarray]], style: PageStyle, dpi: int = 150) -> bytes:
    """Anti-aliased raster of the page (drawn at 3x and downsampled)."""
    import io

    from PIL import Image, ImageColor, ImageDraw

    scale = 3
    width, height = page_size(lines, style)
    final = (max(1, round(width * dpi / 25.4)), max(1, round(height * dpi / 25.4)))
    size = (final[0] * scale, final[1] * scale)
    px_per_mm = dpi / 25.4 * scale
    background = ImageColor.getrgb(style.background or "white")
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    color = ImageColor.getrgb(style.color)
    line_width = max(1, round(style.stroke_width * px_per_mm))
    radius = line_width / 2
    for strokes in lines:
        for s in ink.smooth(strokes, style.smoothing):
            pts = [tuple(p) for p in (s * px_per_mm).tolist()]
            if len(pts) > 1:
                draw.line(pts, fill=color, width=line_width, joint="curve")
            for x, y in (pts[0], pts[-1]):  # round caps
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color)
    image = image.resize(final, Image.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG", dpi=(dpi, dpi))
    return buf.getvalue()


def to_json(lines: list[list[np.ndarray]], texts: list[str], meta: dict | None = None) -> str:
    """Writemate stroke JSON: ``{"format", "version", "units": "mm", "lines": [{"text", "strokes"}]}``."""
    doc = {
        "format": STROKES_FORMAT,
        "version": 1,
        "units": "mm",
        **(meta or {}),
        "lines": [
            {"text": t, "strokes": [np.round(s, 3).tolist() for s in strokes]} for t, strokes in zip(texts, lines)
        ],
    }
    return json.dumps(doc)


def read_json(data: str | bytes) -> list[tuple[str, list[np.ndarray]]]:
    """Lines of a Writemate stroke JSON document as ``(text, strokes)``; raises WritemateError if malformed."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != STROKES_FORMAT:
            raise ValueError(f'"format" is not "{STROKES_FORMAT}"')
        lines = []
        for line in doc["lines"]:
            strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in line["strokes"]]
            lines.append((str(line.get("text", "")), [s for s in strokes if len(s)]))
        return lines
    except (ValueError, KeyError, TypeError) as e:
        raise WritemateError(f"not a Writemate stroke JSON document ({e})") from e


def save(path: Path, data: str | bytes) -> None:
    """Write the output file via a temporary name, so a failure leaves no half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(data, str):
        data = data.encode()
    tmp.write_bytes(data)
    tmp.replace(path)
