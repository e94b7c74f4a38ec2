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

from writemate.errors import Interrupted, WritemateError

EXIT_BAD_INPUT = 2

# Modules with an ``add_commands(subparsers)`` function, and optionally
# ``add_evaluate_targets(subparsers)`` for `writemate evaluate <target>`;
# each parser they add sets ``func``.
COMMAND_MODULES: list[str] = [
    "writemate.cli_lm",
    "writemate.cli_classify",
    "writemate.cli_prediction",
    "writemate.cli_recognize",
]


class UsageError(WritemateError):
    """A problem with what the user asked for; printed without a traceback."""


def _add_train_options(p: argparse.ArgumentParser) -> None:
    from writemate.train import NOISE, OPTIMIZERS

    g = p.add_argument_group("training")
    g.add_argument("--run", type=Path, required=True, help="run folder for checkpoints, metrics and the best model (resumed if it holds a checkpoint)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help="default adam; a resumed run keeps its own")
    g.add_argument("--lr", type=float, help="learning rate (default 1e-3; a resumed run keeps its own unless this is given)")
    g.add_argument("--momentum", type=float, help="for momentum and rmsprop (default 0.9)")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--clip-norm", type=float, default=3.0, help="global gradient norm limit (0: off)")
    g.add_argument("--noise", choices=NOISE, help="weight noise: none (default), fixed or adaptive (Graves 2011); a resumed run keeps its own")
    g.add_argument("--weight-noise", type=float, help="std of fixed noise, initial std of adaptive noise (default 0.075)")
    g.add_argument("--epochs", type=int, default=10)
    g.add_argument("--max-minutes", type=float, default=0.0, help="stop after this many minutes of training (0: no limit)")
    g.add_argument("--checkpoint-minutes", type=float, default=5.0)
    g.add_argument("--eval-every", type=int, default=0, help="also validate every N steps")
    g.add_argument("--keep-evaluated", action="store_true", help="also save the model of every validation as RUN/evaluated/step-N (best/ keeps only the best by the validation metric)")
    g.add_argument("--lr-decay", type=float, help="multiply the learning rate by this after every epoch (default 1; a resumed run keeps its own unless given)")
    g.add_argument("--decay-after", type=int, help="epochs at the full learning rate before --lr-decay starts (default 0)")
    g.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on CPUs with AMX/AVX512-BF16)")
    g.add_argument("--seed", type=whole_number, default=0)
    g.add_argument("--threads", type=whole_number, default=0, help="CPU threads for PyTorch (0: its default); 1 is best when other work shares the CPU")


def _train_config(args):
    from writemate.train import TrainConfig, saved_train_config

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    names = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    # A resumed run keeps its learning-rate schedule unless it is given again, and its optimiser and
    # weight noise (Trainer.load_checkpoint refuses other ones: their state is in the checkpoint).
    stored = saved_train_config(args.run) or saved_train_config(Path(args.run) / "member-1")  # an ensemble's
    kept = ("lr", "lr_decay", "decay_after", "optimizer", "momentum", "noise", "weight_noise")
    given = {k: stored[k] for k in kept if k in stored} | given
    try:
        return TrainConfig(**given)
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
            tqdm.write(f"resuming at step {event['step']} (epoch {event['epoch'] + 1}, learning rate {event['lr']:.3g})", file=sys.stderr)
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
    from writemate import cli_recognize, pipelines
    from writemate.models.prediction import PredictionConfig
    from writemate.models.synthesis import SynthesisConfig

    cli_recognize.check_train_options(args)
    config = _train_config(args)
    hidden = 400 if args.hidden is None else args.hidden  # the paper's sizes for synthesis and prediction
    layers = 3 if args.layers is None else args.layers
    init = _init_folder(args)
    input_noise = _input_noise(args)
    if args.family == "synthesis":
        try:
            model_config = SynthesisConfig(hidden=hidden, layers=layers)
        except ValueError as e:
            raise UsageError(str(e)) from e
        state = pipelines.train_synthesis(
            args.data, args.run, model_config, config, _progress_bar(), args.max_val_lines, init, input_noise
        )
    elif args.family == "prediction":
        try:
            model_config = PredictionConfig(hidden=hidden, layers=layers)
        except ValueError as e:
            raise UsageError(str(e)) from e
        state = pipelines.train_prediction(
            args.data, args.run, model_config, config, _progress_bar(), args.max_val_lines, init
        )
    elif args.family == "recognizer":
        state = cli_recognize.train_recognizer(args, config)
    else:
        raise UsageError(f"unknown model family {args.family!r}")
    print(json.dumps({"step": state.step, "epoch": state.epoch, "best": state.best, "run": str(args.run)}))
    return 0


