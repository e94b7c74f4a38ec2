"""Writemate Studio: one web page and a small JSON API over the Python API (``writemate serve``).

    GET  /                             the page (writemate/studio/)
    GET  /api/styles                   the bundled styles, defaults and limits
    GET  /api/styles/{id}/preview.svg  one line written in a style
    POST /api/write?format=svg|png|json   a written page
    POST /api/write/stream             the same, streamed as it is written (NDJSON events)
    POST /api/prepare                  get ready to write a text in a style (returns at once)
    POST /api/read                     what the recognizer reads in drawn strokes

The framework documents the API at /docs (OpenAPI at /openapi.json).
Loading, sampling and reading all run in one worker thread, one request at a
time (the network uses both cores), so the page and the API stay responsive
while they run. One thread, because PyTorch run from two threads of a
process was slower in both: a 30-character line took 0.9-1.4 s in a worker
thread once the main thread had used torch (or only loaded the models),
against 0.5-0.8 s when one thread did everything.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from writemate import api, render
from writemate.errors import WritemateError

STUDIO_DIR = Path(__file__).parent / "studio"
MAX_TEXT_CHARS = 2000  # a long letter; longer texts belong to `writemate write`
MAX_PRIME_TEXT_CHARS = 200  # the text of one drawn line
MAX_POINTS = 20_000  # points in drawn ink: a minute of pen movement at 300 points a second
MAX_BODY_BYTES = 1_000_000
PREVIEW_SEED = 0
PREVIEW_TEXT = "quick brown fox"  # short, so that it reads at the size of a style card
PREVIEW_PAGE = render.PageStyle(margin=1.0, line_height=8.0)  # the ink and little else
Point = list[float]  # [x, y] or [x, y, t]: t (ms) is kept by the page but not needed here


class DrawnInk(BaseModel):
    strokes: list[list[Point]] = Field(description="pen-down strokes of [x, y, t] points, any units, y down")


class PrimeInk(DrawnInk):
    text: str = Field(min_length=1, max_length=MAX_PRIME_TEXT_CHARS, description="what the ink says")


class WriteRequest(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    style: int | None = Field(None, description="a bundled style's id (GET /api/styles); none for the default hand")
    bias: float = Field(0.75, ge=0, le=10, description="legibility: 0 as sampled, 1-2 neater")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    width: int = Field(45, ge=10, le=200, description="characters per line before wrapping")
    stroke_width: float = Field(0.5, gt=0, le=5, description="mm")
    color: str = Field("#1a1a2e", pattern=r"^#[0-9a-fA-F]{6}$")
    prime: PrimeInk | None = Field(None, description="write in the hand of this ink instead of a style")


class Cancelled(Exception):
    """The client went away: stop sampling."""


def ink_arrays(ink: DrawnInk) -> list[np.ndarray]:
    """A request's strokes as (N, 2) arrays; WritemateError for no points, too many, or non-finite ones."""
    strokes = [np.asarray([p[:2] for p in s], dtype=np.float64).reshape(-1, 2) for s in ink.strokes if s]
    points = sum(len(s) for s in strokes)
    if not points:
        raise WritemateError("the ink has no points")
    if points > MAX_POINTS:
        raise WritemateError(f"the ink has {points} points; at most {MAX_POINTS}")
    if any(min(len(p) for p in s) < 2 for s in ink.strokes if s) or not all(np.isfinite(s).all() for s in strokes):
        raise WritemateError("every point needs a finite x and y")
    return strokes


def reading_key(request: WriteRequest) -> str:
    """What the reading of a request's primed line depends on (Writer.prepare): not bias, seed or looks."""
    return request.model_dump_json(include={"text", "style", "width", "prime"})


def write_arguments(request: WriteRequest) -> dict:
    """A write request as the arguments of ``Writer.write`` and ``Writer.plan``."""
    prime = request.prime
    return {
        "text": request.text,
        "style": None if prime else request.style,
        "bias": request.bias,
        "seed": request.seed,
        "width": request.width,
        "prime_strokes": ink_arrays(prime) if prime else None,
        "prime_text": prime.text if prime else None,
    }


