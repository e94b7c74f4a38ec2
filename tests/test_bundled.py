"""The models shipped in the package: present, small, documented, and working."""

import json

import numpy as np
import pytest

import writemate
from writemate import alphabet, checkpoint
from writemate.loading import WEIGHTS_DIR

MAX_WEIGHT_BYTES = 25 * 1024 * 1024


def test_every_bundled_model_is_complete_and_small():
    assert "synthesis" in writemate.bundled()
    for name in writemate.bundled():
        folder = WEIGHTS_DIR / name
        assert (folder / checkpoint.WEIGHTS).stat().st_size < MAX_WEIGHT_BYTES, name
        assert (folder / "MODEL_CARD.md").read_text().strip(), name
        assert not list(folder.glob("*.pt")) and not list(folder.glob("*.pkl")), "no pickles"


def test_bundled_synthesis_writes_with_every_style():
    writer = writemate.load()
    assert writer.bundled  # checks its lines with the bundled recognizer, when there is one
    assert len(writer.styles) >= 8
    assert len({s.name for s in writer.styles}) == len(writer.styles)
    for style in writer.styles:
        alphabet.encode(style.text)
        assert style.offsets.shape[1] == 3 and len(style.offsets) > 50
    page = writer.write("Hi", style=writer.styles[0].id, seed=0)
    assert page.strokes and all(s.shape[1] == 2 for s in page.strokes)


def test_bundled_synthesis_config_records_its_training():
    meta = json.loads((WEIGHTS_DIR / "synthesis" / checkpoint.CONFIG).read_text())
    assert meta["family"] == "synthesis"
    assert meta["config"]["model"]["hidden"] == 400 and meta["config"]["model"]["mixtures"] == 20
    assert meta["metrics"]["val_nll"] < 0
    assert set(meta["config"]["stats"]) == {"mean_x", "mean_y", "std_x", "std_y"}


@pytest.mark.parametrize("name", ["nonexistent-model"])
def test_unknown_bundled_name_is_a_clear_error(name):
    with pytest.raises(checkpoint.CheckpointError, match="neither a bundled model"):
        writemate.load(name)


CLASSIFIERS = {"unipen-digits": ("digits", 0.97), "unipen-uppercase": ("uppercase", 0.92), "unipen-lowercase": ("lowercase", 0.88)}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_bundled_character_classifiers_read_held_out_writers(name):
    if name not in writemate.bundled():
        pytest.skip(f"{name} is not bundled yet")
    from conftest import shared_data

    from writemate.data import sequences

    model = writemate.load(name)
    folder, target = CLASSIFIERS[name]
    data, _ = sequences.load_folder(shared_data("unipen") / folder, model.features)
    held_out = data.subset(i for i, g in enumerate(data.groups) if g not in model.seen_groups)
    assert len(held_out) > 500
    assert model.evaluate(held_out)["accuracy"] >= target


def test_bundled_spoken_digit_model_reads_recordings_together():
    if "fsdd" not in writemate.bundled():
        pytest.skip("fsdd is not bundled yet")
    from conftest import shared_data

    model = writemate.load("fsdd")
    files = sorted((shared_data("fsdd") / "recordings").glob("*_theo_4*.wav"))  # takes 4 and 40-49 of every digit
    predictions = model.predict_files(files)  # one speaker read together: per-speaker CMVN
    assert len(predictions) == len(files) == 110
    correct = sum(p.label == p.true_label for p in predictions)
    assert correct >= 0.9 * len(files)  # theo was among the training speakers: this checks loading and features, not generalisation


def test_bundled_recognizer_reads_validation_lines():
    if "recognizer" not in writemate.bundled():
        pytest.skip("the recognizer is not bundled yet")
    from conftest import shared_data

    from writemate import evaluate

    recognizer = writemate.load("recognizer")
    assert recognizer.lm is not None  # its bundled character language model
    stroke = np.array([[0.0, 0.0], [50.0, 80.0], [100.0, 0.0], [150.0, 80.0]])
    assert len(recognizer.read_lines([[stroke]], beam=4)) == 1  # beam search with the language model runs
    recognizer.use_lm(None)  # the full split by beam search with the LM takes minutes: best path is checked here
    result = evaluate.recognizer_rates(recognizer, shared_data("iam-ondb"), split="validation", beam=4)
    assert result["lines"] > 500
    assert result["best_path"]["cer"] < 0.08  # never trained on: the validation split holds out whole text groups


def test_bundled_writer_checks_its_lines_with_the_bundled_recognizer():
    if "recognizer" not in writemate.bundled():
        pytest.skip("the recognizer is not bundled yet")
    writer = writemate.load()
    page = writer.write("Hello there", seed=0, bias=1.0, check=True)
    assert writer.checker is not None and page.lines
    assert writemate.load("recognizer").read(page.strokes, beam=0).strip()


@pytest.mark.parametrize(
    "name, level, valid_file, max_tokens, metric, limit",
    [
        # 1.430 on these 20,000 characters, 1.448 on the first 100,000 (MODEL_CARD.md)
        ("ptb-char", "char", "ptb.char.valid.txt", 20000, "bpc", 1.52),
        ("ptb-word", "word", "ptb.valid.txt", 0, "perplexity", 125),  # 119.7 (MODEL_CARD.md)
    ],
)
def test_bundled_language_models_sample_and_read_the_treebank(name, level, valid_file, max_tokens, metric, limit):
    if name not in writemate.bundled():
        pytest.skip(f"the Penn Treebank model {name} is not bundled yet")
    from conftest import shared_data

    from writemate.cli import main

    lm = writemate.load(name)
    assert lm.level == level
    text = lm.sample("the market", length=30, temperature=0.5, seed=1)
    tokens = len if level == "char" else (lambda t: len(t.split()) + t.count("\n"))  # a line end is a word token
    assert text.startswith("the market") and tokens(text) >= tokens("the market") + 30
    assert main(["lm", "sample", "--model", name, "--prime", "the", "--length", "20"]) == 0
    if name == "ptb-char":
        assert main(["lm", "sample", "--prime", "the", "--length", "20"]) == 0  # the default model on a fresh install
    valid = shared_data("ptb") / valid_file  # skips when the data is absent
    assert lm.evaluate(valid, max_tokens=max_tokens)[metric] < limit
