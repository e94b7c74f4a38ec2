"""Recognizer speed: lines per second with best path and with beam search, and training throughput.

    python benchmarks/recognizer_speed.py [--model DIR] [--lm DIR] [--data DIR] [--lines 64] [--beam 16] [--threads 1]

Reads ``--lines`` IAM-OnDB validation lines from ``--data`` (default: the
shared copy) with the recognizer ``--model`` (default: the default-size
network with random weights, which is as fast as a trained one for best path;
beam search is faster on a trained network, whose outputs are peaked, so time
beam search with a trained model). Timing covers features, network and
decoding, from a warm process. Training throughput is one real training step
(forward, CTC, backward, Adam) on batches of 32 of the same lines. Prints JSON;
the machine is described by the CPU model and thread count.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from common import cpu_times, machine, peak_memory_mb, steal_percent

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "iam-ondb"


def load_lines(data: Path, n: int) -> list[tuple[list[np.ndarray], str]]:
    from writemate import ink
    from writemate.data import iam_ondb

    val = iam_ondb.prepare(data).subset(validation=True)
    return [(ink.offsets_to_strokes(val.offsets[i]), val.texts[i]) for i in range(min(n, len(val.ids)))]


def make_recognizer(model: str | None, lm: str | None):
    from writemate import loading
    from writemate.models.recognizer import RecognitionNetwork, RecognizerConfig
    from writemate.recognize import Recognizer

    recognizer = loading.load(model) if model else Recognizer(RecognitionNetwork(RecognizerConfig()))
    if lm:
        recognizer.use_lm(lm)
    return recognizer


def lines_per_second(recognizer, lines, beam: int) -> float:
    strokes = [s for s, _ in lines]
    recognizer.read_lines(strokes[:4], beam)  # warm up
    start = time.perf_counter()
    recognizer.read_lines(strokes, beam)
    return len(lines) / (time.perf_counter() - start)


def train_lines_per_second(recognizer, lines, steps: int = 2) -> float:
    from writemate.models.recognizer import RecognitionNetwork, RecognizerTask

    model = RecognitionNetwork(recognizer.config)
    task = RecognizerTask(model, lines, lines[:1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = task.batches(0, 0, 32)
    times, done = [], []
    for k in range(steps + 1):
        batch = batches[k % len(batches)]
        start = time.perf_counter()
        result = task.loss(model, batch)
        optimizer.zero_grad()
        (result.nats / result.units).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        done.append(len(batch.lines))
    return sum(done[1:]) / sum(times[1:])  # the first step warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="recognizer folder or bundled name (default: random default-size network)")
    parser.add_argument("--lm", help="character language model for beam search")
    parser.add_argument("--data", type=Path, default=SHARED, help="folder holding the IAM-OnDB archives")
    parser.add_argument("--lines", type=int, default=64)
    parser.add_argument("--beam", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (1 when other work shares the CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recognizer = make_recognizer(args.model, args.lm)
    lines = load_lines(args.data, args.lines)
    before = cpu_times()
    result = {
        "machine": machine(torch.get_num_threads()),
        "torch": torch.__version__,
        "model": args.model or "random weights",
        "config": recognizer.config.to_dict(),
        "lines": len(lines),
        "best_path_lines_per_s": round(lines_per_second(recognizer, lines, 0), 1),
        f"beam_{args.beam}_lines_per_s": round(lines_per_second(recognizer, lines, args.beam), 1),
        "lm": recognizer.lm is not None,
        "train_lines_per_s": round(train_lines_per_second(recognizer, lines), 1),
        "peak_memory_mb": peak_memory_mb(),
        "cpu_steal_percent": steal_percent(before, cpu_times()),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
