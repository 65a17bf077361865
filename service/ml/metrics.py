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


NEAR_CHANCE = 1.5  # times chance level (1 / classes): at or below it a model has learned next to nothing


def near_chance(classes: int, learning_rate: float, **accuracies: float | None) -> str | None:
    """A sentence when the lowest of these accuracies (by split name) is near chance level, else None."""
    measured = {split: value for split, value in accuracies.items() if value is not None}
    if not measured:
        return None
    split, value = min(measured.items(), key=lambda item: item[1])
    chance = 1 / classes
    if value > NEAR_CHANCE * chance:
        return None
    return (
        f"{split.capitalize()} accuracy {value * 100:.2f} % is near chance level ({chance * 100:g} % with {classes} "
        f"classes): the model learned next to nothing. Try a smaller learning_rate than {learning_rate:g} "
        "or another init."
    )
