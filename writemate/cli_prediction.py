"""``writemate scribble``, ``writemate explain`` and ``writemate evaluate prediction``.

The prediction network of Graves (2013) section 4 and the paper's diagnostic
figures; a thin layer over :mod:`writemate.scribble` and
:mod:`writemate.figures`. See docs/prediction.md.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from writemate import loading
from writemate.cli import (
    UsageError,
    _line_progress,
    _page_style,
    _read_text,
    add_evaluation_options,
    add_page_options,
    check_writable,
    print_evaluation,
    whole_number,
)

PREDICTION = "prediction"  # family, and name of the bundled model
SYNTHESIS = "synthesis"
FIGURE_FORMATS = ("png", "svg", "pdf")


def cmd_scribble(args) -> int:
    from writemate import api

    api.output_kind(args.output)
    check_writable(args.output)
    page = _page_style(args)
    if args.steps < 1 or args.lines < 1:
        raise UsageError("--steps and --lines must be at least 1")
    if args.bias < 0:
        raise UsageError("--bias must be 0 or more")
    prime_strokes = api.read_prime_file(args.prime) if args.prime else None
    scribbler = loading.load(args.model, PREDICTION)
    result = scribbler.scribble(
        steps=args.steps,
        bias=args.bias,
        seed=args.seed,
        prime_strokes=prime_strokes,
        lines=args.lines,
        show_prime=not args.hide_prime,
        page=page,
    )
    result.save(args.output)
    return 0


def cmd_explain(args) -> int:
    from writemate import api, figures, loading, render
    from writemate.alphabet import AlphabetError

    kind = args.output.suffix.lower().lstrip(".")
    if kind not in FIGURE_FORMATS:
        raise UsageError(f"{args.output}: the figure must end in .{', .'.join(FIGURE_FORMATS)}")
    try:
        text = api.prepare_text(_read_text(args.text), args.replace_unknown)
    except AlphabetError as e:
        raise UsageError(f"{e}; --replace-unknown writes them as their closest plain characters") from e
    if args.dpi < 10:
        raise UsageError("--dpi must be at least 10")
    check_writable(args.output)
    writer = loading.load(args.model, SYNTHESIS)
    if args.prediction_model is not None:
        prediction = loading.load(args.prediction_model, PREDICTION)
    elif PREDICTION in loading.bundled():
        prediction = loading.load(PREDICTION, PREDICTION)
    else:
        prediction = None
        print(
            "writemate: note: no prediction model installed; the density and end-of-stroke panels "
            "show the synthesis network's own mixture",
            file=sys.stderr,
        )
    figure = figures.explain(writer, text, prediction, bias=args.bias, seed=args.seed)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=kind, dpi=args.dpi)
    render.save(args.output, buffer.getvalue())
    return 0


def cmd_evaluate(args) -> int:
    from writemate import evaluate

    scribbler = loading.load(args.model, PREDICTION)
    lines = evaluate.line_count(args.data, args.split)
    progress = _line_progress(min(lines, args.limit or lines))
    result = evaluate.prediction_nll(scribbler, args.data, progress, args.limit, args.split)
    print_evaluation(result, args.json)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("scribble", help="free-running handwriting from the prediction network (no text)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output file: .svg, .png, .json or .inkml")
    p.add_argument("--steps", type=int, default=700, help="pen points to sample per line (default 700, about 30 characters)")
    p.add_argument("--lines", type=int, default=1, help="lines to sample (one batch)")
    p.add_argument("--bias", type=float, default=0.5, help="0 as sampled, 1-2 neater (default 0.5)")
    p.add_argument("--seed", type=whole_number, default=0, help="random seed (same seed, same scribble)")
    p.add_argument("--prime", type=Path, help="continue this line of ink: IAM-OnDB line XML or Writemate JSON")
    p.add_argument("--hide-prime", action="store_true", help="draw only the new ink, not the primed line")
    add_page_options(p)
    p.add_argument("--model", default=PREDICTION, help="bundled model name or trained prediction model folder")
    p.set_defaults(func=cmd_scribble)

    p = sub.add_parser("explain", help="the paper's diagnostic figures for a line of text (window, density, end of stroke)")
    p.add_argument("text", help='one line of text (at most 80 characters); "-" reads standard input')
    p.add_argument("-o", "--output", type=Path, required=True, help="figure file: .png, .svg or .pdf")
    p.add_argument("--model", default=SYNTHESIS, help="synthesis model: bundled name or model folder")
    p.add_argument(
        "--prediction-model",
        help="prediction model for the density and end-of-stroke panels (default: the bundled one if installed, "
        "otherwise the synthesis network's own mixture is shown)",
    )
    p.add_argument("--bias", type=float, default=0.75, help="bias of the synthesis network's writing (default 0.75)")
    p.add_argument("--seed", type=whole_number, default=0)
    p.add_argument("--dpi", type=int, default=150)
    p.add_argument("--replace-unknown", action="store_true", help="replace characters outside the alphabet")
    p.set_defaults(func=cmd_explain)


def add_evaluate_targets(targets) -> None:
    t = targets.add_parser(PREDICTION, help="NLL per line and SSE per point on IAM-OnDB lines (Graves Table 2)")
    t.add_argument("--data", type=Path, required=True, help="folder holding the IAM-OnDB archives")
    t.add_argument("--model", default=PREDICTION, help="bundled model name or trained prediction model folder")
    add_evaluation_options(t)
    t.set_defaults(func=cmd_evaluate)
