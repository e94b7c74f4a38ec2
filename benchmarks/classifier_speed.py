"""How fast a sequence classifier labels 1,000 samples (issue target: under 2 s).

Reports two times, each the best of ``--repeat`` runs from a warm process:
the network alone on features already read (``Classifier.predict``), and the
whole path from files (reading InkML or WAV, features, network) as
``writemate classify predict`` runs it.

    python benchmarks/classifier_speed.py --model unipen-digits --data ../shared/data/unipen/digits
    python benchmarks/classifier_speed.py --model fsdd --data ../shared/data/fsdd/recordings --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import writemate
from common import machine
from writemate.data import sequences


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="bundled name or model folder")
    parser.add_argument("--data", type=Path, required=True, help="folder of the model's kind of files")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = writemate.load(args.model)

    # Files holding the first ``samples`` samples (InkML files hold many, WAV files one).
    files, count = [], 0
    for path in sequences.data_files(args.data):
        files.append(path)
        count += len(model.read([path]))
        if count >= args.samples:
            break
    data = model.read(files)
    features = data.sequences[: args.samples]
    model.predict(features[:16])  # warm-up

    network = best_of(args.repeat, lambda: model.predict(features))
    whole = best_of(args.repeat, lambda: model.predict_files(files))
    print(
        json.dumps(
            {
                "model": args.model,
                "samples": len(features),
                "files_samples": len(data),
                "network_seconds": round(network, 3),
                "from_files_seconds": round(whole, 3),
                "machine": machine(args.threads),
            }
        )
    )


if __name__ == "__main__":
    main()
