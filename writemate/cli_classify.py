"""``writemate classify train|evaluate|predict|experiment``: recurrent sequence classifiers.

A thin layer over :mod:`writemate.models.classifier`; see docs/classification.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from writemate.cli import UsageError, _add_train_options, _progress_bar, _train_config


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and split")
    g.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder of InkML/stroke JSON ink, WAV recordings, or class subfolders of .npy/.txt sequences",
    )
    g.add_argument(
        "--split",
        choices=["writer", "speaker", "sample"],
        required=True,
        help="hold out whole writers (ink), whole speakers (audio), or random samples",
    )
    g.add_argument(
        "--split-seed", type=int, default=0, help="seed of the shuffle that picks held-out writers, speakers or samples"
    )
    g.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of samples whose writers/speakers form the test set"
    )
    g.add_argument("--val-fraction", type=float, default=0.1, help="share of samples for validation (model selection)")
    g.add_argument(
        "--test-groups",
        type=_names,
        default=[],
        help="comma-separated writers or speakers to test on (instead of --test-fraction)",
    )
    g.add_argument("--val-groups", type=_names, default=[], help="comma-separated writers or speakers to validate on")
    g.add_argument(
        "--val-by",
        choices=["group", "sample"],
        default="group",
        help="validate on held-out people (group) or on held-out samples of the training people (for data with few people)",
    )
    g.add_argument(
        "--select-by",
        choices=["error", "nll"],
        default="error",
        help="validation metric that picks the saved model (nll: smoother, for validation sets classified without error)",
    )
    g.add_argument("--test-data", type=Path, help="a separate test folder (the split then only takes validation data)")
    f = p.add_argument_group("features")
    f.add_argument(
        "--ink-features",
        type=_names,
        default=["position", "offsets", "pen"],
        help="any of position, offsets, pen (comma-separated)",
    )
    f.add_argument(
        "--resample-step",
        type=float,
        default=0.1,
        help="ink: resample strokes to this spacing, in units of the character's larger side (0: keep the points)",
    )
    f.add_argument("--n-mfcc", type=int, default=13, help="audio: cepstral coefficients per frame")
    f.add_argument("--no-deltas", action="store_true", help="audio: leave out the first and second differences")
    f.add_argument("--c0", action="store_true", help="audio: keep coefficient 0 (the log energy, i.e. loudness)")
    f.add_argument(
        "--cmvn", action="store_true", help="audio: normalise each recording's features to zero mean and unit variance"
    )
    f.add_argument(
        "--speaker-cmvn",
        action="store_true",
        help="audio: normalise features per speaker over all of the speaker's recordings read together "
        "(FSDD names give the speaker; other files count as their own speaker)",
    )
    f.add_argument(
        "--speaker-copies",
        type=int,
        default=0,
        help="audio, training: add this many copies of each training speaker, each with another voice and "
        "channel (one frequency warp and spectral tilt per copy), to help with unseen speakers",
    )
    f.add_argument("--max-warp", type=float, default=0.15, help="audio copies: warp factors within 1 +- this")
    f.add_argument("--max-tilt-db", type=float, default=12.0, help="audio copies: spectral tilts within +- this many dB")


def _add_model_options(p: argparse.ArgumentParser, several: bool = False) -> None:
    from writemate.models.classifier import CELLS, POOLING

    g = p.add_argument_group("model")
    if several:
        g.add_argument(
            "--cells", type=_names, default=list(CELLS), help="comma-separated cell types to compare: rnn, lstm, gru"
        )
        g.add_argument(
            "--layers",
            type=lambda t: [int(x) for x in _names(t)],
            default=[1, 2, 3],
            help="comma-separated depths to compare",
        )
    else:
        g.add_argument("--cell", choices=CELLS, default="gru", help="rnn (tanh), lstm or gru")
        g.add_argument("--layers", type=int, choices=[1, 2, 3], default=2)
    g.add_argument("--hidden", type=int, default=128, help="units per layer and direction")
    g.add_argument("--unidirectional", action="store_true", help="read sequences forwards only")
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument(
        "--mask-time", type=float, default=0.0, help="training: hide a random span of up to this share of each sequence"
    )
    g.add_argument(
        "--mask-features", type=int, default=0, help="training: hide a random band of up to this many features"
    )
    g.add_argument(
        "--pooling", choices=POOLING, default="last", help="summary of a sequence: final hidden states or mean output"
    )
    g.add_argument(
        "--ensemble",
        type=int,
        default=1,
        help="train this many networks with consecutive seeds and average their log-probabilities (1 to 9)",
    )


def _features(args):
    from writemate.data import audio, sequences

    files = sequences.data_files(args.data)
    kind = sequences.detect_kind(files)
    unknown = set(args.ink_features) - {"position", "offsets", "pen"}
    if unknown or not args.ink_features:
        raise UsageError(f"--ink-features takes position, offsets and pen, got {','.join(args.ink_features)}")
    ink = sequences.InkFeatureConfig(
        *(name in args.ink_features for name in ("position", "offsets", "pen")), step=args.resample_step
    )
    if args.speaker_copies < 0 or not 0 <= args.max_warp < 0.5 or args.max_tilt_db < 0:
        raise UsageError("--speaker-copies must be >= 0, --max-warp within [0, 0.5) and --max-tilt-db >= 0")
    mfcc = audio.MfccConfig(
        n_mfcc=args.n_mfcc,
        deltas=not args.no_deltas,
        cmvn=args.cmvn,
        speaker_cmvn=args.speaker_cmvn,
        c0=args.c0,
        train_copies=args.speaker_copies,
        max_warp=args.max_warp,
        max_tilt_db=args.max_tilt_db,
    )
    return sequences.FeatureConfig(kind=kind, ink=ink, audio=mfcc)


def _prepare(args):
    """Data, feature config, model config template, split config and train config from the options."""
    from writemate.data import sequences
    from writemate.models import classifier

    features = _features(args)
    data, features = sequences.load_folder(args.data, features)
    test_data = sequences.load_folder(args.test_data, features)[0] if args.test_data else None
    model = classifier.ClassifierConfig(
        input_size=features.size,
        classes=classifier.classes_of(data),
        cell=getattr(args, "cell", "gru"),  # experiment sets cells itself
        hidden=args.hidden,
        layers=args.layers if isinstance(args.layers, int) else 1,
        bidirectional=not args.unidirectional,
        dropout=args.dropout,
        pooling=args.pooling,
        mask_time=args.mask_time,
        mask_features=args.mask_features,
        ensemble=args.ensemble,
    )
    split = classifier.SplitConfig(
        by=args.split,
        seed=args.split_seed,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        test_groups=args.test_groups,
        val_groups=args.val_groups,
        val_by=args.val_by,
        select_by=args.select_by,
    )
    return data, test_data, features, model, split, _train_config(args)


INK_OPTIONS = {"ink_features", "resample_step"}
AUDIO_OPTIONS = {"n_mfcc", "no_deltas", "c0", "cmvn", "speaker_cmvn", "speaker_copies", "max_warp", "max_tilt_db"}


def _command_line(args, name: str, kind: str) -> str:
    """The options of a parsed ``writemate classify`` command, written out so that it can be run again
    (without the feature options of the other kinds of data)."""
    words = ["writemate", "classify", name]
    unused = {"func", "trains", "command", "classify_command"}
    unused |= (AUDIO_OPTIONS if kind != "audio" else set()) | (INK_OPTIONS if kind != "ink" else set())
    for key, value in vars(args).items():
        if key in unused or value is None or value is False or (key == "distill_temperature" and not args.distill):
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            if value:
                words += [flag, ",".join(str(v) for v in value)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def cmd_train(args) -> int:
    from writemate.loading import resolve
    from writemate.models import classifier

    data, test_data, features, model, split, train_config = _prepare(args)
    command = _command_line(args, "train", features.kind)
    result = classifier.train_classifier(
        data, features, model, split, train_config, args.run, _progress_bar(), test_data, command,
        teacher=resolve(args.distill) if args.distill else None, temperature=args.distill_temperature,
    )  # fmt: skip
    if result.test:
        print(classifier.report_text(result.test), file=sys.stderr)
    summary = {
        "run": str(args.run),
        "model": str(result.best_folder),
        "step": result.state.step,
        "epoch": result.state.epoch,
    }
    summary[f"best_val_{split.select_by}"] = result.state.best
    summary["test_accuracy"] = result.test.get("accuracy")
    print(json.dumps(summary))
    return 0


def _load_classifier(name: str):
    import writemate

    return writemate.load(name, "classifier")


def cmd_evaluate(args) -> int:
    from writemate.models import classifier

    model = _load_classifier(args.model)
    data = model.read([args.data], labelled=True)
    seen = model.seen_groups
    skipped = 0
    if seen and not args.include_seen:
        keep = [i for i, g in enumerate(data.groups) if g not in seen]
        skipped = len(data) - len(keep)
        data = data.subset(keep)
        if not len(data):
            raise UsageError(
                f"every sample of {args.data} comes from writers or speakers the model was trained on; add --include-seen to evaluate anyway"
            )
    result = model.evaluate(data)
    result["skipped_seen"] = skipped
    if args.png:
        classifier.save_confusion_png(result, args.png)
    if args.json:
        print(json.dumps(result))
    else:
        note = f" ({skipped} samples of writers/speakers seen in training left out)" if skipped else ""
        print(classifier.report_text(result) + note)
    return 0


def cmd_predict(args) -> int:
    model = _load_classifier(args.model)
    predictions = model.predict_files(args.files)
    if args.json:
        print(json.dumps([asdict(p) for p in predictions]))
    else:
        for p in predictions:
            print(f"{p.source}\t{p.label}\t{p.probability:.4f}")
    return 0


def cmd_combine(args) -> int:
    from writemate.loading import resolve
    from writemate.models import classifier

    out = classifier.combine([resolve(m) for m in args.models], args.out)
    networks = classifier.Classifier.from_folder(out).model.config.ensemble
    print(f"{out}: an ensemble of {networks} networks; see {out / 'MODEL_CARD.md'}")
    return 0


def cmd_experiment(args) -> int:
    from writemate.models import classifier

    data, test_data, features, model, split, train_config = _prepare(args)
    if test_data is not None:
        raise UsageError("experiment takes its test sets from --split (and --rotate), not --test-data")
    unknown = set(args.cells) - set(classifier.CELLS)
    if unknown or not args.cells or not args.layers or not set(args.layers) <= {1, 2, 3}:
        raise UsageError("--cells takes rnn, lstm, gru and --layers 1, 2, 3 (comma-separated)")
    rows = classifier.run_experiments(
        data, features, model, split, train_config, args.run, args.cells, args.layers, args.rotate, _progress_bar()
    )
    table = classifier.experiment_table(rows, _command_line(args, "experiment", features.kind))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    print(table)
    return 0


def add_commands(sub) -> None:
    group = sub.add_parser(
        "classify", help="recurrent sequence classifiers (handwritten characters, spoken digits, ...)"
    )
    commands = group.add_subparsers(dest="classify_command", required=True)

    p = commands.add_parser("train", help="train a classifier on a labelled data folder, then test it")
    _add_data_options(p)
    _add_model_options(p)
    p.add_argument(
        "--distill", metavar="MODEL", help="learn from this trained model's outputs too (e.g. make one fast network from an ensemble)"
    )
    p.add_argument("--distill-temperature", type=float, default=2.0, help="softening of the teacher's outputs")
    _add_train_options(p)
    p.set_defaults(func=cmd_train, trains=True)

    p = commands.add_parser(
        "evaluate", help="accuracy, per-class precision/recall and confusion matrix on labelled data"
    )
    p.add_argument(
        "--model",
        required=True,
        help="a bundled name (unipen-digits, unipen-uppercase, unipen-lowercase, fsdd) or a model/run folder",
    )
    p.add_argument("--data", type=Path, required=True, help="a labelled file or folder of the model's kind")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--png", type=Path, help="also save the confusion matrix as a PNG image")
    p.add_argument(
        "--include-seen",
        action="store_true",
        help="keep samples of writers/speakers the model was trained or validated on",
    )
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("predict", help="label and probability for every sample of the given files")
    p.add_argument("--model", required=True, help="a bundled name or a model/run folder")
    p.add_argument(
        "files", type=Path, nargs="+", help="InkML/stroke JSON, WAV, .npy or .txt files (or folders of them)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser(
        "combine", help="one ensemble from trained models of the same shape and features (e.g. differently augmented)"
    )
    p.add_argument("models", nargs="+", help="bundled names or model/run folders (at most 9 networks in all)")
    p.add_argument("--out", type=Path, required=True, help="a new folder for the combined model")
    p.set_defaults(func=cmd_combine)

    p = commands.add_parser(
        "experiment", help="compare cell types and depths: one table of test accuracy and training time"
    )
    _add_data_options(p)
    _add_model_options(p, several=True)
    p.add_argument(
        "--rotate",
        action="store_true",
        help="train once per writer/speaker with it as the test set; report the mean (leave one out)",
    )
    p.add_argument("--out", type=Path, help="write the markdown table to this file")
    _add_train_options(p)
    p.set_defaults(func=cmd_experiment, trains=True)
