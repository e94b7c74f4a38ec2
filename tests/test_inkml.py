"""The InkML reader and writer: round trips, the trace grammar, references and bad input."""

from pathlib import Path

import numpy as np
import pytest

from writemate.data import inkml

UNIPEN = Path(__file__).resolve().parents[2] / "shared" / "data" / "unipen"


def _strokes(rng, n):
    return [rng.integers(0, 500, size=(rng.integers(1, 20), 2)).astype(float) for _ in range(n)]


def test_round_trip_keeps_samples_annotations_and_points():
    rng = np.random.default_rng(0)
    samples = [("a", _strokes(rng, 2)), ("<&>", _strokes(rng, 1)), ("b", _strokes(rng, 3))]
    doc = inkml.document_from_samples(samples, {"writer": "lab:jane", "category": "lowercase"}, integer=True)
    again = inkml.read_inkml(inkml.write_inkml(doc))
    assert again.annotations == {"writer": "lab:jane", "category": "lowercase"}
    assert [c.name for c in again.channels] == ["X", "Y"] and again.channels[0].type == "integer"
    read = again.samples()
    assert [s.label for s in read] == ["a", "<&>", "b"]
    for (_, strokes), sample in zip(samples, read):
        assert sample.writer == "lab:jane"
        assert len(sample.strokes) == len(strokes)
        for a, b in zip(strokes, sample.strokes):
            np.testing.assert_array_equal(a, b)
    assert inkml.write_inkml(again) == inkml.write_inkml(doc)


def test_round_trip_of_decimals_unknown_values_and_intermittent_channels(tmp_path):
    doc = inkml.InkDocument(
        channels=[inkml.Channel("X"), inkml.Channel("Y"), inkml.Channel("F", intermittent=True)],
        traces={"s1": inkml.Trace("s1", np.array([[0.125, -3.5, 0.25], [1e-7, 2.0, np.nan]]), ("X", "Y", "F"))},
        groups=[inkml.TraceGroup("g", {"truth": "x"}, ["s1"])],
    )
    path = tmp_path / "doc.inkml"
    inkml.write_inkml(doc, path)
    again = inkml.read_inkml(path)
    assert again.channels[2].intermittent
    np.testing.assert_array_equal(again.traces["s1"].points, doc.traces["s1"].points)
    assert again.samples()[0].strokes[0].tolist() == [[0.125, -3.5], [1e-7, 2.0]]


def test_difference_encoding_booleans_and_omitted_channels():
    # the InkML example: explicit, then first differences, then second differences (which stay in force)
    points = inkml.parse_trace_data("1125 18432, '23'43, \"7\"-8, 3-5, *?", 2)
    np.testing.assert_array_equal(points[:4], [[1125, 18432], [1148, 18475], [1178, 18510], [1211, 18540]])
    assert points[4, 0] == 1211 + 33 + 3 and np.isnan(points[4, 1])  # "*" repeats the change, "?" is unknown
    values = inkml.parse_trace_data("10 20 T, 11 21, 12 22 F", 3)
    assert values[0, 2] == 1 and np.isnan(values[1, 2]) and values[2, 2] == 0


def test_views_groups_without_namespace_and_whole_document_samples():
    data = b"""<ink>
      <definitions><traceFormat xml:id="f"><channel name="Y"/><channel name="X"/></traceFormat></definitions>
      <context xml:id="c" traceFormatRef="#f"/>
      <annotation type="truth">x+1</annotation>
      <trace xml:id="a" contextRef="#c">1 2, 3 4</trace>
      <trace>5 6</trace>
      <traceGroup xml:id="outer">
        <traceGroup xml:id="inner"><annotation type="truth">x</annotation><traceView traceDataRef="#a"/></traceGroup>
        <traceGroup><annotation type="truth">1</annotation><traceView traceDataRef="_t1"/></traceGroup>
        <traceGroup><annotation type="truth">x again</annotation><traceView traceDataRef="inner"/></traceGroup>
      </traceGroup>
    </ink>"""
    doc = inkml.read_inkml(data)
    assert doc.traces["a"].channels == ("Y", "X")
    assert doc.traces["a"].xy().tolist() == [[2, 1], [4, 3]]
    samples = doc.samples()
    assert [s.label for s in samples] == ["x", "1", "x again"]
    assert samples[2].strokes[0].tolist() == samples[0].strokes[0].tolist()
    whole = inkml.read_inkml(
        b"<ink><annotation type='truth'>hi</annotation><trace>1 2, 3 4</trace><trace>5 6</trace></ink>"
    )
    assert [(s.label, len(s.strokes)) for s in whole.samples()] == [("hi", 2)]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"<ink><trace>1 2</ink>", "not well-formed"),
        (b"<svg/>", "not <ink>"),
        (b"<ink><traceGroup><traceView traceDataRef='#nope'/></traceGroup></ink>", "unknown trace 'nope'"),
        (b"<ink><trace>1 2 3</trace></ink>", "more values"),
        (b"<ink><trace>1 2 3, 4</trace></ink>", "more values"),
        (b"<ink><trace>1 2, x y</trace></ink>", "unreadable trace data"),
        (b"<ink><trace xml:id='t'>1 2</trace><trace xml:id='t'>3 4</trace></ink>", "two traces"),
        (b"<ink><trace contextRef='#c'>1 2</trace></ink>", "unknown context"),
        (
            b'<?xml version="1.0"?><!DOCTYPE ink [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><ink>&b;</ink>',
            "not well-formed",
        ),
    ],
)
def test_bad_input_raises_one_clear_error(data, message):
    with pytest.raises(inkml.InkMLError, match=message):
        inkml.read_inkml(data)


def test_missing_file_is_an_inkml_error(tmp_path):
    with pytest.raises(inkml.InkMLError, match="cannot read"):
        inkml.read_inkml(tmp_path / "missing.inkml")


@pytest.mark.skipif(not UNIPEN.is_dir(), reason="UNIPEN InkML data not found in ../shared/data/unipen")
def test_reads_unipen_files():
    path = sorted((UNIPEN / "digits").glob("*.inkml"))[0]
    doc = inkml.read_inkml(path)
    text = path.read_text()
    samples = doc.samples()
    assert len(samples) == text.count('type="truth"') > 0
    assert all(s.label.isdigit() and s.writer == doc.annotations["writer"] for s in samples)
    assert doc.annotations["category"] == "digits"
    again = inkml.read_inkml(inkml.write_inkml(doc))
    assert [s.label for s in again.samples()] == [s.label for s in samples]
