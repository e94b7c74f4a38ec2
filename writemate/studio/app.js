// Writemate Studio: the page's behaviour. Talks to the JSON API of `writemate serve`.

const SVG_NS = "http://www.w3.org/2000/svg";
const PNG_PX_PER_MM = 6; // about 150 dpi, the resolution of the server's own PNGs
const LIVE_GROW_MM = 20; // the live page widens in steps, so it does not rescale at every point
const PAD_INK = "#1a1a2e";
const PAD_LINE_WIDTH = 2.5; // CSS px
const MAX_SEED = 2 ** 31 - 1;
const NARROW = window.matchMedia("(max-width: 899px)");
const CALM = window.matchMedia("(prefers-reduced-motion: reduce)");

const $ = (id) => document.getElementById(id);

const state = {
  // Until GET /api/styles answers: the same values as the server's.
  defaults: { bias: 0.75, seed: 0, width: 45, stroke_width: 0.5, color: "#1a1a2e" },
  limits: { max_text_chars: 2000, max_prime_points: 20000 },
  style: null, // a style id, or null for the default hand
  run: null, // the write in progress: { controller, started, timer }
  page: null, // the last finished page: { svg, widthMm, heightMm }
};

let pad; // the drawing pad (a Pad), made by init()

// ---------------------------------------------------------------- API

// An error whose message is written for the person using the page.
class Problem extends Error {}

async function request(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Problem("Writemate Studio can’t reach its server. Is “writemate serve” still running?");
  }
  if (!response.ok) throw new Problem(await errorDetail(response));
  return response;
}

async function errorDetail(response) {
  try {
    const { detail } = await response.json();
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((d) => d.msg ?? JSON.stringify(d)).join("; ");
  } catch {
    // not JSON: the status line below says what little is known
  }
  return `the server answered ${[response.status, response.statusText].filter(Boolean).join(" ")}.`;
}

function postJSON(path, body, signal) {
  return request(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
}

// The stream's JSON objects, one per line; a line may be split across chunks.
async function* ndjson(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await readChunk(reader);
    buffer += decoder.decode(value, { stream: !done });
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const line of lines) if (line.trim()) yield JSON.parse(line);
    if (done) break;
  }
  if (buffer.trim()) yield JSON.parse(buffer);
}

async function readChunk(reader) {
  try {
    return await reader.read();
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Problem("the connection to the server was lost. Please try again.");
  }
}

// ---------------------------------------------------------------- small helpers

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function svgElement(tag, attributes = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function scrollBehavior() {
  return CALM.matches ? "auto" : "smooth";
}

// The item that an arrow key (or Home/End) moves to from `current`; undefined for other keys.
function arrowTarget(items, current, key, vertical = false) {
  const steps = vertical ? { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 } : { ArrowRight: 1, ArrowLeft: -1 };
  const i = items.indexOf(current);
  if (i < 0) return undefined;
  if (key in steps) return items[(i + steps[key] + items.length) % items.length];
  if (key === "Home") return items[0];
  if (key === "End") return items[items.length - 1];
  return undefined;
}

// ---------------------------------------------------------------- messages

function showError(message) {
  $("error-message").textContent = message;
  $("error").hidden = false;
  $("error").scrollIntoView({ block: "nearest", behavior: scrollBehavior() });
}

function clearError() {
  $("error").hidden = true;
  $("error-message").textContent = "";
}

function setStatus(text, { busy = false, tone = "" } = {}) {
  const status = $("status");
  status.dataset.tone = tone;
  status.replaceChildren(text);
  if (busy) status.prepend(element("span", { class: "spinner", "aria-hidden": "true" }));
}

// ---------------------------------------------------------------- tabs

function tabs() {
  return [$("tab-write"), $("tab-draw")];
}

function bindTabs() {
  for (const tab of tabs()) {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (event) => {
      const target = arrowTarget(tabs(), tab, event.key);
      if (!target) return;
      event.preventDefault();
      selectTab(target);
      target.focus();
    });
  }
}

function selectTab(selected) {
  for (const tab of tabs()) {
    const on = tab === selected;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !on;
  }
}