class Studio:
    """The models behind the page, loaded and used in one worker thread, one request at a time."""

    def __init__(self, load: Callable[[], tuple[api.Writer, object]]):
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="writemate-studio")
        self.writer, self.recognizer = self.worker.submit(load).result()
        if self.recognizer is not None and self.writer.checker is None and self.writer.bundled:
            self.writer.checker = self.recognizer  # one copy of the bundled recognizer, to read and to check
        self.previews: dict[int, str] = {}
        self.wanted: str | None = None  # reading_key of the latest write or preparation asked for
        # Written now (about 0.8 s a style), so that the page's first write does not wait behind them.
        self.worker.submit(lambda: [self.preview(style.id) for style in self.writer.styles]).result()

    async def run(self, fn, *args):
        """``fn(*args)`` in the worker thread, after the requests before it."""
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    def check(self, request: WriteRequest) -> list[str]:
        """The page's lines; WritemateError for anything the writer cannot write, before any sampling."""
        lines, _ = self.writer.plan(**write_arguments(request))
        return lines

    def want(self, request: WriteRequest) -> None:
        """A write or preparation was asked for: a preparation of anything else stops (see prepare)."""
        self.wanted = reading_key(request)

    def prepare(self, request: WriteRequest) -> None:
        """Read the request's primed line ahead of its write, unless the page has since asked for
        something else: the reading stops then (between chunks), so the next write waits little."""
        key = reading_key(request)
        self.read_ahead(request, going_on=lambda: self.wanted == key)

    def read_ahead(self, request: WriteRequest, going_on: Callable[[], bool] | None = None) -> None:
        """Writer.prepare for the request. A one-line text is read on one torch thread fewer, which
        leaves a core to the browser: on the 2-core machine, with Chromium beside the server, a styled
        line's first stroke came after a median 266-329 ms on one thread against 321-348 ms on two
        (alone, one thread reads 25 % slower; more lines read faster on two, as rows split between them)."""
        lines, prime = self.writer.plan(**write_arguments(request))
        threads = torch.get_num_threads()
        if sum(1 for line in lines if line.strip()) == 1:
            torch.set_num_threads(max(1, threads - 1))
        try:
            self.writer.prepare(lines, prime, going_on)
        finally:
            torch.set_num_threads(threads)

    def write(self, request: WriteRequest, watch: api.Watch | None = None) -> api.Handwriting:
        self.read_ahead(request)  # at once if prepared; the write then starts from it
        page = render.PageStyle(stroke_width=request.stroke_width, color=request.color)
        return self.writer.write(**write_arguments(request), page=page, watch=watch)

    def preview(self, style_id: int) -> str:
        if style_id not in self.previews:
            style = self.writer.style(style_id)
            page = self.writer.write(PREVIEW_TEXT, style=style_id, bias=style.bias, seed=PREVIEW_SEED, page=PREVIEW_PAGE)
            self.previews[style_id] = page.to_svg()
        return self.previews[style_id]

    def read(self, ink: DrawnInk) -> str:
        if self.recognizer is None:
            raise HTTPException(503, "no recognizer is installed to read ink")
        return self.recognizer.read(ink_arrays(ink))


def bundled_models(model: str = "synthesis") -> tuple[api.Writer, object]:
    """The synthesis model ``model`` (a bundled name or a folder) and the bundled recognizer if installed.
    Writing the style previews (Studio) then warms them up: the first sampling in a process times its
    products (``synthesis.pad_small_rows``)."""
    from writemate import loading

    writer = loading.load(model, family="synthesis")
    recognizer = loading.load("recognizer") if "recognizer" in loading.bundled() else None
    return writer, recognizer


