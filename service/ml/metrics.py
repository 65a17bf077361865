"""Accuracy, the confusion matrix and the per-class scores read from it, in NumPy."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class ClassScores:
    """Per class (index k), NaN where undefined: precision (of the images predicted k, the share that are k;
    undefined when none is), recall (of the images of k, the share predicted k; undefined when there are
    none) and F1 = 2 TP / (2 TP + FP + FN), undefined only when k is neither a label nor a prediction."""

    precision: NDArray[np.float64]
    recall: NDArray[np.float64]
    f1: NDArray[np.float64]
    support: NDArray[np.int64]  # the images of each class

    def macro(self) -> tuple[float, float, float]:
        """The mean of precision, recall and F1 over the classes that are a label or a prediction of the
        split, an undefined score counted as 0 (scikit-learn's default labels and zero_division=0): a class
        the model never predicts lowers the mean; one absent from the split (a small validation split
        missing a digit) does not, so a model right on every image scores 1 (it scored 0.5)."""
        present = ~np.isnan(self.f1)  # F1 is undefined only for a class neither a label nor a prediction
        if not present.any():
            return 0.0, 0.0, 0.0
        precision, recall, f1 = (
            float(np.nan_to_num(x[present], nan=0.0).mean()) for x in (self.precision, self.recall, self.f1)
        )
        return precision, recall, f1


def class_scores(matrix: NDArray[np.integer[Any]] | list[list[int]]) -> ClassScores:
    """Precision, recall and F1 of each class from a confusion matrix (rows true, columns predicted)."""
    counts = np.asarray(matrix, dtype=np.int64)
    tp = np.diag(counts).astype(np.float64)
    predicted, actual = counts.sum(axis=0), counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 is NaN: the score is undefined
        return ClassScores(
            precision=tp / predicted, recall=tp / actual, f1=2 * tp / (predicted + actual), support=actual
        )


NEAR_CHANCE = 1.5  # times chance level (1 / classes): at or below it a model has learned next to nothing


def near_chance(
    classes: int,
    learning_rate: float,
    usual_rate: float,
    zeros_with: str | None = None,
    *,
    sigmoid_layers: int = 0,
    **accuracies: float | None,
) -> str | None:
    """A sentence naming those of these accuracies (by split name) near chance level, else None; its
    advice moves the learning rate towards `usual_rate` (the optimizer's default), after another init
    when `zeros_with` names the hidden activation of a network whose hidden layers start at zeros (the
    likeliest cause). `sigmoid_layers`: the hidden sigmoid layers of a network trained by SGD (with or
    without momentum) from random weights, whose gradient they shrink on its way back."""
    chance = 1 / classes
    near = [
        (split, value)
        for split, value in accuracies.items()
        if value is not None and value <= NEAR_CHANCE * chance
    ]
    if not near:
        return None
    default = learning_rate == usual_rate  # nothing says which way: the default itself did not work here
    rate = (
        f"a learning_rate other than {learning_rate:g} (the one it trained with, its optimizer's default)"
        if default
        else f"a {'larger' if learning_rate < usual_rate else 'smaller'} learning_rate than {learning_rate:g} "
        f"(its optimizer's default is {usual_rate:g})"
    )
    if zeros_with is None and sigmoid_layers > 1 and learning_rate <= usual_rate:
        # the textbook's vanishing gradient: glorot and he start small, and SGD's steps stay small
        advice = (
            f"a larger learning_rate than {learning_rate:g}, adam, or relu: sigmoid's slope is at most 0.25, "
            f"so each of its {sigmoid_layers} sigmoid layers shrinks the gradient at least 4-fold on its way "
            "back, and plain SGD barely moves the first layers; or more epochs"
        )
    elif zeros_with is None:
        advice = f"{rate}, another init or more epochs" if default else f"{rate} or another init"
    else:
        # sigmoid(0) = 0.5: alike units learn as one; tanh(0) = relu(0) = 0: no gradient reaches them
        why = (
            "zeros start every unit of a hidden layer alike, so they stay alike and learn as one"
            if zeros_with == "sigmoid"
            else f"with {zeros_with}, zero weights make every hidden unit output 0, so no gradient reaches "
            "the hidden layers and only the output's biases learn"
        )
        advice = f"another init than zeros first (glorot or he): {why}; then {rate}{' or more epochs' if default else ''}"
    named = " and ".join(f"{split} accuracy {value * 100:.2f} %" for split, value in near)
    return (
        f"{named[0].upper()}{named[1:]} {'is' if len(near) == 1 else 'are'} near chance level "
        f"({chance * 100:g} % with {classes} classes): the model learned next to nothing. Try {advice}."
    )
