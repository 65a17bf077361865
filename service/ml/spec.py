"""The training spec: defined once, used unchanged by the API, the worker and both backends."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from service.quoting import did_you_mean

Backend = Literal["numpy", "torch"]
DatasetName = Literal["mnist", "fashion-mnist"]
SplitName = Literal["train", "test"]  # a dataset's two files; validation is carved out of train
Activation = Literal["sigmoid", "tanh", "relu"]
Init = Literal["zeros", "random", "glorot", "he"]
Optimizer = Literal["sgd", "momentum", "adam"]
Schedule = Literal["constant", "cosine"]

INPUT_SIZE = 784  # 28 x 28 pixels, flattened row by row
NUM_CLASSES = 10

Units = Annotated[int, Field(ge=1, le=4096)]
STORED = "stored"  # validation context of fields an earlier version stored (TrainSpec.read_back)


# Training's precision: a rate, L2 or momentum below float32's smallest normal (1e-50, 1e-320) trains
# as 0 while its job is named for it.
SMALLEST_REAL = float(np.finfo(np.float32).tiny)


def _real(value: float, info: ValidationInfo) -> float:
    # one stored before this rule still reads back (read_back)
    stored = bool(info.context and info.context.get(STORED))
    if value != 0 and abs(value) < SMALLEST_REAL and not stored:
        raise PydanticCustomError(
            "subnormal",
            "Input should be at least {smallest} in size, float32's smallest normal (training's "
            "precision: a smaller one trains as 0)",
            {"smallest": f"{SMALLEST_REAL:.3g}"},
        )
    return value + 0.0  # -0.0 + 0.0 is 0.0: a spec with l2 -0.0 is the spec with l2 0, one job, one key


Real = Annotated[float, AfterValidator(_real)]

# momentum's largest value in float32, which training reads it in: 0.99999999 rounds to 1 there, a
# velocity that never decays, which `lt=1` refuses when it is written so
LARGEST_FRACTION = float(np.nextafter(np.float32(1), np.float32(0)))


def _below_one_in_float32(value: float, info: ValidationInfo) -> float:
    if np.float32(value) >= 1 and not (info.context and info.context.get(STORED)):
        raise PydanticCustomError(
            "float32_one",
            "Input should be less than 1 in float32, the precision training reads it in, where it is 1 "
            "(the largest below is {largest})",
            {"largest": f"{LARGEST_FRACTION:.8f}"},
        )
    return value


# Adam's steps are normalised by the gradient's scale, so SGD's 0.1 makes it diverge.
DEFAULT_LEARNING_RATE: dict[str, float] = {"sgd": 0.1, "momentum": 0.1, "adam": 0.001}

MAX_EPOCHS = 200
MAX_VALIDATION_SIZE = 30_000  # half of MNIST's training split: a job keeps at least as many to train on


class EarlyStopping(BaseModel):
    """Stop when the validation loss has not improved for `patience` epochs; keep the best epoch's weights."""

    # allow_inf_nan: a NaN was told it is not <= its bound; JSON proper has no NaN or Infinity
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    patience: int = Field(
        ge=1,
        le=MAX_EPOCHS,
        description="Epochs without an improvement of the validation loss before training stops.",
    )
    min_delta: Real = Field(
        0.0,
        ge=0,
        le=10,
        description="How much lower than the best so far a validation loss must be to count.",
    )


def parameters_of(hidden_layers: Sequence[int]) -> int:
    """The weights and biases of a network with these hidden layers."""
    sizes = [INPUT_SIZE, *hidden_layers, NUM_CLASSES]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


