import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from conftest import fake_line, fit_steps, iam_with_validation, line_xml, make_tiny_writer_folder
from writemate import api, cli, ink, loading
from writemate.data import batching, iam_ondb
from writemate.models import mdn
from writemate.models.prediction import (
    Prediction,
    PredictionConfig,
    PredictionTask,
    evaluate_lines,
    sample,
    weights_from_synthesis,
)
from writemate.models.synthesis import Synthesis, SynthesisConfig
from writemate.scribble import Scribbler

TINY = PredictionConfig(hidden=16, layers=3, mixtures=3)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Prepared IAM-OnDB data goes to a temporary cache, not the user's home."""
    monkeypatch.setenv("WRITEMATE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def no_bundled_models(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "WEIGHTS_DIR", tmp_path / "no-weights")


def random_lines(n=6, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        t = int(rng.integers(20, 40))
        o = np.column_stack([rng.normal(0.3, 1, t), rng.normal(0, 1, t), rng.random(t) < 0.1]).astype(np.float32)
        o[0, :2] = 0
        lines.append(o)
    return lines


def test_full_sequence_equals_step_by_step():
    """Training runs fused LSTMs over the whole line; sampling one fast step at a time. They agree."""
    torch.manual_seed(0)
    model = Prediction(TINY).eval()
    x, _, _ = batching.teacher_forcing(random_lines(3))
    with torch.no_grad():
        y_full, state_full = model(x)
        state, ys = None, []
        for t in range(x.shape[1]):
            y, state = model(x[:, t : t + 1], state)
            ys.append(y)
    torch.testing.assert_close(torch.cat(ys, 1), y_full, rtol=1e-4, atol=1e-5)
    for (h1, c1), (h2, c2) in zip(state, state_full):
        torch.testing.assert_close(h1, h2, rtol=1e-4, atol=1e-5)


def test_skip_connections_reach_every_layer_and_the_output():
    model = Prediction(TINY)
    assert [lstm.input_size for lstm in model.layers] == [3, 3 + 16, 3 + 16]
    assert model.output.in_features == 3 * 16 and model.output.out_features == mdn.output_size(3)


def test_evaluation_is_per_line_and_ignores_padding():
    torch.manual_seed(0)
    model = Prediction(TINY).eval()
    lines = random_lines(3)
    alone = evaluate_lines(model, lines[:1])
    together = evaluate_lines(model, lines, batch_size=2)
    with torch.no_grad():
        x, target, mask = batching.teacher_forcing(lines)
        per_line = (mdn.nll(model(x)[0], target) * mask).sum(1)
    assert alone["nll"] == pytest.approx(per_line[0].item(), rel=1e-4)
    assert together["nll"] == pytest.approx(per_line.mean().item(), rel=1e-4)
    assert together["lines"] == 3 and together["points"] == sum(len(o) - 1 for o in lines)


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    model = Prediction(TINY)
    lines = random_lines(8)
    task = PredictionTask(model, lines, lines[:2])
    losses = fit_steps(task, model, list(range(8)), steps=15)
    assert losses[-1] < losses[0] - 0.2
    assert set(task.evaluate(model)) == {"val_nll", "val_sse"}


def test_sampling_is_seeded_batched_and_continues_a_prime():
    torch.manual_seed(0)
    model = Prediction(TINY)
    a = sample(model, 30, lines=2, bias=0.5, seed=3)
    b = sample(model, 30, lines=2, bias=0.5, seed=3)
    c = sample(model, 30, lines=2, bias=0.5, seed=4)
    assert len(a) == 2 and a[0].shape == (31, 3) and a[0][0].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], a[1])  # the lines of a batch differ
    primed = sample(model, 30, bias=0.5, seed=3, prime=random_lines(1)[0])
    assert primed[0].shape == (31, 3) and not np.array_equal(primed[0], a[0])


