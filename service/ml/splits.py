"""Which images of a dataset's training split a job validates on, and which it trains on.

The validation images depend only on the dataset's labels and `validation_size`, never on the job's
seed, so every job of a dataset is ranked on the same images:

    order       = numpy.random.default_rng(VALIDATION_SEED).permutation(n)
    k_c         = class c's share of validation_size (its count x size / n, rounded by largest remainder)
    validation  = for each class c, the first k_c images of class c in `order` (returned sorted)
    training    = every other image, in the split's order; train_limit keeps the first N of them

A smaller validation_size takes nearly a subset of a larger one's images, not always all of it (largest
remainder can give a class one image fewer as the total grows: on MNIST, 14,999 and 15,000 differ so).
validation_size 0 trains on the first train_limit images of the split, exactly as before validation existed.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray

from .data import Indices, Labels
from .spec import SplitName, TrainSpec

VALIDATION_SEED = 0
# What a model did with an image of its dataset: trained on it, held it out to validate on, left it out
# (past train_limit), or kept it as a test image; image_uses codes each by its place here.
ImageUse = Literal["trained", "validation", "unused", "test"]
IMAGE_USES: tuple[ImageUse, ...] = get_args(ImageUse)


def class_quotas(labels: Labels, size: int) -> np.ndarray:
    """Images of each class in a validation split of `size`: proportional, largest remainder first."""
    counts = np.bincount(labels, minlength=int(labels.max(initial=0)) + 1)
    exact = counts * size / len(labels)
    quotas = np.floor(exact).astype(np.int64)
    # The classes with the largest fractional parts get the images floor() left over (ties: lowest class).
    leftover = size - int(quotas.sum())
    quotas[np.argsort(-(exact - quotas), kind="stable")[:leftover]] += 1
    return quotas


def validation_indices(labels: Labels, size: int) -> Indices:
    """The validation images of a training split with these labels, sorted (see the module's docstring)."""
    if not 0 <= size < len(labels):
        raise ValueError(
            f"validation_size {size:,} leaves nothing to train on: the training split has {len(labels):,} images"
        )
    if size == 0:
        return np.empty(0, dtype=np.int64)
    order = np.random.default_rng(VALIDATION_SEED).permutation(len(labels))
    ordered = labels[order]
    chosen = [order[ordered == c][:k] for c, k in enumerate(class_quotas(labels, size))]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def training_indices(labels: Labels, spec: TrainSpec, validation: Indices | None = None) -> Indices:
    """The images spec trains on: those not held out for validation, the first train_limit of them."""
    held = validation_indices(labels, spec.validation_size) if validation is None else validation
    keep = np.ones(len(labels), dtype=bool)
    keep[held] = False
    return np.flatnonzero(keep)[: spec.train_limit].astype(np.int64)


def scored_indices(labels: Labels, spec: TrainSpec, split: str) -> Indices:
    """The images of a split that its accuracy and confusion matrix count: on train those trained on
    (not the validation images), on test every one, on validation (`labels` the train file's) those held out."""
    if split == "validation":
        return validation_indices(labels, spec.validation_size)
    return np.flatnonzero(counted(image_uses(labels, spec, split))).astype(np.int64)


def file_of(split: str) -> SplitName:
    """The dataset file a split's images are in: validation's are held out of train."""
    return "test" if split == "test" else "train"


def counted(uses: NDArray[np.int8]) -> NDArray[np.bool_]:
    """Which of image_uses' images a model's accuracy and confusion matrix count."""
    return np.isin(uses, [IMAGE_USES.index("trained"), IMAGE_USES.index("test")])


def image_uses(labels: Labels, spec: TrainSpec, split: str) -> NDArray[np.int8]:
    """Each image's use by the model `spec` trained, as its place in IMAGE_USES."""
    if split != "train":
        return np.full(len(labels), IMAGE_USES.index("test"), dtype=np.int8)
    uses = np.full(len(labels), IMAGE_USES.index("unused"), dtype=np.int8)
    validation = validation_indices(labels, spec.validation_size)
    uses[validation] = IMAGE_USES.index("validation")
    uses[training_indices(labels, spec, validation)] = IMAGE_USES.index("trained")
    return uses
