"""``writemate read``, ``writemate lm-corpus``, ``writemate train recognizer`` (options and run),
``writemate evaluate recognizer`` and ``writemate evaluate legibility``.

A thin layer over :mod:`writemate.recognize`, :mod:`writemate.evaluate` and
:func:`writemate.pipelines.train_recognizer`. See docs/recognition.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from writemate.cli import UsageError, _line_progress, _progress_bar, add_evaluation_options, whole_number
from writemate.errors import WritemateError

RECOGNIZER = "recognizer"  # family, and name of the bundled model
SYNTHESIS = "synthesis"


def load_recognizer(args):
    """The recognizer of ``--model``, with the language model of ``--lm`` and the decoding options applied."""
    from writemate import loading

    if args.beam is not None and args.beam < 0:
        raise UsageError("--beam must be 0 (best path) or more")
    if args.lm and args.no_lm:
        raise UsageError("--lm and --no-lm exclude each other")
    recognizer = loading.load(args.model, RECOGNIZER)
    if args.lm:
        recognizer.use_lm(args.lm)
    if args.no_lm:
        recognizer.use_lm(None)
    for option in ("lm_weight", "bonus"):
        value = getattr(args, option)
        if value is not None:
            setattr(recognizer.decoding, option, value)
    return recognizer


def add_decoding_options(p) -> None:
    p.add_argument("--model", default=RECOGNIZER, help="bundled model name or trained recognizer folder")
    p.add_argument(
        "--lm",
        help="character language model (folder or bundled name) for beam search; "
        "default: the one saved with the recognizer, if any",
    )
    p.add_argument("--no-lm", action="store_true", help="beam search without a language model")
    p.add_argument("--lm-weight", type=float, help="weight of the language model in beam search")
    p.add_argument("--bonus", type=float, help="score added per character in beam search (with a language model)")


# -- writemate read ---------------------------------------------------------------------


def cmd_read(args) -> int:
    recognizer = load_recognizer(args)
    beam = recognizer.default_beam() if args.beam is None else args.beam
    results, failed = [], 0
    for path in args.files:
        try:
            readings = recognizer.read(path, beam=beam, scores=True)
        except WritemateError as e:
            failed += 1
            message = str(e) if str(path) in str(e) else f"{path}: {e}"
            print(f"writemate: error: {message}", file=sys.stderr)
            results.append({"file": str(path), "error": message})
            continue
        results.append(
            {
                "file": str(path),
                "text": readings.text,
                "lines": [{"text": r.text, "score": r.score} for r in readings.lines],
                **({"truth": readings.truth} if readings.truth is not None else {}),
            }
        )
        if not args.json:
            if len(args.files) > 1:
                print(f"==> {path} <==")
            print(readings.text)
    if args.json:
        print(json.dumps({"decoder": f"beam {beam}" if beam else "best path", "files": results}))
    return 2 if failed else 0


# -- writemate lm-corpus ----------------------------------------------------------------


def cmd_lm_corpus(args) -> int:
    from writemate import pipelines

    counts = pipelines.write_lm_corpus(args.data, args.output, args.add)
    print(json.dumps({"folder": str(args.output), **counts}))
    return 0


# -- writemate train recognizer -------------------------------------------------------


def add_train_options(p) -> None:
    """Options of `writemate train` that only the recognizer reads (None: its default)."""
    g = p.add_argument_group("recognizer (train recognizer only)")
    g.add_argument("--features", choices=["offsets", "resampled", "curve"], help="input features (default curve)")
    g.add_argument("--step", type=float, help="resampling distance in line heights (default 0.1)")
    g.add_argument("--subsample", type=int, help="frames joined after the first layer (default 3)")
    g.add_argument("--dropout", type=float, help="dropout between layers (default 0.2)")
    g.add_argument("--augment", action="store_true", help="random slant, stretch and speed of training lines")
    g.add_argument("--slant", type=float, default=0.3, help="augmentation: largest shear of x by y")
    g.add_argument("--stretch", type=float, default=0.15, help="augmentation: largest log-stretch of x against y")
    g.add_argument("--speed", type=float, default=0.2, help="augmentation: largest log-change of the resampling step")


RECOGNIZER_ONLY = ("features", "step", "subsample", "dropout")


def check_train_options(args) -> None:
    """Refuse recognizer options on other families, rather than silently ignoring them."""
    if args.family != RECOGNIZER:
        given = [f"--{name}" for name in RECOGNIZER_ONLY if getattr(args, name) is not None]
        if args.augment:
            given.append("--augment")
        if given:
            raise UsageError(f"{', '.join(given)}: only for `writemate train recognizer`")


def train_recognizer(args, train_config):
    from writemate import pipelines
    from writemate.models.recognizer import Augmentation, RecognizerConfig

    chosen = {
        name: getattr(args, name) for name in (*RECOGNIZER_ONLY, "hidden", "layers") if getattr(args, name) is not None
    }
    try:
        model_config = RecognizerConfig(**chosen)
    except ValueError as e:
        raise UsageError(str(e)) from e
    augmentation = Augmentation(args.slant, args.stretch, args.speed) if args.augment else None
    return pipelines.train_recognizer(
        args.data, args.run, model_config, train_config, _progress_bar(), args.max_val_lines, augmentation
    )


# -- writemate evaluate recognizer | legibility ----------------------------------------


def cmd_evaluate_recognizer(args) -> int:
    from writemate import evaluate

    recognizer = load_recognizer(args)
    lines = evaluate.line_count(args.data, args.split)
    progress = _line_progress(min(lines, args.limit or lines))
    result = evaluate.recognizer_rates(recognizer, args.data, progress, args.limit, args.split, args.beam or 0)
    if args.json:
        print(json.dumps(result))
        return 0
    b = result["beam_lm"]
    searched = f"beam {b['beam']}" + (
        f" + LM (weight {b['lm_weight']:g}, bonus {b['bonus']:g})" if b["lm"] else ", no LM"
    )
    print(f"lines:       {result['lines']} ({result['split']})")
    print(f"best path:   CER {100 * result['best_path']['cer']:.2f} %  WER {100 * result['best_path']['wer']:.2f} %")
    print(f"{searched}:  CER {100 * b['cer']:.2f} %  WER {100 * b['wer']:.2f} %")
    print(
        f"speed:       {result['lines_per_second']:.1f} lines/s best path, {result['beam_lines_per_second']:.1f} beam"
    )
    return 0


def cmd_evaluate_legibility(args) -> int:
    from writemate import evaluate
    from writemate import loading

    if args.bias < 0:
        raise UsageError("--bias must be 0 or more")
    recognizer = load_recognizer(args)
    writer = loading.load(args.writer, SYNTHESIS)
    if args.style is not None:
        writer.style(args.style)  # an unknown style fails before any writing
    lines = evaluate.line_count(args.data, args.split)
    progress = _line_progress(min(lines, args.limit or lines))
    result = evaluate.legibility(
        writer,
        recognizer,
        args.data,
        progress,
        args.limit,
        args.split,
        args.bias,
        args.style,
        args.seed,
        args.beam or 0,
        retries=args.retries,
        check=args.check,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    g, r = result["generated"], result["real"]
    print(
        f"lines:         {result['lines']} ({result['split']}), bias {result['bias']:g}, style {result['style']}, "
        f"retries {result['retries']}{', checked' if result['check'] else ''}, read by {result['decoder']}"
    )
    print(f"generated:     CER {100 * g['cer']:.2f} %  WER {100 * g['wer']:.2f} %")
    print(f"real:          CER {100 * r['cer']:.2f} %  WER {100 * r['wer']:.2f} %")
    print(f"failure rate:  {100 * result['failure_rate']:.1f} % of generated lines have CER above 25 %")
    for w in result["worst"][:3]:
        print(f"  {w['id']}: {w['text']!r} read as {w['read']!r} (CER {100 * w['cer']:.0f} %)")
    return 0


# -- registration ----------------------------------------------------------------------------


def add_commands(sub) -> None:
    p = sub.add_parser("read", help="read handwriting: the text of IAM-OnDB line XML, InkML or stroke JSON files")
    p.add_argument("files", nargs="+", type=Path, help="ink files; several lines of ink are split into lines")
    p.add_argument(
        "--beam",
        type=int,
        help="0: best path; N: beam search of width N (default: beam search with "
        "the language model if the recognizer has one, else best path)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object: text, lines and scores per file")
    add_decoding_options(p)
    p.set_defaults(func=cmd_read)

    p = sub.add_parser("lm-corpus", help="write IAM-OnDB training transcriptions as text for `writemate lm train`")
    p.add_argument("--data", type=Path, required=True, help="folder holding the IAM-OnDB archives")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder to write train.txt and valid.txt into")
    p.add_argument(
        "--add",
        type=Path,
        action="append",
        default=[],
        help="more training text (a file or folder, e.g. ptb.char.train.txt); repeatable",
    )
    p.set_defaults(func=cmd_lm_corpus)


def add_evaluate_targets(targets) -> None:
    t = targets.add_parser(RECOGNIZER, help="CER and WER of best path and beam search on IAM-OnDB lines, and speed")
    t.add_argument("--data", type=Path, required=True, help="folder holding the IAM-OnDB archives")
    t.add_argument("--beam", type=int, help="beam width for the beam search (default: the recognizer's, 16)")
    add_decoding_options(t)
    add_evaluation_options(t)
    t.set_defaults(func=cmd_evaluate_recognizer)

    t = targets.add_parser("legibility", help="how well the recognizer reads the synthesis model's writing")
    t.add_argument(
        "--data", type=Path, required=True, help="folder holding the IAM-OnDB archives (their texts are written)"
    )
    t.add_argument("--bias", type=float, default=0.75, help="synthesis bias (default 0.75)")
    t.add_argument("--style", type=int, help="bundled style number (default: unprimed)")
    t.add_argument("--seed", type=whole_number, default=0)
    t.add_argument("--writer", default=SYNTHESIS, help="synthesis model: bundled name or model folder")
    t.add_argument(
        "--retries", type=whole_number, default=None, help="rewrite lines that reach the step cap up to N times (default: as writemate write, 2)"
    )
    t.add_argument(
        "--check",
        action="store_true",
        help="write lines as writemate write does by default: read back and written again when misread (the recognizer then both chooses and judges)",
    )
    t.add_argument("--beam", type=int, default=0, help="read with beam search of this width (default 0: best path)")
    add_decoding_options(t)
    add_evaluation_options(t)
    t.set_defaults(func=cmd_evaluate_legibility)
