"""Reading and writing W3C InkML (https://www.w3.org/TR/InkML/).

An InkML file holds *traces* (pen-down strokes, one point per row with one
value per channel of its ``<traceFormat>``, e.g. X and Y) and *trace groups*
that collect traces, directly or through ``<traceView traceDataRef="..."/>``,
and carry ``<annotation type="...">`` elements such as ``truth`` (the label),
``writer`` or ``category``. Annotations of the ``<ink>`` root apply to the
whole document.

:func:`read_inkml` parses untrusted files with defusedxml into an
:class:`InkDocument`; :meth:`InkDocument.samples` lists its labelled samples
(every trace group with a ``truth`` annotation, or the whole document when
only the root has one). :func:`write_inkml` writes a document back, and
:func:`document_from_samples` builds one from labelled strokes.

Trace data follows the InkML grammar: points are separated by commas, values
by white space (or by their sign, as in ``10-3``); a value may be prefixed by
``!`` (explicit), ``'`` (first difference) or ``"`` (second difference), and
the prefix stays in force for that channel until another one is given; ``T``
and ``F`` are booleans (1 and 0), ``?`` an unknown value (NaN) and ``*``
repeats the previous change of the channel. Points that omit trailing
(intermittent) channels get NaN there.

Not supported (an :class:`InkMLError` says so): ``traceView`` ranges
(``from``/``to``). ``annotationXML``, brushes, timestamps and canvas
transforms are ignored.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from writemate.errors import WritemateError

NS = "http://www.w3.org/2003/InkML"
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"

# One value of trace data: an optional difference prefix, then a number, a boolean, "?" or "*".
_VALUE = re.compile(r"\s*([!'\"]?)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?#[0-9A-Fa-f]+|[TF?*])")


class InkMLError(WritemateError):
    """The data is not InkML this reader understands."""


@dataclass
class Channel:
    name: str  # "X", "Y", "T" (time), "F" (force), ...
    type: str = "decimal"  # "decimal", "integer", "double" or "boolean"
    intermittent: bool = False  # may be left out of a point


@dataclass
class Trace:
    id: str
    points: np.ndarray  # (N, C) float64, one column per channel; NaN where a value is unknown
    channels: tuple[str, ...] = ("X", "Y")

    def column(self, name: str) -> np.ndarray:
        if name not in self.channels:
            raise InkMLError(f"trace {self.id!r} has no channel {name!r} (it has {', '.join(self.channels)})")
        return self.points[:, self.channels.index(name)]

    def xy(self) -> np.ndarray:
        """The pen positions ``(N, 2)``."""
        return np.column_stack([self.column("X"), self.column("Y")])


@dataclass
class TraceGroup:
    id: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    trace_ids: list[str] = field(default_factory=list)  # this group's own strokes, in order
    groups: list["TraceGroup"] = field(default_factory=list)  # nested groups

    def all_trace_ids(self) -> list[str]:
        """Own traces, then those of the nested groups, depth first."""
        ids = list(self.trace_ids)
        for group in self.groups:
            ids.extend(group.all_trace_ids())
        return ids


@dataclass
class InkSample:
    """One labelled piece of ink, e.g. a character."""

    label: str
    strokes: list[np.ndarray]  # (N_i, 2) absolute x, y per stroke
    annotations: dict[str, str]  # the document's, overridden by its enclosing groups' and its own
    id: str | None = None

    @property
    def writer(self) -> str | None:
        return self.annotations.get("writer")


@dataclass
class InkDocument:
    channels: list[Channel] = field(default_factory=lambda: [Channel("X"), Channel("Y")])
    annotations: dict[str, str] = field(default_factory=dict)
    traces: dict[str, Trace] = field(default_factory=dict)  # by id, in document order
    groups: list[TraceGroup] = field(default_factory=list)  # top-level trace groups

    def strokes(self, trace_ids: list[str]) -> list[np.ndarray]:
        return [self.traces[t].xy() for t in trace_ids]

    def samples(self, label: str = "truth") -> list[InkSample]:
        """Every trace group annotated with ``label``, in document order (nested groups
        inside a labelled group belong to it). Without such groups, the whole document
        is one sample if the root carries ``label``."""
        found: list[InkSample] = []

        def visit(group: TraceGroup, inherited: dict[str, str]) -> None:
            annotations = {**inherited, **group.annotations}
            if label in group.annotations:
                strokes = self.strokes(group.all_trace_ids())
                found.append(InkSample(group.annotations[label], strokes, annotations, group.id))
                return
            for child in group.groups:
                visit(child, annotations)

        for group in self.groups:
            visit(group, self.annotations)
        if not found and label in self.annotations:
            found.append(InkSample(self.annotations[label], self.strokes(list(self.traces)), dict(self.annotations)))
        return found


# -- reading ---------------------------------------------------------------------


def _local(tag) -> str:
    """Tag name without its namespace (files with and without the InkML namespace both occur)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _ref(text: str | None) -> str:
    return (text or "").strip().lstrip("#")


