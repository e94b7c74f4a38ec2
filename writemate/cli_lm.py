"""``writemate lm train|evaluate|sample``: LSTM language models over characters or words."""

from __future__ import annotations

import json
from pathlib import Path

from writemate.cli import UsageError, _add_train_options, _progress_bar, _train_config, whole_number

DEFAULT_MODEL = "ptb-char"
DEFAULT_MAX_VOCAB = {"char": 0, "word": 10000}  # 0: every symbol of the training text


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)


def _load_predictor(name_or_folder: str):
    from writemate import loading
    from writemate.models.language import FAMILY

    return loading.load(name_or_folder, FAMILY)


NETWORK_DEFAULTS = {"level": "char", "embedding": 256, "hidden": 1000, "layers": 1, "dropout": 0.0}


def _network(args):
    """The network to train and the model it starts from (--init), if any."""
    from dataclasses import replace

    from writemate.models.language import LanguageModelConfig

    given = {k: getattr(args, k) for k in NETWORK_DEFAULTS if getattr(args, k) is not None}
    if args.init is None:
        try:
            return LanguageModelConfig(**{**NETWORK_DEFAULTS, **given}), None
        except ValueError as e:
            raise UsageError(str(e)) from e
    start = _load_predictor(args.init)
    sized = sorted(k for k in given if k != "dropout" and given[k] != getattr(start.model.config, k))
    _require(not sized, f"--init keeps the network of {args.init}; drop --{', --'.join(sized)}")
    _require(args.init_scale == 0, "--init starts from trained weights; drop --init-scale")
    _require(args.max_vocab is None, "--init keeps the vocabulary of the model it starts from; drop --max-vocab")
    return replace(start.model.config, dropout=given.get("dropout", start.model.config.dropout)), start


def cmd_train(args) -> int:
    from writemate.models.language import train_language_model

    config = _train_config(args)
    _require(args.bptt >= 1, "--bptt must be at least 1")
    _require(args.max_val_tokens >= 0, "--max-val-tokens must not be negative")
    _require(args.init_scale >= 0, "--init-scale must not be negative")
    model_config, start = _network(args)
    max_vocab = DEFAULT_MAX_VOCAB[model_config.level] if args.max_vocab is None else args.max_vocab
    state = train_language_model(
        args.data,
        args.run,
        model_config,
        config,
        _progress_bar(),
        bptt=args.bptt,
        max_vocab=max_vocab,
        valid_fraction=args.valid_fraction,
        max_val_tokens=args.max_val_tokens,
        init_scale=args.init_scale,
        init=start,
    )
    print(json.dumps({"step": state.step, "epoch": state.epoch, "best": state.best, "run": str(args.run)}))
    return 0


def cmd_evaluate(args) -> int:
    _require(args.streams >= 1, "--streams must be at least 1")
    _require(args.context >= 0 and args.max_tokens >= 0, "--context and --max-tokens must not be negative")
    _require(args.dynamic_lr >= 0, "--dynamic-lr must not be negative")
    _require(0 <= args.dynamic_decay < 1, "--dynamic-decay must be in [0, 1)")
    _require(args.gradient_tokens >= 1, "--gradient-tokens must be at least 1")
    _require(args.window >= 0, "--window must not be negative")
    tuned = args.dynamic_rule != "sgd" or args.dynamic_decay or args.train_text
    _require(args.dynamic_lr > 0 or not tuned, "--dynamic-rule, --dynamic-decay and --train-text need --dynamic-lr")
    predictor = _load_predictor(args.model)
    metrics = predictor.evaluate(
        args.data,
        streams=args.streams,
        context=args.context,
        max_tokens=args.max_tokens,
        window=args.window,
        dynamic_lr=args.dynamic_lr,
        rule=args.dynamic_rule,
        decay=args.dynamic_decay,
        train_text=args.train_text,
        gradient_tokens=args.gradient_tokens,
    )
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:15} {value:.4f}" if isinstance(value, float) else f"{key:15} {value}")
    return 0


