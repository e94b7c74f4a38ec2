"""Make the bundled handwriting styles from the model's own samples.

Styles are primes: a line the model wrote itself (never IAM-OnDB ink), with
its text. Two steps:

    # 1. write candidates and look at the contact sheet
    python tools/make_styles.py candidates --model RUN/best --count 40 -o sheet.png
    # 2. keep the seeds you like (visibly different, legible)
    python tools/make_styles.py save --model RUN/best --seeds 3 8 11 ... [--names ...]

`save` writes styles.json into the model folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import writemate
from writemate import render
from writemate.api import STYLES_FILE
from writemate.models.synthesis import sample

PRIME_TEXT = "a quick brown fox jumps over the lazy dog"


def candidates(writer, count: int, bias: float, text: str) -> list[np.ndarray]:
    """One sampled line (normalised offsets) per seed 0..count-1."""
    return [sample(writer.model, [text], bias=bias, seed=seed)[0] for seed in range(count)]


def contact_sheet(writer, lines: list[np.ndarray], path: Path) -> None:
    from writemate import ink

    strokes = [ink.offsets_to_strokes(ink.denormalise(o, writer.stats)) for o in lines]
    page = render.PageStyle(line_height=14)
    placed = render.place_lines(strokes, page)
    render.save(path, render.to_png(placed, page, dpi=110))


def main() -> None:
    parser = argparse.ArgumentParser(description="make bundled styles from the model's own samples")
    parser.add_argument("action", choices=["candidates", "save"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--bias", type=float, default=1.0)
    parser.add_argument("--text", default=PRIME_TEXT)
    parser.add_argument("--seeds", type=int, nargs="*", default=[])
    parser.add_argument("--names", nargs="*", default=[])
    parser.add_argument("-o", "--output", type=Path, default=Path("style-candidates.png"))
    args = parser.parse_args()
    writer = writemate.load(args.model)
    if args.action == "candidates":
        contact_sheet(writer, candidates(writer, args.count, args.bias, args.text), args.output)
        print(f"wrote {args.output}: line n is seed n-1")
        return
    styles = []
    for i, seed in enumerate(args.seeds):
        offsets = sample(writer.model, [args.text], bias=args.bias, seed=seed)[0]
        name = args.names[i] if i < len(args.names) else f"hand {i}"
        styles.append({"id": i, "name": name, "text": args.text, "bias": 0.75, "seed": seed,
                       "offsets": np.round(offsets, 4).tolist()})
    folder = writemate.loading.resolve(args.model)
    (folder / STYLES_FILE).write_text(json.dumps(styles))
    print(f"wrote {len(styles)} styles to {folder / STYLES_FILE}")


if __name__ == "__main__":
    main()