def test_train_command_checkpoints_resumes_and_scribbles(tmp_path):
    data = iam_with_validation(tmp_path)
    run = tmp_path / "run"
    args = ["train", "prediction", "--data", str(data), "--run", str(run), "--hidden", "8", "--layers", "2",
            "--batch-size", "4", "--lr", "0.01", "--epochs", "2"]
    assert cli.main(args) == 0
    history = json.loads((run / "checkpoint.json").read_text())["state"]["history"]
    assert len(history) == 2 and history[1]["val_nll"] < history[0]["val_nll"]
    assert cli.main(args[:-1] + ["3"]) == 0  # resumes at epoch 3
    assert json.loads((run / "checkpoint.json").read_text())["state"]["epoch"] == 3
    scribbler = loading.load(run)
    assert isinstance(scribbler, Scribbler) and scribbler.model.config.hidden == 8
    assert cli.main(["scribble", "-o", str(tmp_path / "s.svg"), "--model", str(run), "--steps", "20"]) == 0


def test_a_synthesis_network_without_its_window_is_a_prediction_network():
    torch.manual_seed(0)
    config = SynthesisConfig(hidden=16, layers=3, window_mixtures=2, mixtures=3)
    synthesis = Synthesis(config)
    a = config.alphabet_size
    with torch.no_grad():  # nothing reads the window: the synthesis network is a prediction network
        synthesis.l1_recurrent.weight[:, :a] = 0
        for lstm in synthesis.upper:
            lstm.weight_ih_l0[:, 3 : 3 + a] = 0
    prediction = Prediction(PredictionConfig(hidden=16, layers=3, mixtures=3))
    prediction.load_state_dict(weights_from_synthesis(synthesis.state_dict(), a))  # strict: every weight set
    x, _, _ = batching.teacher_forcing(random_lines(2))
    text, mask = batching.pad([np.array([5, 6, 7]), np.array([8, 9])], dtype=torch.long)
    with torch.no_grad():
        expected, _ = synthesis(x, text, mask)
        got, _ = prediction(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_a_prediction_run_can_start_from_a_synthesis_model(tmp_path):
    data = iam_with_validation(tmp_path)
    source = make_tiny_writer_folder(tmp_path / "synthesis")
    run = tmp_path / "run"
    args = ["train", "prediction", "--data", str(data), "--run", str(run), "--init", str(source), "--batch-size", "4", "--epochs", "1"]
    assert cli.main(args) == 0
    model = loading.load(run).model
    assert model.config.hidden == 16 and len(model.layers) == 2
    assert cli.main(args[:-1] + ["2"]) == 0  # resumes with the same --init
    assert json.loads((run / "checkpoint.json").read_text())["state"]["epoch"] == 2


def test_train_without_validation_lines_is_a_clear_error(iam_dir, tmp_path, capsys):
    assert cli.main(["train", "prediction", "--data", str(iam_dir), "--run", str(tmp_path / "r"), "--hidden", "8"]) == 2
    assert "0 validation lines" in capsys.readouterr().err


def test_scribble_svg_png_json(tiny_prediction_dir, tmp_path):
    for name in ("s.svg", "s.png", "s.json"):
        out = tmp_path / name
        args = ["scribble", "-o", str(out), "--model", str(tiny_prediction_dir), "--steps", "60", "--lines", "2"]
        assert cli.main(args) == 0
        assert out.stat().st_size > 100
    assert ET.parse(tmp_path / "s.svg").getroot().tag.endswith("svg")
    doc = json.loads((tmp_path / "s.json").read_text())
    assert len(doc["lines"]) == 2 and doc["steps"] == 60 and doc["primed"] is False
    points = sum(len(s) for s in doc["lines"][0]["strokes"])
    assert points == 61  # row 0 and 60 sampled points


def test_scribble_same_seed_same_ink(tiny_prediction_dir):
    scribbler = loading.load(tiny_prediction_dir)
    a, b = scribbler.scribble(steps=40, seed=1), scribbler.scribble(steps=40, seed=1)
    assert a.to_svg() == b.to_svg() != scribbler.scribble(steps=40, seed=2).to_svg()


def test_scribble_continues_a_primed_line(tiny_prediction_dir, tmp_path):
    prime = tmp_path / "mine.xml"
    prime.write_bytes(line_xml(fake_line(np.random.default_rng(0), 3)))
    shown, hidden = tmp_path / "shown.json", tmp_path / "hidden.json"
    base = ["scribble", "--model", str(tiny_prediction_dir), "--steps", "25", "--prime", str(prime)]
    assert cli.main([*base, "-o", str(shown)]) == 0
    assert cli.main([*base, "-o", str(hidden), "--hide-prime"]) == 0

    def count(path):
        return sum(len(s) for s in json.loads(path.read_text())["lines"][0]["strokes"])

    assert count(hidden) == 26 and count(shown) > 26 + 10
    assert json.loads(shown.read_text())["primed"] is True


def test_user_ink_without_text_is_scaled_by_height():
    stats = ink.OffsetStats(0, 0, 40, 37)
    strokes = fake_line(np.random.default_rng(0), 5)
    small = [s / 10 for s in strokes]  # the same ink in other units
    a = ink.offsets_to_strokes(api.user_ink_to_offsets(strokes, None, stats))
    b = ink.offsets_to_strokes(api.user_ink_to_offsets(small, None, stats))
    ys = np.concatenate(a)[:, 1] * 37
    assert np.percentile(ys, 95) - np.percentile(ys, 5) == pytest.approx(350, rel=0.05)
    assert sum(len(s) for s in a) == pytest.approx(sum(len(s) for s in b), rel=0.05)


def test_evaluate_prediction_json(iam_dir, tiny_prediction_dir, capsys):
    args = ["evaluate", "prediction", "--data", str(iam_dir), "--model", str(tiny_prediction_dir), "--json"]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    prepared = iam_ondb.prepare(iam_dir)
    scribbler = loading.load(tiny_prediction_dir)
    offsets = [ink.normalise(o, scribbler.stats) for o in prepared.offsets]
    expected = evaluate_lines(scribbler.model, offsets)
    assert result["lines"] == 18 and result["points"] == sum(len(o) - 1 for o in offsets)
    assert result["nll"] == pytest.approx(expected["nll"]) and result["sse"] == pytest.approx(expected["sse"])
    assert cli.main([*args, "--limit", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["lines"] == 5


def test_evaluate_one_side_of_the_split(tiny_prediction_dir, tmp_path, capsys):
    data = iam_with_validation(tmp_path)
    counts = {}
    for split in ("all", "validation", "training"):
        args = ["evaluate", "prediction", "--data", str(data), "--model", str(tiny_prediction_dir), "--split", split, "--json"]
        assert cli.main(args) == 0
        counts[split] = json.loads(capsys.readouterr().out)["lines"]
    assert counts == {"all": 12, "validation": 4, "training": 8}


@pytest.mark.parametrize(
    "args, message",
    [
        (["scribble", "-o", "OUT.svg", "--steps", "0"], "--steps"),
        (["scribble", "-o", "OUT.svg", "--bias", "-1"], "--bias"),
        (["scribble", "-o", "OUT.txt"], ".svg, .png, .json or .inkml"),
        (["scribble", "-o", "OUT.svg", "--prime", "missing.xml"], "cannot read"),
        (["scribble", "-o", "OUT.svg", "--model", "SYNTH"], "is a synthesis model, not a prediction model"),
        (["scribble", "-o", "OUT.svg", "--model", "prediction"], "bundled prediction model is not installed"),
        (["evaluate", "prediction", "--data", "DATA", "--model", "prediction"], "bundled prediction model is not installed"),
        (["evaluate", "prediction", "--data", "DATA", "--model", "PRED", "--limit", "-1"], "--limit"),
        (["evaluate", "prediction", "--data", "NOWHERE", "--model", "PRED"], "no such file or folder"),
        (["evaluate", "prediction", "--data", "DATA", "--model", "PRED", "--split", "validation"], "no lines with ink"),
        (["evaluate", "synthesis", "--data", "DATA", "--model", "SYNTH", "--split", "validation"], "no lines with ink"),
    ],
)
def test_bad_requests_exit_2(args, message, tiny_prediction_dir, tiny_writer_dir, iam_dir, tmp_path, capsys, no_bundled_models):
    names = {"OUT": str(tmp_path / "out"), "SYNTH": str(tiny_writer_dir), "PRED": str(tiny_prediction_dir),
             "DATA": str(iam_dir), "NOWHERE": str(tmp_path / "nowhere")}
    args = [next((a.replace(k, v) for k, v in names.items() if a.startswith(k)), a) for a in args]
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("out*"))


def test_console_error_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "writemate", "scribble", "-o", str(tmp_path / "x.svg"), "--model", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "neither a bundled model" in proc.stderr and "Traceback" not in proc.stderr