def cmd_sample(args) -> int:
    _require(args.length >= 1, "--length must be at least 1")
    _require(args.temperature >= 0, "--temperature must not be negative")
    predictor = _load_predictor(args.model)
    print(predictor.sample(args.prime, args.length, args.temperature, args.seed))
    return 0


def add_commands(sub) -> None:
    from writemate.data.text import LEVELS

    lm = sub.add_parser("lm", help="character- and word-level LSTM language models (Graves 2013 section 3)")
    commands = lm.add_subparsers(dest="lm_command", required=True)

    p = commands.add_parser("train", help="train a language model on a text file or folder")
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="a UTF-8 text file or folder; a folder with ptb.char.train.txt, ptb.train.txt or train.txt "
        "(and valid/test beside it) uses those splits, anything else holds out its last part for validation",
    )
    p.add_argument("--level", choices=LEVELS, help="char (default) or word")
    p.add_argument("--hidden", type=int, help="LSTM units per layer (default 1000)")
    p.add_argument("--layers", type=int, help="LSTM layers (default 1)")
    p.add_argument("--embedding", type=int, help="embedding size (default 256)")
    p.add_argument("--dropout", type=float, help="dropout between layers and before the output (default 0)")
    p.add_argument(
        "--init",
        help="start from this trained language model (bundled name or folder): its network, vocabulary and "
        "weights, with a fresh optimiser (fine-tuning on your text, or more training)",
    )
    p.add_argument(
        "--init-scale", type=float, default=0.0,
        help="start every weight uniform in [-S, S] (0.1 in Zaremba et al. 2014); 0: PyTorch's initialisation",
    )
    p.add_argument("--bptt", type=int, default=100, help="tokens per truncated back-propagation window")
    p.add_argument("--max-vocab", type=int, help="keep the most frequent symbols (default: all chars; 10000 words)")
    p.add_argument("--valid-fraction", type=float, default=0.05, help="held out when there is no valid file")
    p.add_argument("--max-val-tokens", type=int, default=0, help="validate on the first N tokens only (0: all)")
    _add_train_options(p)
    p.set_defaults(func=cmd_train, trains=True)

    p = commands.add_parser("evaluate", help="bits per character and perplexity on a text file")
    p.add_argument("--model", default=DEFAULT_MODEL, help="a bundled model name or a model, checkpoint or run folder")
    p.add_argument("--data", type=Path, required=True, help="a text file, or a folder with a test split")
    p.add_argument("--streams", type=int, default=16, help="pieces read side by side (1: one exact, slow pass)")
    p.add_argument("--context", type=int, default=200, help="unscored tokens each piece reads first")
    p.add_argument("--dynamic-lr", type=float, default=0.0, help="dynamic evaluation: its step size (0: off)")
    p.add_argument(
        "--dynamic-rule", choices=("sgd", "rms"), default="sgd",
        help="sgd: plain gradient steps (Graves 2013); rms: steps divided by each weight's gradient RMS on the "
        "training text (Krause et al. 2018)",
    )
    p.add_argument(
        "--dynamic-decay", type=float, default=0.0, help="pull towards the trained weights after each step, in [0, 1)"
    )
    p.add_argument(
        "--train-text", type=Path,
        help="the rms rule's training text (default: the train split in the --data folder)",
    )
    p.add_argument("--gradient-tokens", type=int, default=200_000, help="training tokens the rms rule measures")
    p.add_argument(
        "--window", type=int, default=0,
        help="tokens read per step (default: the training BPTT length); dynamic evaluation updates after each",
    )
    p.add_argument("--max-tokens", type=int, default=0, help="evaluate the first N tokens only (0: all)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("sample", help="continue a prime text")
    p.add_argument("--model", default=DEFAULT_MODEL, help="a bundled model name or a model, checkpoint or run folder")
    p.add_argument("--prime", default="", help='text to continue, e.g. "Science is"')
    p.add_argument("--length", type=int, default=300, help="tokens (characters or words) to generate")
    p.add_argument("--temperature", type=float, default=1.0, help="below 1: safer text; 0: the most likely token")
    p.add_argument("--seed", type=whole_number, default=0)
    p.set_defaults(func=cmd_sample)
