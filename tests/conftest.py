"""Fixtures the tests make themselves: tiny models and a tiny IAM-OnDB-shaped dataset."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from writemate.models.recognizer import RecognizerConfig

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(name: str) -> Path:
    """Path to a shared dataset, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"needs the {name} dataset at {path} (not present)")
    return path


def line_xml(strokes: list[np.ndarray]) -> bytes:
    """An IAM-OnDB line file holding ``strokes``."""
    out = ['<?xml version="1.0" encoding="ISO-8859-1"?>', "<WhiteboardCaptureSession>", "  <StrokeSet>"]
    t = 100.0
    for s in strokes:
        out.append('    <Stroke colour="black">')
        for x, y in s:
            out.append(f'      <Point x="{int(x)}" y="{int(y)}" time="{t:.2f}"/>')
            t += 0.01
        out.append("    </Stroke>")
    out += ["  </StrokeSet>", "</WhiteboardCaptureSession>"]
    return "\n".join(out).encode("latin-1")


def fake_line(rng: np.random.Generator, chars: int) -> list[np.ndarray]:
    """Pen-like strokes: one loop-ish stroke per character, written left to right."""
    strokes = []
    for c in range(chars):
        t = np.linspace(0, 2 * np.pi, int(rng.integers(8, 14)))
        x = 1000 + c * 180 + 60 * np.cos(t) + rng.normal(0, 2, len(t))
        y = 1500 + 120 * np.sin(t) + rng.normal(0, 2, len(t))
        strokes.append(np.column_stack([x, y]).round())
    return strokes


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="session")
def iam_dir(tmp_path_factory) -> Path:
    """Tiny copies of the two official archives: 6 forms, 3 lines each, one line untranscribed."""
    root = tmp_path_factory.mktemp("iam")
    rng = np.random.default_rng(0)
    texts = {}
    with tarfile.open(root / "lineStrokes-all.tar.gz", "w:gz") as strokes_tar:
        for f in range(6):
            form = f"a0{f % 3 + 1}-00{f}{'uxyz'[f % 4]}"
            lines = [f"Line {n} of form {f} ," for n in range(1, 4)]
            texts[form] = lines
            folder = f"lineStrokes/{form[:3]}/{form[:-1]}"
            for n in range(1, 5):  # line 4 has no transcription
                _add(strokes_tar, f"{folder}/{form}-{n:02d}.xml", line_xml(fake_line(rng, 6)))
    with tarfile.open(root / "ascii-all.tar.gz", "w:gz") as ascii_tar:
        for form, lines in texts.items():
            body = "OCR:\n\nsomething else\n\nCSR:\n\n" + "\n".join(lines) + "\n"
            _add(ascii_tar, f"ascii/{form[:3]}/{form[:-1]}/{form}.txt", body.encode("latin-1"))
    return root


def make_tiny_writer_folder(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised tiny synthesis model saved like a bundled one, with two styles."""
    from writemate import checkpoint
    from writemate.models.synthesis import Synthesis, SynthesisConfig

    torch.manual_seed(seed)
    config = SynthesisConfig(hidden=16, layers=2, window_mixtures=2, mixtures=3)
    model = Synthesis(config)
    stats = {"mean_x": 8.0, "mean_y": 0.0, "std_x": 40.0, "std_y": 37.0}
    checkpoint.save_model(folder, model, "synthesis", {"model": config.to_dict(), "stats": stats})
    rng = np.random.default_rng(seed)
    styles = []
    for i in range(2):
        offsets = np.column_stack([rng.normal(0.2, 1, 40), rng.normal(0, 1, 40), (np.arange(40) % 10 == 9)])
        offsets[0, :2] = 0
        styles.append({"id": i, "name": f"test {i}", "text": "abc", "offsets": offsets.round(4).tolist(), "bias": 0.5})
    (folder / "styles.json").write_text(json.dumps(styles))
    return folder


@pytest.fixture
def tiny_writer_dir(tmp_path) -> Path:
    return make_tiny_writer_folder(tmp_path / "tiny-synthesis")


def make_tiny_prediction_folder(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised tiny prediction model saved like a bundled one."""
    from writemate import checkpoint
    from writemate.models.prediction import FAMILY, Prediction, PredictionConfig

    torch.manual_seed(seed)
    config = PredictionConfig(hidden=16, layers=2, mixtures=3)
    stats = {"mean_x": 8.0, "mean_y": 0.0, "std_x": 40.0, "std_y": 37.0}
    checkpoint.save_model(folder, Prediction(config), FAMILY, {"model": config.to_dict(), "stats": stats})
    return folder


@pytest.fixture
def tiny_prediction_dir(tmp_path) -> Path:
    return make_tiny_prediction_folder(tmp_path / "tiny-prediction")


def iam_with_validation(root: Path) -> Path:
    """IAM-OnDB-shaped archives with 4 training and 2 validation forms (text groups b01-010, b02-002)."""
    from writemate.data import iam_ondb

    rng = np.random.default_rng(1)
    forms = ["a01-000u", "a02-001x", "a03-002y", "a04-003z", "b01-010a", "b02-002b"]
    with tarfile.open(root / "lineStrokes-all.tar.gz", "w:gz") as tar:
        for form in forms:
            for n in (1, 2):
                _add(tar, f"lineStrokes/{form[:3]}/{form[:-1]}/{form}-{n:02d}.xml", line_xml(fake_line(rng, 4)))
    with tarfile.open(root / "ascii-all.tar.gz", "w:gz") as tar:
        for form in forms:
            _add(tar, f"ascii/{form[:3]}/{form[:-1]}/{form}.txt", f"CSR:\n\nfirst of {form}\nsecond\n".encode())
    assert [iam_ondb.is_validation(f + "-01") for f in forms] == [False] * 4 + [True] * 2
    return root


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread (more only add overhead, badly so on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit_steps(task, model: torch.nn.Module, batch, steps: int, lr: float = 1e-2) -> list[float]:
    """Plain Adam steps on one batch of ``task.loss``; the loss per unit before each step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        result = task.loss(model, batch)
        loss = result.nats / result.units
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return losses


TINY_RECOGNIZER = RecognizerConfig(hidden=8, layers=2, subsample=2, dropout=0.0)


def make_tiny_recognizer_folder(folder, seed=0, with_lm=False):
    """A randomly initialised tiny recognizer; its outputs are made peaky, as a trained network's are."""
    from writemate import checkpoint
    from writemate.models import recognizer as rec
    from writemate.models.language import LanguageModel, LanguageModelConfig
    from writemate.recognize import DecodingConfig

    torch.manual_seed(seed)
    model = rec.RecognitionNetwork(TINY_RECOGNIZER)
    with torch.no_grad():
        model.output.weight.mul_(30)
    config = {"model": TINY_RECOGNIZER.to_dict(), "decoding": DecodingConfig(beam=4).to_dict()}
    checkpoint.save_model(folder, model, rec.FAMILY, config)
    if with_lm:
        symbols = ["\ufffd", "\n", " "] + list("abcdefghijklmnopqrstuvwxyz")
        lm_config = LanguageModelConfig(vocab_size=len(symbols), embedding=4, hidden=8)
        meta = {"model": lm_config.to_dict(), "vocabulary": {"level": "char", "symbols": symbols}, "bptt": 20}
        checkpoint.save_model(folder / "lm", LanguageModel(lm_config), "language-model", meta)
    return folder


@pytest.fixture
def tiny_recognizer_dir(tmp_path):
    return make_tiny_recognizer_folder(tmp_path / "tiny-recognizer")
