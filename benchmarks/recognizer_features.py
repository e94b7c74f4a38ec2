"""The short feature comparison of docs/recognition.md: one small recognizer, one input setting, a fixed step count.

    python benchmarks/recognizer_features.py --features curve --step 0.1 --subsample 3 [--steps 900]

Trains a small BLSTM-CTC (2 bidirectional layers of 64, no dropout, Adam
3e-3, batches of 8, gradient norm clipped at 3) for ``--steps`` steps on
2,000 random training lines of the shared IAM-OnDB copy, then prints the
best-path CER, WER and CTC loss on every other validation line, as JSON. Run
it once per setting; the runs are short on purpose (about 1 to 3 minutes on
one thread), so they show how fast each input leaves the CTC blank plateau,
not the accuracy after a full training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "iam-ondb"


def main() -> None:
    from writemate import ink
    from writemate.data import iam_ondb
    from writemate.models import recognizer as rec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", choices=sorted(rec.FEATURES), default="curve")
    parser.add_argument("--step", type=float, default=0.1)
    parser.add_argument("--subsample", type=int, default=3)
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--lines", type=int, default=2000, help="training lines (a random sample)")
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    prepared = iam_ondb.prepare(args.data)
    train, val = prepared.subset(validation=False), prepared.subset(validation=True)
    chosen = np.random.default_rng(0).choice(len(train.ids), min(args.lines, len(train.ids)), replace=False)
    train_lines = [(ink.offsets_to_strokes(train.offsets[i]), train.texts[i]) for i in chosen]
    val_lines = [(ink.offsets_to_strokes(val.offsets[i]), val.texts[i]) for i in range(0, len(val.ids), 2)]

    torch.manual_seed(0)
    config = rec.RecognizerConfig(args.features, args.step, hidden=64, layers=2, subsample=args.subsample, dropout=0)
    model = rec.RecognitionNetwork(config)
    task = rec.RecognizerTask(model, train_lines, val_lines)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    started, steps, epoch = time.perf_counter(), 0, 0
    while steps < args.steps:
        for batch in task.batches(epoch, 0, 8):
            result = task.loss(model, batch)
            optimizer.zero_grad()
            (result.nats / result.units).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
            optimizer.step()
            steps += 1
            if steps >= args.steps:
                break
        epoch += 1
    seconds = time.perf_counter() - started
    with torch.no_grad():
        metrics = task.evaluate(model)
    frames = float(np.mean(task.lengths))
    print(
        json.dumps(
            {
                **vars(args),
                "data": str(args.data),
                "frames_per_line": round(frames, 1),
                "train_seconds": round(seconds),
                **{k: round(v, 4) for k, v in metrics.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
