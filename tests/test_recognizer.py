"""The BLSTM-CTC recognizer: features, network, training, line splitting, ink files, and the commands."""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")
import torch
import torch.nn as nn
from conftest import (
    TINY_RECOGNIZER,
    fake_line,
    fit_steps,
    iam_with_validation,
    line_xml,
    make_tiny_recognizer_folder,
    make_tiny_writer_folder,
)

from writemate import alphabet, cli, ink, loading
from writemate.data import inkml
from writemate.models import recognizer as rec
from writemate.recognize import Recognizer, load_ink

TINY = TINY_RECOGNIZER


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Prepared IAM-OnDB data goes to a temporary cache, not the user's home."""
    monkeypatch.setenv("WRITEMATE_CACHE", str(tmp_path / "cache"))


def two_lines(rng, chars=(5, 4), spacing=700.0):
    """A page of two fake lines, the second below the first, in writing order."""
    first = fake_line(rng, chars[0])
    second = [s + [0, spacing] for s in fake_line(rng, chars[1])]
    return first, second


# -- features -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(rec.FEATURES))
def test_features_ignore_units_and_position(kind):
    config = rec.RecognizerConfig(features=kind, step=0.1)
    strokes = fake_line(np.random.default_rng(0), 4)
    x = rec.features(strokes, config)
    assert x.shape[1] == rec.FEATURES[kind] and x.dtype == np.float32
    moved = [s * 0.02 + [5, -3] for s in strokes]  # millimetres somewhere else on the page
    np.testing.assert_allclose(rec.features(moved, config), x, atol=1e-4)


def test_curve_features_of_resampled_ink():
    config = rec.RecognizerConfig(features="curve", step=0.05)
    strokes = fake_line(np.random.default_rng(0), 3)
    x = rec.features(strokes, config)
    dx, dy, eos, pen_up, above, cos_turn, sin_turn = x.T
    in_stroke = (pen_up == 0) & (np.arange(len(x)) > 0)
    assert np.median(np.hypot(dx, dy)[in_stroke]) == pytest.approx(1.0, rel=0.1)  # moves are about one step
    assert eos.sum() == 3 and pen_up.sum() == 2 and pen_up[0] == 0
    assert np.allclose(cos_turn**2 + sin_turn**2, 1, atol=1e-5)
    assert (cos_turn[pen_up == 1] == 1).all()  # no curvature across a pen lift
    assert np.median(above) == pytest.approx(0, abs=1e-6) and above.max() > 0.3


def test_a_line_without_points_is_refused():
    with pytest.raises(ValueError, match="no points"):
        rec.features([np.zeros((0, 2))], TINY)


def test_augmentation_is_seeded_and_distorts():
    config = rec.RecognizerConfig(step=0.1)
    strokes = fake_line(np.random.default_rng(0), 4)
    augment = rec.Augmentation(slant=0.3, stretch=0.2, speed=0.2)
    a = rec.features(strokes, config, augment, np.random.default_rng(1))
    b = rec.features(strokes, config, augment, np.random.default_rng(1))
    c = rec.features(strokes, config, augment, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.allclose(a, c)


def test_frames_needed_counts_a_blank_between_repeats():
    assert rec.frames_needed(alphabet.encode("ab")) == 2
    assert rec.frames_needed(alphabet.encode("book")) == 5


# -- the network ----------------------------------------------------------------------------


def test_bidirectional_layer_equals_packed_lstm_and_ignores_padding():
    torch.manual_seed(0)
    layer = rec.BiLSTM(3, 5)
    reference = nn.LSTM(3, 5, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(reference, f"{name}_l0").copy_(getattr(layer.forward_lstm, f"{name}_l0"))
            getattr(reference, f"{name}_l0_reverse").copy_(getattr(layer.backward_lstm, f"{name}_l0"))
    x = torch.randn(3, 9, 3)
    lengths = torch.tensor([9, 4, 6])
    x = x * (torch.arange(9)[None, :, None] < lengths[:, None, None])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    expected, _ = nn.utils.rnn.pad_packed_sequence(reference(packed)[0], batch_first=True, total_length=9)
    with torch.no_grad():
        got = layer(x, lengths)
        alone = layer(x[1:2, :4], lengths[1:2])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1:2, :4], alone, rtol=1e-5, atol=1e-6)
    assert (got[1, 4:] == 0).all()