class TrainSpec(BaseModel):
    """Everything that determines a trained model. Two equal specs give the same NumPy weights."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,  # as EarlyStopping's
        json_schema_extra={
            "examples": [
                {
                    "backend": "numpy",
                    "activation": "relu",
                    "init": "he",
                    "optimizer": "adam",
                    "learning_rate": 0.001,
                    "epochs": 1,
                    "train_limit": 5000,
                }
            ]
        },
    )

    backend: Backend = Field(description="Which implementation trains the network.")
    dataset: DatasetName = Field("mnist", description="IDX dataset under the data directory.")
    hidden_layers: Annotated[list[Units], Field(min_length=1, max_length=8)] = Field(
        default=[500, 250, 100],  # pydantic copies it for each instance
        description="Units in each hidden layer (1-8 layers of 1-4096 units).",
    )
    activation: Activation = Field("sigmoid", description="Hidden-layer activation.")
    init: Init = Field(
        "glorot",
        description="zeros; random = N(0, 1); glorot = U(±sqrt(6/(fan_in+fan_out))); "
        "he = N(0, 2/fan_in). Biases start at 0.",
    )
    optimizer: Optimizer = Field("sgd", description="sgd, momentum (heavy ball) or adam.")
    learning_rate: Real = Field(
        DEFAULT_LEARNING_RATE["sgd"],
        gt=0,
        le=10,
        description="Step size. Its default depends on the optimizer: "
        + ", ".join(f"{rate:g} for {name}" for name, rate in DEFAULT_LEARNING_RATE.items())
        + ".",
        json_schema_extra={"x-default-by-optimizer": DEFAULT_LEARNING_RATE},  # type: ignore[dict-item]
    )
    lr_schedule: Schedule = Field(
        "constant", description="constant, or cosine decay to 0 over all steps (per step)."
    )
    momentum: Annotated[Real, AfterValidator(_below_one_in_float32)] = Field(
        0.9,
        ge=0,
        lt=1,
        description="Momentum coefficient, read by the 'momentum' optimizer only (not Adam's β1): a job of "
        "another optimizer takes no value but this default.",
    )
    l2: Real = Field(
        0.0, ge=0, le=10, description="λ: λ·W is added to the weights' gradient (not the biases')."
    )
    epochs: int = Field(15, ge=1, le=MAX_EPOCHS, description="Passes over the training images.")
    batch_size: int = Field(
        64,
        ge=1,
        le=60000,
        description="Images a step, at most: an epoch's images are split into ceil(n / batch_size) steps of "
        "near-equal size (5,000 images at 64: 79 steps of 63 or 64), never a small remainder.",
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Sets the initial weights and each epoch's order of the images."
    )
    train_limit: int | None = Field(None, ge=1, description="Train on the first N training images only.")
    log_every: int = Field(100, ge=1, le=100_000, description="Steps between recorded losses.")
    validation_size: int = Field(
        5000,
        ge=0,
        le=MAX_VALIDATION_SIZE,
        description="Training images held out to validate on and rank by: the same images for every job "
        "of the dataset whatever its seed, stratified by class (docs/guide.md, 'The validation split'); train_limit "
        "applies to the rest. 0 trains on every image and ranks by test accuracy.",
    )
    early_stopping: EarlyStopping | None = Field(
        None,
        description="Stop once the validation loss has not improved by min_delta for patience epochs; "
        "the model keeps the weights of its best epoch. Needs validation_size > 0.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_learning_rate(cls, data: Any) -> Any:
        """A spec that names no learning rate gets its optimizer's default."""
        if isinstance(data, Mapping) and "learning_rate" not in data:
            optimizer = data.get("optimizer", "sgd")
            rate = DEFAULT_LEARNING_RATE.get(optimizer) if isinstance(optimizer, str) else None
            if rate is not None:  # an unknown optimizer (or a list, a number) is the optimizer field's error
                return {**data, "learning_rate": rate}
        return data

    @field_validator("early_stopping")
    @classmethod
    def _needs_validation(cls, value: EarlyStopping | None, info: ValidationInfo) -> EarlyStopping | None:
        if value is not None and info.data.get("validation_size") == 0:
            raise ValueError("early stopping watches the validation loss: it needs validation_size > 0")
        return value

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any] | str) -> TrainSpec:
        """A spec as a job row or a weight file stored it (a dict, or its JSON text).

        Those stored before validation_size existed trained on every training image: they read
        back as validation_size 0, whatever today's default.
        """
        fields = dict(json.loads(stored) if isinstance(stored, str) else stored)
        fields.setdefault("validation_size", 0)
        return cls.read_back(fields)

    @classmethod
    def read_back(cls, fields: Mapping[str, Any]) -> TrainSpec:
        """A spec from fields stored by an earlier version (a job row, a study's base and its trials'
        values), under the rules they were stored by: rules since added are for new input."""
        return cls.model_validate(fields, context={STORED: True})

    def as_trained(self) -> dict[str, Any]:
        """The fields that make its model what it is, as JSON: not log_every (what is recorded, not what is
        trained), and momentum as None unless its optimizer uses it."""
        fields = self.model_dump(mode="json", exclude={"log_every"})
        if self.optimizer != "momentum":
            fields["momentum"] = None
        return fields

    @property
    def layer_sizes(self) -> list[int]:
        """[784, *hidden_layers, 10]: the width of every layer, input and output included."""
        return [INPUT_SIZE, *self.hidden_layers, NUM_CLASSES]

    @property
    def n_parameters(self) -> int:
        return parameters_of(self.hidden_layers)

    @property
    def name(self) -> str:
        """A display key built from the hyperparameters, as the notebook keyed its models."""
        parts = [
            self.backend,
            "-".join(map(str, self.hidden_layers)),
            self.activation,
            self.init,
            self.optimizer,
            f"lr={self.learning_rate:g}",
        ]
        if self.lr_schedule != "constant":
            parts.append(self.lr_schedule)
        if self.optimizer == "momentum":
            parts.append(f"mom={self.momentum:g}")
        parts += [f"l2={self.l2:g}", f"epochs={self.epochs}", f"batch={self.batch_size}", f"seed={self.seed}"]
        if self.dataset != "mnist":
            parts.insert(0, self.dataset)
        if self.train_limit is not None:
            parts.append(f"n={self.train_limit}")
        if self.validation_size != VALIDATION_SIZE:
            parts.append(f"val={self.validation_size}")
        if self.early_stopping is not None:
            parts.append(f"patience={self.early_stopping.patience}")
        return ",".join(parts)


