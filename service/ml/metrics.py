"""Accuracy and the confusion matrix, in NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

Classes = NDArray[np.integer[Any]]  # a class index per example


def accuracy(labels: Classes, predicted: Classes) -> float:
    """Fraction of predictions equal to their label."""
    if len(labels) == 0:
        return 0.0
    return float(np.mean(labels == predicted))


def confusion_matrix(labels: Classes, predicted: Classes, num_classes: int = 10) -> NDArray[np.int64]:
    """num_classes x num_classes counts: rows are the true class, columns the predicted one."""
    flat = labels.astype(np.int64) * num_classes + predicted.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
