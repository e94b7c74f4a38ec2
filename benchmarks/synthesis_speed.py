"""Synthesis speed: training throughput, sampling latency, peak memory.

    python benchmarks/synthesis_speed.py [--model synthesis] [--threads 2] [--bf16]

Training throughput uses the paper-size network on random lines of 600 points
(batch 32); sampling uses the given model (bundled by default) from a warm
process: one 30-character line and a 20-line page. Results go to stdout as
JSON, with the CPU model and thread count.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from common import machine, peak_memory_mb


def train_throughput(batch: int, points: int, steps: int, bf16: bool) -> float:
    from writemate.models import mdn
    from writemate.models.synthesis import Synthesis, SynthesisConfig, lines_to_tensors

    torch.manual_seed(0)
    model = Synthesis(SynthesisConfig())
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    rng = np.random.default_rng(0)
    offsets = [np.column_stack([rng.normal(size=(points, 2)), rng.random(points) < 0.04]).astype(np.float32) for _ in range(batch)]
    texts = [rng.integers(1, 84, 28).tolist() for _ in range(batch)]
    x, target, mask, text, text_mask = lines_to_tensors(offsets, texts)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y, _ = model(x, text, text_mask)
        loss = (mdn.nll(y.float(), target) * mask).sum() / mask.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return batch * (points - 1) / float(np.median(times[1:]))


def sampling_seconds(model_name: str, repeats: int) -> dict:
    import writemate

    writer = writemate.load(model_name)
    line = "The quick brown fox jumps over"  # 30 characters
    page = "\n".join(f"Line {i:2d}: the quick brown fox jumps" for i in range(20))
    writer.write("warm up", seed=0)
    one = [timed(lambda: writer.write(line, seed=s, bias=0.75)) for s in range(repeats)]
    twenty = [timed(lambda: writer.write(page, seed=s, bias=0.75)) for s in range(max(1, repeats // 2))]
    return {"line_30_chars_s": float(np.median(one)), "page_20_lines_s": float(np.median(twenty))}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="synthesis")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {"machine": machine(torch.get_num_threads()), "torch": torch.__version__}
    if not args.skip_training:
        result["train_points_per_s"] = round(train_throughput(32, 600, args.train_steps, args.bf16))
    result.update(sampling_seconds(args.model, args.repeats))
    result["peak_memory_mb"] = peak_memory_mb()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