def _element_id(el) -> str | None:
    return el.get(XML_ID) or el.get("id")


def parse_trace_data(text: str, channels: int) -> np.ndarray:
    """Trace text to ``(N, channels)`` float64 values (see the module notes for the grammar)."""
    points = [p for p in text.split(",") if p.strip()]
    if all(len(p.split()) == channels for p in points):  # the common case: explicit numbers only
        try:
            return np.array(text.replace(",", " ").split(), dtype=np.float64).reshape(len(points), channels)
        except ValueError:
            pass  # prefixes, booleans or values joined by signs: use the full grammar
    out = np.full((len(points), channels), np.nan)
    mode = ["!"] * channels
    value = [np.nan] * channels  # last value of each channel
    change = [0.0] * channels  # last first difference of each channel
    second = [0.0] * channels  # last second difference of each channel
    for row, point in enumerate(points):
        pos, col = 0, 0
        while pos < len(point.rstrip()):
            match = _VALUE.match(point, pos)
            if not match:
                raise InkMLError(f"unreadable trace data near {point[pos : pos + 20].strip()!r}")
            if col >= channels:
                raise InkMLError(f"a point has more values than the {channels} channels of its trace format")
            prefix, token = match.groups()
            pos = match.end()
            if prefix:
                mode[col] = prefix
            if token == "?":
                new = np.nan
            elif token == "*":  # the previous change again, in the channel's difference order
                new = value[col] + {"!": 0.0, "'": change[col], '"': change[col] + second[col]}[mode[col]]
            else:
                number = 1.0 if token == "T" else 0.0 if token == "F" else _number(token)
                if mode[col] == "!":
                    new = number
                elif mode[col] == "'":
                    new = value[col] + number
                else:
                    second[col] = number
                    new = value[col] + change[col] + number
            if np.isfinite(value[col]) and np.isfinite(new):
                change[col] = new - value[col]
            value[col] = new
            out[row, col] = new
            col += 1
    return out


def _number(token: str) -> float:
    if "#" in token:
        sign = -1.0 if token.startswith("-") else 1.0
        return sign * int(token.lstrip("+-#"), 16)
    return float(token)


def _read_format(el, formats: dict[str, list[Channel]]) -> list[Channel]:
    """Channels of a ``<traceFormat>`` element (or of the one its ``href`` names)."""
    href = _ref(el.get("href"))
    if href:
        if href not in formats:
            raise InkMLError(f"traceFormat refers to unknown format {href!r}")
        return formats[href]
    channels = []
    for child in el:
        if _local(child.tag) == "channel":
            channels.append(Channel(child.get("name", ""), child.get("type", "decimal")))
        elif _local(child.tag) == "intermittentChannels":
            channels.extend(
                Channel(c.get("name", ""), c.get("type", "decimal"), intermittent=True)
                for c in child
                if _local(c.tag) == "channel"
            )
    if not channels or any(not c.name for c in channels):
        raise InkMLError("a traceFormat declares no channels or a channel without a name")
    return channels


