"""tools/export_model.py: the gate that keeps worse synthesis weights out of the package."""

import functools
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from conftest import iam_with_validation, make_tiny_writer_folder

from writemate import api, loading

TOOL = Path(__file__).resolve().parent.parent / "tools" / "export_model.py"
pytestmark = pytest.mark.skipif("recognizer" not in loading.bundled(), reason="the gate reads with the bundled recognizer")


def run_tool(monkeypatch, *args) -> None:
    spec = importlib.util.spec_from_file_location("export_model", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(sys, "argv", ["export_model.py", *map(str, args)])
    tool.main()


def test_synthesis_export_needs_the_candidates_own_styles(tmp_path, monkeypatch, capsys):
    data = iam_with_validation(tmp_path)
    bundled = make_tiny_writer_folder(tmp_path / "bundled", seed=0)
    candidate = make_tiny_writer_folder(tmp_path / "candidate", seed=1)
    (candidate / "styles.json").unlink()
    before = (bundled / "model.safetensors").read_bytes()

    with pytest.raises(SystemExit, match="has no styles.json; make its styles first"):
        run_tool(monkeypatch, candidate, bundled, "--data", data)
    assert (bundled / "model.safetensors").read_bytes() == before  # a refusal leaves the bundle alone


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
