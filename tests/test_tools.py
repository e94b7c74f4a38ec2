"""tools/: the export gate that keeps worse synthesis weights out of the package, checkpoint averaging."""

import functools
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import iam_with_validation, make_tiny_writer_folder

from writemate import api, loading

TOOLS = Path(__file__).resolve().parent.parent / "tools"
needs_recognizer = pytest.mark.skipif(
    "recognizer" not in loading.bundled(), reason="the gate reads with the bundled recognizer"
)


def run_tool(monkeypatch, *args, name: str = "export_model") -> None:
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *map(str, args)])
    tool.main()


@needs_recognizer
def test_synthesis_export_needs_the_candidates_own_styles(tmp_path, monkeypatch, capsys):
    data = iam_with_validation(tmp_path)
    bundled = make_tiny_writer_folder(tmp_path / "bundled", seed=0)
    candidate = make_tiny_writer_folder(tmp_path / "candidate", seed=1)
    (candidate / "styles.json").unlink()
    before = (bundled / "model.safetensors").read_bytes()

    with pytest.raises(SystemExit, match="has no styles; make them first"):
        run_tool(monkeypatch, candidate, bundled, "--data", data)
    (candidate / "styles.json").write_text("[]")
    with pytest.raises(SystemExit, match="has no styles; make them first"):
        run_tool(monkeypatch, candidate, bundled, "--data", data, "--force")
    with pytest.raises(SystemExit, match="MODEL_CARD.md does not exist"):
        run_tool(monkeypatch, bundled, tmp_path / "elsewhere", "--card")
    assert (bundled / "model.safetensors").read_bytes() == before  # a refusal leaves the bundle alone
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # and nothing staged


@needs_recognizer
def test_synthesis_export_compares_styled_lines_and_brings_the_styles(tmp_path, monkeypatch, capsys):
    data = iam_with_validation(tmp_path)
    bundled = make_tiny_writer_folder(tmp_path / "bundled", seed=0)
    candidate = make_tiny_writer_folder(tmp_path / "candidate", seed=1)
    styles = json.loads((candidate / "styles.json").read_text())
    styles[0]["name"] = "the candidate's own"
    (candidate / "styles.json").write_text(json.dumps(styles))

    # Random tiny networks write nothing the recognizer can read: every line fails for both, a tie passes.
    # Their lines never end, so a short step cap keeps the test fast.
    monkeypatch.setattr(api, "sample", functools.partial(api.sample, steps_per_char=3))
    run_tool(monkeypatch, candidate, bundled, "--data", data)
    out = capsys.readouterr().out
    assert "failure rate in its own styles: bundled 1.000, new 1.000" in out
    assert json.loads((bundled / "styles.json").read_text())[0]["name"] == "the candidate's own"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the staged bundle was swapped in
    assert loading.load(bundled).write("ab", style=1, check=False).lines


@needs_recognizer
def test_legibility_only_skips_the_nll_but_not_the_reading(tmp_path, monkeypatch, capsys):
    data = iam_with_validation(tmp_path)
    bundled = make_tiny_writer_folder(tmp_path / "bundled", seed=0)
    candidate = make_tiny_writer_folder(tmp_path / "candidate", seed=1)
    for folder, nll in [(bundled, -10.0), (candidate, -5.0)]:  # the candidate's NLL is worse
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | {"metrics": {"val_nll": nll}, "metric": "val_nll"}))
    before = (bundled / "model.safetensors").read_bytes()
    monkeypatch.setattr(api, "sample", functools.partial(api.sample, steps_per_char=3))

    with pytest.raises(SystemExit, match="val_nll -5.0 is not better than the bundled -10.0"):
        run_tool(monkeypatch, candidate, bundled, "--data", data)
    assert (bundled / "model.safetensors").read_bytes() == before
    run_tool(monkeypatch, candidate, bundled, "--data", data, "--legibility-only")
    out = capsys.readouterr().out
    assert "val_nll: bundled -10.0, new -5.0 (not compared" in out and "failure rate in its own styles" in out
    assert (bundled / "model.safetensors").read_bytes() != before