def create_app(load: Callable[[], tuple[api.Writer, object]] = bundled_models) -> FastAPI:
    """The Studio app over the models ``load()`` returns: a Writer and a Recognizer (or None)."""
    studio = Studio(load)
    app = FastAPI(title="Writemate Studio", summary="Write text as handwriting, and read handwriting back.")
    app.state.studio = studio

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"detail": "a request body needs a Content-Length"}, status_code=411)
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                return JSONResponse({"detail": f"the request is larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in error.errors())
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(WritemateError)
    async def bad_input(request: Request, error: WritemateError):
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STUDIO_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STUDIO_DIR), name="static")

    @app.get("/api/styles")
    async def styles() -> dict:
        return {
            "styles": [{"id": s.id, "name": s.name} for s in studio.writer.styles],
            "defaults": {name: WriteRequest.model_fields[name].default for name in ("bias", "seed", "width", "stroke_width", "color")},
            "limits": {"max_text_chars": MAX_TEXT_CHARS, "max_prime_text_chars": MAX_PRIME_TEXT_CHARS, "max_prime_points": MAX_POINTS},
        }

    @app.get("/api/styles/{style_id}/preview.svg", response_class=Response, responses={200: {"content": {"image/svg+xml": {}}}})
    async def preview(style_id: int):
        if style_id not in {s.id for s in studio.writer.styles}:
            raise HTTPException(404, f"no style {style_id}")
        svg = await studio.run(studio.preview, style_id)
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/write", response_class=Response, responses={200: {"content": {"image/svg+xml": {}, "image/png": {}, "application/json": {}}}})
    async def write(request: WriteRequest, format: Literal["svg", "png", "json"] = Query("svg")):
        studio.check(request)
        studio.want(request)
        page = await studio.run(studio.write, request)
        if format == "png":
            return Response(page.to_png(), media_type="image/png")
        if format == "json":
            return Response(page.to_json(), media_type="application/json")
        return Response(page.to_svg(), media_type="image/svg+xml")

    @app.post("/api/write/stream", response_class=StreamingResponse, responses={200: {"content": {"application/x-ndjson": {}}}})
    async def write_stream(request: WriteRequest):
        """Events, one JSON object a line: ``start`` (lines, line_height and margin in mm), ``points``
        (a page line's new points [x, y, pen_up] in mm from where its pen first touched; ``restart``:
        drop what was shown of that line first), then ``page`` (the final SVG) or ``error``."""
        lines = studio.check(request)
        studio.want(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        gone = threading.Event()

        def send(event: dict | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        def watch(line: int, points: np.ndarray, restart: bool) -> None:
            if gone.is_set():
                raise Cancelled
            send({"event": "points", "line": line, "restart": restart, "points": np.round(points, 2).tolist()})

        def run() -> None:
            try:
                page = studio.write(request, watch)
                width, height = render.page_size(page.lines, page.page)
                send({"event": "page", "svg": page.to_svg(), "width_mm": round(width, 2), "height_mm": round(height, 2)})
            except WritemateError as e:
                send({"event": "error", "status": 400, "message": str(e)})
            except Cancelled:
                pass
            except Exception as e:  # a fault of ours: the page shows it rather than waiting forever
                send({"event": "error", "status": 500, "message": f"writing failed: {e!r}"})
            finally:
                send(None)

        async def events():
            style = render.PageStyle()
            yield json.dumps({"event": "start", "lines": len(lines), "line_height": style.line_height, "margin": style.margin}) + "\n"
            loop.run_in_executor(studio.worker, run)
            try:
                while (event := await queue.get()) is not None:
                    yield json.dumps(event) + "\n"
            finally:
                gone.set()  # the client went away, or all is sent: a sampling still running stops at its next update

        return StreamingResponse(events(), media_type="application/x-ndjson")

    @app.post("/api/prepare", status_code=202)
    async def prepare(request: WriteRequest) -> dict:
        """Get ready to write ``text`` in ``style`` (or ``prime``) at ``width``: the page sends this when the
        text rests or the style changes. The network's reading of a style's line depends on the text
        after it and is most of the wait before a one-line write's first stroke; a write of the same
        text, style and width (any bias, seed or looks) then starts without it. Returns at once."""
        studio.check(request)
        studio.want(request)
        studio.worker.submit(studio.prepare, request)  # not awaited: should it fail, the write reads for itself
        return {"preparing": True}

    @app.post("/api/read")
    async def read(ink: DrawnInk) -> dict:
        return {"text": await studio.run(studio.read, ink)}

    return app
