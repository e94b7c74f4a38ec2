"""Synthesis training speed on real lines: one forward and backward of a batch.

    python benchmarks/synthesis_train_step.py --data DIR [--model FOLDER] [--threads 2] [--steps 3] [--default-malloc]

Takes the first 32 IAM-OnDB training lines of 600-640 points (a typical batch
of the bucketed trainer) and times forward, loss and backward through the
paper-size network. Use a trained model (``--model``, a model folder or a run's
``best/``): a trained window is sharp, and how the network handles far-away
characters then matters (see ``writemate.models.synthesis.gaussian``); random
weights hide that. Like the trainer, it keeps freed memory in the process
(``writemate.train.keep_freed_memory``) unless ``--default-malloc``. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from common import machine, peak_memory_mb


def main() -> None:
    from writemate import alphabet, checkpoint, ink
    from writemate.models import mdn
    from writemate.models.synthesis import Synthesis, SynthesisConfig, lines_to_tensors
    from writemate.pipelines import encode_lenient, iam_training_split
    from writemate.train import keep_freed_memory

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="IAM-OnDB folder")
    parser.add_argument("--model", help="a synthesis model folder (default: random weights)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--default-malloc", action="store_true", help="leave glibc's malloc settings alone")
    args = parser.parse_args()
    kept = not args.default_malloc and keep_freed_memory()
    torch.set_num_threads(args.threads)

    train, _, stats = iam_training_split(args.data)
    model = Synthesis(SynthesisConfig(alphabet_size=alphabet.SIZE))
    if args.model:
        meta = checkpoint.read_config(args.model)
        model = Synthesis(SynthesisConfig(**meta["config"]["model"]))
        checkpoint.load_weights(model, args.model)
        stats = ink.OffsetStats(**meta["config"]["stats"])
    idx = [i for i, o in enumerate(train.offsets) if 600 <= len(o) <= 640 and train.texts[i]][:32]
    offsets = [ink.normalise(train.offsets[i], stats) for i in idx]
    x, target, mask, text, text_mask = lines_to_tensors(offsets, [encode_lenient(train.texts[i]) for i in idx])

    times = []
    for _ in range(args.steps):
        model.zero_grad()
        start = time.perf_counter()
        y, _ = model(x, text, text_mask)
        (mdn.nll(y, target) * mask).sum().backward()
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    result = {
        "batch": list(x.shape[:2]),
        "seconds_per_batch": round(seconds, 2),
        "points_per_second": round(float(mask.sum()) / seconds),
        "model": args.model or "random weights",
        "keep_freed_memory": kept,
        "machine": machine(args.threads),
        "peak_memory_mb": peak_memory_mb(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
