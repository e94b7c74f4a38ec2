import math

import numpy as np
import pytest
import torch
from conftest import fit_steps
from scipy.stats import multivariate_normal
from torch import nn

from writemate import alphabet
from writemate.models import mdn, synthesis
from writemate.models.synthesis import (
    BF16_MIN_ROWS,
    MAX_REWINDS,
    WINDOW_CUTOFF,
    Affine,
    Prime,
    Rewinds,
    Stepper,
    Synthesis,
    SynthesisConfig,
    SynthesisTask,
    WindowLayer,
    WindowState,
    evaluate_lines,
    gaussian,
    lines_ended,
    line_starts,
    lines_to_tensors,
    sample,
    sample_batch,
    skips_a_word,
    step_cap,
    word_spans,
)

TINY = SynthesisConfig(hidden=16, layers=3, window_mixtures=2, mixtures=3)


def random_lines(n=6, seed=0):
    rng = np.random.default_rng(seed)
    offsets, texts = [], []
    for i in range(n):
        t = int(rng.integers(20, 40))
        o = np.column_stack([rng.normal(0.3, 1, t), rng.normal(0, 1, t), rng.random(t) < 0.1]).astype(np.float32)
        o[0, :2] = 0
        offsets.append(o)
        texts.append(alphabet.encode(["hello", "a line", "Quiz 42"][i % 3]))
    return offsets, texts


def tiny_model_and_batch():
    """A seeded tiny network and a teacher-forcing batch of 3 random lines: x, text, text_mask."""
    torch.manual_seed(0)
    model = Synthesis(TINY)
    offsets, texts = random_lines(3)
    x, _, _, text, text_mask = lines_to_tensors(offsets, texts)
    return model, x, text, text_mask


def test_mdn_nll_matches_scipy():
    torch.manual_seed(0)
    y = torch.randn(1, mdn.output_size(3))
    target = torch.tensor([[0.3, -0.2, 1.0]])
    mix = mdn.split(y)
    pi = mix.log_pi.exp()[0].numpy()
    mu, sigma, rho = mix.mu[0].numpy(), mix.log_sigma.exp()[0].numpy(), mix.rho[0].numpy()
    density = sum(
        pi[j]
        * multivariate_normal(
            mu[j], [[sigma[j, 0] ** 2, rho[j] * sigma[j, 0] * sigma[j, 1]], [rho[j] * sigma[j, 0] * sigma[j, 1], sigma[j, 1] ** 2]]
        ).pdf([0.3, -0.2])
        for j in range(3)
    )
    e = torch.sigmoid(mix.eos_logit)[0].item()
    expected = -math.log(density) - math.log(e)
    assert mdn.nll(y, target).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("bias", [0.0, 1.0])
def test_mdn_sample_follows_the_mixture(bias):
    """Moments of many draws match the (biased) mixture that split() describes."""
    torch.manual_seed(0)
    y = torch.randn(1, mdn.output_size(3)).expand(200_000, -1)
    draws = torch.from_numpy(mdn.sample(y.numpy(), bias, np.random.default_rng(0))).double()
    mix = mdn.split(y[:1].double(), bias)
    pi, mu, sigma, rho = mix.log_pi.exp()[0], mix.mu[0], mix.log_sigma.exp()[0], mix.rho[0]
    mean = (pi[:, None] * mu).sum(0)
    cov = torch.zeros(2, 2, dtype=torch.float64)
    for j in range(3):
        s_xy = rho[j] * sigma[j, 0] * sigma[j, 1]
        comp = torch.tensor([[sigma[j, 0] ** 2, s_xy], [s_xy, sigma[j, 1] ** 2]]) + torch.outer(mu[j], mu[j])
        cov += pi[j] * comp
    cov -= torch.outer(mean, mean)
    xy = draws[:, :2]
    torch.testing.assert_close(xy.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(xy.T), cov, atol=0.03, rtol=0.02)
    assert draws[:, 2].mean().item() == pytest.approx(torch.sigmoid(mix.eos_logit[0]).item(), abs=0.005)