VALIDATION_SIZE: int = TrainSpec.model_fields["validation_size"].default
OPTIMIZER_DEFAULT: str = TrainSpec.model_fields["optimizer"].default


# What a sweep's grid, a study's space and either's base say of a name TrainSpec does not have.
def not_a_field(name: str, varied: str = "") -> str:
    """Why a search may not name `name`, and the field it likely meant: of those a sweep's grid ("grid")
    or a study's space ("space") may vary, or of all (a base)."""
    fields = [
        f
        for f in TrainSpec.model_fields
        if not varied or (f not in FIXED_IN_A_SEARCH and (varied == "grid" or f != "seed"))
    ]
    which = {"grid": " a sweep may vary", "space": " a study may search"}.get(varied, "")
    return f"not a TrainSpec field{which}" + did_you_mean(name, fields)


# ... and of the fields they may not vary: accuracies on two tasks, or on two sets of validation images,
# rank nothing against each other.
FIXED_IN_A_SEARCH = {
    "dataset": "a sweep or study ranks its configurations on one dataset: set it in base, one per dataset",
    "validation_size": "a sweep or study ranks its configurations on the same validation images: set it "
    "in base, one sweep or study per size",
    "log_every": "it changes what is recorded, not what is learned: each value would train the same "
    "model; set it in base",
}


MOMENTUM_DEFAULT: float = TrainSpec.model_fields["momentum"].default


def momentum_unread(optimizers: Sequence[object], whose: str = "this search's") -> str | None:
    """Why a job, sweep or study may not set momentum (but to its default, which every spec carries) when
    its optimizers are these (None: one reads it)."""
    if "momentum" in optimizers:
        return None
    named = ", ".join(map(str, dict.fromkeys(optimizers)))
    return (
        f"only the momentum optimizer reads it, and {whose} ({named}) does not: any value trains the "
        "same model as any other"
    )
