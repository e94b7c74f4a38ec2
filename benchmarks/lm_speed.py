"""Training throughput of the language models, to plan Penn Treebank runs.

Times real optimiser steps of the generic trainer (forward, backward,
clipping, update; weight noise if asked) on random tokens, after a few
warm-up steps, and prints tokens per second with the time one Penn Treebank
epoch would take.

    python benchmarks/lm_speed.py                        # Graves' character network: 1 x 1000 LSTM
    python benchmarks/lm_speed.py --hidden 512 --layers 2 --threads 2
    python benchmarks/lm_speed.py --level word --hidden 200 --layers 2 --bptt 35 --batch-size 20

The numbers depend on what else the machine is doing: run it on an idle machine
for planning, or note the load beside the result.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from writemate.data.text import Stream
from writemate.models.language import LanguageModel, LanguageModelConfig, LanguageModelTask
from writemate.train import Trainer, TrainConfig

PTB_TRAIN_TOKENS = {"char": 5_017_482, "word": 929_589}  # predictions per epoch, end-of-lines included
VOCAB = {"char": 51, "word": 10_000}


def measure(args) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab = VOCAB[args.level]
    config = LanguageModelConfig(
        vocab_size=vocab,
        level=args.level,
        embedding=args.embedding,
        hidden=args.hidden,
        layers=args.layers,
        dropout=args.dropout,
    )
    model = LanguageModel(config)
    tokens = args.batch_size * args.bptt * 1000
    ids = np.random.default_rng(0).integers(0, vocab, tokens + 1).astype(np.uint16)
    stream = Stream(ids, characters=tokens, words=tokens // 5)
    task = LanguageModelTask(model, stream, stream, bptt=args.bptt)
    train_config = TrainConfig(
        optimizer=args.optimizer, lr=1e-3, batch_size=args.batch_size, noise=args.noise, bf16=args.bf16
    )
    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(task, train_config, Path(run), family="language-model", model_config={})
        batches = task.batches(0, 0, args.batch_size)
        for batch in batches[: args.warmup]:
            trainer.train_step(batch)
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            trainer.train_step(batches[(args.warmup + steps) % len(batches)])
            steps += 1
        seconds = time.perf_counter() - t0
    per_second = steps * args.batch_size * args.bptt / seconds
    epoch_tokens = PTB_TRAIN_TOKENS[args.level]
    return {
        "config": {**config.to_dict(), "batch_size": args.batch_size, "bptt": args.bptt, "threads": args.threads,
                   "noise": args.noise, "bf16": args.bf16, "optimizer": args.optimizer},
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "tokens_per_second": round(per_second),
        "ptb_epoch_minutes": round(epoch_tokens / per_second / 60, 1),
        "ptb_epochs_in_3_hours": round(3 * 3600 * per_second / epoch_tokens, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--level", choices=["char", "word"], default="char")
    p.add_argument("--hidden", type=int, default=1000)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--embedding", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bptt", type=int, default=100)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--noise", choices=["none", "fixed", "adaptive"], default="none")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=20.0, help="time measured (after the warm-up steps)")
    p.add_argument("--warmup", type=int, default=2)
    print(json.dumps(measure(p.parse_args())))


if __name__ == "__main__":
    main()
