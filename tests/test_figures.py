import io

import numpy as np
import pytest
import torch
from PIL import Image

from writemate import cli, figures, loading
from writemate.errors import WritemateError
from writemate.models.synthesis import sample


@pytest.fixture
def no_bundled_models(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "WEIGHTS_DIR", tmp_path / "no-weights")


def mixture_outputs(pi, mu, sigma, rho, eos=0.0) -> torch.Tensor:
    """Raw outputs (1 + 6M,) giving exactly these mixture parameters (normalised units)."""
    pi, mu, sigma, rho = (np.asarray(v, dtype=np.float64) for v in (pi, mu, sigma, rho))
    return torch.tensor(
        np.concatenate([[eos], np.log(pi), mu.ravel(), np.log(sigma).ravel(), np.arctanh(rho / 0.9999)]),
        dtype=torch.float32,
    )


def test_density_map_is_the_mixture_placed_at_the_pen():
    """One step: the map holds probability 1, centred where the mixture says, with its covariance."""
    scale = np.array([40.0, 37.0])
    pi, mu, sigma, rho = [0.3, 0.7], [[3.0, 2.0], [4.0, 5.0]], [[0.5, 0.3], [0.4, 0.6]], [0.5, -0.3]
    y = mixture_outputs(pi, mu, sigma, rho).unsqueeze(0)  # (1, 1 + 6M): one step
    reading = figures.Reading("test", y, scale, nll=0.0)
    points = np.array([[100.0, 50.0], [400.0, 350.0]])  # the step is at the first point; the second widens the page
    cell = 1.0
    image, (left, right, bottom, top) = figures.density_map(reading, points, cell)
    assert image.sum() * cell**2 == pytest.approx(1.0, abs=2e-3)
    ys, xs = np.mgrid[top + cell / 2 : bottom : cell, left + cell / 2 : right : cell][:, : image.shape[0], : image.shape[1]]
    weights = image / image.sum()
    mean = np.array([(weights * xs).sum(), (weights * ys).sum()])
    expected_means = points[0] + np.asarray(mu) * scale  # (M, 2)
    np.testing.assert_allclose(mean, (np.asarray(pi)[:, None] * expected_means).sum(0), rtol=0, atol=0.5)
    cov_xy = (weights * (xs - mean[0]) * (ys - mean[1])).sum()
    s = np.asarray(sigma) * scale
    expected_cov = sum(
        p * (r * sx * sy + (m[0] - mean[0]) * (m[1] - mean[1])) for p, r, (sx, sy), m in zip(pi, rho, s, expected_means)
    )
    assert cov_xy == pytest.approx(expected_cov, rel=0.02)


def test_density_map_keeps_the_mass_of_components_narrower_than_a_cell():
    y = mixture_outputs([1.0], [[1.0, 1.0]], [[1e-3, 1e-3]], [0.0]).unsqueeze(0)
    reading = figures.Reading("test", y, np.array([40.0, 37.0]), nll=0.0)
    image, _ = figures.density_map(reading, np.array([[0.0, 0.0], [200.0, 100.0]]), cell=5.0)
    assert image.sum() * 25 == pytest.approx(1.0, abs=0.01)  # without widening: 0, or far above 1


def test_trace_is_a_real_pass_over_the_written_line(tiny_writer_dir, tiny_prediction_dir):
    """The window read back with teacher forcing is the window the network had while writing."""
    writer, scribbler = loading.load(tiny_writer_dir), loading.load(tiny_prediction_dir)
    tr = figures.trace(writer, "hi you", scribbler, bias=0.5, seed=2)
    lines, phis = sample(writer.model, ["hi you"], bias=0.5, seed=2, return_phi=True)
    np.testing.assert_allclose(tr.offsets, lines[0] * np.r_[writer.stats.scale, 1], rtol=1e-6)
    np.testing.assert_allclose(tr.phi, phis[0], rtol=1e-4, atol=1e-6)
    assert tr.phi.shape == (len(tr.offsets) - 1, 6)
    for reading in (tr.synthesis, tr.prediction):
        assert reading.y.shape[0] == len(tr.offsets) - 1
        assert ((reading.eos >= 0) & (reading.eos <= 1)).all() and np.isfinite(reading.nll)
    assert tr.synthesis.network == "synthesis network" and tr.prediction.network == "prediction network"


def test_explain_figure_panels(tiny_writer_dir, tiny_prediction_dir):
    writer, scribbler = loading.load(tiny_writer_dir), loading.load(tiny_prediction_dir)
    fig = figures.explain(writer, "a b", scribbler, seed=1)
    window, line, density, eos = [ax for ax in fig.axes if ax.get_title()]
    assert [t.get_text() for t in window.get_yticklabels()] == ["a", figures.SPACE, "b"]
    assert "time step" in window.get_xlabel() and "character" in window.get_ylabel()
    assert "prediction network" in density.get_title()
    assert len(eos.get_lines()) == 2 and eos.get_ylabel() == "P(pen lifts)"
    assert line.get_xlabel() == "x (whiteboard units)"
    fallback = figures.explain(writer, "a b", None, seed=1)
    density = [ax for ax in fallback.axes if ax.get_title()][2]
    assert "synthesis network's own mixture" in density.get_title()
    with pytest.raises(WritemateError, match="at most 80"):
        figures.explain(writer, "x" * 81)


def test_explain_command_writes_a_png(tiny_writer_dir, tiny_prediction_dir, tmp_path, capsys, no_bundled_models):
    out = tmp_path / "fig.png"
    args = ["explain", "hello", "-o", str(out), "--model", str(tiny_writer_dir), "--dpi", "60"]
    assert cli.main([*args, "--prediction-model", str(tiny_prediction_dir)]) == 0
    width, height = Image.open(io.BytesIO(out.read_bytes())).size
    assert width > 500 and height > 400
    out.unlink()
    assert cli.main(args) == 0  # no prediction model installed: falls back, and says so
    assert out.exists() and "synthesis network's own mixture" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["naïve", "-o", "OUT.png"], "'ï'"),
        (["   ", "-o", "OUT.png"], "empty"),
        (["x" * 81, "-o", "OUT.png"], "at most 80 characters"),
        (["hi", "-o", "OUT.jpg"], "must end in .png"),
        (["hi", "-o", "OUT.png", "--bias", "-1"], "bias"),
        (["hi", "-o", "OUT.png", "--prediction-model", "SYNTH"], "is a synthesis model, not a prediction model"),
        (["hi", "-o", "OUT.png", "--model", "synthesis"], "bundled synthesis model is not installed"),
    ],
)
def test_explain_bad_requests_exit_2(args, message, tiny_writer_dir, tmp_path, capsys, no_bundled_models):
    args = [a.replace("OUT", str(tmp_path / "out")).replace("SYNTH", str(tiny_writer_dir)) for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny_writer_dir)]
    assert cli.main(["explain", *args]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("out*"))
