import numpy as np
import pytest

from writemate import ink


def test_offsets_round_trip():
    strokes = [np.array([[10, 20], [12, 25], [15, 22]]), np.array([[30, 20]]), np.array([[40, 10], [41, 11]])]
    offsets = ink.strokes_to_offsets(strokes)
    assert offsets.shape == (6, 3)
    assert offsets[0].tolist() == [0, 0, 0]  # a line starts where the pen first touches
    assert offsets[:, 2].tolist() == [0, 0, 1, 1, 0, 1]
    back = ink.offsets_to_strokes(offsets, start=(10, 20))
    assert len(back) == 3
    for a, b in zip(strokes, back):
        np.testing.assert_allclose(a, b)


def test_offsets_of_nothing():
    assert ink.strokes_to_offsets([]).shape == (0, 3)
    assert ink.offsets_to_strokes(np.zeros((0, 3))) == []


def test_last_stroke_kept_without_pen_lift():
    offsets = np.array([[0, 0, 0], [1, 0, 1], [5, 0, 0], [1, 1, 0]], dtype=np.float32)
    assert [len(s) for s in ink.offsets_to_strokes(offsets)] == [2, 2]


def test_last_stroke_size():
    strokes = [np.array([[0, 0], [100, 0], [100, 40]]), np.array([[300, 50], [302, 53], [301, 51]])]
    offsets = ink.strokes_to_offsets(strokes)
    assert ink.last_stroke_size(offsets) == pytest.approx(3)  # not the 250-unit move to the stroke
    assert ink.last_stroke_size(offsets[:-1]) == pytest.approx(3)  # the stroke not yet lifted
    assert ink.last_stroke_size(offsets[:3]) == pytest.approx(100)  # a line of one stroke
    assert ink.last_stroke_size(offsets[:4]) == 0  # one point so far
    assert ink.last_stroke_size(np.zeros((0, 3))) == 0


def word(x0, width=300, points=20):
    """A pen-down stroke zigzagging from x0 across ``width`` units, 100 high."""
    xs = np.linspace(x0, x0 + width, points)
    return np.column_stack([xs, 100 * (np.arange(points) % 2)])


def test_starts_with_stray_mark():
    dot = np.array([[0.0, 50], [5, 52], [3, 55]])
    text = "hello there"  # 11 characters over ~700 units: a character ~64 units wide
    line = [word(400), word(750)]
    assert ink.starts_with_stray_mark([dot, *line], text)
    assert not ink.starts_with_stray_mark(line, text)  # no mark
    assert not ink.starts_with_stray_mark([dot + [370, 0], *line], text)  # a mark close to the word: an i's dot, a T's bar
    assert not ink.starts_with_stray_mark([word(0, width=120), *line], text)  # a first stroke as large as two letters
    assert not ink.starts_with_stray_mark([dot, *line], "a hello there")  # the mark is the word "a"
    assert not ink.starts_with_stray_mark([dot, *line], '"hello there"')  # or an opening quote
    assert not ink.starts_with_stray_mark([dot], "hello")
    assert not ink.starts_with_stray_mark([], "hello")


def test_stats_and_normalisation_invert():
    rng = np.random.default_rng(1)
    seqs = [np.column_stack([rng.normal(3, 10, 50), rng.normal(0, 5, 50), rng.random(50) < 0.1]) for _ in range(4)]
    stats = ink.offset_stats(seqs)
    moves = np.concatenate([s[1:, :2] for s in seqs])
    assert stats.std_x == pytest.approx(moves[:, 0].std())
    assert stats.mean_x == pytest.approx(moves[:, 0].mean())
    norm = ink.normalise(seqs[0], stats)
    assert norm[:, 2].tolist() == seqs[0][:, 2].tolist()  # pen state untouched
    np.testing.assert_allclose(ink.denormalise(norm, stats), seqs[0], rtol=1e-5, atol=1e-4)


def test_stats_need_moves():
    with pytest.raises(ValueError):
        ink.offset_stats([np.zeros((1, 3))])


def test_reject_corrupt_removes_spike_and_splits_jump():
    stroke = np.array([[0, 0], [10, 0], [500, 500], [20, 0], [30, 0], [900, 0], [910, 0]], dtype=float)
    cleaned, report = ink.reject_corrupt([stroke], max_step=200)
    assert report.spikes_removed == 1  # (500, 500): far from both neighbours, which are close together
    assert report.strokes_split == 1  # 30 -> 900: a missed pen lift
    assert [s[:, 0].tolist() for s in cleaned] == [[0, 10, 20, 30], [900, 910]]
    # no point moved
    assert all(p in stroke.tolist() for s in cleaned for p in s.tolist())


def test_reject_corrupt_leaves_clean_ink_alone():
    stroke = np.cumsum(np.full((20, 2), 15.0), axis=0)
    cleaned, report = ink.reject_corrupt([stroke, stroke[:1]], max_step=200)
    assert report.spikes_removed == report.strokes_split == 0
    np.testing.assert_array_equal(cleaned[0], stroke)
    assert len(cleaned) == 2


def test_remove_jitter_keeps_ends_and_dots():
    stroke = np.array([[0, 0], [1, 0], [0, 1], [10, 0], [11, 0], [20, 0]], dtype=float)
    out = ink.remove_jitter([stroke, np.array([[5.0, 5.0]])], min_step=5)
    assert out[0].tolist() == [[0, 0], [10, 0], [20, 0]]
    assert out[1].tolist() == [[5, 5]]


def test_resample_spacing():
    stroke = np.array([[0, 0], [100, 0]], dtype=float)
    (out,) = ink.resample([stroke], step=10)
    assert len(out) == 11
    np.testing.assert_allclose(np.diff(out[:, 0]), 10)
    assert ink.resample([np.array([[3.0, 4.0]])], 10)[0].tolist() == [[3, 4]]


def test_smooth_keeps_end_points():
    rng = np.random.default_rng(0)
    stroke = rng.normal(size=(30, 2))
    (sm,) = ink.smooth([stroke], 5)
    assert sm.shape == stroke.shape
    np.testing.assert_array_equal(sm[[0, -1]], stroke[[0, -1]])
    assert np.abs(np.diff(sm, axis=0)).mean() < np.abs(np.diff(stroke, axis=0)).mean()


def test_median_step_and_bbox():
    strokes = [np.array([[0, 0], [3, 4], [3, 4], [6, 8]])]
    assert ink.median_step(strokes) == 5
    assert ink.bounding_box(strokes) == (0, 0, 6, 8)
