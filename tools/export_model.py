"""Copy a trained model folder (a run's best/) into the package's bundled weights.

    python tools/export_model.py RUN/best writemate/weights/synthesis [--fp16]

Copies model.safetensors (optionally as fp16), config.json and, when the
source has one, styles.json (a synthesis model's styles are its own samples:
make them first with tools/make_styles.py). Keeps the destination's
MODEL_CARD.md (write it by hand) unless --card copies the source's (the
classifiers write their own).

Refuses to replace bundled weights with worse ones unless --force: the
validation metric in config.json must be lower, and a synthesis model (--data
DIR, the IAM-OnDB archives) must be read by the bundled recognizer no worse
than the bundled model (`writemate evaluate legibility`, lines written without
the read-back check), in two ways:
- unprimed: the failure rates on the first 200 validation lines at biases 0,
  0.5 and 1 must not sum higher (a model can gain at bias 0 what it loses at
  bias 1);
- in its own styles: each style writes its `writemate styles` sample line 8
  times and the first 25 validation lines, at the style's bias; no more of
  them may fail.
Lower validation NLL alone has chosen models whose samples run away, and a
model that wrote unprimed lines well cut its styled lines short
(docs/synthesis.md).

--legibility-only compares a synthesis model by the recognizer's reading
alone. Training with --input-noise makes a network write much more legibly
while its NLL on clean validation lines gets worse (docs/synthesis.md), so for
such a model the NLL check would keep the less legible one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import torch

from writemate import checkpoint, evaluate, loading, metrics
from writemate.api import MAX_LINE_CER, STYLES_FILE

# The metric each family's trainer picks `best/` by, for model folders saved before it was recorded.
FAMILY_METRICS = {"synthesis": "val_nll", "prediction": "val_nll", "recognizer": "val_cer", "classifier": "val_error"}

LEGIBILITY_LINES = 200
GATE_BIASES = (0.0, 0.5, 1.0)
CARD = "MODEL_CARD.md"
STYLE_LINES = 25  # validation lines per style
SAMPLE_COPIES = 8  # copies of each style's sample line


def failure_rates(writer, recognizer, data: Path) -> list[float]:
    """The share of validation lines ``writer`` writes that ``recognizer`` misreads, per gate bias."""
    return [
        evaluate.legibility(writer, recognizer, data, limit=LEGIBILITY_LINES, split="validation", bias=b)["failure_rate"]
        for b in GATE_BIASES
    ]


def styled_failure_rate(writer, recognizer, data: Path) -> float:
    """The share of lines ``writer`` writes in its own styles that ``recognizer`` misreads."""
    failed = written = 0
    for s in writer.styles:
        result = evaluate.legibility(
            writer, recognizer, data, limit=STYLE_LINES, split="validation", bias=s.bias, style=s.id
        )
        failed += result["failure_rate"] * result["lines"]
        written += result["lines"]
        page = writer.write("\n".join([s.sample_text] * SAMPLE_COPIES), style=s.id, bias=s.bias, check=False)
        for reading in recognizer.read_lines(page.lines, 0):
            failed += metrics.line_cer(s.sample_text, reading.text) > MAX_LINE_CER
        written += SAMPLE_COPIES
    return failed / written


def stage(args, config: dict) -> Path:
    """The new bundle, built in a hidden folder beside the destination from the source's ``config``
    (already read) and one reading of its weights: weights (fp16 with --fp16), config.json and
    styles.json, and the card (the source's with --card, else the destination's). The gate judges
    this folder, so what is judged is what ships."""
    card = (args.source if args.card else args.destination) / CARD
    if args.card and not card.exists():
        raise SystemExit(f"refusing: {card} does not exist")
    styles = args.source / STYLES_FILE
    if config.get("family") == "synthesis":
        if not styles.exists() or not json.loads(styles.read_text()):
            raise SystemExit(
                f"refusing: {args.source} has no styles; make them first (tools/make_styles.py auto --model {args.source})"
            )
    staged = checkpoint.fresh_folder(args.destination.with_name(f".{args.destination.name}-staged"))
    tensors = checkpoint.load_tensors(args.source / checkpoint.WEIGHTS)
    if args.fp16:
        tensors = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()}
    checkpoint.save_tensors(staged / checkpoint.WEIGHTS, tensors)
    checkpoint.atomic_write_json(staged / checkpoint.CONFIG, {**config, "metric": args.metric})  # for the next export
    for path in (styles, card):
        if path.exists():
            shutil.copyfile(path, staged / path.name)
    return staged


def swap_in(staged: Path, destination: Path) -> None:
    """Replace ``destination`` by ``staged`` with two renames (never a half-written bundle)."""
    old = destination.with_name(f".{destination.name}-replaced")
    shutil.rmtree(old, ignore_errors=True)
    if destination.exists():
        os.replace(destination, old)
    os.replace(staged, destination)
    shutil.rmtree(old, ignore_errors=True)


def gate(args, new: dict, staged: Path) -> None:
    """Refuse (SystemExit) a model that is not better than the bundled one (see the module docstring)."""
    old = json.loads((args.destination / checkpoint.CONFIG).read_text())
    old_value, new_value = old.get("metrics", {}).get(args.metric), new.get("metrics", {}).get(args.metric)
    if args.legibility_only:
        print(f"{args.metric}: bundled {old_value}, new {new_value} (not compared: --legibility-only)")
    elif old_value is not None and (new_value is None or new_value >= old_value):
        raise SystemExit(f"refusing: {args.metric} {new_value} is not better than the bundled {old_value}")
    if new.get("family") != "synthesis":
        return
    if args.data is None:
        raise SystemExit("refusing: a synthesis model needs --data DIR to compare how legibly it writes")
    recognizer = loading.load("recognizer")
    bundled, candidate = loading.load(args.destination), loading.load(staged)
    old_failures = failure_rates(bundled, recognizer, args.data)
    new_failures = failure_rates(candidate, recognizer, args.data)
    for bias, old_rate, new_rate in zip(GATE_BIASES, old_failures, new_failures):
        print(f"failure rate at bias {bias:g}: bundled {old_rate:.3f}, new {new_rate:.3f}")
    if sum(new_failures) > sum(old_failures):
        raise SystemExit("refusing: the recognizer misreads more of its lines than of the bundled model's")
    old_styled = styled_failure_rate(bundled, recognizer, args.data)
    new_styled = styled_failure_rate(candidate, recognizer, args.data)
    print(f"failure rate in its own styles: bundled {old_styled:.3f}, new {new_styled:.3f}")
    if new_styled > old_styled:
        raise SystemExit("refusing: the recognizer misreads more of the lines it writes in its styles")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--metric", help="lower is better (default: the one training chose the model by)")
    parser.add_argument("--force", action="store_true", help="replace the bundled weights without comparing")
    parser.add_argument(
        "--legibility-only",
        action="store_true",
        help="compare a synthesis model by how legibly it writes, not by its validation metric",
    )
    parser.add_argument("--card", action="store_true", help="also copy the source's MODEL_CARD.md")
    parser.add_argument("--data", type=Path, help="IAM-OnDB archives, to compare how often synthesis samples end")
    args = parser.parse_args()
    new = checkpoint.read_config(args.source)
    args.metric = args.metric or new.get("metric") or FAMILY_METRICS.get(new.get("family"))
    if args.metric is None:
        raise SystemExit(f"{args.source}: no metric recorded to compare models by; give --metric")
    if args.legibility_only and new.get("family") != "synthesis":
        raise SystemExit("refusing: --legibility-only compares synthesis models only")
    staged = stage(args, new)
    try:
        if (args.destination / checkpoint.CONFIG).exists() and not args.force:
            gate(args, new, staged)
        swap_in(staged, args.destination)
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # left only when refused or failed
    size = (args.destination / checkpoint.WEIGHTS).stat().st_size / 1e6
    print(f"exported {args.source} -> {args.destination} ({size:.1f} MB), {args.metric} {new.get('metrics', {}).get(args.metric)}")


if __name__ == "__main__":
    main()
