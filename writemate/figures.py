"""The diagnostic figures of Graves (2013), drawn from a real forward pass of the networks.

    >>> import writemate
    >>> from writemate import figures
    >>> fig = figures.explain(writemate.load(), "under the sea", writemate.load("prediction"))
    >>> fig.savefig("explain.png", dpi=150)

:func:`explain` lets the synthesis network write a line, then reads that line
back through the networks with teacher forcing and draws four panels:

1. the soft window (Figure 13 style): the weight phi(t, u) of each character
   u of the text at each time step t (eq. 46);
2. the written line under it, coloured by time step;
3. the mixture density of the next pen position, summed over the line
   (Figure 10 style): at each step the network's distribution of the next
   point (eqs. 23-25), placed at the current point, is added to a map of
   the page, so high values are where successive predictions overlap;
4. the end-of-stroke probability at each step (eq. 18), with the line's
   real pen lifts.

Panels 3 and 4 come from the prediction network (section 4) when one is
given. Without one, panel 3 shows the synthesis network's own mixture (which
also sees the text) and panel 4 only the synthesis network; the panel title
says which network was used.

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot,
so they render with the Agg backend and touch no global state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from writemate import alphabet, ink
from writemate.api import prepare_text
from writemate.data import batching
from writemate.errors import WritemateError
from writemate.models import mdn, synthesis

MAX_CHARS = 80  # one line; longer texts make the window panel unreadable
SPACE = "\u2423"  # "open box", how the window panel shows a space


@dataclass
class Reading:
    """What one network predicted while reading a line: at step t, the distribution of point t + 1."""

    network: str  # "synthesis network" or "prediction network"
    y: torch.Tensor  # (T-1, 1 + 6M) mixture outputs, in the network's normalised units
    scale: np.ndarray  # (2,) the network's offset std: normalised units -> whiteboard units
    nll: float  # nats for the whole line, eq. 26

    @property
    def eos(self) -> np.ndarray:
        """P(point t + 1 ends a stroke) for t = 0..T-2, eq. 18."""
        return torch.sigmoid(mdn.split(self.y).eos_logit).numpy()


@dataclass
class Trace:
    """A line written by the synthesis network, and what the networks computed reading it back."""

    text: str
    offsets: np.ndarray  # (T, 3) whiteboard units; row 0 is (0, 0, 0)
    phi: np.ndarray  # (T-1, U) window weights at steps t = 0..T-2
    synthesis: Reading
    prediction: Reading | None  # None when no prediction network was given

    @property
    def points(self) -> np.ndarray:
        """(T, 2) absolute pen positions, y down."""
        return np.cumsum(self.offsets[:, :2], axis=0)


def _read(network: str, forward, raw: np.ndarray, stats: ink.OffsetStats) -> tuple[Reading, tuple]:
    """Teacher-forced pass of ``forward`` over raw offsets (T, 3); returns the reading and any extra outputs."""
    x, target, _ = batching.teacher_forcing([ink.normalise(raw, stats)])  # (1, T-1, 3) each
    with torch.inference_mode():
        y, *extra = forward(x)  # y (1, T-1, 1 + 6M)
        nll = float(mdn.nll(y, target).sum())
    return Reading(network, y[0], stats.scale.astype(np.float64), nll), tuple(extra)


def trace(writer, text: str, prediction=None, bias: float = 0.75, seed: int = 0) -> Trace:
    """Let ``writer`` (a :class:`writemate.api.Writer`) write one line of ``text``, then read it back.

    ``prediction`` is an optional :class:`writemate.scribble.Scribbler`.
    """
    mdn.check_bias_and_seed(bias, seed)
    from writemate.api import RETRIES  # capped lines replaced as `writemate write` does (not read back)

    offsets = synthesis.sample(writer.model, [text], bias=bias, seed=seed, retries=RETRIES)[0]  # (T, 3) normalised
    raw = ink.denormalise(offsets, writer.stats)
    chars = torch.as_tensor([alphabet.encode(text)])  # (1, U)
    chars_mask = torch.ones_like(chars, dtype=torch.bool)
    synth, (_, phi) = _read(
        "synthesis network", lambda x: writer.model(x, chars, chars_mask, return_phi=True), raw, writer.stats
    )  # phi (1, T-1, U)
    pred = None
    if prediction is not None:
        pred, _ = _read("prediction network", prediction.model, raw, prediction.stats)
    return Trace(text=text, offsets=raw, phi=phi[0].numpy(), synthesis=synth, prediction=pred)


def density_map(reading: Reading, points: np.ndarray, cell: float) -> tuple[np.ndarray, list[float]]:
    """Sum over t of the density of point t + 1 on a grid over the page (Graves Figure 10).

    ``points`` (T, 2) are the line's absolute positions; ``cell`` the grid
    spacing in whiteboard units. Returns the map (rows = y, down the page) in
    probability per square unit, and its extent ``[left, right, bottom, top]``
    for ``imshow``. Each mixture component (eqs. 23-24) is evaluated on its own
    box of 4 standard deviations (all but about 0.01 % of its mass); components
    of weight below 1e-4 are left out (at most 0.2 % of a step's mass), and
    components narrower than half a cell are widened to half a cell, so that
    the grid samples them without losing their mass.
    """
    margin = 8 * cell
    x0, y0 = points.min(axis=0) - margin
    x1, y1 = points.max(axis=0) + margin
    gx = np.arange(x0, x1, cell)  # (W,) cell centres
    gy = np.arange(y0, y1, cell)  # (H,)
    image = np.zeros((len(gy), len(gx)))
    mix = mdn.split(reading.y)  # log_pi (T-1, M), mu (T-1, M, 2), log_sigma (T-1, M, 2), rho (T-1, M)
    pi = mix.log_pi.exp().numpy()  # (T-1, M)
    mu = points[:-1, None, :] + mix.mu.numpy() * reading.scale  # (T-1, M, 2): next point = this point + offset
    sigma = np.maximum(mix.log_sigma.exp().numpy() * reading.scale, cell / 2)  # (T-1, M, 2) whiteboard units
    rho = mix.rho.numpy().astype(np.float64)  # (T-1, M)
    for t, m in zip(*np.nonzero(pi > 1e-4)):  # components that carry any weight
        lo_x, hi_x = np.searchsorted(gx, [mu[t, m, 0] - 4 * sigma[t, m, 0], mu[t, m, 0] + 4 * sigma[t, m, 0]])
        lo_y, hi_y = np.searchsorted(gy, [mu[t, m, 1] - 4 * sigma[t, m, 1], mu[t, m, 1] + 4 * sigma[t, m, 1]])
        if hi_x <= lo_x or hi_y <= lo_y:
            continue  # off the page
        zx = (gx[lo_x:hi_x] - mu[t, m, 0]) / sigma[t, m, 0]  # (w,)
        zy = (gy[lo_y:hi_y] - mu[t, m, 1]) / sigma[t, m, 1]  # (h,)
        one_minus_rho2 = 1 - rho[t, m] ** 2
        z = zx[None, :] ** 2 + zy[:, None] ** 2 - 2 * rho[t, m] * zy[:, None] * zx[None, :]  # (h, w), eq. 25
        norm = 2 * np.pi * sigma[t, m, 0] * sigma[t, m, 1] * np.sqrt(one_minus_rho2)
        image[lo_y:hi_y, lo_x:hi_x] += pi[t, m] * np.exp(-z / (2 * one_minus_rho2)) / norm  # eq. 24, weighted by pi
    return image, [gx[0] - cell / 2, gx[-1] + cell / 2, gy[-1] + cell / 2, gy[0] - cell / 2]


# -- the panels ------------------------------------------------------------------


def _colorbar(fig: Figure, ax, mappable, label: str) -> None:
    """A colour bar just right of ``ax`` that leaves the axes' width alone (time axes stay aligned)."""
    cax = ax.inset_axes([1.01, 0.0, 0.012, 1.0])
    fig.colorbar(mappable, cax=cax).set_label(label)


def draw_window(fig: Figure, ax, tr: Trace) -> None:
    steps, chars = tr.phi.shape
    top = max(float(np.quantile(tr.phi, 0.995)), 1e-6)  # a few very high weights must not wash out the rest
    image = ax.imshow(
        tr.phi.T,
        aspect="auto",
        cmap="Greys",
        vmin=0,
        vmax=top,
        interpolation="nearest",
        extent=[-0.5, steps - 0.5, chars - 0.5, -0.5],
    )
    ax.set_yticks(range(chars), [SPACE if c == " " else c for c in tr.text], fontsize=8)
    ax.set_ylabel("character u of the text")
    ax.set_xlabel("time step t (pen point)")
    ax.set_title("Soft window of the synthesis network: weight φ(t, u) of each character (eq. 46; Graves Fig. 13)")
    _colorbar(fig, ax, image, "φ(t, u)")


def draw_line(fig: Figure, ax, tr: Trace) -> None:
    points = tr.points
    steps = np.arange(len(points))
    ends = np.flatnonzero(tr.offsets[:, 2] > 0.5) + 1
    segments, times = [], []
    for idx in np.split(steps, ends):  # one stroke per pen-down run
        if len(idx) > 1:
            segments.extend(np.stack([points[idx[:-1]], points[idx[1:]]], axis=1))
            times.extend(idx[:-1])
    lines = LineCollection(segments, array=np.asarray(times, dtype=float), cmap="viridis", linewidths=1.5)
    lines.set_clim(0, len(points) - 1)
    ax.add_collection(lines)
    _space_axes(ax, points)
    ax.set_title("The written line, coloured by time step")
    _colorbar(fig, ax, lines, "time step t")


def draw_density(fig: Figure, ax, tr: Trace) -> None:
    reading = tr.synthesis if tr.prediction is None else tr.prediction
    points = tr.points
    cell = max(np.ptp(points[:, 0]), np.ptp(points[:, 1]), 1.0) / 900  # ~900 cells along the line
    image, extent = density_map(reading, points, cell)
    top = image.max()
    if top > 0:
        shown = ax.imshow(
            np.maximum(image, top * 1e-4),
            extent=extent,
            cmap="inferno",
            norm=LogNorm(vmin=top * 1e-4, vmax=top),
            interpolation="bilinear",
        )
        _colorbar(fig, ax, shown, "summed density (per unit²)")
    for stroke in ink.offsets_to_strokes(tr.offsets):
        ax.plot(stroke[:, 0], stroke[:, 1], color="white", linewidth=0.6, alpha=0.8)
    _space_axes(ax, points, extent)
    if tr.prediction is not None:
        source = "prediction network"
    else:  # documented fallback: the synthesis network's mixture, which also sees the text
        source = "synthesis network's own mixture (no prediction network given)"
    ax.set_title(f"Density of the next pen position, summed over the line (eqs. 23-25; Graves Fig. 10): {source}")


def draw_eos(fig: Figure, ax, tr: Trace) -> None:
    steps = np.arange(1, len(tr.offsets))  # the point each prediction is about
    lifts = np.flatnonzero(tr.offsets[:, 2] > 0.5)
    ax.vlines(lifts, 0, 1, color="0.75", linewidth=1, label="pen lifts in the line")
    for reading, color in ((tr.synthesis, "tab:blue"), (tr.prediction, "tab:orange")):
        if reading is not None:
            ax.plot(steps, reading.eos, color=color, linewidth=1, label=f"{reading.network} (line NLL {reading.nll:.0f} nats)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(-0.5, len(tr.offsets) - 1.5)
    ax.set_xlabel("time step t (pen point)")
    ax.set_ylabel("P(pen lifts)")
    ax.set_title("End-of-stroke probability e of the next point (eq. 18)")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)


def _space_axes(ax, points: np.ndarray, extent: list[float] | None = None) -> None:
    """Page axes in whiteboard units, equal scale, y down as the pen wrote."""
    margin = 20.0
    left, right = points[:, 0].min() - margin, points[:, 0].max() + margin
    top, bottom = points[:, 1].min() - margin, points[:, 1].max() + margin
    if extent is not None:
        left, right, bottom, top = extent
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)  # inverted: y grows down the page
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x (whiteboard units)")
    ax.set_ylabel("y")


