"""Make the bundled handwriting styles from the model's own samples.

Styles are primes: a line the model wrote itself (never IAM-OnDB ink), with
its text. Either pick them by eye in two steps:

    # 1. write candidates and look at the contact sheet
    python tools/make_styles.py candidates --model RUN/best --count 40 -o sheet.png
    # 2. keep the seeds you like (visibly different, legible)
    python tools/make_styles.py save --model RUN/best --seeds 3 8 11 ... [--names ...]

or let the bundled recognizer and a spread of simple measures pick them:

    python tools/make_styles.py auto --model RUN/best --count 40 --keep 8 -o chosen.png

`auto` keeps the candidates the recognizer reads best (character error rate
at most --max-cer, or the best ones if too few are). A line that reads well
can still be a poor prime (the network, primed with it, may write other text
badly), so `auto` also primes the network with each candidate, writes
PROBE_TEXTS at the styles' bias and reads them back: a candidate whose probe
lines read at a mean CER above --max-primed-cer is dropped. From those left
it picks --keep that differ most in size, width, slant and pace (greedy
farthest-point choice on standardised measures, starting from the line with
the lowest sum of both CERs), and draws the chosen lines. `save` and `auto`
write styles.json into the model folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import writemate
from writemate import checkpoint, ink, metrics, render
from writemate.api import STYLE_BIAS, STYLES_FILE
from writemate.models.synthesis import Prime, sample

PRIME_TEXT = "a quick brown fox jumps over the lazy dog"
# Written in each candidate's hand to see how well it primes: other words than the prime's
# (capitals, digits, punctuation), none of them from the docs' sample sentences.
PROBE_TEXTS = ["Send the letter before Monday.", "Nothing was left in 1984, she said.", "We had a lovely time by the sea"]


def candidates(writer, count: int, bias: float, text: str) -> list[np.ndarray]:
    """One sampled line (normalised offsets) per seed 0..count-1."""
    return [sample(writer.model, [text], bias=bias, seed=seed)[0] for seed in range(count)]


def strokes_of(writer, offsets: np.ndarray) -> list[np.ndarray]:
    return render.straighten(ink.offsets_to_strokes(ink.denormalise(offsets, writer.stats)))


def measures(strokes: list[np.ndarray], offsets: np.ndarray, text: str) -> np.ndarray:
    """Size, width per character, slant and points per character of a written line."""
    points = np.concatenate(strokes)
    low, high = np.percentile(points[:, 1], [5, 95])
    moves = np.concatenate([np.diff(s, axis=0) for s in strokes if len(s) > 1])
    upright = moves[np.abs(moves[:, 1]) > 2 * np.abs(moves[:, 0])]  # strokes' down- and up-strokes
    slant = float(np.median(upright[:, 0] / upright[:, 1])) if len(upright) else 0.0
    return np.array([high - low, np.ptp(points[:, 0]) / len(text), slant, len(offsets) / len(text)])


def spread_choice(features: np.ndarray, keep: int) -> list[int]:
    """``keep`` row indices of ``features`` (N, F), rows in order of preference: the first row, then
    each time the row farthest from those chosen (standardised features)."""
    z = (features - features.mean(0)) / (features.std(0) + 1e-9)
    chosen = [0]
    while len(chosen) < min(keep, len(z)):
        distance = np.min([np.linalg.norm(z - z[c], axis=1) for c in chosen], axis=0)
        distance[chosen] = -1
        chosen.append(int(distance.argmax()))
    return chosen


def primed_cer(writer, recognizer, offsets: np.ndarray, text: str) -> float:
    """The mean CER of PROBE_TEXTS written by the network primed with ``offsets`` (its line of ``text``),
    read as ``writemate write`` reads its lines back (Writer.judge)."""
    written = sample(writer.model, PROBE_TEXTS, bias=STYLE_BIAS, seed=0, prime=Prime(offsets, text))
    errors, _ = writer.judge(recognizer)(PROBE_TEXTS, written)
    return float(errors.mean())


def auto_seeds(
    writer, recognizer, lines: list[np.ndarray], text: str, keep: int, max_cer: float, max_primed_cer: float
) -> list[dict]:
    """The seeds (indices of ``lines``) chosen as styles, with their CERs and measures, best first."""
    strokes = [strokes_of(writer, o) for o in lines]
    readings = [r.text for r in recognizer.read_lines(strokes, 0)]
    cers = np.array([metrics.line_cer(text, r) for r in readings])
    primed = np.full(len(lines), np.inf)
    for i in np.flatnonzero(cers <= max_cer):
        primed[i] = primed_cer(writer, recognizer, lines[i], text)
    order = np.lexsort((cers, cers + primed))  # by the sum; those not primed (inf) last, by their own CER
    legible = [int(i) for i in order if primed[i] <= max_primed_cer]
    pool = legible if len(legible) >= keep else [int(i) for i in order[: max(keep, len(legible))]]
    features = np.array([measures(strokes[i], lines[i], text) for i in pool])
    chosen = []
    for j in spread_choice(features, keep):
        i = pool[j]
        chosen.append({"seed": i, "cer": float(cers[i]), "primed_cer": float(primed[i]), "read": readings[i],
                       "measures": features[j].round(3).tolist()})  # fmt: skip
    return chosen


def save_styles(folder: Path, lines: dict[int, np.ndarray], names: list[str], text: str) -> Path:
    """styles.json in ``folder`` from ``lines``: each seed's sampled line (normalised offsets) of ``text``."""
    styles = []
    for i, (seed, offsets) in enumerate(lines.items()):
        name = names[i] if i < len(names) else f"hand {i}"
        styles.append({"id": i, "name": name, "text": text, "bias": STYLE_BIAS, "seed": seed,
                       "offsets": np.round(offsets, 4).tolist()})
    checkpoint.atomic_write_bytes(folder / STYLES_FILE, json.dumps(styles).encode())  # compact: long offset lists
    return folder / STYLES_FILE