def _input_noise(args) -> float:
    """--input-noise, or for a resumed run the one it was trained with (0 if none)."""
    import math

    from writemate.train import saved_model_config

    if args.input_noise is None:
        return float(saved_model_config(args.run).get("training", {}).get("input_noise", 0.0))
    if not 0 <= args.input_noise < math.inf or (args.input_noise and args.family != "synthesis"):
        raise UsageError("--input-noise takes a std of 0 or more, for synthesis runs")
    return args.input_noise


def _init_folder(args) -> Path | None:
    """The model folder --init names (a bundled name or a folder), checked before any data is read."""
    from writemate import loading

    if args.init is None:
        return None
    if args.family == "recognizer":
        raise UsageError("--init starts synthesis and prediction runs only")
    if args.hidden is not None or args.layers is not None:
        raise UsageError("--init takes the network's size from the model it starts from; drop --hidden and --layers")
    return loading.resolve(args.init)


def _read_text(arg: str) -> str:
    """The text argument; "-" reads standard input. In an argument, the two characters
    \\n break the line as shells pass them literally (a backslash cannot be written anyway)."""
    return sys.stdin.read() if arg == "-" else arg.replace("\\n", "\n")


def whole_number(text: str) -> int:
    """argparse type for seeds, counts and limits: an integer of 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def check_writable(path: Path) -> None:
    """Fail before any work if ``path`` cannot be written (the file itself is left untouched)."""
    import os

    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{path}: folder {parent} does not exist")
    probe = parent / f".{path.name}.writemate-probe"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"{path}: cannot write there ({e.strerror})") from e
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{path}: file is not writable")


def add_page_options(p: argparse.ArgumentParser) -> None:
    """The page options read by :func:`_page_style`."""
    p.add_argument("--line-height", type=float, default=12.0, help="mm between lines")
    p.add_argument("--stroke-width", type=float, default=0.5, help="pen width in mm")
    p.add_argument("--color", default="#1a1a2e", help="ink colour (CSS name or #rrggbb)")
    p.add_argument("--smooth", type=whole_number, default=0, help="smooth strokes over N points for display (0: raw, for plotters)")


def _page_style(args):
    from writemate.render import PageStyle

    if args.stroke_width <= 0 or args.line_height <= 0:
        raise UsageError("--stroke-width and --line-height must be positive")
    try:
        from PIL import ImageColor

        ImageColor.getrgb(args.color)
    except ValueError as e:
        raise UsageError(f"--color: {e}") from e
    return PageStyle(line_height=args.line_height, stroke_width=args.stroke_width, color=args.color, smoothing=args.smooth)


def cmd_write(args) -> int:
    from writemate import api, loading, render

    from writemate.alphabet import AlphabetError

    try:
        text = api.prepare_text(_read_text(args.text), args.replace_unknown)
    except AlphabetError as e:
        raise UsageError(f"{e}; --replace-unknown writes them as their closest plain characters") from e
    api.output_kind(args.output)
    check_writable(args.output)
    page = _page_style(args)
    prime_strokes = None
    if args.prime:
        if not args.prime_text:
            raise UsageError("--prime needs --prime-text, the text written in that file")
        prime_strokes = api.read_prime_file(args.prime)
    elif args.prime_text:
        raise UsageError("--prime-text goes with --prime FILE")
    if args.width < 5:
        raise UsageError("--width must be at least 5 characters")
    writer = loading.load(args.model, "synthesis")
    lines = sum(1 for line in render.wrap(text, args.width) if line.strip())
    result = writer.write(
        text,
        style=args.style,
        bias=args.bias,
        seed=args.seed,
        width=args.width,
        prime_strokes=prime_strokes,
        prime_text=args.prime_text,
        replace_unknown=args.replace_unknown,
        page=page,
        progress=_line_progress(lines) if lines > api.MAX_LINES_PER_BATCH else None,  # one batch: no steps to show
        check=args.check,
    )
    result.save(args.output)
    return 0


def cmd_styles(args) -> int:
    from writemate import loading

    if args.preview:
        if args.preview.suffix.lower() != ".png":
            raise UsageError(f"{args.preview}: --preview writes a PNG; give a file name ending in .png")
        check_writable(args.preview)
    writer = loading.load(args.model, "synthesis")
    if not writer.styles:
        print("this model has no bundled styles")
        return 0
    for s in writer.styles:
        print(f"{s.id:3d}  {s.name:<20s} bias {s.bias:<4g} {s.text!r}")
    if args.preview:
        from writemate.render import PageStyle, save, to_png

        page = PageStyle()
        rows = []  # each style's sample line, moved down to its own row
        for i, s in enumerate(writer.styles):
            written = writer.write(s.sample_text, style=s.id, bias=s.bias, seed=args.seed)
            rows.extend([st + [0, i * page.line_height] for st in line] for line in written.lines)
        save(args.preview, to_png(rows, page))
    return 0


def _line_progress(total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, unit="line", file=sys.stderr, leave=False)
    return bar.update


def cmd_serve(args) -> int:
    import uvicorn

    import socket
    from functools import partial

    from writemate.server import bundled_models, create_app

    if not 0 < args.port < 65536:
        raise WritemateError(f"--port must be between 1 and 65535, not {args.port}")
    with socket.socket() as probe:  # fail now, not after loading the models
        try:
            probe.bind((args.host, args.port))
        except OSError as e:
            raise WritemateError(f"cannot serve on {args.host}:{args.port}: {e.strerror}") from e
    print("writemate: loading the models and writing the style previews...", file=sys.stderr)
    app = create_app(partial(bundled_models, args.model))
    print(f"Writemate Studio: http://{args.host}:{args.port}/ (API docs at /docs; Ctrl-C stops it)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    except SystemExit as e:  # uvicorn exits when it cannot listen (port in use)
        raise WritemateError(f"cannot serve on {args.host}:{args.port} (is the port in use?)") from e
    return 0


def cmd_evaluate_synthesis(args) -> int:
    from writemate import evaluate, loading

    writer = loading.load(args.model, "synthesis")
    lines = evaluate.line_count(args.data, args.split)
    result = evaluate.synthesis_nll(writer, args.data, _line_progress(min(lines, args.limit or lines)), args.limit, args.split)
    print_evaluation(result, args.json)
    return 0


def cmd_evaluate_endings(args) -> int:
    from writemate import evaluate, loading

    writer = loading.load(args.model, "synthesis")
    lines = min(evaluate.line_count(args.data, args.split), args.limit or 10**9)
    result = evaluate.synthesis_endings(writer, args.data, args.bias, _line_progress(lines * len(args.bias)), args.limit, args.split, args.seed)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"lines: {result['lines']} ({result['split']} split), seed {result['seed']}")
    for row in result["biases"]:
        print(f"bias {row['bias']:g}: {100 * row['ended']:.1f} % of lines end before the step cap without skipping a word")
        for line in row["lost"]:
            print(f"  lost its place: {line['id']}: {line['text']}")
    return 0


def add_evaluation_options(t: argparse.ArgumentParser) -> None:
    """Options shared by `writemate evaluate synthesis` and `evaluate prediction`."""
    from writemate.evaluate import SPLITS

    t.add_argument("--split", choices=SPLITS, default="all", help="all lines, or one side of the training split (by text group)")
    t.add_argument("--limit", type=whole_number, default=0, help="only the first N lines (0: all)")
    t.add_argument("--json", action="store_true", help="print one JSON object")


def print_evaluation(result: dict, as_json: bool) -> None:
    """An NLL/SSE evaluation (Graves Tables 2-3) as one JSON object or as readable lines."""
    if as_json:
        print(json.dumps(result))
        return
    print(f"lines:      {result['lines']}")
    print(f"points:     {result['points']} predicted ({result['corrupt_points_removed']} corrupt points removed by the reader)")
    print(f"NLL:        {result['nll']:.1f} nats per line")
    print(f"SSE:        {result['sse']:.4f} per point (normalised offsets)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="writemate", description="Handwriting synthesis and recognition with recurrent networks.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a network on your own copy of a dataset")
    p.add_argument(
        "family",
        choices=["synthesis", "prediction", "recognizer"],
        help="synthesis (section 5, text to handwriting), prediction (section 4, unconditional) "
        "or recognizer (BLSTM-CTC, handwriting to text)",
    )
    p.add_argument("--data", type=Path, required=True, help="folder holding the IAM-OnDB archives (or their unpacked folders)")
    p.add_argument("--hidden", type=int, help="LSTM cells per layer (default 400; recognizer: 192 per direction)")
    p.add_argument("--layers", type=int, help="LSTM layers (default 3)")
    p.add_argument("--max-val-lines", type=int, default=0, help="validate on the first N validation lines only (0: all)")
    p.add_argument(
        "--input-noise", type=float,
        help="synthesis: std of Gaussian noise on the input pen moves (normalised units), for robust sampling "
        "(default 0; a resumed run keeps its own)",
    )
    p.add_argument(
        "--init",
        help="start a new run from this trained model (bundled name or folder): its weights, size and "
        "normalisation, with a fresh optimiser (fine-tuning; synthesis and prediction; a prediction run may "
        "also start from a synthesis model, its window dropped)",
    )
    _add_train_options(p)
    from writemate import cli_recognize  # its options, read only by `train recognizer`

    cli_recognize.add_train_options(p)
    p.set_defaults(func=cmd_train, trains=True)

    p = sub.add_parser("write", help="write text as handwriting (SVG, PNG, stroke JSON or InkML)")
    p.add_argument("text", help='the text to write; "-" reads it from standard input; newlines (or \\n) break lines')
    p.add_argument("-o", "--output", type=Path, required=True, help="output file: .svg, .png, .json or .inkml")
    p.add_argument("--style", type=int, default=None, help="bundled style number (see: writemate styles)")
    p.add_argument("--bias", type=float, default=0.75, help="legibility: 0 as sampled, 1-2 neater (default 0.75)")
    p.add_argument("--seed", type=whole_number, default=0, help="random seed (same seed, same handwriting)")
    p.add_argument("--width", type=int, default=45, help="wrap lines at this many characters (default 45)")
    p.add_argument("--prime", type=Path, help="write in the hand of this line: IAM-OnDB line XML or Writemate JSON")
    p.add_argument("--prime-text", help="the text written in the --prime file")
    p.add_argument("--replace-unknown", action="store_true", help="replace characters outside the alphabet (é to e, curly quotes to straight)")
    p.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read every line back with the bundled recognizer as it is written, and write again the ones it misreads "
        "(default; --no-check is about twice as fast and fails more lines)",
    )
    add_page_options(p)
    p.add_argument("--model", default="synthesis", help="bundled model name or trained model folder")
    p.set_defaults(func=cmd_write)

    p = sub.add_parser("styles", help="list the bundled handwriting styles")
    p.add_argument("--model", default="synthesis", help="bundled model name or trained model folder")
    p.add_argument("--preview", type=Path, help="also write a PNG showing every style")
    p.add_argument("--seed", type=whole_number, default=0)
    p.set_defaults(func=cmd_styles)

    p = sub.add_parser("serve", help="start Writemate Studio, a local web page to write, draw and read handwriting")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", default="synthesis", help="bundled synthesis model name or model folder")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("evaluate", help="measure a trained model on your copy of a dataset")
    targets = p.add_subparsers(dest="target", required=True)
    t = targets.add_parser("synthesis", help="NLL per line and SSE per point on IAM-OnDB lines (Graves Table 3)")
    t.add_argument("--data", type=Path, required=True, help="folder holding the IAM-OnDB archives")
    t.add_argument("--model", default="synthesis", help="bundled model name or trained model folder")
    add_evaluation_options(t)
    t.set_defaults(func=cmd_evaluate_synthesis)
    t = targets.add_parser("endings", help="share of sampled lines that end before the step cap without skipping a word, per bias (no recognizer needed)")
    t.add_argument("--data", type=Path, required=True, help="folder holding the IAM-OnDB archives")
    t.add_argument("--model", default="synthesis", help="bundled model name or trained model folder")
    t.add_argument("--bias", type=float, nargs="+", default=[0.75, 1.0], help="biases to sample at (default 0.75 1)")
    t.add_argument("--seed", type=whole_number, default=0)
    add_evaluation_options(t)
    t.set_defaults(func=cmd_evaluate_endings, split="validation")

    for name in COMMAND_MODULES:  # command groups that live beside their model family
        module = importlib.import_module(name)
        module.add_commands(sub)
        if hasattr(module, "add_evaluate_targets"):  # e.g. `writemate evaluate prediction`
            module.add_evaluate_targets(targets)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed help (0) or the usage error (2)
        return e.code or 0
    try:
        if getattr(args, "trains", False):  # Ctrl-C or SIGTERM: finish the step, checkpoint, stop
            from writemate.train import stop_on_signals

            with stop_on_signals():
                return args.func(args)
        return args.func(args)
    except WritemateError as e:
        if isinstance(e, Interrupted):  # a training run stopped by Ctrl-C or SIGTERM
            print(f"writemate: {e}", file=sys.stderr)
            return 130
        print(f"writemate: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("writemate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