def test_bias_sharpens_the_mixture():
    torch.manual_seed(0)
    y = torch.randn(4, mdn.output_size(5))
    plain, biased = mdn.split(y, 0.0), mdn.split(y, 2.0)
    assert torch.allclose(biased.log_sigma, plain.log_sigma - 2.0)
    assert (biased.log_pi.exp().max(-1).values >= plain.log_pi.exp().max(-1).values).all()


def test_full_sequence_equals_step_by_step():
    """The forward over a whole sequence (fused upper layers) and the forward one step at a time agree."""
    model, x, text, text_mask = tiny_model_and_batch()
    model.eval()
    with torch.no_grad():
        y_full, _, phi_full = model(x, text, text_mask, return_phi=True)
        state, ys, phis = None, [], []
        for t in range(x.shape[1]):
            y, state, phi = model(x[:, t : t + 1], text, text_mask, state, return_phi=True)
            ys.append(y)
            phis.append(phi)
    torch.testing.assert_close(torch.cat(ys, 1), y_full, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat(phis, 1), phi_full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("log_beta", [0.0, 4.0])  # 4: a sharp window, most characters past the cutoff
def test_sampling_stepper_equals_forward(log_beta):
    """Sampling's Stepper (stacked weights, numpy, one point at a time) equals the network's forward."""
    model, x, text, text_mask = tiny_model_and_batch()
    model.eval()
    with torch.no_grad():
        model.window.bias[TINY.window_mixtures : 2 * TINY.window_mixtures] = log_beta
        _, state, _ = model(x[:, :5], text, text_mask, return_phi=True, phi_extra=1)  # a primed start
        y_more, _, phi_more = model(x[:, 5:], text, text_mask, state, return_phi=True, phi_extra=1)
        stepper = Stepper(model, text, text_mask, state)
        steps = [stepper.step(x[:, t].numpy()) for t in range(5, x.shape[1])]
    torch.testing.assert_close(torch.from_numpy(np.stack([y for y, _ in steps], 1)), y_more, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(np.stack([p for _, p in steps], 1)), phi_more, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("log_beta", [0.0, 4.0])  # 4: a sharp window, most characters past the cutoff
@pytest.mark.parametrize("rows", [1, 3])  # one product per step, or one per row
def test_inference_forward_equals_the_step_loop(log_beta, rows):
    """Without autograd, layer 1 and the window run laid out for speed (_layer1_read, used to read
    primed lines); outputs and final state equal the step loop's (return_phi takes that path)."""
    model, x, text, text_mask = tiny_model_and_batch()
    x, text, text_mask = x[:rows], text[:rows], text_mask[:rows]
    model.eval()
    b = x.shape[0]
    with torch.no_grad():
        model.window.bias[TINY.window_mixtures : 2 * TINY.window_mixtures] = log_beta
        start = WindowState(
            torch.randn(b, TINY.hidden), torch.randn(b, TINY.hidden), 3 * torch.rand(b, TINY.window_mixtures),
            torch.rand(b, TINY.alphabet_size), [(torch.randn(1, b, TINY.hidden), torch.randn(1, b, TINY.hidden))] * 2,
        )  # fmt: skip
        y_read, read = model(x, text, text_mask, start)
        y_loop, loop, _ = model(x, text, text_mask, start, return_phi=True)
    torch.testing.assert_close(y_read, y_loop, rtol=1e-5, atol=1e-5)
    for a, b in [(read.h, loop.h), (read.c, loop.c), (read.kappa, loop.kappa), (read.w, loop.w)]:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("log_beta", [0.0, 4.0])  # 4: a sharp window, most characters past the cutoff
def test_window_layer_backward_equals_autograd(log_beta):
    """The hand-written backward of layer 1 and the window (training) equals autograd through the step loop."""
    torch.manual_seed(0)
    model = Synthesis(TINY).double()
    k = TINY.window_mixtures
    with torch.no_grad():
        model.window.bias[k : 2 * k] = log_beta
    offsets, texts = random_lines(3)
    x, _, _, text, text_mask = lines_to_tensors(offsets, texts)
    x, text_mask = x.double(), text_mask.double()
    onehot = torch.nn.functional.one_hot(text, TINY.alphabet_size).double()
    b, k = x.shape[0], TINY.window_mixtures
    start = [torch.randn(b, TINY.hidden), torch.randn(b, TINY.hidden), torch.rand(b, k), torch.rand(b, TINY.alphabet_size)]
    start = [s.double().requires_grad_() for s in start]
    params = [model.l1_input.weight, model.l1_recurrent.weight, model.window.weight, model.window.bias]

    def grads(fast: bool):
        gates_x = model.l1_input(x)
        if fast:
            outs = WindowLayer.apply(gates_x, *start, model.l1_recurrent.weight, model.window.weight, model.window.bias,
                                     onehot * text_mask.unsqueeze(-1), TINY.kappa_scale)  # fmt: skip
        else:
            state = WindowState(*start, upper=[])
            outs = model._layer1_loop(gates_x, state, onehot, text_mask, 0)[:6]
        weights = torch.Generator().manual_seed(1)  # the same random upstream gradient for both
        loss = sum((o * torch.randn(o.shape, generator=weights, dtype=o.dtype)).sum() for o in outs)
        return outs, torch.autograd.grad(loss, params + start)

    (fast_out, fast_grads), (ref_out, ref_grads) = grads(True), grads(False)
    for fast, ref in zip(fast_out + fast_grads, ref_out + ref_grads):
        torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-10)


def test_window_gaussian_cuts_off_far_characters():
    q = torch.tensor([0.0, -1.0, -WINDOW_CUTOFF + 1, -WINDOW_CUTOFF - 1, -1e4], dtype=torch.float64, requires_grad=True)
    e = gaussian(q)
    torch.testing.assert_close(e[:3], q[:3].exp())
    assert e[3:].tolist() == [0.0, 0.0]
    e.sum().backward()
    torch.testing.assert_close(q.grad[:3], q[:3].exp())
    assert q.grad[3:].tolist() == [0.0, 0.0]


def test_training_forward_uses_the_fast_path_and_matches_sampling_path():
    model, x, text, text_mask = tiny_model_and_batch()
    y_fast, _ = model(x, text, text_mask)  # grad enabled: WindowLayer
    assert y_fast.grad_fn is not None
    with torch.no_grad():
        y_ref, _ = model(x, text, text_mask)
    torch.testing.assert_close(y_fast.detach(), y_ref, rtol=1e-5, atol=1e-5)


def test_padding_does_not_change_a_line():
    torch.manual_seed(0)
    model = Synthesis(TINY).eval()
    offsets, texts = random_lines(3)
    with torch.no_grad():
        alone = evaluate_lines(model, offsets[:1], texts[:1])
        together = evaluate_lines(model, offsets, texts)
        x, target, mask, text, text_mask = lines_to_tensors(offsets, texts)
        y, _ = model(x, text, text_mask)
        per_line = (mdn.nll(y, target) * mask).sum(1)
    assert per_line[0].item() == pytest.approx(alone["nll"], rel=1e-4)
    assert together["nll"] == pytest.approx(per_line.mean().item(), rel=1e-4)
    assert together["lines"] == 3 and together["points"] == sum(len(o) - 1 for o in offsets)


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    model = Synthesis(TINY)
    offsets, texts = random_lines(8)
    task = SynthesisTask(model, (offsets, texts), (offsets[:2], texts[:2]))
    batch = list(range(8))
    first = fit_steps(task, model, batch, steps=15)[0]
    result = task.loss(model, batch)
    assert result.nats.item() / result.units < first - 0.2


def test_input_noise_moves_the_inputs_only():
    offsets, texts = random_lines(4)
    task = SynthesisTask(Synthesis(TINY), (offsets, texts), (offsets[:2], texts[:2]), input_noise=0.1)
    seen = []

    def forward(x, text, text_mask):
        seen.append(x)
        return task.model(x, text, text_mask)

    torch.manual_seed(0)
    noisy = task.loss(forward, [0, 1, 2, 3])
    task.input_noise = 0.0
    clean = task.loss(forward, [0, 1, 2, 3])
    moved = seen[0] - seen[1]  # (B, T, 3)
    assert torch.equal(moved[..., 2], torch.zeros_like(moved[..., 2]))  # pen lifts untouched
    assert 0.08 < moved[..., :2].std().item() < 0.12
    assert noisy.units == clean.units and noisy.nats.item() != clean.nats.item()
    with pytest.raises(ValueError, match="input_noise"):
        SynthesisTask(task.model, (offsets, texts), (offsets, texts), input_noise=-1)


def test_sampling_is_seeded_and_ends():
    torch.manual_seed(0)
    model = Synthesis(TINY)
    a = sample(model, ["hi there", "x"], bias=1.0, seed=3, steps_per_char=5)
    b = sample(model, ["hi there", "x"], bias=1.0, seed=3, steps_per_char=5)
    c = sample(model, ["hi there", "x"], bias=1.0, seed=4, steps_per_char=5)
    assert len(a) == 2
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    assert len(a[0]) <= 8 * 5 + 21 and len(a[1]) <= 1 * 5 + 21  # the step cap holds
    assert a[0].shape[1] == 3 and a[0][0].tolist() == [0, 0, 0]


def steered(window_speed: float) -> Synthesis:
    """A tiny model whose window moves ``exp(window_speed) / kappa_scale`` characters per point
    and whose pen lifts after almost every point (the end-of-stroke logit is +20). Its window is
    sharp (beta 4, eq. 48), as trained windows are: phi one character past kappa is e^-4 of phi at kappa."""
    torch.manual_seed(0)
    model = Synthesis(TINY)
    k = TINY.window_mixtures
    with torch.no_grad():
        model.window.weight.zero_()
        model.window.bias[k : 2 * k].fill_(math.log(4.0))  # beta_hat
        model.window.bias[2 * k :].fill_(window_speed)  # kappa_hat, eq. 49
        model.output.weight[0].zero_()
        model.output.bias[0] = 20.0
    return model


def test_lines_ended_tells_lines_that_end_from_lines_stopped_by_the_cap():
    texts = ["hello", "a line", "x", "Quiz 42 is late"]
    assert lines_ended(steered(math.log(TINY.kappa_scale / 3)), texts, bias=1.0).all()  # 3 points a character
    assert not lines_ended(steered(-30.0), texts, bias=1.0).any()  # the window never moves
    stalled = steered(-30.0)
    lines = sample(stalled, texts, bias=1.0)
    assert [len(line) - 1 for line in lines] == [step_cap(len(t)) for t in texts]


def test_words_the_window_jumps_over_are_found():
    assert word_spans("Mr. X - ok", offset=4) == [(4, 7), (8, 9), (12, 14)]  # "-" is no word
    dwell = np.zeros(15, dtype=int)
    dwell[4:7], dwell[8], dwell[12:14] = 1, 5, [2, 0]
    assert not skips_a_word(word_spans("Mr. X - ok", 4), dwell)  # 2 points for "ok" suffice
    dwell[4:7] = [3, 0, 0]
    assert not skips_a_word(word_spans("Mr. X - ok", 4), dwell)
    dwell[4:7] = [2, 0, 0]
    assert skips_a_word(word_spans("Mr. X - ok", 4), dwell)


def test_a_line_whose_window_jumps_over_words_is_not_accepted_but_written_again():
    jumping = steered(math.log(TINY.kappa_scale * 3))  # 3 characters a point: every line ends, skipping
    texts = ["hello there", "a line"]
    s = sample_batch(jumping, texts, np.full(2, 1.0), seed=0, attempts=3)
    assert s.ended.all() and s.skipped.all() and not s.accepted.any()
    assert sorted(s.texts.tolist()) == [0, 0, 0, 1, 1, 1]  # each text used all its attempts
    assert not lines_ended(jumping, texts, bias=1.0).any()
    assert not sample_batch(steered(math.log(TINY.kappa_scale / 3)), texts, np.full(2, 1.0)).skipped.any()


def test_a_line_ending_in_a_dot_ends_once_it_has_written_one(monkeypatch):
    moving = steered(math.log(TINY.kappa_scale / 3))  # 3 points a character, each point a stroke of its own
    dotted = sample_batch(moving, ["ab.", "ab"], np.ones(2), return_phi=True)
    monkeypatch.setattr(synthesis, "DOT_SIZE", -1.0)  # no stroke is small enough: only END_RATIO ends lines
    plain = sample_batch(moving, ["ab.", "ab"], np.ones(2), return_phi=True)
    assert dotted.ended.all() and plain.ended.all()
    peaks = dotted.phis[0].argmax(axis=1)  # (T,) over "a", "b", "."
    assert peaks[-1] == 2 and (peaks[:-1] < 2).all()  # it ended at its first point on the dot
    assert len(dotted.lines[0]) < len(plain.lines[0])
    np.testing.assert_array_equal(dotted.lines[1], plain.lines[1])  # no dot, no change


def test_a_line_stopped_by_the_cap_is_written_again():
    torch.manual_seed(0)
    model = Synthesis(TINY)  # untrained, ~25 points a character: with a cap of 10, some lines end, some not
    texts = ["hello", "a line", "x", "Quiz 42 is late", "ok", "mm"]
    once = sample_batch(model, texts, np.full(len(texts), 0.5), seed=1, steps_per_char=10)
    assert list(once.texts) == list(range(len(texts))) and once.ended.any() and not once.ended.all()
    twice = sample_batch(model, texts, np.full(len(texts), 0.5), seed=1, steps_per_char=10, attempts=2)
    for i in range(len(texts)):
        rows = np.flatnonzero(twice.texts == i)
        first = rows[0]
        assert len(rows) == (1 if twice.ended[first] else 2)  # a second line only in place of a capped one
        if len(rows) == 2:
            assert twice.starts[rows[1]] == twice.stops[first]  # at once
    kept = sample(model, texts, bias=0.5, seed=1, steps_per_char=10, retries=1)
    for i, line in enumerate(kept):
        rows = np.flatnonzero(twice.texts == i)
        ended = [r for r in rows if twice.ended[r]]
        np.testing.assert_array_equal(line, twice.lines[ended[0] if ended else rows[-1]])


def test_primed_sampling_returns_only_new_ink_and_window_weights():
    torch.manual_seed(0)
    model = Synthesis(TINY)
    offsets, _ = random_lines(1)
    lines, phis = sample(model, ["new"], prime=Prime(offsets[0], "abc"), steps_per_char=4, return_phi=True)
    assert len(lines[0]) <= 3 * 4 + 21
    assert phis[0].shape == (len(lines[0]), 3)  # one row per sampled point (no origin when primed), one column per new character


def test_lines_started_ahead_are_written_as_lines_started_when_needed():
    """A primed line read before (line_starts, in chunks a caller can stop) starts the same lines."""
    torch.manual_seed(0)
    model = Synthesis(TINY)
    rng = np.random.default_rng(0)
    offsets = np.column_stack([rng.normal(0.2, 1, 600), rng.normal(0, 1, 600), np.arange(600) % 10 == 9]).astype(np.float32)
    prime, texts = Prime(offsets, "abc"), ["new", "a line"]
    ahead = line_starts(model, texts, Prime(offsets.copy(), "abc"))  # an equal primed line, not the same object
    fresh = sample(model, texts, prime=prime, steps_per_char=4, seed=1)
    for _ in range(2):  # a reading serves more than one write
        for a, b in zip(sample(model, texts, prime=prime, steps_per_char=4, seed=1, starts=ahead), fresh):
            np.testing.assert_array_equal(a, b)
    asked = []
    assert line_starts(model, texts, prime, going_on=lambda: asked.append(1) or len(asked) < 2) is None
    assert len(asked) == 2  # stopped before its second chunk
    with pytest.raises(ValueError, match="other texts"):
        sample(model, ["other"], prime=prime, starts=ahead)


def test_sampling_products_in_bfloat16_stay_close_to_float32():
    torch.manual_seed(0)
    layer = nn.Linear(40, 24)
    affine = Affine(layer.weight, layer.bias)
    for rows in (1, BF16_MIN_ROWS - 1, BF16_MIN_ROWS, 20):
        x = torch.randn(rows, 40)
        tolerance = 3e-2 if Affine.bf16 and rows >= BF16_MIN_ROWS else 1e-6  # bfloat16 keeps 8 bits
        torch.testing.assert_close(torch.from_numpy(affine(x.numpy())), layer(x).detach(), rtol=tolerance, atol=tolerance)
    affine.pad_small = True  # fewer rows padded to BF16_MIN_ROWS, where the CPU has bfloat16 (pad_small_rows)
    x = torch.randn(BF16_MIN_ROWS, 40).numpy()
    whole = affine(x)
    for rows in (3, 1, 2):  # a padded call's output rows depend on its own input rows only
        np.testing.assert_allclose(affine(x[:rows]), whole[:rows], rtol=1e-6, atol=1e-6)
    first = affine(x[:2])
    kept = first.copy()
    affine(x[2:3])
    np.testing.assert_array_equal(first, kept)  # the next call does not overwrite an output


def test_stepper_rows_left_go_on_as_in_the_whole_batch():
    """Dropping finished rows (the fast path) does not change the rows that go on."""
    model, x, text, text_mask = tiny_model_and_batch()
    model.eval()
    with torch.no_grad():
        whole = Stepper(model, text, text_mask, model.initial_state(3))
        part = Stepper(model, text, text_mask, model.initial_state(3))
        for t in range(x.shape[1]):
            y_whole, phi_whole = whole.step(x[:, t].numpy())
            rows = [0, 1, 2] if t < 5 else [0, 2]
            if t == 5:
                part.keep(np.array([True, False, True]))
            y_part, phi_part = part.step(x[rows, t].numpy())
            np.testing.assert_allclose(y_part, y_whole[rows], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(phi_part, phi_whole[rows], rtol=1e-5, atol=1e-6)


def test_stepper_rows_go_back_to_a_saved_state():
    """A row restored to a saved state goes on as it did from there; the other rows are untouched."""
    model, x, text, text_mask = tiny_model_and_batch()
    model.eval()
    with torch.no_grad():
        stepper = Stepper(model, text, text_mask, model.initial_state(3))
        for t in range(5):
            stepper.step(x[:, t].numpy())
        saved = stepper.save(np.array([1]))
        first = [stepper.step(x[:, t].numpy()) for t in range(5, 10)]
        stepper.restore(np.array([1]), saved)
        for t in range(5, 10):
            inputs = x[:, t + 5].numpy().copy()
            inputs[1] = x[1, t].numpy()
            y, phi = stepper.step(inputs)
            np.testing.assert_array_equal(y[1], first[t - 5][0][1])
            np.testing.assert_array_equal(phi[1], first[t - 5][1][1])


def test_rewinds_go_back_to_the_last_mark_at_or_before_a_position():
    marks = Rewinds(2, stall_points=10)
    state = [np.zeros((3, 2))]
    dwell = np.zeros((2, 6), dtype=np.int32)
    marks.add(np.array([1, 1, 1]), np.array([0, 2, 4]), np.array([1, 9, 30]), state, dwell, np.zeros(2, bool))
    assert marks.back(1, 3).age == 9
    assert [m.position for m in marks.marks[1]] == [0, 2]  # the mark past it is dropped
    assert marks.back(1, -1).age == 1  # before every mark: the first
    marks.drop([1])
    assert not marks.marks


def test_a_stalled_line_goes_back_and_writes_again():
    stalled = steered(-30.0)  # the window never leaves the first character
    s = sample_batch(stalled, ["hello"], np.ones(1), seed=0, stall_points=10)
    assert s.rewinds.tolist() == [MAX_REWINDS] and not s.ended.any()
    assert len(s.lines[0]) - 1 == step_cap(5)  # after its last rewind it ran to the cap
    # each rewind went back from point 12 (11 points without a new position) to point 1, where the
    # window first peaked on the first character
    assert s.stops[0] == step_cap(5) + MAX_REWINDS * 11
    moving = steered(math.log(TINY.kappa_scale / 3))  # 3 points a character: never stalls
    s = sample_batch(moving, ["hello", "a line"], np.ones(2), seed=0, stall_points=10)
    assert s.ended.all() and not s.rewinds.any()


def test_rewound_lines_keep_their_ink_before_the_mark_and_the_step_cap():
    torch.manual_seed(0)
    model = Synthesis(TINY)  # untrained: its window wanders and often stalls
    texts = ["hello", "a line", "Quiz 42 is late"]
    off = sample_batch(model, texts, np.full(3, 0.5), seed=2, stall_points=None)
    on = sample_batch(model, texts, np.full(3, 0.5), seed=2, stall_points=15)
    assert on.rewinds.any() and not off.rewinds.any()
    for s in (off, on):
        lengths = np.array([len(line) - 1 for line in s.lines])
        assert (lengths <= step_cap(np.array([len(t) for t in texts]))[s.texts]).all()
        assert ((s.stops - s.starts == lengths) == (s.rewinds == 0)).all()  # rewinds took steps, not points


def judge_even(texts, lines):
    """A stand-in judge with a verdict as good as random: right when the thousandths of the line's width are even;
    it never says which word is wrong."""
    return np.array([int(1000 * abs(line[:, 0].sum())) % 2 for line in lines], dtype=float), np.full(len(lines), -1)


def test_candidates_stop_once_one_is_accepted_and_failed_ones_are_replaced():
    torch.manual_seed(0)
    model = Synthesis(TINY)  # untrained: lines end by the rule at random
    texts = ["hello", "a line", "ok"]
    s = sample_batch(model, texts, np.full(3, 0.5), seed=3, candidates=2, attempts=6, judge=judge_even, max_error=0)
    judged = np.isfinite(s.errors)
    np.testing.assert_array_equal(s.accepted, judged & s.ended & (s.errors == 0))
    assert s.accepted.any() and not judged.all()
    stops = s.stops  # the step of each row's last point
    for i in range(3):
        rows = np.flatnonzero(s.texts == i)
        assert len(rows) <= 6
        assert (s.starts[rows[:2]] == 0).all() and (s.starts[rows[2:]] > 0).all()  # 2 at first, the rest in place of failed ones
        if not s.accepted[rows].any():
            assert len(rows) == 6 and judged[rows].all()  # all attempts used, each to its end
            continue
        first = rows[s.accepted[rows]][np.argmin(stops[rows][s.accepted[rows]])]
        assert (stops[rows] <= stops[first]).all()  # the others stopped then, or had ended before
        assert (s.starts[rows] < stops[first]).all()  # and none started after
        assert (stops[rows[~judged[rows]]] == stops[first]).all()


def test_a_line_with_a_misread_word_is_taken_up_from_before_that_word():
    torch.manual_seed(0)
    model = Synthesis(TINY)
    texts = ["hello there you", "ok then"]

    def judge(t, lines):  # every line wrong, from its second word on
        return np.ones(len(lines)), np.array([text.index(" ") + 1 for text in t])

    s = sample_batch(model, texts, np.full(2, 0.5), seed=3, candidates=2, attempts=6, judge=judge, max_error=0)
    assert (np.bincount(s.texts) == 6).all() and not s.accepted.any()
    children = np.flatnonzero(s.parents >= 0)
    assert len(children) and len(set(s.parents[children])) == len(children)  # a failed line is taken up once
    for c in children:
        parent, child = s.lines[s.parents[c]], s.lines[c]
        assert s.texts[c] == s.texts[s.parents[c]] and s.starts[c] >= s.stops[s.parents[c]]
        shared = np.argmax(np.any(parent[: len(child)] != child[: len(parent)], axis=1))
        assert shared > 0  # the same ink up to where the window reached the space, then fresh draws
    unjudged = sample_batch(model, texts, np.full(2, 0.5), seed=3, candidates=2, attempts=6)
    assert (unjudged.parents == -1).all()


def test_sample_keeps_an_accepted_line_for_every_text_it_can():
    torch.manual_seed(0)
    model = Synthesis(TINY)
    texts = ["hello", "a line", "ok", "x"]
    calls = []

    def judge(t, lines):
        calls.append(len(lines))
        return judge_even(t, lines)

    lines = sample(model, texts, bias=0.5, seed=1, retries=3, candidates=3, judge=judge, max_error=0)
    assert judge_even(texts, lines)[0].tolist() == [0] * len(texts)
    assert sum(calls) <= len(texts) * 3 * 4


def test_a_run_started_from_a_trained_model_keeps_its_network_and_normalisation(
    tiny_writer_dir, tiny_prediction_dir, tmp_path, capsys
):
    import json

    from conftest import iam_with_validation

    from writemate import checkpoint, cli

    data = iam_with_validation(tmp_path)
    run = tmp_path / "run"
    args = ["train", "synthesis", "--data", str(data), "--run", str(run), "--init", str(tiny_writer_dir),
            "--batch-size", "4", "--epochs", "1", "--lr", "1e-9"]  # fmt: skip
    assert cli.main(args) == 0
    start, tuned = json.loads((tiny_writer_dir / "config.json").read_text()), json.loads((run / "best" / "config.json").read_text())
    assert tuned["config"]["model"] == start["config"]["model"]
    assert tuned["config"]["stats"] == start["config"]["stats"]  # not the statistics of this data
    before, after = (checkpoint.load_tensors(f / "model.safetensors") for f in (tiny_writer_dir, run / "best"))
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)

    assert cli.main(args[:-2] + ["--hidden", "8"]) == 2
    assert "drop --hidden" in capsys.readouterr().err
    assert cli.main([*args[:7], str(tiny_prediction_dir)]) == 2
    assert "a prediction model cannot start a synthesis run" in capsys.readouterr().err


def test_input_noise_is_recorded_and_kept_when_a_run_resumes(tmp_path, capsys):
    import json

    from conftest import iam_with_validation

    from writemate import cli

    data = iam_with_validation(tmp_path)
    run = tmp_path / "run"
    base = ["train", "synthesis", "--data", str(data), "--run", str(run), "--hidden", "8", "--layers", "2",
            "--batch-size", "4", "--max-val-lines", "2"]  # fmt: skip
    assert cli.main([*base, "--epochs", "1", "--input-noise", "0.05"]) == 0
    assert json.loads((run / "best" / "config.json").read_text())["config"]["training"] == {"input_noise": 0.05}
    assert cli.main([*base, "--epochs", "2"]) == 0  # resumed without the option: the noise stays
    assert json.loads((run / "checkpoint.json").read_text())["model_config"]["training"] == {"input_noise": 0.05}
    capsys.readouterr()
    assert cli.main([*base, "--input-noise", "-1"]) == 2
    assert cli.main(["train", "prediction", "--data", str(data), "--run", str(tmp_path / "p"), "--input-noise", "0.1"]) == 2
    assert "for synthesis runs" in capsys.readouterr().err


def test_a_network_without_size_is_refused(tmp_path, capsys):
    from writemate import cli

    with pytest.raises(ValueError, match="at least 1"):
        SynthesisConfig(hidden=0)
    assert cli.main(["train", "synthesis", "--data", str(tmp_path), "--run", str(tmp_path / "r"), "--hidden", "-1"]) == 2
    assert "at least 1" in capsys.readouterr().err