def test_network_output_shapes_and_a_line_alone_equals_it_in_a_batch():
    torch.manual_seed(0)
    model = rec.RecognitionNetwork(TINY).eval()
    rng = np.random.default_rng(0)
    lines = [rec.features(fake_line(rng, n), TINY) for n in (3, 6, 4)]
    x, lengths = rec.batch_tensors(lines)
    with torch.no_grad():
        log_probs, out_lengths = model(x, lengths)
        alone, _ = model(*rec.batch_tensors(lines[:1]))
    assert log_probs.shape == (3, -(-x.shape[1] // 2), alphabet.SIZE)
    assert out_lengths.tolist() == [rec.frames_after(len(s), TINY) for s in lines]
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]))
    torch.testing.assert_close(log_probs[0, : out_lengths[0]], alone[0], rtol=1e-4, atol=1e-5)
    listed = rec.log_probs_of(model, lines, batch_size=2)
    assert [len(lp) for lp in listed] == out_lengths.tolist()


def synthetic_lines(n, seed=0):
    """Fake lines whose text is one letter per loop: "o" for small loops, "l" for tall ones."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        text = "".join(rng.choice(list("ol"), size=int(rng.integers(3, 6))))
        strokes = []
        for i, c in enumerate(text):
            t = np.linspace(0, 2 * np.pi, 12)
            tall = 3.0 if c == "l" else 1.0
            strokes.append(np.column_stack([i * 150 + 50 * np.cos(t), -tall * 60 * np.sin(t) - (tall - 1) * 60]))
        out.append((strokes, text))
    return out


def test_a_few_training_steps_lower_the_ctc_loss():
    torch.manual_seed(0)
    model = rec.RecognitionNetwork(rec.RecognizerConfig(hidden=16, layers=2, step=0.1, dropout=0.0))
    lines = synthetic_lines(16)
    task = rec.RecognizerTask(model, lines, lines[:4])
    assert task.skipped == 0 and task.train_sequences == 16
    losses = fit_steps(task, model, task.batches(0, 0, 16)[0], steps=25)
    assert losses[-1] < 0.7 * losses[0]
    metrics = task.evaluate(model)
    assert set(metrics) == {"val_cer", "val_wer", "val_loss"} and 0 <= metrics["val_cer"]


def test_augmented_batches_are_reproducible_and_too_short_lines_are_skipped():
    model = rec.RecognitionNetwork(TINY)
    lines = synthetic_lines(6)
    too_short = ([np.array([[0.0, 0.0], [10.0, 0.0]])], "a much longer text than the ink")
    task = rec.RecognizerTask(model, lines + [too_short], lines[:2], rec.Augmentation(0.3, 0.1, 0.1))
    assert task.skipped == 1 and task.train_sequences == 6
    a, b = task.batches(3, 7, 4), task.batches(3, 7, 4)
    assert [x.lines for x in a] == [x.lines for x in b]
    for x, y in zip(task.inputs(a[0]), task.inputs(b[0])):
        np.testing.assert_array_equal(x, y)


# -- splitting a page into lines ---------------------------------------------------------------


def test_a_page_is_split_into_its_lines():
    first, second = two_lines(np.random.default_rng(0))
    lines = ink.split_lines(first + second)
    assert [len(line) for line in lines] == [5, 4]
    assert all(np.array_equal(a, b) for a, b in zip(lines[1], second))


def test_one_line_with_dots_and_commas_stays_whole():
    strokes = fake_line(np.random.default_rng(0), 6)
    dot = np.array([[1200.0, 1300.0]])  # above the letters, written after them
    comma = np.array([[2000.0, 1650.0], [1995.0, 1690.0]])  # below
    quote = np.array([[1990.0, 1280.0], [1992.0, 1310.0]])
    assert len(ink.split_lines(strokes + [dot, comma, quote])) == 1


def test_lines_out_of_writing_order_are_split_by_the_gap_between_them():
    first, second = two_lines(np.random.default_rng(1), spacing=900)
    shuffled = [s for pair in zip(second, first) for s in pair] + first[len(second) :]
    lines = ink.split_lines(shuffled)
    assert [len(line) for line in lines] == [5, 4]


def test_split_lines_of_nothing_and_of_one_stroke():
    assert ink.split_lines([]) == []
    assert len(ink.split_lines([np.array([[0.0, 0.0], [5.0, 5.0]])])) == 1


# -- ink files --------------------------------------------------------------------------------------


def write_ink_files(folder, rng):
    """One file of each kind: an IAM-OnDB line, an InkML page of two lines, a stroke JSON line."""
    first, second = two_lines(rng)
    (folder / "line.xml").write_bytes(line_xml(first))
    doc = inkml.document_from_samples([("first line", first), ("second line", second)])
    inkml.write_inkml(doc, folder / "page.inkml")
    page = {
        "format": "writemate-strokes",
        "version": 1,
        "units": "mm",
        "lines": [{"text": "hi", "strokes": [(s / 20).tolist() for s in second]}],
    }
    (folder / "line.json").write_text(json.dumps(page))
    unlabelled = inkml.document_from_samples([("x", first + second)])
    unlabelled.groups = []
    inkml.write_inkml(unlabelled, folder / "traces.inkml")
    return first, second


def test_load_ink_reads_each_kind(tmp_path):
    from writemate import render

    assert render.STROKES_FORMAT == "writemate-strokes"
    first, second = write_ink_files(tmp_path, np.random.default_rng(0))
    (line,) = load_ink(tmp_path / "line.xml")
    assert line.truth is None and len(line.strokes) == len(first)
    pieces = load_ink(tmp_path / "page.inkml")
    assert [p.truth for p in pieces] == ["first line", "second line"] and len(pieces[1].strokes) == len(second)
    (whole,) = load_ink(tmp_path / "traces.inkml")
    assert whole.truth is None and len(whole.strokes) == len(first) + len(second)
    (json_line,) = load_ink(tmp_path / "line.json")
    assert json_line.truth == "hi"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"hello", "not IAM-OnDB line XML, InkML or Writemate stroke JSON"),
        (b"<svg/>", "neither InkML"),
        (b'{"format": "other"}', "not a Writemate stroke JSON"),
        (b"<ink><trace>1 2, 3 4 5</trace></ink>", "more values than the 2 channels"),
        (b"<ink><annotation type='truth'>x</annotation></ink>", "holds no ink"),
        (b"<!DOCTYPE x [<!ENTITY a 'b'>]><ink/>", "EntitiesForbidden"),  # untrusted XML is parsed safely
    ],
)
def test_load_ink_names_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.inkml"
    path.write_bytes(content)
    with pytest.raises(Exception, match=message) as caught:
        load_ink(path)
    assert str(path) in str(caught.value)
    with pytest.raises(Exception, match="cannot read"):
        load_ink(tmp_path / "missing.xml")


# -- the ready recognizer and `writemate read` ------------------------------------------------------------


def test_recognizer_reads_strokes_pages_and_files(tiny_recognizer_dir, tmp_path):
    recognizer = loading.load(tiny_recognizer_dir)
    assert isinstance(recognizer, Recognizer) and recognizer.lm is None and recognizer.default_beam() == 0
    first, second = write_ink_files(tmp_path, np.random.default_rng(0))
    assert "\n" not in recognizer.read(first)
    reading = recognizer.read(first + second, scores=True)
    assert len(reading.lines) == 2 and reading.text == "\n".join(r.text for r in reading.lines)
    assert all(r.score == r.ctc_log_prob <= 0 for r in reading.lines)
    assert recognizer.read(tmp_path / "page.inkml", scores=True).truth == "first line\nsecond line"
    searched = recognizer.read(first, beam=3, scores=True).lines[0]
    assert searched.lm_log_prob is None and len(searched.alternatives) <= 2


def test_a_language_model_saved_with_the_recognizer_is_used_by_beam_search(tmp_path):
    folder = make_tiny_recognizer_folder(tmp_path / "with-lm", with_lm=True)
    recognizer = loading.load(folder)
    assert recognizer.lm is not None and recognizer.default_beam() == 4
    line = recognizer.read(fake_line(np.random.default_rng(0), 3), scores=True).lines[0]
    assert line.lm_log_prob is not None and line.lm_log_prob < 0
    assert recognizer.read(fake_line(np.random.default_rng(0), 3), beam=0, scores=True).lines[0].lm_log_prob is None


def test_read_command_reads_every_kind_and_reports_a_bad_file(tiny_recognizer_dir, tmp_path, capsys):
    write_ink_files(tmp_path, np.random.default_rng(0))
    (tmp_path / "bad.xml").write_bytes(b"<not-closed>")
    files = [str(tmp_path / n) for n in ("line.xml", "bad.xml", "page.inkml", "line.json")]
    assert cli.main(["read", *files, "--model", str(tiny_recognizer_dir), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("writemate: error:") == 1 and "bad.xml" in captured.err
    result = json.loads(captured.out)
    assert result["decoder"] == "best path"
    by_file = {r["file"].rsplit("/", 1)[1]: r for r in result["files"]}
    assert "not IAM-OnDB line XML" in by_file["bad.xml"]["error"]
    assert len(by_file["page.inkml"]["lines"]) == 2 and by_file["page.inkml"]["truth"] == "first line\nsecond line"
    assert by_file["line.json"]["truth"] == "hi" and len(by_file["line.xml"]["lines"]) == 1
    good = [f for f in files if "bad" not in f]
    assert cli.main(["read", *good, "--model", str(tiny_recognizer_dir), "--beam", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("==> ") == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["read", "FILE", "--model", "NOWHERE"], "neither a bundled model"),
        (["read", "FILE", "--model", "WRITER"], "is a synthesis model, not a recognizer model"),
        (["read", "FILE", "--model", "REC", "--beam", "-1"], "--beam"),
        (["read", "FILE", "--model", "REC", "--lm", "WRITER"], "not a language model"),
        (["evaluate", "recognizer", "--data", "NOWHERE", "--model", "REC"], "no such file or folder"),
        (
            ["train", "synthesis", "--data", "NOWHERE", "--run", "NOWHERE", "--features", "curve"],
            "--features: only for",
        ),
    ],
)
def test_bad_requests_exit_2(args, message, tiny_recognizer_dir, tiny_writer_dir, tmp_path, capsys):
    (tmp_path / "line.xml").write_bytes(line_xml(fake_line(np.random.default_rng(0), 3)))
    names = {
        "FILE": str(tmp_path / "line.xml"),
        "NOWHERE": str(tmp_path / "nowhere"),
        "REC": str(tiny_recognizer_dir),
        "WRITER": str(tiny_writer_dir),
    }
    assert cli.main([names.get(a, a) for a in args]) == 2
    assert message in capsys.readouterr().err


def test_without_a_bundled_recognizer_the_default_model_says_how_to_train_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loading, "WEIGHTS_DIR", tmp_path / "no-weights")
    (tmp_path / "line.xml").write_bytes(line_xml(fake_line(np.random.default_rng(0), 3)))
    assert cli.main(["read", str(tmp_path / "line.xml")]) == 2
    assert "writemate train recognizer" in capsys.readouterr().err


def test_writer_output_as_inkml_reads_back(tiny_writer_dir, tiny_recognizer_dir, tmp_path):
    out = tmp_path / "note.inkml"
    assert cli.main(["write", "ab\ncd", "-o", str(out), "--model", str(tiny_writer_dir)]) == 0
    pieces = load_ink(out)
    assert [p.truth for p in pieces] == ["ab", "cd"]
    assert cli.main(["read", str(out), "--model", str(tiny_recognizer_dir)]) == 0


# -- evaluation and training ------------------------------------------------------------------------------


def test_error_rates_are_edits_over_reference_length():
    from writemate import metrics

    rates = metrics.error_rates(["hello world", "ab"], ["helo world", "ab c"])
    assert rates["cer"] == pytest.approx(3 / 13)  # one deletion, then two insertions (" c")
    assert rates["wer"] == pytest.approx(2 / 3)  # "helo" for "hello", and an inserted "c"
    assert metrics.line_cer("abcd", "") == 1.0 and metrics.line_cer("", "x") == 1.0
    with pytest.raises(ValueError):
        metrics.error_rates(["a"], [])


def test_first_misread_word_is_where_it_starts_in_the_reference():
    from writemate import metrics

    text = "the quick  brown fox"
    assert metrics.first_misread_word(text, "the quick brown fox") == -1  # spacing does not count
    assert metrics.first_misread_word(text, "the quick brawn fox") == 11
    assert metrics.first_misread_word(text, "thequick brown fox") == 0
    assert metrics.first_misread_word(text, "the quick brown fox .") == 17  # a mark after the last word
    assert metrics.first_misread_word(text, "the quick brown") == 17
    assert metrics.first_misread_word(text, "") == 0
    assert metrics.first_misread_word("", "x") == -1


def test_evaluate_recognizer_json(iam_dir, tiny_recognizer_dir, capsys):
    args = [
        "evaluate",
        "recognizer",
        "--data",
        str(iam_dir),
        "--model",
        str(tiny_recognizer_dir),
        "--json",
        "--beam",
        "2",
    ]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["lines"] == 18 and result["beam_lm"]["beam"] == 2 and result["beam_lm"]["lm"] is False
    for decoder in ("best_path", "beam_lm"):
        assert result[decoder]["cer"] > 0.5 and result[decoder]["wer"] >= 0.9  # an untrained network
    assert result["lines_per_second"] > 0 and result["beam_lines_per_second"] > 0
    assert cli.main([*args, "--limit", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["lines"] == 4
    assert cli.main(args[:-3]) == 0  # readable text
    assert "best path:" in capsys.readouterr().out


def test_evaluate_legibility_json(iam_dir, tiny_recognizer_dir, tmp_path, capsys):
    writer = make_tiny_writer_folder(tmp_path / "writer")
    args = [
        "evaluate",
        "legibility",
        "--data",
        str(iam_dir),
        "--model",
        str(tiny_recognizer_dir),
        "--writer",
        str(writer),
        "--limit",
        "3",
        "--bias",
        "1",
        "--style",
        "1",
        "--json",
    ]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["lines"] == 3 and result["bias"] == 1 and result["style"] == 1 and result["retries"] == 2
    assert set(result["generated"]) == set(result["real"]) == {"cer", "wer"}
    assert 0 <= result["failure_rate"] <= 1 and len(result["worst"]) == 3 and result["check"] is False
    assert cli.main([*args, "--check"]) == 0  # misread lines rewritten, as `writemate write` does
    assert json.loads(capsys.readouterr().out)["check"] is True
    assert cli.main([*args[:-3], "--style", "9"]) == 2
    assert "no style 9" in capsys.readouterr().err


def test_train_command_checkpoints_resumes_and_reads(tmp_path, capsys):
    data = iam_with_validation(tmp_path)
    run = tmp_path / "run"
    args = [
        "train",
        "recognizer",
        "--data",
        str(data),
        "--run",
        str(run),
        "--hidden",
        "8",
        "--layers",
        "2",
        "--step",
        "0.2",
        "--augment",
        "--batch-size",
        "4",
        "--lr",
        "0.01",
        "--epochs",
        "1",
    ]
    assert cli.main(args) == 0
    meta = json.loads((run / "checkpoint.json").read_text())
    assert meta["family"] == "recognizer" and meta["model_config"]["model"]["step"] == 0.2
    assert meta["model_config"]["augmentation"]["slant"] == 0.3
    assert set(meta["state"]["history"][0]) >= {"val_cer", "val_wer", "val_loss"}
    assert cli.main(args[:-1] + ["2"]) == 0  # resumes for a second epoch
    assert json.loads((run / "checkpoint.json").read_text())["state"]["epoch"] == 2
    recognizer = loading.load(run)
    assert isinstance(recognizer, Recognizer) and recognizer.config.hidden == 8
    capsys.readouterr()
    (tmp_path / "line.xml").write_bytes(line_xml(fake_line(np.random.default_rng(0), 3)))
    assert cli.main(["read", str(tmp_path / "line.xml"), "--model", str(run)]) == 0


def test_lm_corpus_never_holds_validation_text(tmp_path, capsys):
    data = iam_with_validation(tmp_path)
    extra = tmp_path / "extra.txt"
    extra.write_text("t h e _ e n d\n")  # a spaced character file, as ptb.char.*
    out = tmp_path / "corpus"
    assert cli.main(["lm-corpus", "--data", str(data), "-o", str(out), "--add", str(extra)]) == 0
    counts = json.loads(capsys.readouterr().out)
    train = (out / "train.txt").read_text().splitlines()
    valid = (out / "valid.txt").read_text().splitlines()
    assert counts == {"folder": str(out), "train_lines": len(train) - 1, "extra_lines": 1, "valid_lines": len(valid)}
    assert train[-1] == "the end"
    assert not set(train) & set(valid)  # each distinct line once, on one side
    seen = set(train[:-1]) | set(valid)
    assert seen == {"second"} | {f"first of {f}" for f in ("a01-000u", "a02-001x", "a03-002y", "a04-003z")}
