"""Figures as PNG bytes: confusion matrices, loss curves, galleries of images (misclassified, disagreed on).

Pure functions of plain data (no database, no request). They use matplotlib's object-oriented
API - a `Figure` drawn by its own `FigureCanvasAgg` - never pyplot, whose global figure manager
is not thread-safe; the API calls them from its threadpool. One lock still serialises drawing:
matplotlib makes no promise for concurrent use, and drawing holds the GIL anyway. At most
DRAWS_WAITING figures queue for it, counting those the API is still gathering the data of; one more
is refused with a 503 (service.turns), so that a client asking for many figures never drawn before
cannot queue every other user's figure behind its own.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from service.turns import Turns

DPI = 100
DRAWS_WAITING = 4  # figures that may queue behind the one being drawn (each a few tenths of a second)
DRAWS_PER_CLIENT = 2  # of those and the one drawn, the most one client holds
RETRY_AFTER_SECONDS = 2  # a refused figure's Retry-After: about what the waiting ones take to draw
FIGURE_QUEUE_FULL = f"Figure queue full: {DRAWS_WAITING} figures already queue to be drawn (Retry-After)"


# matplotlib promises nothing for concurrent use: one figure drawn at a time
DRAWING = Turns(
    DRAWS_WAITING,
    "Figure queue full",
    f"{DRAWS_WAITING} figures already queue to be drawn on this API process, the most it holds. "
    f"Retry in {RETRY_AFTER_SECONDS} s; a figure drawn before is served at once.",
    RETRY_AFTER_SECONDS,
    DRAWS_PER_CLIENT,
    f"This client already has {DRAWS_PER_CLIENT} figures being drawn or queued on this API process, its "
    f"share. Retry in {RETRY_AFTER_SECONDS} s; a figure drawn before is served at once.",
)


@dataclass(frozen=True)
class Curve:
    """One model's loss curve: x (steps or samples seen) against the recorded loss."""

    label: str
    x: Sequence[float]
    loss: Sequence[float]
    epoch_x: Sequence[float] = ()  # where each epoch ended, and its mean loss (drawn as markers)
    epoch_loss: Sequence[float] = ()


def _wrap(title: str, width: int) -> str:
    """Long titles broken at spaces so they fit the figure."""
    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with DRAWING:
        fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def confusion_matrix_png(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = "") -> bytes:
    """A heatmap of counts, rows the true class and columns the predicted one, each cell's count written in it."""
    m = np.asarray(matrix, dtype=np.int64)
    n = len(m)
    long_names = max((len(c) for c in classes), default=1) > 2
    fig = Figure(figsize=(8.5 if long_names else 7, 7.5 if long_names else 6.5), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(m, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="images")
    ax.set_xticks(
        range(n),
        labels=list(classes),
        rotation=45 if long_names else 0,
        ha="right" if long_names else "center",
    )
    ax.set_yticks(range(n), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(m) / m.sum() if m.sum() else 0.0
    summary = f"accuracy {accuracy:.2%} of {m.sum():,} images"
    ax.set_title(f"{_wrap(title, 70)}\n{summary}" if title else summary, fontsize=10)
    threshold = m.max() / 2 if m.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{m[i, j]:,}",
                ha="center",
                va="center",
                fontsize=7 if m.max() >= 1000 else 8,
                color="white" if m[i, j] > threshold else "black",
            )
    return _png(fig)


def loss_curves_png(curves: Sequence[Curve], title: str = "", xlabel: str = "step") -> bytes:
    """The recorded loss of each model against a common x axis, one legend entry per model."""
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    # matplotlib's cycle has 10 colours; a comparison holds 20: the eleventh drew in the first one's
    palette = colormaps["tab10" if len(curves) <= 10 else "tab20"].colors  # type: ignore[attr-defined]
    for i, curve in enumerate(curves):
        (line,) = ax.plot(
            curve.x, curve.loss, linewidth=1.2, label=curve.label, color=palette[i % len(palette)]
        )
        if len(curve.epoch_x):
            ax.plot(curve.epoch_x, curve.epoch_loss, "o", color=line.get_color(), markersize=4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("cross-entropy loss (mean since the previous point; dots: epoch mean)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(_wrap(title, 100), fontsize=10)
    if len(curves) > 1 or (curves and curves[0].label):
        ax.legend(fontsize=8, loc="upper right")
    if not any(len(c.loss) for c in curves):
        ax.text(0.5, 0.5, "no losses recorded", transform=ax.transAxes, ha="center", va="center")
    return _png(fig)


def mistakes_png(
    images: np.ndarray,
    true: Sequence[int] | np.ndarray,
    predicted: Sequence[int] | np.ndarray,
    classes: Sequence[str],
    title: str = "",
    indices: Sequence[int] | np.ndarray = (),
) -> bytes:
    """A grid of images (n, 784) in [0, 1], each captioned 'true → predicted' (and its index, when given)."""
    captions = [f"{classes[int(t)]} → {classes[int(p)]}" for t, p in zip(true, predicted, strict=True)]
    return gallery_png(images, captions, title, indices, empty="no misclassified images")


def gallery_png(
    images: np.ndarray,
    captions: Sequence[str],
    title: str = "",
    indices: Sequence[int] | np.ndarray = (),
    empty: str = "no images",
) -> bytes:
    """A grid of images (n, 784) in [0, 1], each under its caption (and its index, when given).

    One mosaic drawn with one imshow: a hundred subplots would take seconds.
    """
    n = len(images)
    long_names = max((len(c) for c in captions), default=1) > 9
    cols = min(max(n, 1), 6 if long_names else 10)
    rows = max(1, math.ceil(n / cols))
    gap, caption = 4, 14 if len(indices) else 9  # pixels of the mosaic between cells and above each image
    cell_w, cell_h = 28 + gap, 28 + caption
    mosaic = np.ones((rows * cell_h, cols * cell_w), dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, cols)
        top, left = r * cell_h + caption, c * cell_w + gap // 2
        mosaic[top : top + 28, left : left + 28] = np.asarray(images[k], dtype=np.float32).reshape(28, 28)
    inches = 1.55 if long_names else 1.0
    heading = _wrap(title, 12 * cols)
    fig = Figure(  # room for the heading's lines: a narrow gallery wraps a long title many times
        figsize=(
            cols * inches + 0.3,
            rows * inches * cell_h / cell_w + 0.2 + 0.17 * len(heading.splitlines()),
        ),
        layout="constrained",
    )
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    for k in range(n):
        r, c = divmod(k, cols)
        text = captions[k] + (f"\n#{int(indices[k])}" if len(indices) else "")
        ax.text(
            c * cell_w + cell_w / 2,
            r * cell_h + caption - 1,
            text,
            ha="center",
            va="bottom",
            fontsize=7,
            linespacing=1.0,
        )
    if n == 0:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(heading, fontsize=10)
    return _png(fig)