// ---------------------------------------------------------------- styles and settings

async function loadStyles() {
  let styles = [];
  try {
    const info = await (await request("/api/styles")).json();
    Object.assign(state.defaults, info.defaults);
    Object.assign(state.limits, info.limits);
    styles = info.styles;
  } catch (error) {
    showError(`Sorry, the handwriting styles could not be loaded: ${error.message}`);
  }
  applyDefaults();
  renderStylePicker(styles);
}

function applyDefaults() {
  const { defaults, limits } = state;
  $("bias").value = defaults.bias;
  $("stroke-width").value = defaults.stroke_width;
  $("color").value = defaults.color;
  $("seed").value = defaults.seed;
  $("text").maxLength = limits.max_text_chars;
  $("new-text").maxLength = limits.max_text_chars;
  if (limits.max_prime_text_chars) $("prime-text").maxLength = limits.max_prime_text_chars;
  showSettings();
  updateCounter();
}

function renderStylePicker(styles) {
  const options = [{ id: null, name: "Default hand" }, ...styles];
  $("style-picker").replaceChildren(...options.map(styleCard));
  selectStyle(state.style);
}

function styleCard({ id, name }) {
  const card = element("button", {
    type: "button",
    role: "radio",
    class: "style-card",
    "data-style": id === null ? "none" : String(id),
  });
  card.append(id === null ? defaultHandPreview() : stylePreview(id), element("span", { class: "style-name", title: name }, name));
  card.addEventListener("click", () => {
    selectStyle(id);
    prepareSoon(noteToPrepare, 0);
  });
  return card;
}

function defaultHandPreview() {
  return element("span", { class: "preview preview-default", "aria-hidden": "true" }, "Writemate’s own");
}

// The preview box is a neutral placeholder until its image has loaded (the first can take seconds).
function stylePreview(id) {
  const box = element("span", { class: "preview" });
  const image = element("img", { src: `/api/styles/${id}/preview.svg`, alt: "", loading: "lazy", decoding: "async" });
  image.addEventListener("load", () => box.classList.add("loaded"));
  image.addEventListener("error", () => {
    box.classList.add("failed");
    box.replaceChildren("No preview");
  });
  box.append(image);
  return box;
}

function styleCards() {
  return [...$("style-picker").querySelectorAll(".style-card")];
}

function selectStyle(id) {
  state.style = id;
  const key = id === null ? "none" : String(id);
  for (const card of styleCards()) {
    const on = card.dataset.style === key;
    card.setAttribute("aria-checked", String(on));
    card.tabIndex = on ? 0 : -1;
  }
}

// As in any radio group, arrow keys move the choice.
function onStyleKey(event) {
  const card = arrowTarget(styleCards(), document.activeElement, event.key, true);
  if (!card) return;
  event.preventDefault();
  card.click();
  card.focus();
}

function showSettings() {
  $("bias-value").textContent = Number($("bias").value).toFixed(2);
  $("stroke-width-value").textContent = `${Number($("stroke-width").value).toFixed(2)} mm`;
  $("color-value").textContent = $("color").value;
}

function updateCounter() {
  const text = $("text");
  const counter = $("text-count");
  counter.textContent = `${text.value.length} / ${text.maxLength}`;
  counter.classList.toggle("near", text.value.length > text.maxLength * 0.9);
}

function shuffleSeed() {
  $("seed").value = Math.floor(Math.random() * 100000);
}

// The settings both ways of writing share; a Problem when the seed is not usable.
function pageOptions() {
  const raw = $("seed").value.trim();
  const seed = Number(raw);
  if (raw === "" || !Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
    throw new Problem(`The seed needs to be a whole number from 0 to ${MAX_SEED}.`);
  }
  return {
    bias: Number($("bias").value),
    seed,
    width: state.defaults.width,
    stroke_width: Number($("stroke-width").value),
    color: $("color").value,
  };
}

// ---------------------------------------------------------------- getting ready

