"""Whether an input looks like a dataset's training images: a heuristic, in NumPy.

A network gives every input confident probabilities, an image of a line of text included. So each
prediction also measures its 28x28 input the way the training images measure: ink mass, how far its
centre of mass lies from theirs, and the height of its inked box (an upload is scaled to fit its
longer side, so a line of text comes out a few pixels tall). An input with a measure beyond what
nearly all training images show (their 0.1st to 99.9th percentiles, widened by a margin) is flagged
as unlike them. It is a heuristic: it catches lines of text, photos, blots and off-centre digits,
not every odd input (a circle is a fine zero), and about one real digit in a few hundred trips it
(docs/performance.md has the figures). A top probability below UNSURE is said too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

SIDE = 28
QUANTILE = 0.001  # each measure's range is its 0.1st to 99.9th percentile on the training images
INK = 0.5  # a pixel at least this bright belongs to the inked box
UNSURE = 0.5  # a top probability below this is a guess between classes
# How far past the range a measure must be before it counts, so that a thin-penned digit is not
# flagged: a few pixels' worth of ink, a pixel of centring (an upload's is rounded), two of height.
MARGIN = {"mass": 10.0, "offset": 1.0, "height": 2.0}
DESCRIBE = {
    "mass": "ink mass {value:.0f} (the training images: {low:.0f} to {high:.0f})",
    "offset": "centre of mass {value:.1f} pixels from theirs (the training images: at most {high:.1f})",
    "height": "inked box {value:.0f} pixels tall (the training images: {low:.0f} to {high:.0f})",
}


# Every pixel at most 1 of 255: pixels sent already divided by 255, the commonest slip with JSON pixels.
FAINT = "every pixel at most 1: pixels take 0-255 (multiply values scaled to 0-1 by 255)"


def _centres(images: NDArray[np.float32]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each image's centre of mass (row, column); NaN for an image without ink, which has none."""
    grid = images.reshape(-1, SIDE, SIDE)
    mass = grid.sum(axis=(1, 2), dtype=np.float64)
    inked = np.where(mass > 0, mass, np.nan)
    rows = grid.sum(axis=2, dtype=np.float64) @ np.arange(SIDE) / inked
    cols = grid.sum(axis=1, dtype=np.float64) @ np.arange(SIDE) / inked
    return rows, cols


def _height(images: NDArray[np.float32]) -> NDArray[np.int64]:
    """The height of each image's inked box (0 for an image without ink)."""
    rows: NDArray[np.bool_] = np.any(images.reshape(-1, SIDE, SIDE) >= INK, axis=2)
    first = np.where(rows.any(axis=1), rows.argmax(axis=1), SIDE)
    last = SIDE - 1 - rows[:, ::-1].argmax(axis=1)
    height: NDArray[np.int64] = np.maximum(last - first + 1, 0).astype(np.int64)
    return height


@dataclass(frozen=True)
class InputProfile:
    """The range of each measure over a dataset's training images (QUANTILE to 1 - QUANTILE), and
    where their centre of mass lies on average."""

    centre: tuple[float, float]
    low: dict[str, float]
    high: dict[str, float]

    @classmethod
    def of(cls, images: NDArray[np.float32]) -> InputProfile:
        """The profile of these images: (n, 784) in [0, 1]."""
        rows, cols = _centres(images)
        centre = (float(np.nanmean(rows)), float(np.nanmean(cols)))
        measures = _measures(images, centre)
        bounds = {k: np.nanquantile(v, [QUANTILE, 1 - QUANTILE]) for k, v in measures.items()}
        return cls(
            centre,
            low={k: float(b[0]) for k, b in bounds.items()},
            high={k: float(b[1]) for k, b in bounds.items()},
        )

    def unlike(self, images: NDArray[np.float32]) -> list[list[str]]:
        """For each image, what of it lies outside the training images' range (empty: nothing)."""
        measures = _measures(images, self.centre)
        out: list[list[str]] = [[] for _ in range(len(images))]
        for name, values in measures.items():
            low, high = self.low[name], self.high[name]
            # a blank image's offset is NaN: it has no centre to be far from theirs (its mass says it)
            for i in np.flatnonzero((values < low - MARGIN[name]) | (values > high + MARGIN[name])):
                out[i].append(DESCRIBE[name].format(value=float(values[i]), low=low, high=high))
        brightest = images.max(axis=1)
        for i in np.flatnonzero((brightest > 0) & (brightest <= 1 / 255)):
            out[i].append(FAINT)
        return out


def _measures(images: NDArray[np.float32], centre: tuple[float, float]) -> dict[str, NDArray[np.float64]]:
    rows, cols = _centres(images)
    return {
        "mass": images.sum(axis=1, dtype=np.float64),
        "offset": np.hypot(rows - centre[0], cols - centre[1]),
        "height": _height(images).astype(np.float64),
    }


def input_warning(unlike: list[str], top_probability: float) -> str | None:
    """The sentence a prediction carries: why its input looks unlike the training images, and whether
    the model was unsure; None when neither."""
    parts = []
    if unlike:
        parts.append(
            f"The input looks unlike the training images ({'; '.join(unlike)}): the prediction may mean nothing."
        )
    if top_probability < UNSURE:
        # to the hundredth, rounded as the probabilities beside it are ("16 %" read oddly next to 16.92 %),
        # but never up to the threshold: 49.997 % printed as "50.00 %" would contradict "under 50 %"
        shown = min(round(100 * top_probability, 2), 100 * UNSURE - 0.01)
        parts.append(f"The model is unsure: its top class has {shown:.2f} % probability.")
    return " ".join(parts) or None
