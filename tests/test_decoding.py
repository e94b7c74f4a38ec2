"""CTC decoding on hand-made probability tables, checked against brute-force enumeration."""

import itertools
import math

import numpy as np
import pytest
import torch

from writemate import alphabet, decoding
from writemate.data.text import Vocabulary
from writemate.models.language import LanguageModel, LanguageModelConfig, TextPredictor


def collapse(path) -> tuple[int, ...]:
    """A frame-by-frame path to its labelling: repeats merged, then blanks removed."""
    out, previous = [], 0
    for label in path:
        if label != previous and label != 0:
            out.append(label)
        previous = label
    return tuple(out)


def exact_ctc(log_probs: np.ndarray) -> dict[tuple[int, ...], float]:
    """log P(labelling | frames) for every labelling, summed over all paths (T and C tiny)."""
    t, c = log_probs.shape
    out: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(c), repeat=t):
        lp = sum(log_probs[i, label] for i, label in enumerate(path))
        out[collapse(path)] = np.logaddexp(out.get(collapse(path), -np.inf), lp)
    return out


class Bigram:
    """A hand-made character language model: P(next | previous label), row 0 the start, column 0 the end."""

    def __init__(self, table: np.ndarray):
        self.table = np.log(table)

    def log_probs(self, prefixes):
        return np.array([self.table[p[-1] if p else 0] for p in prefixes])

    def sentence(self, labels) -> float:
        previous, total = 0, 0.0
        for label in labels:
            total += self.table[previous, label]
            previous = label
        return total + self.table[previous, 0]


def table(rows) -> np.ndarray:
    """Log of a (T, C) table of probabilities given row by row."""
    return np.log(np.array(rows, dtype=np.float64))


def test_best_path_merges_repeats_and_drops_blanks():
    # frames:  a    a    -    a    b    b    -
    lp = table(
        [
            [0.1, 0.8, 0.1],
            [0.2, 0.7, 0.1],
            [0.8, 0.1, 0.1],
            [0.1, 0.6, 0.3],
            [0.1, 0.2, 0.7],
            [0.2, 0.1, 0.7],
            [0.9, 0.05, 0.05],
        ]
    )
    assert decoding.best_path(lp) == [1, 1, 2]  # "aab": the blank separates the two a's


def test_beam_search_finds_the_labelling_best_path_misses():
    # Each frame: blank 0.6, "a" 0.4. The best path is blank-blank (""), P = 0.36, but
    # "a" is written by three paths (a-a, a-blank, blank-a): P = 0.16 + 0.24 + 0.24 = 0.64.
    lp = table([[0.6, 0.4], [0.6, 0.4]])
    assert decoding.best_path(lp) == []
    hypotheses = decoding.prefix_beam_search(lp, beam=4)
    assert hypotheses[0].labels == (1,) and hypotheses[0].score == pytest.approx(math.log(0.64))
    assert hypotheses[1].labels == () and hypotheses[1].score == pytest.approx(math.log(0.36))
    assert decoding.sequence_log_prob(lp, [1]) == pytest.approx(math.log(0.64), abs=1e-6)


@pytest.mark.parametrize("seed", range(8))
def test_wide_beam_search_is_exact_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    lp = np.log(rng.dirichlet(np.ones(3), size=5))  # 5 frames, blank + 2 labels
    exact = exact_ctc(lp)
    found = decoding.prefix_beam_search(lp, beam=1000, prune=-math.inf, max_labels=0)
    assert {h.labels for h in found} == set(exact)
    for h in found:
        assert h.ctc_log_prob == pytest.approx(exact[h.labels]) and h.score == h.ctc_log_prob and h.lm_log_prob is None
    assert found[0].labels == max(exact, key=exact.get)
    scores = [h.score for h in found]
    assert scores == sorted(scores, reverse=True)
    for labels, value in list(exact.items())[:6]:  # the CTC forward algorithm agrees too
        assert decoding.sequence_log_prob(lp, list(labels)) == pytest.approx(value, abs=1e-5)


@pytest.mark.parametrize("seed", range(8))
def test_shallow_fusion_is_exact_against_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    lp = np.log(rng.dirichlet(np.ones(3), size=5))
    lm = Bigram(rng.dirichlet(np.ones(3), size=3))
    weight, bonus = 0.8, 0.4
    exact = exact_ctc(lp)

    def fused(labels):
        return exact[labels] + weight * lm.sentence(labels) + bonus * len(labels)

    found = decoding.prefix_beam_search(
        lp, beam=1000, lm=lm, lm_weight=weight, bonus=bonus, prune=-math.inf, max_labels=0
    )
    assert found[0].labels == max(exact, key=fused)
    for h in found:
        assert h.score == pytest.approx(fused(h.labels))
        assert h.ctc_log_prob == pytest.approx(exact[h.labels])
        assert h.lm_log_prob == pytest.approx(lm.sentence(h.labels))


