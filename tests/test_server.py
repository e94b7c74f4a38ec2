"""Writemate Studio's API, in-process on tiny random models (no server, no browser)."""

import json

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")
from fastapi.testclient import TestClient  # noqa: E402

from writemate import loading, server  # noqa: E402
from writemate.recognize import Recognizer  # noqa: E402


@pytest.fixture
def client(tiny_writer_dir, tiny_recognizer_dir):
    app = server.create_app(lambda: (loading.load(tiny_writer_dir), Recognizer.from_folder(tiny_recognizer_dir)))
    with TestClient(app) as c:
        yield c


def drawn_line(points=60):
    xs = np.linspace(0, 300, points)
    return [[[float(x), float(40 * np.sin(x / 20)), float(i * 8)] for i, x in enumerate(xs)]]


def events_of(response):
    return [json.loads(line) for line in response.text.splitlines()]


def test_page_styles_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    styles = client.get("/api/styles").json()
    assert [s["id"] for s in styles["styles"]] == [0, 1]
    assert styles["defaults"]["bias"] == 0.75 and styles["limits"]["max_text_chars"] == server.MAX_TEXT_CHARS
    preview = client.get("/api/styles/1/preview.svg")
    assert preview.status_code == 200 and preview.headers["content-type"].startswith("image/svg+xml")
    assert "<path" in preview.text
    assert client.get("/api/styles/7/preview.svg").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/styles", "/api/write", "/api/write/stream", "/api/prepare", "/api/read"} <= set(paths)


def test_write_as_svg_png_and_json_is_deterministic(client):
    body = {"text": "hello there\nbye", "style": 1, "bias": 1.0, "seed": 3, "color": "#aa0000", "stroke_width": 0.8}
    svg = client.post("/api/write", json=body)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert 'stroke="#aa0000"' in svg.text and 'stroke-width="0.8"' in svg.text
    assert client.post("/api/write", json=body).text == svg.text  # same seed, same page
    png = client.post("/api/write?format=png", json=body)
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    strokes = client.post("/api/write?format=json", json=body).json()
    assert [line["text"] for line in strokes["lines"]] == ["hello there", "bye"]


def test_stream_sends_points_while_writing_then_the_page(client):
    body = {"text": "hello there\n\nbye now", "seed": 2}
    response = client.post("/api/write/stream", json=body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    events = events_of(response)
    assert events[0] == {"event": "start", "lines": 3, "line_height": 12.0, "margin": 10.0}
    assert events[-1]["event"] == "page"
    points = [e for e in events if e["event"] == "points"]
    assert len(points) > 2 and {e["line"] for e in points} == {0, 2}  # the blank line has no ink
    assert events[-1]["svg"] == client.post("/api/write", json=body).text  # the page streamed is the page written
    for e in points:
        assert np.asarray(e["points"]).shape[1] == 3
    for line in (0, 2):
        first = next(e for e in points if e["line"] == line)
        assert first["points"][0][:2] == [0, 0]  # a line's points are in mm from where its pen first touched


def test_requests_at_once_each_get_their_own_page(client):
    from concurrent.futures import ThreadPoolExecutor

    texts = ["one", "two lines\nhere", "three", "four"]

    def write(text):
        events = events_of(client.post("/api/write/stream", json={"text": text, "seed": 1}))
        page = client.post("/api/write?format=json", json={"text": text, "seed": 1}).json()
        return events[-1]["svg"], [line["text"] for line in page["lines"]]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(write, texts))
    for text, (svg, lines) in zip(texts, results):
        assert lines == text.split("\n")
        assert svg == client.post("/api/write", json={"text": text, "seed": 1}).text