def explain(writer, text: str, prediction=None, bias: float = 0.75, seed: int = 0) -> Figure:
    """The four diagnostic panels for ``text`` written by ``writer`` (see the module docstring).

    ``prediction``: an optional :class:`writemate.scribble.Scribbler` for the
    density and end-of-stroke panels. Raises WritemateError for a text that is
    empty, longer than :data:`MAX_CHARS` (it is one line) or holds characters
    outside the alphabet (AlphabetError).
    """
    text = " ".join(prepare_text(text).split())  # one line: line breaks become spaces
    if bias < 0:
        raise WritemateError("bias must be 0 or more")
    if len(text) > MAX_CHARS:
        raise WritemateError(f"explain draws one line of at most {MAX_CHARS} characters; this text has {len(text)}")
    tr = trace(writer, text, prediction, bias, seed)
    window_height = max(2.0, 0.16 * len(text))
    fig = Figure(figsize=(13, window_height + 7.5))
    grid = fig.add_gridspec(4, 1, height_ratios=[window_height, 2.0, 2.5, 1.8], hspace=0.55)
    window = fig.add_subplot(grid[0])
    draw_window(fig, window, tr)
    draw_line(fig, fig.add_subplot(grid[1]), tr)
    draw_density(fig, fig.add_subplot(grid[2]), tr)
    draw_eos(fig, fig.add_subplot(grid[3], sharex=window), tr)
    fig.suptitle(f"“{text}” written by the synthesis network (bias {bias:g}, seed {seed}); {len(tr.offsets)} points")
    fig.subplots_adjust(left=0.06, right=0.92, top=0.94, bottom=0.05)
    return fig
