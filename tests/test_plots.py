"""The figures as pure functions: valid PNGs of a sensible size, whatever the data."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from service import plots
from service.ml.data import DATASETS

DIGITS = list(DATASETS["mnist"].classes)
FASHION = list(DATASETS["fashion-mnist"].classes)


def _open(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


@pytest.mark.parametrize("classes", [DIGITS, FASHION])
def test_confusion_matrix(classes):
    matrix = np.random.default_rng(0).integers(0, 1200, (10, 10)).tolist()
    image = _open(plots.confusion_matrix_png(matrix, classes, title="model 1, test split"))
    assert 500 <= image.width <= 1200 and 500 <= image.height <= 1200
    empty = _open(plots.confusion_matrix_png([[0] * 10] * 10, classes))  # no images at all: still a figure
    assert empty.size == image.size


def test_loss_curves():
    x = np.arange(10, 1000, 10)
    curves = [
        plots.Curve(
            f"#{i} learning_rate={lr}", x, 2.3 * np.exp(-x / (300 * lr * 10)) + 0.05, [500, 990], [0.9, 0.3]
        )
        for i, lr in enumerate((0.01, 0.1, 0.3), start=1)
    ]
    image = _open(plots.loss_curves_png(curves, title="three models", xlabel="samples seen"))
    assert (image.width, image.height) == (900, 550)
    _open(plots.loss_curves_png([plots.Curve("", [], [])]))  # nothing recorded yet


@pytest.mark.parametrize("n,classes", [(0, DIGITS), (1, DIGITS), (36, DIGITS), (100, DIGITS), (12, FASHION)])
def test_mistakes_grid_grows_with_the_images(n, classes):
    rng = np.random.default_rng(n)
    images = rng.random((n, 784), dtype=np.float32)
    image = _open(
        plots.mistakes_png(
            images,
            rng.integers(0, 10, n),
            rng.integers(0, 10, n),
            classes,
            title="mistakes",
            indices=np.arange(n),
        )
    )
    rows = max(1, -(-n // (6 if classes is FASHION else 10)))
    assert image.height >= 100 * rows and image.width >= 100


def test_figures_can_be_drawn_from_many_threads():
    matrix = np.eye(10, dtype=int).tolist()
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(plots.confusion_matrix_png(matrix, DIGITS)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results)) == 1  # the same bytes: nothing was shared between them