// Before a styled line's first stroke the network reads the style's own line, which depends on the
// text and takes a few tenths of a second. The page asks the server to do that while the person is
// still choosing (POST /api/prepare): when a style is picked, or the text has rested a moment.
const PREPARE_DELAY_MS = 300;
let prepareTimer = 0;

function prepareSoon(makeBody, delay = PREPARE_DELAY_MS) {
  clearTimeout(prepareTimer);
  prepareTimer = setTimeout(() => {
    let body;
    try {
      body = makeBody();
    } catch {
      return; // e.g. too many points on the pad: Write says so
    }
    if (!body || state.run) return;
    // Nothing to show either way: a problem with the text is shown when Write is pressed.
    fetch("/api/prepare", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).catch(() => {});
  }, delay);
}

function noteToPrepare() {
  const text = $("text").value;
  if (state.style === null || !text.trim()) return null; // the default hand has no line to read
  return { text, style: state.style, width: state.defaults.width };
}

function handToPrepare() {
  const primeText = $("prime-text").value.trim();
  const text = $("new-text").value;
  if (!pad.strokes.length || !primeText || !text.trim()) return null;
  return { text, style: null, width: state.defaults.width, prime: { strokes: padStrokes(), text: primeText } };
}

// ---------------------------------------------------------------- writing

function writeNote() {
  const text = $("text").value;
  if (!text.trim()) {
    showError("Type a note first — there is nothing to write yet.");
    $("text").focus();
    return;
  }
  startWriting(() => ({ text, style: state.style, ...pageOptions(), prime: null }));
}

function writeInMyHand() {
  const primeText = $("prime-text").value.trim();
  const text = $("new-text").value;
  if (!pad.strokes.length) {
    showError("Write a line on the pad first, so Writemate can learn your hand.");
    return;
  }
  if (!primeText) {
    showError("Tell Writemate what you wrote on the pad (or press “Read it”).");
    $("prime-text").focus();
    return;
  }
  if (!text.trim()) {
    showError("Type the new text for Writemate to write in your hand.");
    $("new-text").focus();
    return;
  }
  startWriting(() => ({ text, style: null, ...pageOptions(), prime: { strokes: padStrokes(), text: primeText } }));
}

// Streams a write of makeBody() into #output, replacing any write still running.
function startWriting(makeBody) {
  let body;
  try {
    body = makeBody();
  } catch (error) {
    showError(error.message);
    return;
  }
  if (state.run) abandon(state.run);
  const run = { controller: new AbortController(), started: performance.now(), timer: 0 };
  state.run = run;
  clearError();
  showWriting(run);
  streamPage(run, body).then(
    () => finishRun(run, "done"),
    (error) => {
      if (run !== state.run) return; // stopped, or replaced by a newer write
      showError(`Sorry, Writemate couldn’t write that: ${error.message}`);
      finishRun(run, "error");
    },
  );
}

function abandon(run) {
  clearInterval(run.timer);
  run.controller.abort();
}

function showWriting(run) {
  state.page = null;
  setDownloads(false);
  const output = $("output");
  output.dataset.state = "writing";
  output.setAttribute("aria-busy", "true");
  output.replaceChildren(placeholder("Getting the pen ready…"));
  $("write").disabled = true;
  $("stop").hidden = false;
  const tick = () => setStatus(`Writing… ${Math.floor((performance.now() - run.started) / 1000)} s`, { busy: true });
  tick();
  run.timer = setInterval(tick, 1000);
  if (NARROW.matches) output.scrollIntoView({ block: "start", behavior: scrollBehavior() });
}

function placeholder(text) {
  return element("p", { class: "paper-empty" }, text);
}

function finishRun(run, outcome) {
  if (run !== state.run) return;
  clearInterval(run.timer);
  state.run = null;
  const output = $("output");
  output.dataset.state = outcome;
  output.removeAttribute("aria-busy");
  if (!output.querySelector("svg")) output.replaceChildren(placeholder("Your handwriting appears here."));
  $("write").disabled = false;
  $("stop").hidden = true;
  const elapsed = `${((performance.now() - run.started) / 1000).toFixed(1)} s`;
  if (outcome === "done") setStatus(`Written in ${elapsed}`, { tone: "done" });
  else if (outcome === "error") setStatus("Not written", { tone: "error" });
  else setStatus(`Stopped after ${elapsed}`);
}

