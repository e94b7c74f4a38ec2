"""Average the weights of several model folders of one training run (checkpoint averaging).

    python tools/average_weights.py SNAPSHOT_A SNAPSHOT_B ... -o AVERAGED [--data IAM-ONDB]

The folders must hold the same network (same config.json "config"); the mean
of each tensor goes to AVERAGED/model.safetensors with the last folder's
config.json, its metrics dropped (they describe other weights) and the
folders listed under "averaged_from". With --data, the validation NLL of the
synthesis or prediction network is measured again (the protocol of
`writemate evaluate synthesis --split validation`, which the training's own
validation uses) and stored as "val_nll", so tools/export_model.py can
compare it. Nearby checkpoints of one run sample differently from one step to
the next (docs/synthesis.md); their average is often smoother.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from writemate import checkpoint, evaluate, loading
from writemate.train import network_config

EVALUATORS = {"synthesis": evaluate.synthesis_nll, "prediction": evaluate.prediction_nll}


def average(folders: list[Path], out: Path) -> dict:
    """Write the mean weights of ``folders`` to ``out``; returns the new config."""
    configs = [checkpoint.read_config(f) for f in folders]
    networks = [(c.get("family"), network_config(c["config"])) for c in configs]
    if any(n != networks[0] for n in networks):
        raise SystemExit("refusing: the folders hold different networks (their config.json 'config' differs)")
    weights = [checkpoint.load_tensors(f / checkpoint.WEIGHTS) for f in folders]
    mean = {
        k: (sum(w[k].double() for w in weights) / len(weights)).to(v.dtype) if v.is_floating_point() else v
        for k, v in weights[-1].items()
    }
    checkpoint.save_tensors(out / checkpoint.WEIGHTS, mean)
    config = dict(configs[-1], metrics={}, averaged_from=[str(f) for f in folders])
    checkpoint.atomic_write_json(out / checkpoint.CONFIG, config)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--data", type=Path, help="IAM-OnDB archives: measure the validation NLL of the average")
    args = parser.parse_args()
    if len(args.folders) < 2:
        raise SystemExit("give at least two model folders to average")
    if args.output.exists():
        raise SystemExit(f"refusing: {args.output} exists")
    family = checkpoint.read_config(args.folders[-1]).get("family")
    if args.data is not None and family not in EVALUATORS:
        raise SystemExit(f"--data measures synthesis or prediction networks, not {family!r}")
    if args.data is not None and not args.data.exists():
        raise SystemExit(f"{args.data}: no such file or folder")
    staged = checkpoint.fresh_folder(args.output.with_name(f".{args.output.name}-staged"))
    try:  # built aside and renamed at the end: a failure leaves no half-made output
        config = average(args.folders, staged)
        if args.data is not None:
            result = EVALUATORS[family](loading.load(staged), args.data, split="validation")
            config["metrics"] = {"val_nll": result["nll"], "val_sse": result["sse"]}
            checkpoint.atomic_write_json(staged / checkpoint.CONFIG, config)
            print(f"validation NLL {result['nll']:.1f} nats per line, SSE {result['sse']:.4f}, {result['lines']} lines")
        os.replace(staged, args.output)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    print(f"averaged {len(args.folders)} folders into {args.output}")


if __name__ == "__main__":
    main()