def contact_sheet(writer, lines: list[np.ndarray], path: Path) -> None:
    strokes = [ink.offsets_to_strokes(ink.denormalise(o, writer.stats)) for o in lines]
    page = render.PageStyle(line_height=14)
    placed = render.place_lines(strokes, page)
    render.save(path, render.to_png(placed, page, dpi=110))


def main() -> None:
    parser = argparse.ArgumentParser(description="make bundled styles from the model's own samples")
    parser.add_argument("action", choices=["candidates", "save", "auto"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--bias", type=float, default=1.0)
    parser.add_argument("--text", default=PRIME_TEXT)
    parser.add_argument("--seeds", type=int, nargs="*", default=[])
    parser.add_argument("--names", nargs="*", default=[])
    parser.add_argument("--keep", type=int, default=8, help="auto: how many styles")
    parser.add_argument("--max-cer", type=float, default=0.05, help="auto: legible enough to be a style")
    parser.add_argument(
        "--max-primed-cer", type=float, default=0.1, help="auto: how legibly the network must write other text in the style"
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("style-candidates.png"))
    args = parser.parse_args()
    writer = writemate.load(args.model)
    if args.action == "candidates":
        contact_sheet(writer, candidates(writer, args.count, args.bias, args.text), args.output)
        print(f"wrote {args.output}: line n is seed n-1")
        return
    folder = writemate.loading.resolve(args.model)
    if folder.resolve().parent == writemate.loading.WEIGHTS_DIR.resolve():
        raise SystemExit(f"refusing to replace the styles of the bundled {folder.name!r}: make them in a model folder")
    seeds = args.seeds
    if args.action == "save" and not seeds:
        raise SystemExit("give the seeds to keep: --seeds N [N ...]")
    if args.action == "auto":
        lines = candidates(writer, args.count, args.bias, args.text)
        recognizer = writemate.load("recognizer")
        chosen = auto_seeds(writer, recognizer, lines, args.text, args.keep, args.max_cer, args.max_primed_cer)
        for c in chosen:
            print(
                f"seed {c['seed']:3d}  CER {c['cer']:.3f}  primed CER {c['primed_cer']:.3f}  read {c['read']!r}"
                f"  size/width/slant/pace {c['measures']}"
            )
        kept = {c["seed"]: lines[c["seed"]] for c in chosen}  # seed n is candidate n: nothing to sample again
        contact_sheet(writer, list(kept.values()), args.output)
        print(f"wrote {args.output}: the chosen lines in style order")
    else:
        kept = {seed: sample(writer.model, [args.text], bias=args.bias, seed=seed)[0] for seed in seeds}
    path = save_styles(folder, kept, args.names, args.text)
    print(f"wrote {len(kept)} styles to {path}")


if __name__ == "__main__":
    main()