function stopWriting() {
  const run = state.run;
  if (!run) return;
  finishRun(run, "stopped");
  abandon(run);
}

async function streamPage(run, body) {
  const response = await postJSON("/api/write/stream", body, run.controller.signal);
  let live = null;
  for await (const event of ndjson(response)) {
    if (run !== state.run) return; // a chunk read just before the abort: not ours to show
    if (event.event === "start") live = new LivePage($("output"), body, event);
    else if (event.event === "points") live.add(event.line, event.restart, event.points);
    else if (event.event === "page") return showPage(event);
    else if (event.event === "error") throw new Problem(event.message);
  }
  throw new Problem("the connection closed before the page was finished. Please try again.");
}

// The page as it is being written: one <g> per page line, one <path> per pen-down stroke, in mm.
class LivePage {
  constructor(container, body, { lines, line_height: lineHeight, margin }) {
    this.lineHeight = lineHeight;
    this.margin = margin;
    this.lines = new Map(); // page line -> { group, path, d, origin }
    this.width = 0;
    this.height = 0;
    this.svg = svgElement("svg", { class: "page", role: "img", "aria-label": "Handwriting, being written" });
    this.ink = svgElement("g", {
      fill: "none",
      stroke: body.color,
      "stroke-width": body.stroke_width,
      "stroke-linecap": "round",
      "stroke-linejoin": "round",
    });
    this.svg.append(this.ink);
    container.replaceChildren(this.svg);
    this.fit(5 * LIVE_GROW_MM, 2 * margin + lines * lineHeight);
  }

  add(i, restart, points) {
    let line = this.lines.get(i);
    if (!line || restart) {
      line?.group.remove();
      line = this.startLine(i);
    }
    let right = 0;
    let bottom = 0;
    for (const [x, y, penUp] of points) {
      if (line.path) line.d += ` L${x} ${y}`;
      else this.startStroke(line, x, y);
      right = Math.max(right, x);
      bottom = Math.max(bottom, y);
      if (penUp) this.endStroke(line);
    }
    line.path?.setAttribute("d", line.d);
    this.fit(line.origin[0] + right + this.margin, line.origin[1] + bottom + this.margin);
  }

  startLine(i) {
    const origin = [this.margin + 2, this.margin + (i + 0.55) * this.lineHeight];
    const group = svgElement("g", { transform: `translate(${origin[0]} ${origin[1]})` });
    this.ink.append(group);
    const line = { group, path: null, d: "", origin };
    this.lines.set(i, line);
    return line;
  }

  // A stroke starts with a zero-length segment so that a lone dot still shows its round cap.
  startStroke(line, x, y) {
    line.path = svgElement("path");
    line.d = `M${x} ${y} L${x} ${y}`;
    line.group.append(line.path);
  }

  endStroke(line) {
    line.path.setAttribute("d", line.d);
    line.path = null;
  }

  fit(right, bottom) {
    if (right <= this.width && bottom <= this.height) return;
    this.width = Math.max(this.width, Math.ceil(right / LIVE_GROW_MM) * LIVE_GROW_MM);
    this.height = Math.max(this.height, Math.ceil(bottom));
    this.svg.setAttribute("viewBox", `0 0 ${this.width} ${this.height}`);
    this.svg.setAttribute("width", `${this.width}mm`);
    this.svg.setAttribute("height", `${this.height}mm`);
  }
}

function showPage({ svg, width_mm: widthMm, height_mm: heightMm }) {
  const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
  if (doc.querySelector("parsererror")) throw new Problem("the finished page arrived damaged. Please try again.");
  const page = document.importNode(doc.documentElement, true);
  page.classList.add("page");
  page.setAttribute("role", "img");
  page.setAttribute("aria-label", "Your handwritten page");
  $("output").replaceChildren(page);
  state.page = { svg, widthMm, heightMm };
  setDownloads(true);
}

// ---------------------------------------------------------------- downloads