def test_averaged_weights_are_the_mean_and_keep_the_network(tmp_path, monkeypatch, capsys):
    from writemate import checkpoint

    a = make_tiny_writer_folder(tmp_path / "a", seed=0)
    b = make_tiny_writer_folder(tmp_path / "b", seed=1)
    run_tool(monkeypatch, a, b, "-o", tmp_path / "mean", name="average_weights")

    wa, wb, mean = (checkpoint.load_tensors(f / "model.safetensors") for f in (a, b, tmp_path / "mean"))
    for key in wa:
        assert torch.allclose(mean[key], (wa[key] + wb[key]) / 2, atol=1e-6)
    config = json.loads((tmp_path / "mean" / "config.json").read_text())
    assert config["metrics"] == {} and config["averaged_from"] == [str(a), str(b)]
    loading.load(tmp_path / "mean").write("ab", check=False)  # a ready model

    with pytest.raises(SystemExit, match="exists"):  # never overwrites
        run_tool(monkeypatch, a, b, "-o", tmp_path / "mean", name="average_weights")
    with pytest.raises(SystemExit, match="no such file"):  # checked before anything is written
        run_tool(monkeypatch, a, b, "-o", tmp_path / "m2", "--data", tmp_path / "nowhere", name="average_weights")
    assert not (tmp_path / "m2").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_averaging_refuses_different_networks(tmp_path, monkeypatch):
    from writemate import checkpoint
    from writemate.models.synthesis import Synthesis, SynthesisConfig

    a = make_tiny_writer_folder(tmp_path / "a", seed=0)
    other = SynthesisConfig(hidden=8, layers=2, window_mixtures=2, mixtures=3)
    stats = {"mean_x": 8.0, "mean_y": 0.0, "std_x": 40.0, "std_y": 37.0}
    checkpoint.save_model(tmp_path / "b", Synthesis(other), "synthesis", {"model": other.to_dict(), "stats": stats})
    with pytest.raises(SystemExit, match="different networks"):
        run_tool(monkeypatch, a, tmp_path / "b", "-o", tmp_path / "mean", name="average_weights")
    assert not (tmp_path / "mean").exists()


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_spread_choice_starts_with_the_first_and_takes_the_most_different():
    make_styles = load_tool("make_styles")
    features = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [0.0, 10.0], [9.9, 0.1]])
    chosen = make_styles.spread_choice(features, 3)
    assert chosen[0] == 0 and set(chosen[1:]) == {2, 3}  # never the near-copies 1 or 4
    assert len(make_styles.spread_choice(features, 9)) == 5


@needs_recognizer
def test_auto_styles_are_saved_in_the_model_folder_never_the_bundled_one(tmp_path, monkeypatch, capsys):
    folder = make_tiny_writer_folder(tmp_path / "m")
    monkeypatch.setattr(api, "sample", functools.partial(api.sample, steps_per_char=3))
    make_styles = load_tool("make_styles")
    monkeypatch.setattr(make_styles, "sample", functools.partial(make_styles.sample, steps_per_char=3))
    monkeypatch.setattr(sys, "argv", ["make_styles.py", "auto", "--model", str(folder), "--count", "6", "--keep", "3",
                                      "--text", "abc", "--max-cer", "1.0", "-o", str(tmp_path / "chosen.png")])  # fmt: skip
    make_styles.main()
    printed = capsys.readouterr().out
    primed = [float(part.split()[0]) for part in printed.split("primed CER ")[1:]]
    assert len(primed) == 3 and all(0 <= c < float("inf") for c in primed)  # each was primed, written and read
    styles = json.loads((folder / "styles.json").read_text())
    assert len(styles) == 3 and len({s["seed"] for s in styles}) == 3 and (tmp_path / "chosen.png").exists()
    assert loading.load(folder).write("ab", style=2, check=False).lines  # usable as primes

    monkeypatch.setattr(sys, "argv", ["make_styles.py", "save", "--model", "synthesis", "--seeds", "1"])
    with pytest.raises(SystemExit, match="refusing to replace the styles of the bundled"):
        make_styles.main()


def test_export_compares_by_the_metric_training_chose_by(tmp_path, monkeypatch, capsys):
    from writemate import checkpoint
    from writemate.models.language import LanguageModel, LanguageModelConfig

    def lm_folder(name: str, bpc: float, **recorded) -> Path:
        config = LanguageModelConfig(vocab_size=4, embedding=2, hidden=3)
        vocab = {"level": "char", "symbols": ["\ufffd", "a", "b", "\n"]}
        folder = tmp_path / name
        checkpoint.save_model(
            folder, LanguageModel(config), "language-model", {"model": config.to_dict(), "vocabulary": vocab},
            metrics={"val_bpc": bpc, "val_perplexity": 2 ** (5 * bpc)}, **recorded,
        )
        return folder

    bundled = tmp_path / "bundled"
    run_tool(monkeypatch, lm_folder("first", 1.5, metric="val_bpc"), bundled)
    assert json.loads((bundled / "config.json").read_text())["metric"] == "val_bpc"
    with pytest.raises(SystemExit, match="val_bpc 1.6 is not better than the bundled 1.5"):
        run_tool(monkeypatch, lm_folder("worse", 1.6, metric="val_bpc"), bundled)
    with pytest.raises(SystemExit, match="give --metric"):  # saved before the metric was recorded
        run_tool(monkeypatch, lm_folder("old", 1.4), bundled)
    run_tool(monkeypatch, lm_folder("old", 1.4), bundled, "--metric", "val_bpc")
    assert json.loads((bundled / "config.json").read_text())["metrics"]["val_bpc"] == 1.4
