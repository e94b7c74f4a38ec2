"""Copy a trained model folder (a run's best/) into the package's bundled weights.

    python tools/export_model.py RUN/best writemate/weights/synthesis [--fp16]

Copies model.safetensors (optionally as fp16) and config.json, and keeps the
destination's MODEL_CARD.md and styles.json (write those by hand / with
tools/make_styles.py), unless --card copies the source's MODEL_CARD.md (the
classifiers write their own). Refuses to replace bundled weights with worse ones
unless --force: the validation metric in config.json must be lower, and for a
synthesis model (--data DIR, the IAM-OnDB archives) as large a share of the
first 128 validation texts must end before the step cap at bias 0.75 and 1 as
with the bundled model: lower validation NLL alone has chosen models whose
samples run away (docs/synthesis.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from writemate import checkpoint, evaluate, loading

ENDING_LINES = 128
ENDING_BIASES = [0.75, 1.0]


def endings(folder: Path, data: Path) -> list[float]:
    result = evaluate.synthesis_endings(loading.load(folder), data, ENDING_BIASES, limit=ENDING_LINES, split="validation")
    return [row["ended"] for row in result["biases"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--metric", default="val_nll", help="lower is better")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--card", action="store_true", help="also copy the source's MODEL_CARD.md")
    parser.add_argument("--data", type=Path, help="IAM-OnDB archives, to compare how often synthesis samples end")
    args = parser.parse_args()
    new = checkpoint.read_config(args.source)
    old_path = args.destination / checkpoint.CONFIG
    if old_path.exists() and not args.force:
        old = json.loads(old_path.read_text())
        old_value, new_value = old.get("metrics", {}).get(args.metric), new.get("metrics", {}).get(args.metric)
        if old_value is not None and (new_value is None or new_value >= old_value):
            raise SystemExit(f"refusing: {args.metric} {new_value} is not better than the bundled {old_value}")
        if new.get("family") == "synthesis":
            if args.data is None:
                raise SystemExit("refusing: a synthesis model needs --data DIR to compare how often its samples end")
            old_ended, new_ended = endings(args.destination, args.data), endings(args.source, args.data)
            print(f"lines ended at bias {ENDING_BIASES}: bundled {old_ended}, new {new_ended}")
            if any(n < o for n, o in zip(new_ended, old_ended)):
                raise SystemExit("refusing: fewer sampled lines end before the step cap than with the bundled model")
    args.destination.mkdir(parents=True, exist_ok=True)
    tensors = checkpoint.load_tensors(args.source / checkpoint.WEIGHTS)
    if args.fp16:
        tensors = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()}
    checkpoint.save_tensors(args.destination / checkpoint.WEIGHTS, tensors)
    shutil.copyfile(args.source / checkpoint.CONFIG, old_path)
    if args.card:
        shutil.copyfile(args.source / "MODEL_CARD.md", args.destination / "MODEL_CARD.md")
    size = (args.destination / checkpoint.WEIGHTS).stat().st_size / 1e6
    print(f"exported {args.source} -> {args.destination} ({size:.1f} MB), {args.metric} {new.get('metrics', {}).get(args.metric)}")


if __name__ == "__main__":
    main()