function setDownloads(enabled) {
  $("download-svg").disabled = !enabled;
  $("download-png").disabled = !enabled;
}

function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = element("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000); // the download needs the URL a moment longer
}

function downloadSvg() {
  if (state.page) saveBlob(new Blob([state.page.svg], { type: "image/svg+xml" }), "writemate.svg");
}

// Paints the finished SVG on white: exactly the page shown, at once, without writing it again.
async function downloadPng() {
  const page = state.page;
  if (!page) return;
  const button = $("download-png");
  button.disabled = true;
  const url = URL.createObjectURL(new Blob([page.svg], { type: "image/svg+xml" }));
  try {
    const image = new Image();
    image.src = url;
    await image.decode();
    const canvas = element("canvas");
    canvas.width = Math.max(1, Math.round(page.widthMm * PNG_PX_PER_MM));
    canvas.height = Math.max(1, Math.round(page.heightMm * PNG_PX_PER_MM));
    const context = canvas.getContext("2d");
    context.fillStyle = "#ffffff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.drawImage(image, 0, 0, canvas.width, canvas.height);
    const png = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    if (!png) throw new Error("the browser could not make the image.");
    saveBlob(png, "writemate.png");
  } catch (error) {
    showError(`Sorry, the PNG could not be made: ${error.message}`);
  } finally {
    URL.revokeObjectURL(url);
    button.disabled = state.page === null;
  }
}

// ---------------------------------------------------------------- drawing pad

// Records pen, touch and mouse strokes as [x, y, t] points: CSS pixels from the canvas's
// top left (y down) and the events' timestamps in milliseconds.
class Pad {
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.onChange = onChange;
    this.strokes = [];
    this.pointerId = null; // the one pointer drawing now; others are ignored
    this.origin = [0, 0];
    canvas.addEventListener("pointerdown", (event) => this.down(event));
    canvas.addEventListener("pointermove", (event) => this.move(event));
    canvas.addEventListener("pointerup", (event) => this.up(event));
    canvas.addEventListener("pointercancel", (event) => this.up(event));
    new ResizeObserver(() => this.resize()).observe(canvas);
  }

  get drawing() {
    return this.pointerId !== null;
  }

  down(event) {
    if (this.drawing || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    this.pointerId = event.pointerId;
    const rect = this.canvas.getBoundingClientRect();
    this.origin = [rect.left, rect.top];
    const stroke = [this.point(event)];
    this.strokes.push(stroke);
    this.drawStroke(stroke);
    this.onChange();
  }

  move(event) {
    if (event.pointerId !== this.pointerId) return;
    const stroke = this.strokes[this.strokes.length - 1];
    const from = stroke.length - 1;
    const coalesced = event.getCoalescedEvents?.() ?? [];
    for (const e of coalesced.length ? coalesced : [event]) stroke.push(this.point(e));
    this.drawStroke(stroke, from);
  }

  up(event) {
    if (event.pointerId !== this.pointerId) return;
    this.pointerId = null;
    this.onChange();
  }

  point(event) {
    const round = (v) => Math.round(v * 10) / 10; // a tenth of a pixel or millisecond: a smaller request
    return [round(event.clientX - this.origin[0]), round(event.clientY - this.origin[1]), round(event.timeStamp)];
  }

  pointCount() {
    return this.strokes.reduce((sum, stroke) => sum + stroke.length, 0);
  }

  undo() {
    if (this.drawing) return;
    this.strokes.pop();
    this.redraw();
    this.onChange();
  }

  clear() {
    if (this.drawing) return;
    this.strokes = [];
    this.redraw();
    this.onChange();
  }

  // The backing store follows the CSS size times the screen's pixel ratio, for crisp ink.
  resize() {
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(this.canvas.clientWidth * ratio);
    this.canvas.height = Math.round(this.canvas.clientHeight * ratio);
    this.context.setTransform(ratio, 0, 0, ratio, 0, 0);
    this.redraw();
  }

  redraw() {
    this.context.clearRect(0, 0, this.canvas.clientWidth, this.canvas.clientHeight);
    for (const stroke of this.strokes) this.drawStroke(stroke);
  }

  // Draws a stroke from its point `from` on; a stroke of one point as a dot.
  drawStroke(stroke, from = 0) {
    const context = this.context;
    context.strokeStyle = PAD_INK;
    context.fillStyle = PAD_INK;
    context.lineWidth = PAD_LINE_WIDTH;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    if (stroke.length === 1) {
      context.arc(stroke[0][0], stroke[0][1], PAD_LINE_WIDTH / 2, 0, 2 * Math.PI);
      context.fill();
      return;
    }
    context.moveTo(stroke[from][0], stroke[from][1]);
    for (const [x, y] of stroke.slice(from + 1)) context.lineTo(x, y);
    context.stroke();
  }
}