def test_a_narrow_beam_keeps_at_most_beam_hypotheses_and_pruning_drops_unlikely_labels():
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(4), size=6))
    assert len(decoding.prefix_beam_search(lp, beam=3)) <= 3
    lp = table([[0.5, 0.5 - 1e-9, 1e-9], [0.5, 0.5 - 1e-9, 1e-9]])
    labels = {h.labels for h in decoding.prefix_beam_search(lp, beam=100, prune=math.log(1e-6))}
    assert all(2 not in h for h in labels)  # label 2 was never tried
    lp = table([[0.4, 0.35, 0.25], [0.4, 0.35, 0.25]])
    labels = {h.labels for h in decoding.prefix_beam_search(lp, beam=100, prune=-math.inf, max_labels=1)}
    assert labels == {(), (1,)}  # only the likeliest character of each frame was tried, never 2
    with pytest.raises(ValueError):
        decoding.prefix_beam_search(lp, beam=0)


def test_the_language_model_settles_an_ambiguous_letter():
    """The ink says "t", then "b" or "h" (b slightly likelier), then "e"; English says "the"."""
    t, h, b, e = (alphabet.encode(c)[0] for c in "thbe")
    size = alphabet.SIZE
    lp = np.full((3, size), 1e-6)
    lp[0, t], lp[1, b], lp[1, h], lp[2, e] = 1, 0.55, 0.45, 1
    lp = np.log(lp / lp.sum(1, keepdims=True))
    bigram = np.full((size, size), 1.0)
    bigram[t, h] = 200.0  # "th" is common, "tb" is not
    lm = Bigram(bigram / bigram.sum(1, keepdims=True))
    assert alphabet.decode(decoding.best_path(lp)) == "tbe"
    assert alphabet.decode(decoding.prefix_beam_search(lp, beam=8)[0].labels) == "tbe"
    assert alphabet.decode(decoding.prefix_beam_search(lp, beam=8, lm=lm, lm_weight=0.5)[0].labels) == "the"


def test_an_impossible_labelling_has_no_probability():
    lp = table([[0.5, 0.5], [0.5, 0.5]])
    assert decoding.sequence_log_prob(lp, [1, 1]) == -math.inf  # "aa" needs a blank between: 3 frames


def tiny_char_model(text: str, seed: int = 0) -> TextPredictor:
    torch.manual_seed(seed)
    symbols = ["\ufffd", "\n"] + sorted(set(text))
    model = LanguageModel(LanguageModelConfig(vocab_size=len(symbols), embedding=8, hidden=16))
    return TextPredictor(model, Vocabulary("char", symbols))


def test_character_lm_scorer_matches_running_the_model_on_the_prefix():
    predictor = tiny_char_model("the cat sat")
    scorer = decoding.CharLanguageScorer(predictor)
    vocab = predictor.vocab

    def direct(prefix: str) -> np.ndarray:
        ids = torch.tensor([[vocab.eol] + vocab.encode(list(prefix))])
        with torch.no_grad():
            return torch.log_softmax(predictor.model(ids)[0][0, -1], -1).numpy()

    prefixes = ["", "t", "th", "the", "cq"]  # "q" is not in the vocabulary: read as unknown
    rows = scorer.log_probs([tuple(alphabet.encode(p)) for p in prefixes])
    assert rows.shape == (5, alphabet.SIZE)
    for prefix, row in zip(prefixes, rows):
        expected = direct(prefix)
        assert row[0] == pytest.approx(expected[vocab.eol], abs=1e-5)  # column 0: end of line
        assert row[alphabet.encode("a")[0]] == pytest.approx(expected[vocab.index["a"]], abs=1e-5)
        assert row[alphabet.encode("Z")[0]] == pytest.approx(expected[0], abs=1e-5)  # unknown
    scorer.reset()
    again = scorer.log_probs([tuple(alphabet.encode("the"))])
    np.testing.assert_allclose(again[0], rows[3], atol=1e-5)


def test_beam_search_with_a_real_language_model_reports_its_log_probability():
    predictor = tiny_char_model("abc")
    scorer = decoding.CharLanguageScorer(predictor)
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(alphabet.SIZE) * 0.1, size=6))
    best = decoding.prefix_beam_search(lp, beam=4, lm=scorer, lm_weight=1.0, bonus=0.0)[0]
    rows = scorer.log_probs([best.labels[:n] for n in range(len(best.labels) + 1)])
    expected = sum(rows[n, c] for n, c in enumerate(best.labels)) + rows[-1, 0]
    assert best.lm_log_prob == pytest.approx(expected, abs=1e-5)
    assert best.score == pytest.approx(best.ctc_log_prob + best.lm_log_prob, abs=1e-5)
