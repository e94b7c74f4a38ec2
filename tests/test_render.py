import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from writemate import render
from writemate.errors import WritemateError

SVG = "{http://www.w3.org/2000/svg}"


def page_lines():
    a = [np.array([[0.0, 0.0], [100.0, 50.0], [200.0, 0.0]]), np.array([[300.0, 10.0]])]
    return render.place_lines([a, [], a], render.PageStyle())


def test_wrap_keeps_blank_lines_and_breaks_long_words():
    assert render.wrap("one two three four", 9) == ["one two", "three", "four"]
    assert render.wrap("a\n\nb\n", 10) == ["a", "", "b"]
    assert render.wrap("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    with pytest.raises(WritemateError):
        render.wrap("a", 0)


def test_svg_is_single_line_one_path_per_stroke():
    style = render.PageStyle(stroke_width=0.3, color="#112233")
    svg = render.to_svg(page_lines(), style)
    root = ET.fromstring(svg)
    assert root.get("width").endswith("mm") and root.get("height").endswith("mm")
    group = root.find(f"{SVG}g")
    assert group.get("fill") == "none" and group.get("stroke") == "#112233" and group.get("stroke-width") == "0.3"
    paths = group.findall(f"{SVG}path")
    assert len(paths) == 4  # two strokes on each of the two written lines; the blank line has none
    assert all(p.get("d").startswith("M") for p in paths)
    assert paths[1].get("d").count("L") == 1  # a dot is drawn as a zero-length segment


def test_lines_are_stacked_with_the_blank_line_kept():
    lines = page_lines()
    style = render.PageStyle()
    assert lines[1] == []
    first, third = np.concatenate(lines[0]), np.concatenate(lines[2])
    assert third[:, 1].mean() - first[:, 1].mean() == pytest.approx(2 * style.line_height)
    assert first[:, 0].min() == pytest.approx(style.margin)


def test_straighten_levels_a_sloped_line():
    x = np.linspace(0, 1000, 50)
    sloped = [np.column_stack([x, 0.2 * x + 5 * np.sin(x / 30)])]
    (flat,) = render.straighten(sloped)
    assert abs(np.polyfit(flat[:, 0], flat[:, 1], 1)[0]) < 1e-3  # from 0.2


def test_png_has_ink_and_size():
    data = render.to_png(page_lines(), render.PageStyle(color="black"), dpi=100)
    image = Image.open(io.BytesIO(data)).convert("L")
    width, height = render.page_size(page_lines(), render.PageStyle())
    assert image.size == (round(width * 100 / 25.4), round(height * 100 / 25.4))
    assert np.asarray(image).min() < 80  # dark ink on white


def test_json_round_trip():
    lines = page_lines()
    doc = render.to_json(lines, ["a", "", "a"], {"seed": 1})
    assert json.loads(doc)["seed"] == 1
    back = render.read_json(doc)
    assert [t for t, _ in back] == ["a", "", "a"]
    np.testing.assert_allclose(back[0][1][0], lines[0][0], atol=1e-3)
    with pytest.raises(WritemateError, match="not a Writemate stroke JSON"):
        render.read_json('{"lines": []}')
    with pytest.raises(WritemateError):
        render.read_json("not json")


def test_save_replaces_atomically(tmp_path):
    target = tmp_path / "out.svg"
    render.save(target, "one")
    render.save(target, b"two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.svg"]
