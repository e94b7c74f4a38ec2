"""Language models: text reading, BPC and perplexity, training, exact resume, sampling, CLI."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_data

from writemate import loading
from writemate.cli import main
from writemate.data import text
from writemate.models.language import (
    FAMILY,
    DynamicEvaluation,
    LanguageModel,
    LanguageModelConfig,
    LanguageModelTask,
    Score,
    TextPredictor,
    evaluate_stream,
    gradient_rms,
)
from writemate.train import Trainer, TrainConfig

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("WRITEMATE_CACHE", str(tmp_path / "cache"))


def write_toy_text(path: Path, lines: int = 300, seed: int = 0) -> Path:
    """Short sentences from a tiny vocabulary: easy to learn, quick to read."""
    rng = random.Random(seed)
    words = "the cat sat on a mat and the dog ran to the park".split()
    sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(lines)]
    path.write_text("\n".join(sentences) + "\n")
    return path


def constant_model(probabilities: list[float]) -> LanguageModel:
    """A model that predicts the same distribution after any history."""
    model = LanguageModel(LanguageModelConfig(vocab_size=len(probabilities), embedding=2, hidden=2))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.output.bias.copy_(torch.log(torch.tensor(probabilities)))
    return model


def tiny_trainer(tmp_path: Path, run: str, init_seed: int, **train) -> Trainer:
    corpus = text.load_corpus(write_toy_text(tmp_path / "toy.txt"), "char")
    torch.manual_seed(init_seed)
    config = LanguageModelConfig(vocab_size=len(corpus.vocab), embedding=8, hidden=32, dropout=0.1)
    task = LanguageModelTask(LanguageModel(config), corpus.train, corpus.valid, bptt=16)
    settings = dict(batch_size=4, epochs=1, lr=3e-3, checkpoint_minutes=0.0) | train
    model_config = {"model": config.to_dict(), "vocabulary": corpus.vocab.to_dict(), "bptt": 16}
    return Trainer(task, TrainConfig(**settings), tmp_path / run, family=FAMILY, model_config=model_config)


# -- reading text -----------------------------------------------------------------


def test_spaced_char_files_read_as_the_plain_text(tmp_path):
    (tmp_path / "plain.txt").write_text("the cat\nsat\n")
    (tmp_path / "spaced.txt").write_text("t h e _ c a t \n s a t \n ")
    vocab = text.Vocabulary.from_counts("char", {c: 1 for c in "the cats\n "})
    plain = text.encode_file(tmp_path / "plain.txt", vocab)
    spaced = text.encode_file(tmp_path / "spaced.txt", vocab)
    assert np.array_equal(plain.ids, spaced.ids)
    assert vocab.decode(plain.ids[1:]) == "the cat\nsat\n"
    assert (plain.tokens, plain.characters, plain.words) == (12, 12, 3)  # line ends count as characters


def test_word_stream_counts_words_and_one_end_of_sentence_per_line(tmp_path):
    (tmp_path / "w.txt").write_text(" the cat sat \n\n a dog \n")
    vocab = text.Vocabulary.from_counts("word", {"the": 2, "cat": 1, "sat": 1})
    stream = text.encode_file(tmp_path / "w.txt", vocab)
    assert stream.ids[0] == vocab.eol  # the text starts after a line end, so its first word is predicted
    assert (stream.tokens, stream.words, stream.characters) == (7, 5, 18)  # blank line skipped
    assert vocab.decode(stream.ids[1:]) == "the cat sat\n<unk> <unk>\n"


def test_vocabulary_comes_from_the_training_part_and_unknowns_map_to_zero(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("abab\n" * 40 + "abz\n" * 2)  # "z" only in the held-out tail
    corpus = text.load_corpus(path, "char", valid_fraction=0.05)
    assert "z" not in corpus.vocab.symbols and "a" in corpus.vocab.symbols
    assert 0 in corpus.valid.ids and corpus.train.tokens + corpus.valid.tokens == len(path.read_text())


def test_encoding_in_chunks_gives_the_same_stream(tmp_path, monkeypatch):
    path = write_toy_text(tmp_path / "toy.txt")
    vocab = text.build_vocabulary(text.Source([path]), "char")
    whole = np.array(text.encode_file(path, vocab).ids)
    monkeypatch.setattr(text, "_ENCODE_CHUNK", 7)
    chunked = text.encode_file(path, vocab, cache_dir=tmp_path / "other-cache")
    assert isinstance(chunked.ids, np.memmap) and np.array_equal(chunked.ids, whole)
    assert list(whole[1:]) == vocab.encode(list(path.read_text()))


def test_bad_input_is_a_clear_error(tmp_path):
    (tmp_path / "latin1.txt").write_bytes(b"ok\ncaf\xe9\n")
    vocab = text.Vocabulary.from_counts("char", {"a": 1})
    with pytest.raises(text.TextDataError, match="line 2 is not UTF-8"):
        text.encode_file(tmp_path / "latin1.txt", vocab)
    with pytest.raises(text.TextDataError, match="no such file"):
        text.load_corpus(tmp_path / "missing.txt", "char")


# -- metrics --------------------------------------------------------------------------


def test_bpc_matches_a_hand_computed_toy_distribution(tmp_path):
    # symbols: <unk>, "\n", "a", "b" with probabilities 1/8, 1/8, 1/2, 1/4 whatever came before
    (tmp_path / "t.txt").write_text("ab\na\n")  # a b \n a \n: 1 + 2 + 3 + 1 + 3 = 10 bits
    vocab = text.Vocabulary("char", ["\ufffd", "\n", "a", "b"])
    model = constant_model([1 / 8, 1 / 8, 1 / 2, 1 / 4])
    stream = text.encode_file(tmp_path / "t.txt", vocab)
    for streams in (1, 2):
        metrics = evaluate_stream(model, stream, streams=streams).metrics("char")
        assert metrics["bpc"] == pytest.approx(10 / 5)
        assert metrics["perplexity"] == pytest.approx(2 ** (10 / 2))  # 2 words: 2^(bits per word)
        assert metrics["error"] == pytest.approx(60.0)  # "a" is always guessed: right 2 times of 5


def test_word_perplexity_and_graves_bpc_on_a_toy_distribution(tmp_path):
    (tmp_path / "t.txt").write_text("x y\nx\n")  # x y <eos> x <eos>: 1 + 3 + 2 + 1 + 2 = 9 bits
    vocab = text.Vocabulary("word", ["<unk>", "<eos>", "x", "y"])
    stream = text.encode_file(tmp_path / "t.txt", vocab)
    metrics = evaluate_stream(constant_model([1 / 8, 1 / 4, 1 / 2, 1 / 8]), stream).metrics("word")
    assert metrics["perplexity"] == pytest.approx(2 ** (9 / 5))
    assert metrics["bpc"] == pytest.approx((9 / 5) / (6 / 3))  # log2(perplexity) / characters per word


def test_score_relation_between_bpc_and_perplexity():
    score = Score(nats=1000.0, tokens=500, characters=500, words=100, errors=0)
    char = score.metrics("char")
    assert char["perplexity"] == pytest.approx(2 ** (char["bpc"] * 5))


# -- training ---------------------------------------------------------------------------


def test_tiny_model_loss_falls(tmp_path):
    losses = []
    trainer = tiny_trainer(tmp_path, "run", init_seed=0, epochs=2, checkpoint_minutes=5.0)
    trainer.fit(lambda e: losses.append(e["loss"]) if e["event"] == "step" else None)
    assert len(losses) >= 20
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    assert (tmp_path / "run" / "best" / "config.json").exists()


class Killed(Exception):
    pass


def test_init_uniform_puts_every_weight_in_range_but_the_forget_gate_bias():
    model = LanguageModel(LanguageModelConfig(vocab_size=50, embedding=8, hidden=16, layers=2))
    assert model.embedding.weight.abs().max() > 1  # PyTorch's N(0, 1)
    model.init_uniform(0.1)
    for name, p in model.named_parameters():
        values = p.detach().clone()
        if name.startswith("lstm.bias_ih"):
            assert torch.all(values[16:32] == 1.0)  # the forget gate's
            values = torch.cat([values[:16], values[32:]])
        assert values.abs().max() <= 0.1, name


def test_init_scale_is_recorded_and_a_resume_may_change_it(tmp_path, capsys):
    run = train_cli(tmp_path, "--init-scale", "0.1")
    config = json.loads((run / "best" / "config.json").read_text())["config"]
    assert config["training"] == {"init_scale": 0.1}
    assert "init_scale" not in config["model"]
    capsys.readouterr()
    assert main(["lm", "train", "--data", str(tmp_path / "toy.txt"), "--run", str(run), "--epochs", "2",
                 *TINY_CLI]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["epoch"] == 2
    assert main(["lm", "train", "--data", str(tmp_path / "toy.txt"), "--run", str(tmp_path / "r2"),
                 "--init-scale", "-1", *TINY_CLI]) == 2  # fmt: skip


def test_resume_after_a_kill_gives_the_same_weights(tmp_path):
    whole = tiny_trainer(tmp_path, "whole", init_seed=0, noise="fixed", weight_noise=0.01)
    whole.fit()

    def kill_at_step(n):
        def handle(event):
            if event["event"] == "step" and event["step"] == n:
                raise Killed  # before this step's checkpoint, like a kill mid-step

        return handle

    with pytest.raises(Killed):
        tiny_trainer(tmp_path, "killed", init_seed=0, noise="fixed", weight_noise=0.01).fit(kill_at_step(7))
    # another initialisation: the weights must come from the checkpoint
    resumed = tiny_trainer(tmp_path, "killed", init_seed=123, noise="fixed", weight_noise=0.01)
    events = []
    resumed.fit(events.append)
    assert {k: events[0][k] for k in ("event", "resumed", "step", "epoch")} == {"event": "start", "resumed": True, "step": 6, "epoch": 0}
    assert resumed.state.step == whole.state.step
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def repeating_text(tmp_path):
    path = tmp_path / "rep.txt"
    path.write_text("abcabcabc\n" * 60)
    vocab = text.Vocabulary.from_counts("char", {c: 1 for c in "abc\n"})
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig(vocab_size=len(vocab), embedding=8, hidden=16))
    return model, text.encode_file(path, vocab)


@pytest.mark.parametrize("rule, lr", [("sgd", 0.5), ("rms", 0.02)])
def test_dynamic_evaluation_adapts_a_copy_and_lowers_bpc(tmp_path, rule, lr):
    model, stream = repeating_text(tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rms = gradient_rms(model, stream, bptt=20) if rule == "rms" else None
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    static = evaluate_stream(model, stream, streams=1, bptt=20).metrics("char")["bpc"]
    dynamic = DynamicEvaluation(lr, rule, decay=0.01, rms=rms)
    adapted = evaluate_stream(model, stream, streams=1, bptt=20, dynamic=dynamic).metrics("char")["bpc"]
    assert adapted < static - 0.3
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_gradient_rms_is_the_root_mean_square_of_window_gradients(tmp_path):
    model, stream = repeating_text(tmp_path)
    short = stream.head(60)
    squares, state = [torch.zeros_like(p) for p in model.parameters()], None
    for t0 in range(0, 60, 20):  # three windows of one stream, read by hand
        x = torch.from_numpy(short.ids[None, t0 : t0 + 20].astype(np.int64))
        y = torch.from_numpy(short.ids[None, t0 + 1 : t0 + 21].astype(np.int64))
        model.zero_grad()
        logits, state = model(x, state)
        F.cross_entropy(logits.transpose(1, 2), y).backward()
        state = tuple(s.detach() for s in state)
        squares = [s + p.grad.square() for s, p in zip(squares, model.parameters())]
    expected = [(s / 3).sqrt() for s in squares]
    for got, want in zip(gradient_rms(model, short, streams=1, bptt=20), expected):
        assert torch.allclose(got, want, atol=1e-6)


def test_dynamic_steps_and_decay_by_hand():
    p0 = torch.tensor([1.0, 1.0])
    for rule, rms, lr, want in [
        ("sgd", None, 0.1, [0.96 + 0.5 * 0.04, 0.96 + 0.5 * 0.04]),  # step 0.1 * 0.4, then half way back
        # step 0.1 * 0.4 / 2 each; pull = min(0.5 * rms / mean(rms), 1): 0.25 and 0.75
        ("rms", [torch.tensor([1.0, 3.0])], 0.1, [0.96 + 0.25 * 0.04, 1 - 0.04 / 3 + 0.75 * 0.04 / 3]),
    ]:
        p = p0.clone()
        p.grad = torch.tensor([0.4, 0.4])
        DynamicEvaluation(lr, rule, decay=0.5, rms=rms, epsilon=0.0).step([p], [p0])
        assert torch.allclose(p, torch.tensor(want)), rule
    with pytest.raises(ValueError, match="rms"):
        DynamicEvaluation(0.1, "rms")
    with pytest.raises(ValueError, match="decay"):
        DynamicEvaluation(0.1, "sgd", decay=1.0)


# -- the ready model, sampling and the CLI ------------------------------------------------


TINY_CLI = ["--hidden", "16", "--embedding", "8", "--batch-size", "4", "--bptt", "20"]


def train_cli(tmp_path: Path, *extra: str) -> Path:
    data = write_toy_text(tmp_path / "toy.txt")
    run = tmp_path / "run"
    assert main(["lm", "train", "--data", str(data), "--run", str(run), *TINY_CLI, "--epochs", "1", *extra]) == 0
    return run


def test_cli_train_evaluate_sample(tmp_path, capsys):
    run = train_cli(tmp_path)
    assert json.loads(capsys.readouterr().out)["epoch"] == 1
    assert main(["lm", "evaluate", "--model", str(run), "--data", str(tmp_path / "toy.txt"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["bpc"] > 0 and math.isfinite(metrics["perplexity"]) and metrics["tokens"] == metrics["characters"]
    assert metrics["window"] == 20  # the training BPTT length
    args = ["lm", "evaluate", "--model", str(run), "--data", str(tmp_path / "toy.txt"), "--json", "--streams", "1"]
    main([*args, "--dynamic-lr", "0.1"])
    long_steps = json.loads(capsys.readouterr().out)
    main([*args, "--dynamic-lr", "0.1", "--window", "4"])
    short_steps = json.loads(capsys.readouterr().out)
    assert short_steps["window"] == 4 and short_steps["bpc"] != long_steps["bpc"]  # four times the updates
    assert main([*args, "--dynamic-rule", "rms"]) == 2  # a rule without a rate would silently be static
    assert "need --dynamic-lr" in capsys.readouterr().err
    assert main([*args, "--dynamic-lr", "0.01", "--dynamic-rule", "rms"]) == 2  # no training text for a file
    assert "training text" in capsys.readouterr().err
    main([*args, "--dynamic-lr", "0.01", "--dynamic-rule", "rms", "--train-text", str(tmp_path / "toy.txt")])
    rms = json.loads(capsys.readouterr().out)
    assert rms["rule"] == "rms" and math.isfinite(rms["bpc"])
    assert main(["lm", "sample", "--model", str(run), "--prime", "the cat", "--length", "40", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("the cat") and len(first) >= len("the cat") + 40
    main(["lm", "sample", "--model", str(run), "--prime", "the cat", "--length", "40", "--seed", "3"])
    assert capsys.readouterr().out == first  # same seed, same text


def test_cli_train_from_a_trained_model_keeps_its_weights_and_vocabulary(tmp_path, capsys):
    run = train_cli(tmp_path)
    data, again = str(tmp_path / "toy.txt"), str(tmp_path / "again")
    args = ["lm", "train", "--data", data, "--run", again, "--init", str(run), "--batch-size", "4", "--bptt", "20"]
    assert main([*args, "--hidden", "32"]) == 2  # the size comes from the trained model
    assert "drop --hidden" in capsys.readouterr().err
    assert main([*args, "--epochs", "1", "--lr", "1e-12", "--dropout", "0.1"]) == 0
    start, tuned = loading.load(run), loading.load(again)
    assert tuned.vocab.to_dict() == start.vocab.to_dict() and tuned.model.config.dropout == 0.1
    for (name, a), b in zip(start.model.state_dict().items(), tuned.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name  # a rate of 1e-12 leaves the weights where they started


def test_loaded_model_samples_greedily_at_temperature_zero(tmp_path):
    run = train_cli(tmp_path)
    predictor = loading.load(run)
    assert isinstance(predictor, TextPredictor) and predictor.level == "char"
    greedy = [predictor.sample("the ", 30, temperature=0, seed=s) for s in (0, 1)]
    assert greedy[0] == greedy[1] and greedy[0].startswith("the ")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["lm", "evaluate", "--model", "no-such-model", "--data", "x.txt"], "neither a bundled model"),
        (["lm", "train", "--data", "{tmp}/missing.txt", "--run", "{tmp}/r"], "no such file or folder"),
        (["lm", "train", "--data", "{tmp}/latin1.txt", "--run", "{tmp}/r"], "is not UTF-8"),
        (["lm", "train", "--data", "{tmp}/latin1.txt", "--run", "{tmp}/r", "--dropout", "1.5"], "dropout must be in"),
        (["lm", "train", "--data", "{tmp}/latin1.txt", "--run", "{tmp}/r", "--bptt", "0"], "--bptt must be at least 1"),
        (["lm", "sample", "--model", "{tmp}/other", "--length", "5"], "is a synthesis model, not a language model"),
        (["lm", "sample", "--model", "{tmp}/other", "--temperature", "-1"], "--temperature must not be negative"),
        (["lm", "evaluate", "--model", "{tmp}/other", "--data", "x", "--streams", "0"], "--streams must be at least 1"),
    ],
)
def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"family": "synthesis", "config": {}}))
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("writemate: error:") and message in err and err.count("\n") == 1


# -- Penn Treebank --------------------------------------------------------------------------


def test_ptb_counts_follow_the_readme_conventions():
    ptb = shared_data("ptb")  # skips when ../shared/data/ptb is missing
    char = text.load_corpus(ptb, "char")
    assert len(char.vocab) == 51  # 50 characters and the unknown symbol
    assert char.test.tokens == char.test.characters == 442_423  # every character, end-of-lines included
    assert 0 not in char.test.ids[:]
    word = text.load_corpus(ptb, "word")
    assert len(word.vocab) == 10_000 and word.vocab.symbols[0] == "<unk>"
    assert word.test.tokens == 82_430  # 78,669 words and one <eos> per line
    assert (word.test.words, word.test.characters) == (78_669, 442_423)
    assert char.vocab.decode(char.test.ids[1:2000]) == word.vocab.decode(word.test.ids[1:])[:1999]
