"""The ``writemate`` command: a thin layer over the library.

Every error a user can cause ends in one line on stderr and a non-zero exit
code (2 for bad input), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import fields
from pathlib import Path

from writemate.errors import WritemateError

EXIT_BAD_INPUT = 2

# Modules with an ``add_commands(subparsers)`` function; each parser it adds sets ``func``.
COMMAND_MODULES: list[str] = []


class UsageError(WritemateError):
    """A problem with what the user asked for; printed without a traceback."""


def _add_train_options(p: argparse.ArgumentParser) -> None:
    from writemate.train import NOISE, OPTIMIZERS

    g = p.add_argument_group("training")
    g.add_argument("--run", type=Path, required=True, help="run folder for checkpoints, metrics and the best model (resumed if it holds a checkpoint)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--clip-norm", type=float, default=3.0, help="global gradient norm limit (0: off)")
    g.add_argument("--noise", choices=NOISE, default="none", help="weight noise: none, fixed or adaptive (Graves 2011)")
    g.add_argument("--weight-noise", type=float, default=0.075, help="std of fixed noise, initial std of adaptive noise")
    g.add_argument("--epochs", type=int, default=10)
    g.add_argument("--max-minutes", type=float, default=0.0, help="stop after this many minutes of training (0: no limit)")
    g.add_argument("--checkpoint-minutes", type=float, default=5.0)
    g.add_argument("--eval-every", type=int, default=0, help="also validate every N steps")
    g.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on CPUs with AMX/AVX512-BF16)")
    g.add_argument("--seed", type=int, default=0)


def _train_config(args):
    from writemate.train import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    try:
        return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    except ValueError as e:
        raise UsageError(str(e)) from e


def _progress_bar():
    """A progress event handler drawing a tqdm bar on stderr."""
    from tqdm import tqdm

    bar = None

    def handle(event: dict) -> None:
        nonlocal bar
        kind = event["event"]
        if kind == "start" and event["resumed"]:
            tqdm.write(f"resuming at step {event['step']} (epoch {event['epoch'] + 1})", file=sys.stderr)
        elif kind == "epoch":
            if bar:
                bar.close()
            bar = tqdm(total=event["batches"], initial=event["done"], desc=f"epoch {event['epoch'] + 1}", unit="batch", file=sys.stderr)
        elif kind == "step" and bar:
            bar.update(1)
            bar.set_postfix(loss=f"{event['loss']:.3f}", refresh=False)
        elif kind == "val":
            shown = ", ".join(f"{k} {v:.4g}" for k, v in event.items() if k != "event")
            tqdm.write(f"validation: {shown}", file=sys.stderr)
        elif kind == "stop":
            if bar:
                bar.close()
            tqdm.write(f"stopped ({event['reason']})", file=sys.stderr)

    return handle


def cmd_train(args) -> int:
    from writemate import pipelines
    from writemate.models.synthesis import SynthesisConfig

    config = _train_config(args)
    if args.family == "synthesis":
        model_config = SynthesisConfig(hidden=args.hidden, layers=args.layers)
        state = pipelines.train_synthesis(args.data, args.run, model_config, config, _progress_bar(), args.max_val_lines)
    else:
        raise UsageError(f"unknown model family {args.family!r}")
    print(json.dumps({"step": state.step, "epoch": state.epoch, "best": state.best, "run": str(args.run)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="writemate", description="Handwriting synthesis and recognition with recurrent networks.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a network on your own copy of a dataset")
    p.add_argument("family", choices=["synthesis"])
    p.add_argument("--data", type=Path, required=True, help="folder holding the IAM-OnDB archives (or their unpacked folders)")
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--max-val-lines", type=int, default=0, help="validate on the first N validation lines only (0: all)")
    _add_train_options(p)
    p.set_defaults(func=cmd_train)

    for module in COMMAND_MODULES:  # command groups that live beside their model family
        importlib.import_module(module).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except WritemateError as e:
        print(f"writemate: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("writemate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
