"""Sequence classifiers: packing, training, splits, data readers, evaluation and the CLI."""

import json
import wave
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")
import torch

from writemate import cli
from writemate.data import audio, inkml, sequences
from writemate.models import classifier
from writemate.train import TrainConfig, Trainer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


# -- fixtures the tests make themselves ---------------------------------------------------


def _shape(label: str, rng) -> list[np.ndarray]:
    """A crude pen drawing of "0" (a circle), "1" (a down stroke) or "7" (two strokes)."""
    n = int(rng.integers(15, 40))
    t = np.linspace(0, 1, n)
    if label == "0":
        strokes = [np.column_stack([np.cos(2 * np.pi * t), np.sin(2 * np.pi * t)])]
    elif label == "1":
        strokes = [np.column_stack([0.1 * t, 2 * t])]
    else:
        strokes = [np.column_stack([t, 0 * t]), np.column_stack([1 - 0.5 * t, 2 * t])]
    scale, shift = rng.uniform(50, 200), rng.uniform(0, 1000, size=2)
    return [s * scale + shift + rng.normal(0, 1.0, size=s.shape) for s in strokes]


def write_ink_folder(root: Path, writers: int = 6, per_class: int = 4, seed: int = 0) -> Path:
    """One InkML file per writer, as UNIPEN has."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for w in range(writers):
        samples = [(label, _shape(label, rng)) for label in "017" for _ in range(per_class)]
        doc = inkml.document_from_samples(samples, {"writer": f"lab:w{w}"}, integer=True)
        inkml.write_inkml(doc, root / f"lab_w{w}.inkml")
    return root


def write_wav(path: Path, frequency: float, rate: int = 8000, seconds: float = 0.25, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    signal = 0.5 * np.sin(2 * np.pi * frequency * t) + 0.01 * rng.normal(size=t.shape)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((signal * 32767).astype("<i2").tobytes())


def write_audio_folder(root: Path) -> Path:
    """FSDD-style names: {digit}_{speaker}_{take}.wav, two tones, three speakers."""
    root.mkdir(parents=True, exist_ok=True)
    for s, speaker in enumerate(["ann", "bob", "cy"]):
        for digit, frequency in (("0", 300.0), ("1", 1500.0)):
            for take in range(3):
                write_wav(root / f"{digit}_{speaker}_{take}.wav", frequency * (1 + 0.05 * s), seed=take)
    return root


def write_vector_folder(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """Generic format: class subfolders, .npy and .txt sequences of 3-vectors."""
    rng = np.random.default_rng(seed)
    for label, mean in (("up", 1.0), ("down", -1.0)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            seq = rng.normal(0, 1, size=(int(rng.integers(3, 12)), 3)) + mean * np.linspace(-1, 1, 3)
            if i % 2:
                np.savetxt(root / label / f"{i}.txt", seq)
            else:
                np.save(root / label / f"{i}.npy", seq.astype(np.float32))
    return root


# -- the network ------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", classifier.CELLS)
@pytest.mark.parametrize("bidirectional, pooling", [(True, "last"), (False, "last"), (True, "mean")])
def test_padded_batch_gives_the_same_logits_as_one_by_one(cell, bidirectional, pooling):
    torch.manual_seed(0)
    config = classifier.ClassifierConfig(
        4, ["a", "b", "c"], cell=cell, hidden=8, layers=2, bidirectional=bidirectional, pooling=pooling
    )
    model = classifier.SequenceClassifier(config).eval()
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(n, 4)).astype(np.float32) for n in (7, 2, 11, 1)]
    x, lengths = classifier.collate(seqs)
    x[0, 7:] = 1000.0  # garbage in the padding must not matter
    with torch.no_grad():
        batched = model(x, lengths)
        single = torch.cat([model(torch.as_tensor(s)[None], torch.tensor([len(s)])) for s in seqs])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_training_masks_stay_inside_each_sequence_and_only_apply_in_training():
    torch.manual_seed(0)
    lengths = torch.tensor([10, 4, 1])
    x = torch.ones(3, 10, 6)
    x[1, 4:] = x[2, 1:] = 7.0  # padding
    spans = classifier.SequenceClassifier(classifier.ClassifierConfig(6, ["a", "b"], hidden=4, mask_time=0.5))
    bands = classifier.SequenceClassifier(classifier.ClassifierConfig(6, ["a", "b"], hidden=4, mask_features=3))
    hidden_steps, hidden_features = set(), set()
    for _ in range(200):
        masked = spans.mask(x, lengths)
        assert torch.equal(masked[1, 4:], x[1, 4:]) and torch.equal(masked[2, 1:], x[2, 1:])  # padding untouched
        hidden_steps.add(int((masked[0] == 0).all(dim=1).sum()))
        masked = bands.mask(x, lengths)
        hidden_features.add(int((masked[0] == 0).all(dim=0).sum()))
        assert not (masked[0] == 0).all(dim=1).any()
    assert hidden_steps == {0, 1, 2, 3, 4, 5} and hidden_features == {0, 1, 2, 3}  # up to 0.5 * 10 steps, 3 features
    spans.eval()
    with torch.no_grad():
        assert torch.equal(spans(x, lengths), spans(x, lengths))


def test_config_rejects_bad_values():
    with pytest.raises(classifier.ClassifierError, match="unknown cell"):
        classifier.ClassifierConfig(3, ["a", "b"], cell="transformer")
    with pytest.raises(classifier.ClassifierError, match="layers"):
        classifier.ClassifierConfig(3, ["a", "b"], layers=4)
    with pytest.raises(classifier.ClassifierError, match="two distinct classes"):
        classifier.ClassifierConfig(3, ["a"])
    with pytest.raises(classifier.ClassifierError, match="mask_features"):
        classifier.ClassifierConfig(3, ["a", "b"], mask_features=3)


def test_a_few_training_steps_lower_the_loss(tmp_path):
    data, features = sequences.load_folder(write_vector_folder(tmp_path / "vec"))
    config = classifier.ClassifierConfig(features.size, classifier.classes_of(data), cell="gru", hidden=16, layers=1)
    torch.manual_seed(0)
    model = classifier.SequenceClassifier(config)
    model.set_normalisation(data.sequences)
    task = classifier.ClassifierTask(model, data, data)
    trainer = Trainer(task, TrainConfig(lr=0.01, batch_size=len(data)), tmp_path / "run", "classifier", {})
    batch = list(range(len(data)))
    losses = [trainer.train_step(batch) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    assert task.evaluate(model)["val_error"] < 0.2


# -- data ----------------------------------------------------------------------------------------


def test_ink_features_are_normalised_resampled_and_mark_pen_lifts():
    strokes = [np.array([[100.0, 100.0], [300.0, 100.0]]), np.array([[200.0, 0.0], [200.0, 400.0]])]
    f = sequences.ink_features(strokes, sequences.InkFeatureConfig(step=0.1))
    assert f.shape[1] == 5
    assert np.abs(f[:, :2]).max() <= 0.5 + 1e-6  # centred, divided by the larger side (400)
    steps = np.hypot(f[1:, 2], f[1:, 3])
    pen = f[:, 4]
    assert pen.sum() == 2 and pen[-1] == 1  # each stroke ends with a lift
    in_stroke = steps[pen[:-1] == 0]
    assert np.all(in_stroke <= 0.1 + 1e-6) and np.median(in_stroke) == pytest.approx(0.1, abs=1e-6)
    only = sequences.ink_features(strokes, sequences.InkFeatureConfig(position=False, pen=False, step=0))
    assert only.shape == (4, 2)


def test_ink_folder_reads_labels_and_writers(tmp_path):
    data, features = sequences.load_folder(write_ink_folder(tmp_path / "ink", writers=2, per_class=2))
    assert features.kind == "ink" and len(data) == 12
    assert sorted(set(data.labels)) == ["0", "1", "7"]
    assert sorted(set(data.groups)) == ["lab:w0", "lab:w1"]
    assert all(s.shape[1] == features.size for s in data.sequences)


def test_stroke_json_is_read_as_ink(tmp_path):
    path = tmp_path / "sample.json"
    path.write_text(json.dumps({"strokes": [[[0, 0], [10, 0]], [[5, -5], [5, 5]]], "label": "+", "writer": "me"}))
    data, _ = sequences.load_folder(path)
    assert data.labels == ["+"] and data.groups == ["me"]
    path.write_text(json.dumps({"points": []}))
    with pytest.raises(sequences.DataError, match="strokes"):
        sequences.load_folder(path)


def test_vector_folder_reads_npy_and_txt_and_checks_widths(tmp_path):
    root = write_vector_folder(tmp_path / "vec", per_class=4)
    data, features = sequences.load_folder(root)
    assert features.kind == "vectors" and features.vector_size == 3 and len(data) == 8
    assert sorted(set(data.labels)) == ["down", "up"]
    np.savetxt(root / "up" / "wide.txt", np.zeros((2, 5)))
    with pytest.raises(sequences.DataError, match="5 features, expected 3"):
        sequences.load_folder(root)


def test_write_folder_round_trip(tmp_path):
    data, _ = sequences.load_folder(write_vector_folder(tmp_path / "vec", per_class=3))
    sequences.write_folder(tmp_path / "out", data, fmt="txt")
    again, _ = sequences.load_folder(tmp_path / "out")
    assert sorted(map(len, again.sequences)) == sorted(map(len, data.sequences))


def test_mixed_or_empty_folders_are_refused(tmp_path):
    write_vector_folder(tmp_path / "mix")
    write_wav(tmp_path / "mix" / "0_a_0.wav", 300)
    with pytest.raises(sequences.DataError, match="one kind"):
        sequences.load_folder(tmp_path / "mix")
    (tmp_path / "empty").mkdir()
    with pytest.raises(sequences.DataError, match="no .inkml"):
        sequences.load_folder(tmp_path / "empty")
    (tmp_path / "line.xml").write_text("<xml")
    with pytest.raises(sequences.DataError, match="not a sample file"):
        sequences.load_folder(tmp_path / "line.xml")


def test_mfcc_features_and_fsdd_names(tmp_path):
    write_wav(tmp_path / "3_theo_12.wav", 440, seconds=0.5)
    assert audio.fsdd_name(tmp_path / "3_theo_12.wav") == ("3", "theo", 12)
    assert audio.fsdd_name("recording.wav") is None
    config = audio.MfccConfig()
    f = audio.wav_features(tmp_path / "3_theo_12.wav", config)
    assert f.shape[1] == config.size == 38 and 45 <= len(f) <= 55  # 10 ms frames of 0.5 s; no c0
    with_c0 = audio.wav_features(tmp_path / "3_theo_12.wav", audio.MfccConfig(c0=True))
    np.testing.assert_array_equal(with_c0[:, 1:], f)
    assert audio.wav_features(tmp_path / "3_theo_12.wav", audio.MfccConfig(deltas=False)).shape[1] == 12
    normalised = audio.wav_features(tmp_path / "3_theo_12.wav", audio.MfccConfig(cmvn=True))
    np.testing.assert_allclose(normalised.mean(axis=0), 0, atol=1e-4)
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(audio.AudioError, match="bad.wav"):
        audio.wav_features(tmp_path / "bad.wav", config)


def test_mfcc_matches_librosa_and_speaker_copies_change_only_the_voice(tmp_path):
    import librosa

    write_wav(tmp_path / "3_theo_12.wav", 440, seconds=0.5)
    signal = audio.load_wav(tmp_path / "3_theo_12.wav", 8000)
    plain = audio.MfccConfig(deltas=False, c0=True)
    reference = librosa.feature.mfcc(
        y=signal, sr=8000, n_mfcc=13, n_fft=256, win_length=200, hop_length=80, window="hamming", n_mels=40
    ).T
    np.testing.assert_allclose(audio.mfcc(signal, plain), reference, rtol=1e-5, atol=1e-4)
    with_deltas = np.concatenate(
        [reference.T, librosa.feature.delta(reference.T, mode="nearest"), librosa.feature.delta(reference.T, order=2, mode="nearest")]
    ).T
    np.testing.assert_allclose(audio.mfcc(signal, audio.MfccConfig(c0=True)), with_deltas, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(audio._warp_matrix(129, 1.0), np.eye(129))
    for warp in (0.85, 1.15):  # rows interpolate between neighbours; the band edges stay put
        matrix = audio._warp_matrix(129, warp)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
        assert matrix[0, 0] == 1.0 and matrix[-1, -1] == 1.0
    warped = audio.mfcc(signal, plain, warp=1.1, tilt_db=6.0)
    assert warped.shape == reference.shape and not np.allclose(warped, reference, atol=0.5)

    data, _ = sequences.load_folder(write_audio_folder(tmp_path / "wav"))
    config = audio.MfccConfig(train_copies=2)
    more = sequences.with_audio_copies(data, config, seed=0)
    assert len(more) == 3 * len(data)
    assert sorted(zip(more.labels, more.groups)) == sorted(3 * list(zip(data.labels, data.groups)))
    again = sequences.with_audio_copies(data, config, seed=0)
    np.testing.assert_array_equal(again.sequences[-1], more.sequences[-1])  # seeded


def test_speaker_cmvn_normalises_each_speaker_over_all_their_recordings(tmp_path):
    folder = write_audio_folder(tmp_path / "wav")
    raw, _ = sequences.load_folder(folder)
    features = sequences.FeatureConfig(kind="audio", audio=audio.MfccConfig(speaker_cmvn=True))
    data, _ = sequences.load_folder(folder, features)
    for speaker in set(data.groups):
        frames = np.concatenate([s for s, g in zip(data.sequences, data.groups) if g == speaker])
        np.testing.assert_allclose(frames.mean(axis=0), 0, atol=1e-4)
        np.testing.assert_allclose(frames.std(axis=0), 1, atol=1e-3)
    one = data.sources.index(str(folder / "1_cy_0.wav"))
    assert not np.allclose(data.sequences[one].mean(axis=0), 0, atol=1e-3)  # not per recording
    # Files given one by one are pooled by speaker, as a folder is.
    files = sorted(folder.glob("*.wav"))
    separate, _ = sequences.load_folder(files, features)
    np.testing.assert_allclose(separate.sequences[separate.sources.index(str(folder / "1_cy_0.wav"))], data.sequences[one])
    assert len(raw) == len(data)
    copies = sequences.with_audio_copies(data, replace(features.audio, train_copies=1), seed=0)
    extra = [s for s, g in zip(copies.sequences[len(data):], copies.groups[len(data):]) if g == "cy"]
    np.testing.assert_allclose(np.concatenate(extra).mean(axis=0), 0, atol=1e-4)  # each copy normalised as its own speaker


def test_group_splits_never_share_people():
    rng = np.random.default_rng(1)
    groups = [f"w{int(g)}" for g in rng.integers(0, 30, size=600)]
    for seed in range(5):
        s = sequences.make_split(groups, by_group=True, seed=seed)
        people = [{groups[i] for i in part} for part in (s.train, s.val, s.test)]
        assert not (people[0] & people[1]) and not (people[0] & people[2]) and not (people[1] & people[2])
        assert sorted(s.train + s.val + s.test) == list(range(600))
        assert 0.15 < len(s.test) / 600 < 0.35
    assert sequences.make_split(groups, True, seed=3).test == sequences.make_split(groups, True, seed=3).test
    assert sequences.make_split(groups, True, seed=3).test != sequences.make_split(groups, True, seed=4).test


def test_named_test_speaker_and_validation_from_training_speakers(tmp_path):
    data, features = sequences.load_folder(write_audio_folder(tmp_path / "wav"))
    split = classifier.split_data(
        data, features, classifier.SplitConfig(by="speaker", test_groups=["bob"], val_fraction=0.25, val_by="sample")
    )
    assert {data.groups[i] for i in split.test} == {"bob"}
    assert "bob" not in {data.groups[i] for i in split.train + split.val}
    assert len(split.val) == 3 and not set(split.val) & set(split.train)
    with pytest.raises(classifier.ClassifierError, match="no writers"):
        classifier.split_data(data, features, classifier.SplitConfig(by="writer"))
    with pytest.raises(sequences.DataError, match="no samples of 'zed'"):
        classifier.split_data(data, features, classifier.SplitConfig(by="speaker", test_groups=["zed"]))


# -- evaluation ----------------------------------------------------------------------------------


def test_report_counts_precision_recall_and_confusion(tmp_path):
    result = classifier.report(["a", "a", "b", "b", "z"], ["a", "b", "b", "b", "a"], ["a", "b"])
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["confusion"] == [[1, 1], [0, 2]]
    assert result["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "support": 2}
    assert result["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert result["unknown_labels"] == {"z": 1}
    text = classifier.confusion_text(result)
    assert text.splitlines()[1].split() == ["a", "1", "1"]
    classifier.save_confusion_png(result, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


# -- the command line ----------------------------------------------------------------------------


TRAIN = [
    "--hidden",
    "16",
    "--layers",
    "1",
    "--epochs",
    "6",
    "--batch-size",
    "8",
    "--lr",
    "0.01",
    "--checkpoint-minutes",
    "10",
]


def ink_cli(ink: Path, run: Path, test: str, val: str, command: str = "train") -> list[str]:
    """`writemate classify COMMAND` arguments for an ink folder with one named test and one validation writer."""
    return ["classify", command, "--data", str(ink), "--split", "writer", "--test-groups", test, "--val-groups", val, "--run", str(run)]


def test_cli_train_evaluate_predict_on_ink(tmp_path, capsys):
    ink = write_ink_folder(tmp_path / "ink", writers=6, per_class=6)
    run = tmp_path / "run"
    args = ink_cli(ink, run, test="lab:w5", val="lab:w4")
    assert cli.main(args + TRAIN) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["test_accuracy"] >= 0.8
    assert (run / "test_confusion.png").exists() and (run / "best" / "model.safetensors").exists()
    config = json.loads((run / "best" / "config.json").read_text())
    assert "lab:w5" not in config["config"]["seen_groups"] and config["family"] == "classifier"
    assert config["config"]["features"]["ink"] == asdict(sequences.InkFeatureConfig())  # CLI and library defaults agree
    assert config["config"]["model"]["cell"] == classifier.ClassifierConfig(1, ["a", "b"]).cell
    card = (run / "best" / "MODEL_CARD.md").read_text()
    assert "--resample-step 0.1" in card and "--n-mfcc" not in card and "--trains" not in card  # the command, for ink

    assert (
        cli.main(
            [
                "classify",
                "evaluate",
                "--model",
                str(run),
                "--data",
                str(ink),
                "--json",
                "--png",
                str(tmp_path / "m.png"),
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 18 and result["skipped_seen"] == 90  # only the test writer is new to the model
    assert result["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert (tmp_path / "m.png").exists()

    assert cli.main(["classify", "predict", "--model", str(run), str(ink / "lab_w5.inkml")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 18
    source, label, probability = lines[0].split("\t")
    assert source.endswith("lab_w5.inkml#g0") and label in "017" and 0 < float(probability) <= 1


def test_cli_train_on_audio_and_vectors(tmp_path, capsys):
    wav = write_audio_folder(tmp_path / "wav")
    run = tmp_path / "audio-run"
    args = [
        "classify",
        "train",
        "--data",
        str(wav),
        "--split",
        "speaker",
        "--test-groups",
        "cy",
        "--val-by",
        "sample",
        "--val-fraction",
        "0.25",
    ]
    assert cli.main(args + ["--run", str(run)] + TRAIN) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_accuracy"] is not None
    saved = json.loads((run / "best" / "config.json").read_text())["config"]["features"]["audio"]
    assert saved == asdict(audio.MfccConfig())
    assert cli.main(["classify", "predict", "--model", str(run), "--json", str(wav / "1_cy_0.wav")]) == 0
    assert json.loads(capsys.readouterr().out)[0]["true_label"] == "1"

    vec = write_vector_folder(tmp_path / "vec")
    args = [
        "classify",
        "train",
        "--data",
        str(vec),
        "--split",
        "sample",
        "--test-fraction",
        "0.25",
        "--val-fraction",
        "0.25",
    ]
    assert cli.main(args + ["--run", str(tmp_path / "vec-run")] + TRAIN) == 0


def test_cli_training_resumes_from_its_checkpoint(tmp_path, capsys):
    ink = write_ink_folder(tmp_path / "ink", writers=3, per_class=2)
    args = ink_cli(ink, tmp_path / "run", test="lab:w2", val="lab:w1") + ["--hidden", "8", "--batch-size", "2"]
    assert cli.main(args + ["--epochs", "1"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert cli.main(args + ["--epochs", "2"]) == 0
    out, err = capsys.readouterr()
    assert "resuming at step 3" in err and json.loads(out.strip().splitlines()[-1])["step"] == 2 * first["step"] == 6


def test_experiment_runner_writes_a_table(tmp_path, capsys):
    ink = write_ink_folder(tmp_path / "ink", writers=4, per_class=2)
    out = tmp_path / "table.md"
    args = ink_cli(ink, tmp_path / "runs", test="lab:w3", val="lab:w2", command="experiment")
    args += ["--cells", "rnn,gru", "--layers", "1,2", "--hidden", "8", "--epochs", "1", "--out", str(out)]
    assert cli.main(args) == 0
    table = out.read_text().splitlines()
    assert table[0].startswith("| cell | layers |") and len([r for r in table if r.startswith("| ")]) == 5
    assert "RNN (tanh)" in table[2] and "| GRU | 2 |" in table[5]
    assert "writemate classify experiment" in out.read_text() and "--cells rnn,gru" in out.read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "--model", "no-such-model", "--data", "."], "neither a bundled model"),
        (["train", "--data", "MISSING", "--split", "writer", "--run", "RUN"], "no such file or folder"),
        (["train", "--data", "INK", "--split", "speaker", "--run", "RUN"], "has no speakers"),
        (
            ["train", "--data", "INK", "--split", "writer", "--test-groups", "nobody", "--run", "RUN"],
            "no samples of 'nobody'",
        ),
        (["train", "--data", "INK", "--split", "writer", "--ink-features", "colour", "--run", "RUN"], "--ink-features"),
        (["train", "--data", "INK", "--split", "writer", "--lr", "-1", "--run", "RUN"], "lr must be a positive number"),
        (["experiment", "--data", "INK", "--split", "writer", "--cells", "cnn", "--run", "RUN"], "--cells"),
    ],
)
def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    ink = write_ink_folder(tmp_path / "ink", writers=3, per_class=1)
    args = [
        a.replace("INK", str(ink)).replace("MISSING", str(tmp_path / "missing")).replace("RUN", str(tmp_path / "run"))
        for a in args
    ]
    assert cli.main(["classify", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("writemate: error:") and message in err and len(err.splitlines()) == 1


def test_cli_predict_refuses_the_wrong_kind_of_file(tmp_path, capsys):
    ink = write_ink_folder(tmp_path / "ink", writers=3, per_class=2)
    run = tmp_path / "run"
    assert cli.main(ink_cli(ink, run, test="lab:w2", val="lab:w1") + ["--hidden", "8", "--epochs", "1"]) == 0
    write_wav(tmp_path / "0_a_0.wav", 300)
    capsys.readouterr()
    assert cli.main(["classify", "predict", "--model", str(run), str(tmp_path / "0_a_0.wav")]) == 2
    assert "holds audio data, but the model reads ink" in capsys.readouterr().err


# -- the shared data sets (skipped where they are not present) -------------------------------------------


@pytest.mark.skipif(
    not (SHARED / "unipen" / "digits").is_dir(), reason="UNIPEN data not found in ../shared/data/unipen"
)
def test_unipen_writer_split_keeps_writers_apart():
    files = sorted((SHARED / "unipen" / "digits").glob("*.inkml"))[:12]
    data = sequences.SequenceSet()
    features = sequences.FeatureConfig(kind="ink")
    for f in files:
        part = sequences.read_file(f, features)
        for i in range(len(part)):
            data.add(part.sequences[i], part.labels[i], part.groups[i], part.sources[i])
    assert set(data.labels) <= set("0123456789") and len(set(data.groups)) == len(files)
    split = classifier.split_data(data, features, classifier.SplitConfig(by="writer", seed=0))
    assert not {data.groups[i] for i in split.test} & {data.groups[i] for i in split.train + split.val}


@pytest.mark.skipif(not (SHARED / "fsdd" / "recordings").is_dir(), reason="FSDD data not found in ../shared/data/fsdd")
def test_fsdd_recordings_give_digit_speaker_and_38_features():
    path = sorted((SHARED / "fsdd" / "recordings").glob("*.wav"))[0]
    data = sequences.read_file(path, sequences.FeatureConfig(kind="audio"))
    label, speaker, _ = audio.fsdd_name(path)
    assert data.labels == [label] and data.groups == [speaker]
    assert data.sequences[0].shape[1] == 38 and 10 <= len(data.sequences[0]) <= 230


def test_writemate_stroke_json_lines_are_samples(tmp_path):
    from writemate import render
    from writemate.data.sequences import read_stroke_json

    lines = [[np.array([[0.0, 0.0], [10.0, 0.0]])], [], [np.array([[5.0, -5.0], [5.0, 5.0]])]]
    path = tmp_path / "page.json"
    path.write_text(render.to_json(lines, ["a", "", "b"]))
    samples = read_stroke_json(path)
    assert [s.label for s in samples] == ["a", "b"]  # the blank line has no ink and is no sample
    np.testing.assert_allclose(samples[1].strokes[0], lines[2][0])


def test_an_ensemble_averages_its_members_log_probabilities(tmp_path, capsys):
    ink = write_ink_folder(tmp_path / "ink", writers=6, per_class=4)
    run = tmp_path / "run"
    args = ink_cli(ink, run, test="lab:w5", val="lab:w4") + ["--ensemble", "2"]
    assert cli.main(args + TRAIN + ["--epochs", "2"]) == 0  # the last --epochs counts
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_accuracy"] is not None
    ensemble = classifier.Classifier.from_folder(run / "best")
    members = [classifier.Classifier.from_folder(run / f"member-{k}" / "best") for k in (1, 2)]
    assert isinstance(ensemble.model, classifier.Ensemble) and len(ensemble.model.members) == 2
    data, _ = sequences.load_folder(ink, ensemble.features)
    probs = [classifier.predict_probabilities(m.model, data.sequences) for m in members]
    assert not np.allclose(probs[0], probs[1])  # different seeds, different networks
    geometric = np.exp((np.log(probs[0]) + np.log(probs[1])) / 2)
    expected = geometric / geometric.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(classifier.predict_probabilities(ensemble.model, data.sequences), expected, rtol=1e-4, atol=1e-6)
    assert "ensemble of 2" in (run / "best" / "MODEL_CARD.md").read_text()


def test_combine_makes_one_ensemble_of_differently_trained_models(tmp_path, capsys):
    ink = write_ink_folder(tmp_path / "ink", writers=6, per_class=4)
    pair, single, wide = tmp_path / "pair", tmp_path / "single", tmp_path / "wide"
    assert cli.main(ink_cli(ink, pair, test="lab:w5", val="lab:w4") + TRAIN + ["--ensemble", "2", "--epochs", "1"]) == 0
    assert cli.main(ink_cli(ink, single, test="lab:w5", val="lab:w3") + TRAIN + ["--mask-time", "0.1", "--epochs", "1"]) == 0
    out = tmp_path / "combined"
    assert cli.main(["classify", "combine", str(pair), str(single / "best"), "--out", str(out)]) == 0
    combined = classifier.Classifier.from_folder(out)
    assert len(combined.model.members) == 3
    assert combined.seen_groups == {f"lab:w{k}" for k in range(5)}  # union of what each source saw
    data, _ = sequences.load_folder(ink, combined.features)
    logs = [np.log(classifier.predict_probabilities(classifier.Classifier.from_folder(f).model, data.sequences)) for f in (pair / "best", single / "best")]
    geometric = np.exp((2 * logs[0] + logs[1]) / 3)  # three networks, two of them from the pair
    np.testing.assert_allclose(
        classifier.predict_probabilities(combined.model, data.sequences), geometric / geometric.sum(1, keepdims=True), rtol=1e-4, atol=1e-6
    )
    card = (out / "MODEL_CARD.md").read_text()
    assert "2 from `pair`" in card and "1 from `single`" in card
    capsys.readouterr()

    before = (out / "model.safetensors").read_bytes()
    assert cli.main(["classify", "combine", str(pair), str(single), "--out", str(out)]) == 2  # never over a model
    assert cli.main(ink_cli(ink, wide, test="lab:w5", val="lab:w4") + TRAIN + ["--hidden", "24", "--epochs", "1"]) == 0
    capsys.readouterr()
    assert cli.main(["classify", "combine", str(pair), str(wide), "--out", str(tmp_path / "bad")]) == 2
    assert "reads its input differently" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and (out / "model.safetensors").read_bytes() == before


def test_distillation_learns_from_the_teacher_and_refuses_a_leaking_one(tmp_path, capsys):
    ink = write_ink_folder(tmp_path / "ink", writers=6, per_class=4)
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert cli.main(ink_cli(ink, teacher, test="lab:w5", val="lab:w4") + TRAIN + ["--ensemble", "2", "--epochs", "2"]) == 0
    args = ink_cli(ink, student, test="lab:w5", val="lab:w4") + TRAIN + ["--epochs", "2", "--distill", str(teacher)]
    assert cli.main(args + ["--distill-temperature", "3"]) == 0
    config = json.loads((student / "best" / "config.json").read_text())["config"]
    assert config["distilled_from"]["temperature"] == 3.0 and config["model"]["ensemble"] == 1
    assert "distilled from" in (student / "best" / "MODEL_CARD.md").read_text()
    capsys.readouterr()

    # The loss: half cross-entropy with the labels, half (t^2-scaled) with the teacher's softened probabilities.
    data, features = sequences.load_folder(ink)
    model = classifier.SequenceClassifier(classifier.ClassifierConfig(features.size, ["0", "1", "7"], hidden=8, layers=1))
    soft = np.random.default_rng(0).dirichlet(np.ones(3), size=len(data)).astype(np.float32)
    task = classifier.ClassifierTask(model, data, data, soft=soft, temperature=2.0)
    idx = [0, 5, 9]
    with torch.no_grad():
        got = task.loss(model, idx).nats
        x, lengths = classifier.collate([data.sequences[i] for i in idx])
        logits = model(x, lengths)
        labels = torch.as_tensor([["0", "1", "7"].index(data.labels[i]) for i in idx])
        hard = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
        softened = -(torch.as_tensor(soft[idx]) * torch.log_softmax(logits / 2, dim=-1)).sum()
    torch.testing.assert_close(got, 0.5 * hard + 0.5 * 4 * softened)

    # A teacher that saw the test writer would leak the test into the student.
    leaky = tmp_path / "leaky"
    assert cli.main(ink_cli(ink, leaky, test="lab:w4", val="lab:w3") + TRAIN + ["--epochs", "1"]) == 0
    capsys.readouterr()
    args = ink_cli(ink, tmp_path / "bad", test="lab:w5", val="lab:w4") + TRAIN + ["--distill", str(leaky)]
    assert cli.main(args) == 2
    assert "trained on test people (lab:w5)" in capsys.readouterr().err