class _Reader:
    """Reads named formats and contexts first, then annotations, traces and trace groups
    in document order; trace views are resolved once everything is read."""

    def __init__(self, root):
        self.root = root
        self.formats: dict[str, list[Channel]] = {}  # traceFormat id -> channels
        self.contexts: dict[str, list[Channel]] = {}  # context id -> channels
        self.doc = InkDocument(annotations={}, traces={}, groups=[])
        self.group_ids: dict[str, TraceGroup] = {}
        self.all_groups: list[TraceGroup] = []
        self.default: list[Channel] | None = None

    def run(self) -> InkDocument:
        self._collect_formats(self.root)
        current = self.default or [Channel("X"), Channel("Y")]
        self.doc.channels = current
        for el in self.root:
            tag = _local(el.tag)
            if tag == "annotation" and el.get("type"):
                self.doc.annotations[el.get("type")] = (el.text or "").strip()
            elif tag == "traceFormat":
                current = _read_format(el, self.formats)
            elif tag == "context" and _element_id(el) is None:  # a context change for what follows
                current = self._context_channels(el, current)
            elif tag == "trace":
                self._trace(el, current)
            elif tag == "traceGroup":
                self.doc.groups.append(self._group(el, current))
        self._resolve()
        return self.doc

    def _collect_formats(self, root) -> None:
        """Named formats and contexts anywhere in the file (usually in ``<definitions>``)."""
        for el in root.iter():
            tag = _local(el.tag)
            if tag == "traceFormat" and not el.get("href"):
                channels = _read_format(el, self.formats)
                if _element_id(el):
                    self.formats[_element_id(el)] = channels
                if self.default is None:
                    self.default = channels
        for el in root.iter():
            if _local(el.tag) == "context" and _element_id(el):
                self.contexts[_element_id(el)] = self._context_channels(el, None)

    def _context_channels(self, el, fallback):
        for child in el:
            if _local(child.tag) == "traceFormat":
                return _read_format(child, self.formats)
        fmt = _ref(el.get("traceFormatRef"))
        if fmt:
            if fmt not in self.formats:
                raise InkMLError(f"context refers to unknown traceFormat {fmt!r}")
            return self.formats[fmt]
        parent = _ref(el.get("contextRef"))
        if parent and parent in self.contexts:
            return self.contexts[parent]
        return fallback

    def _channels_for(self, el, current):
        ref = _ref(el.get("contextRef"))
        if not ref:
            return current
        if ref not in self.contexts:
            raise InkMLError(f"{_local(el.tag)} refers to unknown context {ref!r}")
        return self.contexts[ref] or current

    def _trace(self, el, current) -> str:
        channels = self._channels_for(el, current)
        trace_id = _element_id(el)
        if trace_id is None:  # unnamed traces get a name nobody else uses
            n = len(self.doc.traces)
            while f"_t{n}" in self.doc.traces:
                n += 1
            trace_id = f"_t{n}"
        if trace_id in self.doc.traces:
            raise InkMLError(f"two traces have the id {trace_id!r}")
        points = parse_trace_data(el.text or "", len(channels))
        self.doc.traces[trace_id] = Trace(trace_id, points, tuple(c.name for c in channels))
        return trace_id

    def _group(self, el, current) -> TraceGroup:
        """A trace group whose ``trace_ids`` still hold raw references (see :meth:`_resolve`)."""
        current = self._channels_for(el, current)
        group = TraceGroup(id=_element_id(el))
        if group.id:
            self.group_ids[group.id] = group
        self.all_groups.append(group)
        for child in el:
            tag = _local(child.tag)
            if tag == "annotation" and child.get("type"):
                group.annotations[child.get("type")] = (child.text or "").strip()
            elif tag == "trace":
                group.trace_ids.append(self._trace(child, current))
            elif tag == "traceGroup":
                group.groups.append(self._group(child, current))
            elif tag == "traceView":
                if child.get("from") or child.get("to"):
                    raise InkMLError("traceView ranges (from/to) are not supported")
                group.trace_ids.append(_ref(child.get("traceDataRef")))
        return group

    def _expand(self, group: TraceGroup, seen: tuple[str, ...] = ()) -> list[str]:
        """Trace ids a group's references stand for: a trace, or every trace of a named group."""
        ids = []
        for ref in group.trace_ids:
            if ref in self.doc.traces:
                ids.append(ref)
            elif ref in self.group_ids and ref not in seen:
                ids.extend(self._expand_all(self.group_ids[ref], seen + (ref,)))
            else:
                raise InkMLError(f"traceView refers to unknown trace {ref!r}")
        return ids

    def _expand_all(self, group: TraceGroup, seen: tuple[str, ...]) -> list[str]:
        ids = self._expand(group, seen)
        for child in group.groups:
            ids.extend(self._expand_all(child, seen))
        return ids

    def _resolve(self) -> None:
        expanded = [self._expand(group) for group in self.all_groups]
        for group, ids in zip(self.all_groups, expanded):
            group.trace_ids = ids


