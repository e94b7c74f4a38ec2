"""Prediction network speed: training throughput per weight-noise setting, and sampling.

    python benchmarks/prediction_speed.py [--threads 1] [--steps 1] [--noise none,fixed,adaptive] [--bf16]

Training uses the paper-size network (3 x 400 LSTM, 20 mixtures; Graves 2013
section 4) through the real trainer step (forward, loss, backward, gradient
clipping, Adam) on random lines of 600 points, batch 32, once for each weight
noise setting: none, fixed (std 0.075) and adaptive. Sampling times 700
points (one scribble line) from a warm process. Prints JSON; the machine is
described by the CPU model and thread count.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from common import cpu_times, machine, peak_memory_mb, steal_percent


def train_throughput(noise: str, batch: int, points: int, steps: int, bf16: bool) -> float:
    """Training points per second (median over ``steps`` after one warm-up step)."""
    from writemate.models.prediction import Prediction, PredictionConfig, PredictionTask
    from writemate.train import TrainConfig, Trainer

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    lines = [np.column_stack([rng.normal(size=(points, 2)), rng.random(points) < 0.04]).astype(np.float32) for _ in range(batch)]
    task = PredictionTask(Prediction(PredictionConfig()), lines, lines[:1])
    trainer = Trainer(task, TrainConfig(noise=noise, bf16=bf16), run_dir="unused", family="prediction", model_config={})
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        trainer.train_step(list(range(batch)))
        times.append(time.perf_counter() - start)
    return batch * (points - 1) / float(np.median(times[1:]))


def sampling_seconds(points: int) -> float:
    from writemate.models.prediction import Prediction, PredictionConfig, sample

    model = Prediction(PredictionConfig())
    sample(model, 10)  # warm up
    start = time.perf_counter()
    sample(model, points, bias=0.5)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (1 when other work shares the CPU)")
    parser.add_argument("--steps", type=int, default=1, help="timed training steps per noise setting (after one warm-up)")
    parser.add_argument("--noise", default="none,fixed,adaptive", help="comma-separated weight noise settings to time")
    parser.add_argument("--points", type=int, default=600, help="points per line (IAM-OnDB mean: about 630)")
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {"machine": machine(torch.get_num_threads()), "torch": torch.__version__, "bf16": args.bf16}
    before = cpu_times()
    for noise in args.noise.split(","):
        result[f"train_points_per_s_{noise}"] = round(train_throughput(noise, 32, args.points, args.steps, args.bf16))
    result["sample_700_points_s"] = round(sampling_seconds(700), 2)
    result["peak_memory_mb"] = peak_memory_mb()
    result["cpu_steal_percent"] = steal_percent(before, cpu_times())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