function onPadChange() {
  const empty = pad.strokes.length === 0;
  for (const id of ["undo", "clear", "read", "write-in-my-hand"]) $(id).disabled = empty;
  $("pad-hint").hidden = !empty;
  $("pad").parentElement.classList.toggle("has-ink", !empty);
  setReading("idle"); // a reading of other ink no longer applies
  if (!pad.drawing) prepareSoon(handToPrepare);
}

// The pad's strokes for the API; a Problem when there are more points than the server takes.
function padStrokes() {
  const points = pad.pointCount();
  const limit = state.limits.max_prime_points;
  if (points > limit) {
    throw new Problem(`Your drawing has ${points} points and Writemate takes at most ${limit}. Please clear the pad and write a shorter line.`);
  }
  return pad.strokes.map((stroke) => stroke.slice());
}

function setReading(readingState, ...content) {
  $("reading").dataset.state = readingState;
  $("reading").replaceChildren(...content);
}

function showReading(text) {
  if (text) {
    setReading("done", element("span", { class: "reading-label" }, "Writemate reads:"), " ", element("q", { class: "reading-text" }, text));
  } else {
    setReading("done", "Writemate couldn’t make out any letters. Try writing a little larger.");
  }
}

async function readPad() {
  const button = $("read");
  clearError();
  try {
    const strokes = padStrokes();
    button.disabled = true;
    setReading("reading", "Reading…");
    const { text } = await (await postJSON("/api/read", { strokes })).json();
    showReading(text.trim());
    if (text.trim()) {
      $("prime-text").value = text.trim();
      prepareSoon(handToPrepare);
    }
  } catch (error) {
    setReading("error");
    showError(`Sorry, Writemate couldn’t read that: ${error.message}`);
  } finally {
    button.disabled = pad.strokes.length === 0;
  }
}

// ---------------------------------------------------------------- wiring

function onCtrlEnter(textarea, action) {
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      action();
    }
  });
}

function onSubmit(form, action) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    action();
  });
}

function bindControls() {
  onSubmit($("panel-write"), writeNote);
  onCtrlEnter($("text"), writeNote);
  $("text").addEventListener("input", () => {
    updateCounter();
    prepareSoon(noteToPrepare);
  });
  for (const id of ["prime-text", "new-text"]) $(id).addEventListener("input", () => prepareSoon(handToPrepare));
  for (const id of ["bias", "stroke-width", "color"]) $(id).addEventListener("input", showSettings);
  $("shuffle").addEventListener("click", shuffleSeed);
  $("style-picker").addEventListener("keydown", onStyleKey);
  $("stop").addEventListener("click", stopWriting);
  $("error-dismiss").addEventListener("click", clearError);
  $("download-svg").addEventListener("click", downloadSvg);
  $("download-png").addEventListener("click", downloadPng);

  $("undo").addEventListener("click", () => pad.undo());
  $("clear").addEventListener("click", () => pad.clear());
  $("read").addEventListener("click", readPad);
  onSubmit($("prime-form"), writeInMyHand);
  onCtrlEnter($("new-text"), writeInMyHand);
}

function init() {
  bindTabs();
  bindControls();
  pad = new Pad($("pad"), onPadChange);
  onPadChange();
  renderStylePicker([]); // the default hand is there at once; the bundled styles follow
  loadStyles();
}

init();