def read_inkml(source: str | Path | bytes) -> InkDocument:
    """Parse an InkML file (a path) or its content (bytes); raises :class:`InkMLError`."""
    if isinstance(source, bytes):
        name, data = "InkML data", source
    else:
        name = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as e:
            raise InkMLError(f"{name}: cannot read ({e.strerror or e})") from e
    try:
        root = SafeET.fromstring(data)
    except (ET.ParseError, DefusedXmlException) as e:
        raise InkMLError(f"{name}: not well-formed XML ({e})") from e
    if _local(root.tag) != "ink":
        raise InkMLError(f"{name}: the root element is <{_local(root.tag)}>, not <ink>")
    try:
        return _Reader(root).run()
    except InkMLError as e:
        raise InkMLError(f"{name}: {e}") from e


# -- writing -------------------------------------------------------------------------


def _format_value(value: float, integer: bool) -> str:
    if not np.isfinite(value):
        return "?"
    if integer or float(value).is_integer():
        return str(int(round(value)))
    return repr(float(value))


def write_inkml(doc: InkDocument, path: str | Path | None = None) -> bytes:
    """The document as InkML bytes (UTF-8), also written to ``path`` if given.

    All traces must use the document's channels; trace groups are written with
    ``traceView`` references to the traces.
    """
    names = tuple(c.name for c in doc.channels)
    integer = [c.type == "integer" for c in doc.channels]
    root = ET.Element("ink", xmlns=NS)  # plain tags below inherit the InkML namespace
    fmt = ET.SubElement(root, "traceFormat")
    regular = [c for c in doc.channels if not c.intermittent]
    intermittent = [c for c in doc.channels if c.intermittent]
    for c in regular:
        ET.SubElement(fmt, "channel", name=c.name, type=c.type)
    if intermittent:
        block = ET.SubElement(fmt, "intermittentChannels")
        for c in intermittent:
            ET.SubElement(block, "channel", name=c.name, type=c.type)
    for kind, text in doc.annotations.items():
        ET.SubElement(root, "annotation", type=kind).text = text
    for trace in doc.traces.values():
        if trace.channels != names:
            raise InkMLError(f"trace {trace.id!r} has channels {trace.channels}, the document {names}")
        el = ET.SubElement(root, "trace", {XML_ID: trace.id})
        el.text = ", ".join(
            " ".join(_format_value(v, integer[i]) for i, v in enumerate(row)) for row in np.asarray(trace.points)
        )

    def add_group(parent, group: TraceGroup) -> None:
        el = ET.SubElement(parent, "traceGroup", {XML_ID: group.id} if group.id else {})
        for kind, text in group.annotations.items():
            ET.SubElement(el, "annotation", type=kind).text = text
        for trace_id in group.trace_ids:
            if trace_id not in doc.traces:
                raise InkMLError(f"trace group {group.id!r} names unknown trace {trace_id!r}")
            ET.SubElement(el, "traceView", traceDataRef=f"#{trace_id}")
        for child in group.groups:
            add_group(el, child)

    for group in doc.groups:
        add_group(root, group)
    ET.indent(root)
    data = ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
    if path is not None:
        Path(path).write_bytes(data)
    return data


def document_from_samples(
    samples: list[tuple[str, list[np.ndarray]]], annotations: dict[str, str] | None = None, integer: bool = False
) -> InkDocument:
    """A document of labelled samples ``(label, strokes)``: one trace per stroke (X, Y),
    one trace group per sample with a ``truth`` annotation, all inside a root group."""
    doc = InkDocument(
        channels=[Channel("X", "integer" if integer else "decimal"), Channel("Y", "integer" if integer else "decimal")],
        annotations=dict(annotations or {}),
    )
    root = TraceGroup(id="root")
    for i, (label, strokes) in enumerate(samples):
        group = TraceGroup(id=f"g{i}", annotations={"truth": label})
        for stroke in strokes:
            trace_id = f"t{len(doc.traces)}"
            doc.traces[trace_id] = Trace(trace_id, np.asarray(stroke, dtype=np.float64).reshape(-1, 2))
            group.trace_ids.append(trace_id)
        root.groups.append(group)
    doc.groups.append(root)
    return doc