def test_prepare_reads_ahead_for_the_write_that_follows(client, monkeypatch):
    from writemate import api

    reads = []
    real = api.line_starts
    monkeypatch.setattr(api, "line_starts", lambda model, texts, prime=None, going_on=None: reads.append(texts) or real(model, texts, prime, going_on))
    body = {"text": "hello there", "style": 1}
    response = client.post("/api/prepare", json=body)
    assert response.status_code == 202
    client.app.state.studio.worker.submit(lambda: None).result()  # the worker has done the preparation
    assert reads == [["hello there"]]
    assert client.post("/api/write", json={**body, "seed": 5, "bias": 1.5}).status_code == 200
    assert reads == [["hello there"]]  # the write started from it
    assert client.post("/api/prepare", json={"text": "hello", "style": 9}).status_code == 400
    assert client.post("/api/prepare", json={"text": ""}).status_code == 422


def test_a_one_line_text_is_read_on_one_thread_fewer(client, monkeypatch):
    import torch

    from writemate import api

    threads = []
    real = api.line_starts
    monkeypatch.setattr(api, "line_starts", lambda *a, **k: threads.append(torch.get_num_threads()) or real(*a, **k))
    before = torch.get_num_threads()
    assert client.post("/api/write", json={"text": "one line", "style": 0}).status_code == 200
    assert client.post("/api/write", json={"text": "two\nlines", "style": 0}).status_code == 200
    assert threads == [max(1, before - 1), before]  # each read once, ahead of its write
    assert torch.get_num_threads() == before


def test_write_in_my_hand_and_read(client):
    read = client.post("/api/read", json={"strokes": drawn_line()})
    assert read.status_code == 200 and isinstance(read.json()["text"], str)
    body = {"text": "more of it", "seed": 1, "prime": {"strokes": drawn_line(), "text": "my line"}}
    assert "<path" in client.post("/api/write", json=body).text
    events = events_of(client.post("/api/write/stream", json=body))
    assert events[-1]["event"] == "page"
    first = next(e for e in events if e["event"] == "points")
    assert first["points"][0][:2] == [0, 0]  # primed too: not the move from the primed line's end


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"text": "caf\u00e9 \u2603"}, 400, "cannot write 2 character(s)"),
        ({"text": ""}, 422, "text"),
        ({"text": "x" * (server.MAX_TEXT_CHARS + 1)}, 422, "at most 2000 characters"),
        ({"text": "hi", "style": 9}, 400, "no style 9"),
        ({"text": "hi", "bias": -1}, 422, "bias"),
        ({"text": "hi", "color": "red;<script>"}, 422, "color"),
        ({"text": "hi", "prime": {"strokes": [], "text": "x"}}, 400, "no points"),
        ({"text": "hi", "prime": {"strokes": [[[0, 0]] * (server.MAX_POINTS + 1)], "text": "x"}}, 400, "at most"),
        ({"text": "hi", "prime": {"strokes": drawn_line(), "text": "\u2603"}}, 400, "cannot write"),
    ],
)
def test_bad_requests_get_clear_4xx_errors(client, body, status, message):
    for url in ("/api/write", "/api/write/stream"):
        response = client.post(url, json=body)
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]


def test_limits_on_the_request_itself(client):
    big = {"text": "hi", "prime": {"strokes": drawn_line(40_000), "text": "x"}}
    response = client.post("/api/write", content=json.dumps(big), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than" in response.json()["detail"]
    assert client.post("/api/read", content=b"{", headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/api/read", json={"strokes": [[[0, "x"]]]}).status_code == 422
    assert client.post("/api/read", json={"strokes": []}).status_code == 400
    assert client.get("/static/%2e%2e/server.py").status_code == 404  # no paths outside the page's folder


def test_read_without_a_recognizer(tiny_writer_dir):
    with TestClient(server.create_app(lambda: (loading.load(tiny_writer_dir), None))) as c:
        response = c.post("/api/read", json={"strokes": drawn_line()})
    assert response.status_code == 503 and "no recognizer" in response.json()["detail"]


def test_serve_refuses_a_busy_or_bad_port_before_loading_anything(capsys):
    import socket

    from writemate import cli

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert cli.main(["serve", "--port", str(busy.getsockname()[1])]) == 2
    assert "cannot serve on 127.0.0.1" in capsys.readouterr().err
    assert cli.main(["serve", "--port", "70000"]) == 2
    assert "--port must be between 1 and 65535" in capsys.readouterr().err
