import json
import subprocess
import sys
from types import SimpleNamespace
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import fake_line, line_xml
from writemate import api, cli, ink, loading
from writemate.errors import WritemateError


def run(*args, stdin=None):
    """The real console entry point in a subprocess: exit code, stdout, stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "writemate", *map(str, args)], input=stdin, capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_write_svg_png_json(tiny_writer_dir, tmp_path):
    for name in ("a.svg", "a.png", "a.json"):
        out = tmp_path / name
        assert cli.main(["write", "Hi there\n\nbye", "-o", str(out), "--model", str(tiny_writer_dir), "--seed", "2"]) == 0
        assert out.stat().st_size > 100
    svg = ET.parse(tmp_path / "a.svg").getroot()
    assert svg.tag.endswith("svg")
    doc = json.loads((tmp_path / "a.json").read_text())
    assert [line["text"] for line in doc["lines"]] == ["Hi there", "", "bye"]
    assert doc["lines"][1]["strokes"] == []


def test_backslash_n_in_an_argument_breaks_the_line(tiny_writer_dir, tmp_path):
    out = tmp_path / "a.json"
    assert cli.main(["write", "Dear Ada,\\nthank you", "-o", str(out), "--model", str(tiny_writer_dir)]) == 0
    assert [line["text"] for line in json.loads(out.read_text())["lines"]] == ["Dear Ada,", "thank you"]


def test_same_seed_same_handwriting(tiny_writer_dir):
    writer = loading.load(tiny_writer_dir)
    a = writer.write("abc def", seed=5, bias=0.5)
    b = writer.write("abc def", seed=5, bias=0.5)
    c = writer.write("abc def", seed=6, bias=0.5)
    assert a.to_svg() == b.to_svg() != c.to_svg()


def test_styles_and_priming(tiny_writer_dir, tmp_path):
    writer = loading.load(tiny_writer_dir)
    assert [s.id for s in writer.styles] == [0, 1]
    assert writer.write("ab", style=1).meta["style"] == 1
    prime = tmp_path / "mine.xml"
    prime.write_bytes(line_xml(fake_line(np.random.default_rng(0), 4)))
    out = tmp_path / "primed.svg"
    code = cli.main(["write", "new words", "-o", str(out), "--model", str(tiny_writer_dir), "--prime", str(prime), "--prime-text", "abcd"])
    assert code == 0 and out.exists()
    # a Writemate JSON line primes too
    page = writer.write("xy")
    (tmp_path / "line.json").write_text(page.to_json())
    strokes = api.read_prime_file(tmp_path / "line.json")
    assert writer.write("more", prime_strokes=strokes, prime_text="xy").lines


def test_bad_characters_exit_2_and_write_nothing(tiny_writer_dir, tmp_path, capsys):
    out = tmp_path / "x.svg"
    assert cli.main(["write", "naïve ½", "-o", str(out), "--model", str(tiny_writer_dir)]) == 2
    err = capsys.readouterr().err
    assert "'ï'" in err and "position 3" in err and "'½'" in err and "position 7" in err
    assert "--replace-unknown" in err
    assert not out.exists()
    assert cli.main(["write", "naïve “quote”", "-o", str(out), "--model", str(tiny_writer_dir), "--replace-unknown"]) == 0
    assert out.exists()


@pytest.mark.skipif("fsdd" not in loading.bundled(), reason="needs a bundled model of another family")
@pytest.mark.parametrize(
    "argv",
    [
        ["write", "hi", "-o", "{tmp}/x.svg", "--model", "fsdd"],
        ["styles", "--model", "fsdd"],
        ["evaluate", "synthesis", "--data", "{tmp}", "--model", "fsdd"],
    ],
)
def test_a_model_of_another_family_is_a_clear_error(tmp_path, capsys, argv):
    assert cli.main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert "'fsdd' is a classifier model, not a synthesis model" in capsys.readouterr().err
    assert not (tmp_path / "x.svg").exists()



@pytest.mark.parametrize(
    "args, message",
    [
        (["   "], "empty"),
        (["hi", "--style", "9"], "no style 9"),
        (["hi", "--prime-text", "x"], "--prime-text goes with --prime"),
        (["hi", "--prime", "missing.xml", "--prime-text", "x"], "cannot read"),
        (["hi", "--color", "notacolour"], "--color"),
        (["hi", "--seed", "-1"], "--seed: must be 0 or more"),
        (["hi", "--smooth", "-2"], "--smooth: must be 0 or more"),
        (["hi", "--bias", "nan"], "bias must be a number of 0 or more"),
        (["hi", "--bias", "-0.5"], "bias must be a number of 0 or more"),
    ],
)
def test_bad_requests_exit_2(tiny_writer_dir, tmp_path, capsys, args, message):
    out = tmp_path / "x.svg"
    code = cli.main(["write", *args, "-o", str(out), "--model", str(tiny_writer_dir)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("options", [{"seed": -1}, {"seed": 1.5}, {"bias": float("inf")}, {"bias": -1.0}])
def test_api_rejects_bad_seed_and_bias(tiny_writer_dir, options):
    with pytest.raises(WritemateError, match="must be"):
        loading.load(tiny_writer_dir).write("hi", **options)


def test_long_text_reports_progress_per_batch(tiny_writer_dir, monkeypatch):
    monkeypatch.setattr(api, "MAX_LINES_PER_BATCH", 2)
    done = []
    page = loading.load(tiny_writer_dir).write("a\nb\n\nc\nd\ne", progress=done.append)
    assert done == [2, 2, 1]  # five written lines in batches of two; the blank line is not sampled
    assert len(page.texts) == 6


def test_unwritable_output_fails_before_sampling_and_keeps_old_file(tiny_writer_dir, tmp_path, capsys):
    assert cli.main(["write", "hi", "-o", str(tmp_path / "no" / "such" / "x.svg"), "--model", str(tiny_writer_dir)]) == 2
    assert "does not exist" in capsys.readouterr().err
    existing = tmp_path / "keep.svg"
    existing.write_text("precious")
    assert cli.main(["write", "bad ½", "-o", str(existing), "--model", str(tiny_writer_dir)]) == 2
    assert existing.read_text() == "precious"


def test_stdin_long_text_wraps(tiny_writer_dir, tmp_path):
    out = tmp_path / "long.json"
    text = "word " * 60
    code, _, err = run("write", "-", "-o", out, "--model", tiny_writer_dir, "--width", "20", stdin=text)
    assert code == 0, err
    lines = json.loads(out.read_text())["lines"]
    assert len(lines) >= 15 and all(len(line["text"]) <= 20 for line in lines)


def test_unknown_model_is_a_clear_error(tmp_path):
    code, _, err = run("write", "hi", "-o", tmp_path / "x.svg", "--model", tmp_path / "nothing")
    assert code == 2 and "neither a bundled model" in err and "Traceback" not in err


def test_styles_command(tiny_writer_dir, tmp_path, capsys):
    assert cli.main(["styles", "--model", str(tiny_writer_dir), "--preview", str(tmp_path / "p.png")]) == 0
    assert "test 1" in capsys.readouterr().out
    assert (tmp_path / "p.png").exists()
    assert cli.main(["styles", "--model", str(tiny_writer_dir), "--preview", str(tmp_path / "p.txt")]) == 2
    assert "ending in .png" in capsys.readouterr().err and not (tmp_path / "p.txt").exists()


def test_evaluate_endings_json(iam_dir, tiny_writer_dir, capsys):
    args = ["evaluate", "endings", "--data", iam_dir, "--model", tiny_writer_dir, "--split", "all", "--limit", "4"]
    assert cli.main([*map(str, args), "--bias", "0", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["lines"] == 4 and [row["bias"] for row in result["biases"]] == [0, 2]
    for row in result["biases"]:
        assert len(row["lost"]) == round((1 - row["ended"]) * 4)
        assert all(line["text"].startswith("Line ") for line in row["lost"])
    assert cli.main(list(map(str, args))) == 0
    assert "of lines end before the step cap" in capsys.readouterr().out
    assert cli.main([*map(str, args), "--bias", "-1"]) == 2
    assert "bias" in capsys.readouterr().err


def points(line):
    return sum(len(stroke) for stroke in line)


class ReadsEvenLines:
    """A stand-in recognizer: reads a line as ``text`` when it has an even number of points, else as nothing."""

    def __init__(self, text):
        self.text = text
        self.lines_read = 0

    def read_lines(self, lines, beam=None):
        self.lines_read += len(lines)
        return [SimpleNamespace(text=self.text if points(line) % 2 == 0 else "") for line in lines]


def test_check_rewrites_the_lines_the_recognizer_misreads(tiny_writer_dir):
    writer = loading.load(tiny_writer_dir)
    assert not writer.bundled and writer.checker is None  # a model of one's own is checked only when given a recognizer
    text = "\n".join(["hello"] * 6)
    plain = writer.write(text, seed=3, check=False)
    writer.checker = ReadsEvenLines("hello")
    checked = writer.write(text, seed=3, check=True)
    assert any(points(line) % 2 for line in plain.lines)  # some lines the check would not keep
    assert sum(points(line) % 2 == 0 for line in checked.lines) > sum(points(line) % 2 == 0 for line in plain.lines)
    assert 6 <= writer.checker.lines_read <= 6 * api.CANDIDATES * (1 + api.RETRIES)
    writer.checker.lines_read = 0
    writer.write(text, seed=3, check=False)
    assert writer.checker.lines_read == 0


def test_low_bias_writes_more_candidates_and_keeps_only_better_read_lines(tiny_writer_dir):
    writer = loading.load(tiny_writer_dir)
    writer.checker = ReadsEvenLines("hellx")  # CER 0.2 or 1: good enough at bias 0.75, never at bias 0
    text = "\n".join(["hello"] * 6)
    writer.write(text, seed=3, bias=0.75, check=True)
    assert writer.checker.lines_read <= 6 * api.CANDIDATES  # the first candidate read as "hellx" is kept
    writer.checker.lines_read = 0
    writer.write(text, seed=3, bias=0, check=True)
    assert api.LOW_BIAS_MAX_CER < 0.2 and api.LOW_BIAS_CANDIDATES > api.CANDIDATES
    assert writer.checker.lines_read == 6 * api.LOW_BIAS_CANDIDATES * (1 + api.RETRIES)  # none kept: all written


def test_judge_counts_a_false_start_as_misread(tiny_writer_dir):
    writer = loading.load(tiny_writer_dir)
    judge = writer.judge(SimpleNamespace(read_lines=lambda lines, beam=None: [SimpleNamespace(text="hello there")] * len(lines)))
    xs = np.linspace(400, 1100, 40)
    line = [np.column_stack([xs, 100 * (np.arange(40) % 2)])]
    dot = np.array([[0.0, 50], [5, 52], [3, 55]])
    offsets = [ink.normalise(ink.strokes_to_offsets(strokes), writer.stats) for strokes in (line, [dot, *line])]
    errors, misread = judge(["hello there"] * 2, offsets)
    np.testing.assert_allclose(errors, [0, api.STRAY_MARK_ERROR])
    assert misread.tolist() == [-1, 0]  # written again from its first word
    assert api.STRAY_MARK_ERROR > max(api.MAX_LINE_CER, api.LOW_BIAS_MAX_CER)  # such a line is never kept while another reads


def test_check_with_a_real_recognizer(tiny_writer_dir, tiny_recognizer_dir):
    from writemate.recognize import Recognizer

    writer = loading.load(tiny_writer_dir)
    writer.checker = Recognizer.from_folder(tiny_recognizer_dir)
    page = writer.write("one line\nand another", seed=1, check=True)
    assert len(page.lines) == 2 and all(page.lines)


def test_write_check_option(tiny_writer_dir, tmp_path):
    out = tmp_path / "a.svg"
    assert cli.main(["write", "Hi there", "-o", str(out), "--model", str(tiny_writer_dir), "--check"]) == 0
    assert out.stat().st_size > 100
    out.unlink()
    assert cli.main(["write", "Hi there", "-o", str(out), "--model", str(tiny_writer_dir), "--no-check"]) == 0
    assert out.stat().st_size > 100


def test_live_lines_show_one_copy_per_line_and_switch_when_it_fails():
    from writemate.models.synthesis import Progress

    stats = ink.OffsetStats(0.0, 0.0, 1.0, 1.0)
    shown = []
    live = api.LiveLines([5], stats, lambda line, points, restart: shown.append((line, points, restart)), every=0)
    written = np.zeros((3, 20, 3), dtype=np.float32)
    written[:, 1:, 0] = api.render.UNITS_PER_MM * np.arange(1, 4)[:, None]  # row r moves r + 1 mm a point
    ages = np.zeros(3, dtype=np.int64)
    accepted = np.zeros(3, dtype=bool)

    def step(active, texts=np.zeros(3, dtype=np.int64)):
        ages[active] += 1
        live(Progress(np.asarray(active), texts, accepted, ages, written, primed=False))

    step([0, 1])
    step([0, 1])
    assert [(line, restart) for line, _, restart in shown] == [(5, False), (5, False)]
    np.testing.assert_allclose(np.concatenate([p for _, p, _ in shown])[:, 0], [0, 1, 2])  # row 0 from its first point
    shown.clear()
    step([1])  # row 0 ended without being accepted: row 1 from its start
    assert shown[0][2] and len(shown) == 1
    np.testing.assert_allclose(shown[0][1][:, 0], [0, 2, 4, 6])
    shown.clear()
    accepted[1] = True
    step([2])  # row 1 accepted: it stays, whatever else writes
    assert shown == []


def test_live_lines_send_at_most_one_update_a_period_and_the_last_at_once():
    from writemate.models.synthesis import Progress

    shown = []
    live = api.LiveLines([0], ink.OffsetStats(0.0, 0.0, 1.0, 1.0), lambda *update: shown.append(update), every=3600)
    written = np.ones((1, 10, 3), dtype=np.float32)
    ages = np.zeros(1, dtype=np.int64)
    for active in ([0], [0], [0], [0], []):  # a primed line: no point yet, three steps, then it ends
        live(Progress(np.asarray(active, dtype=np.int64), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=bool), ages, written, primed=True))
        ages[:] += 1
    # nothing to show before the first step; its point at once, the next two when the line ended
    assert [len(points) for _, points, _ in shown] == [1, 3]


def test_a_prepared_write_starts_from_the_reading_done_ahead(tiny_writer_dir, monkeypatch):
    fresh = api.Writer.from_folder(tiny_writer_dir).write("Hello there", style=1, seed=3, check=False)
    writer = api.Writer.from_folder(tiny_writer_dir)
    reads = []
    real = api.line_starts
    monkeypatch.setattr(api, "line_starts", lambda model, texts, prime=None, going_on=None: reads.append(texts) or real(model, texts, prime, going_on))
    assert writer.prepare(*writer.plan("Hello there", style=1))
    assert not writer.prepare(*writer.plan("Hello there"))  # the default hand reads no primed line
    page = writer.write("Hello there", style=1, seed=3, check=False)
    assert len(reads) == 1  # the write started from the prepared reading
    for ours, theirs in zip(page.lines, fresh.lines):
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)
    writer.write("Hello there", style=1, seed=4, bias=0.2, check=False)  # another seed and bias: the same reading
    assert len(reads) == 1
    writer.write("Hello you", style=1, check=False)
    assert len(reads) == 2
    assert not writer.prepare(*writer.plan("Hello again", style=1), going_on=lambda: False)  # stopped: nothing kept
