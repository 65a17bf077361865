"""Request and response models, named by direction: *Create in, *Public out, *sPublic lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.ml.spec import TrainSpec
from service.store.models import JobStatus

# Sweep ids are made by POST /sweeps (12 hex digits); anything else cannot name one, and a NUL in
# it would reach PostgreSQL as an error (a 500) rather than a 404.
SWEEP_ID_PATTERN = r"^[0-9a-f]{1,32}$"

Split = Literal["train", "test"]

# What each accuracy is for, said once for every schema that shows one.
TEST_ACCURACY = (
    "On the test split: the final, unbiased figure. Rankings never read it, unless a run has no "
    "validation split."
)
VALIDATION_ACCURACY = (
    "On the validation images (spec.validation_size of the training split): what every ranking reads. "
    "null without a validation split."
)
TRAIN_ACCURACY = "On the images trained on."
NEAR_CHANCE = (
    "True when a finished model's validation or test accuracy is at most 1.5 x chance level (1 / classes): "
    "it learned next to nothing, whatever its status says. `warning` says which and what to try."
)
WARNING = "A sentence on what needs a look (a model near chance level); null when nothing does."
RANKED_BY = (
    "What the order reads: 'validation_accuracy'; 'test_accuracy (no validation split)' when none has a "
    "validation split; with some of each, those without one come after, by test accuracy."
)


class Progress(BaseModel):
    epoch: int | None = Field(None, description="Epoch in progress (1-based).")
    epochs: int
    step: int | None = Field(None, description="Global step of the last recorded loss.")
    steps: int | None = Field(None, description="Total steps of the job.")
    loss: float | None = Field(None, description="Last recorded batch loss.")


class JobPublic(BaseModel):
    id: int
    name: str
    status: JobStatus
    spec: TrainSpec
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    worker: str | None = Field(None, description="host:pid:tag of the worker that holds (or last held) it.")
    progress: Progress
    error: str | None
    train_accuracy: float | None = Field(description=TRAIN_ACCURACY)
    validation_accuracy: float | None = Field(None, description=VALIDATION_ACCURACY)
    test_accuracy: float | None = Field(description=TEST_ACCURACY)
    cancel_requested: bool = False
    sweep_id: str | None = None
    near_chance: bool = Field(False, description=NEAR_CHANCE)
    warning: str | None = Field(None, description=WARNING)


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int


NOTEBOOK_SWEEP: dict[str, Any] = {
    "base": {"backend": "numpy", "activation": "sigmoid", "optimizer": "sgd", "epochs": 15},
    "grid": {"init": ["random", "glorot"], "learning_rate": [0.01, 0.05, 0.1, 0.3]},
}


MAX_REPLICATES = 100


class SweepCreate(BaseModel):
    """A grid search: one job for every combination of the grid's values, each on top of `base`, and
    each once per seed with `seeds` (or `replicates`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [NOTEBOOK_SWEEP]})

    base: dict[str, Any] = Field(default_factory=dict, description="TrainSpec fields shared by every job.")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="TrainSpec field -> the values to try; the jobs are the cartesian product.",
    )
    seeds: list[int] | None = Field(
        None,
        min_length=1,
        description="Train every combination once per seed, to measure it with confidence intervals.",
    )
    replicates: int | None = Field(
        None, ge=1, le=MAX_REPLICATES, description="Shorthand for seeds: n means seeds 0 to n - 1."
    )


class SummaryPublic(BaseModel):
    """An accuracy over a configuration's succeeded runs."""

    mean: float
    std: float | None = Field(description="Sample standard deviation; null for a single run.")
    ci_low: float | None = Field(description="95 % confidence interval of the mean (Student's t).")
    ci_high: float | None


class ConfigurationPublic(BaseModel):
    hyperparameters: dict[str, Any] = Field(description="The grid's fields (but the seed) and their values.")
    jobs: list[int] = Field(description="Its jobs' ids, one per seed.")
    seeds: list[int]
    n: int = Field(description="Its succeeded jobs, which the statistics are of.")
    validation_accuracy: SummaryPublic | None = Field(description=VALIDATION_ACCURACY)
    test_accuracy: SummaryPublic | None = Field(description=TEST_ACCURACY)
    seconds: float | None = Field(description="Mean training time.")
    tied_with_best: bool | None = Field(
        description="Welch's t-test against the best configuration (on the accuracy that ranks them) "
        "gives p >= 0.05: the data do not tell them apart. null when either has fewer than 2 runs."
    )
    p_value: float | None = Field(description="That test's two-sided p-value; null for the best itself.")


class SweepPublic(BaseModel):
    id: str
    created_at: datetime
    base: dict[str, Any] = Field(description="The spec fields every job of the sweep shares.")
    grid: dict[str, list[Any]] = Field(
        description="The spec fields that vary between its jobs, and their values."
    )
    jobs: list[JobPublic] = Field(
        description="Succeeded jobs best first (as ranked_by says); then the others by id. "
        "GET /sweeps lists the first `jobs_limit` of them."
    )
    count: int = Field(description="How many jobs the sweep has, listed or not.")
    status: dict[JobStatus, int] = Field(description="How many of its jobs are in each state.")
    configurations: list[ConfigurationPublic] = Field(
        description="Its jobs grouped by hyperparameters (every field but the seed), best first by mean "
        "validation accuracy (as ranked_by says)."
    )
    ranked_by: str = Field(description=RANKED_BY)


class SweepsPublic(BaseModel):
    data: list[SweepPublic]
    count: int


class LossPoint(BaseModel):
    epoch: int
    step: int
    loss: float


class EpochPoint(BaseModel):
    """One finished epoch. Intermediate epochs' train and test accuracies are measured on fixed samples of
    2,000 images, the last epoch's on every image; validation on every validation image each epoch."""

    epoch: int
    loss: float = Field(description="Mean batch cross-entropy of the epoch.")
    train_accuracy: float
    test_accuracy: float
    seconds: float = Field(description="Training time of the epoch, evaluation excluded.")
    validation_loss: float | None = Field(None, description="Cross-entropy on the validation images.")
    validation_accuracy: float | None = Field(None, description=VALIDATION_ACCURACY)


class ModelPublic(BaseModel):
    """One entry of the notebook's dictionary of trained models."""

    id: int
    name: str
    backend: str
    dataset: str
    hidden_layers: list[int]
    activation: str
    init: str
    optimizer: str
    learning_rate: float
    lr_schedule: str
    l2: float
    epochs: int
    batch_size: int
    train_limit: int | None
    validation_size: int
    sweep_id: str | None
    train_accuracy: float = Field(description=TRAIN_ACCURACY)
    validation_accuracy: float | None = Field(description=VALIDATION_ACCURACY)
    test_accuracy: float = Field(description=TEST_ACCURACY)
    best_epoch: int = Field(
        description="The epoch whose weights these are: with early stopping, the lowest validation loss."
    )
    stopped_epoch: int = Field(
        description="The last epoch trained: before `epochs` when early stopping ended it."
    )
    seconds: float = Field(description="Training time, evaluation excluded.")
    created_at: datetime
    near_chance: bool = Field(description=NEAR_CHANCE)
    warning: str | None = Field(description=WARNING)


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int = Field(description="How many trained models there are, listed or not.")
    ranked_by: str = Field(description=RANKED_BY)


class CurvePoint(BaseModel):
    epoch: int
    step: int = Field(description="Global step (1-based).")
    samples: int = Field(
        description="Training images seen: step x batch_size, to compare different batch sizes."
    )
    loss: float


class ComparedModelPublic(BaseModel):
    id: int
    name: str
    label: str = Field(description="The hyperparameters that set it apart from the others, for legends.")
    spec: TrainSpec
    train_accuracy: float = Field(description=TRAIN_ACCURACY)
    validation_accuracy: float | None = Field(description=VALIDATION_ACCURACY)
    test_accuracy: float = Field(description=TEST_ACCURACY)
    epochs: list[EpochPoint]
    losses: list[CurvePoint]


class ComparisonPublic(BaseModel):
    data: list[ComparedModelPublic]
    count: int
    hyperparameters: dict[str, list[Any]] = Field(
        description="Each spec field, one value per model (in `data` order)."
    )
    differing: list[str] = Field(description="The spec fields whose values are not all equal.")


class AccuracyPublic(BaseModel):
    train: float = Field(description=TRAIN_ACCURACY)
    validation: float | None = Field(description=VALIDATION_ACCURACY)
    test: float = Field(description=TEST_ACCURACY)


class ConfusionMatrixPublic(BaseModel):
    split: Split
    labels: list[int]
    classes: list[str]
    matrix: list[list[int]] = Field(description="Rows are the true class, columns the predicted one.")


class PredictionPublic(BaseModel):
    predicted: int
    probabilities: list[float]
    pixels: list[int] | None = Field(
        None,
        description="The 28x28 image the model saw, 784 values 0-255 row by row: an upload after it was made "
        "to look like MNIST (service/imaging.py). On a single prediction; null in a batch.",
    )
    out_of_distribution: bool | None = Field(
        None,
        description="True when the input looks unlike the model's training images: its ink mass, centre of "
        "mass or inked box's height beyond what 99.9 % of them show (service/ml/familiar.py, a heuristic). "
        "null when the training images cannot be read (MLPLAB_DATA_DIR).",
    )
    warning: str | None = Field(
        None,
        description="A sentence on what needs a look: which measures of the input are out of range, or a "
        "top class under 50 % probability; null when nothing does.",
    )


class PredictionsPublic(BaseModel):
    data: list[PredictionPublic]
    count: int


class PredictCreate(BaseModel):
    """One image as `pixels` (784 values, or 28 rows of 28, each 0-255), or many as `images`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"pixels": [0] * 784}]},
    )

    pixels: list[float] | list[list[float]] | None = None
    images: list[list[float] | list[list[float]]] | None = None


class ImagePredictionPublic(BaseModel):
    split: Split
    index: int
    label: int
    predicted: int
    probabilities: list[float]
    correct: bool


class OutcomePublic(BaseModel):
    index: int
    label: int
    predicted: int
    probability: float = Field(description="The probability the model gives its prediction: its confidence.")


class OutcomesPublic(BaseModel):
    """A split's images filtered by true and predicted class: the images a confusion-matrix cell counts."""

    split: Split
    label: int | None
    predicted: int | None
    data: list[OutcomePublic]
    count: int = Field(description="How many images match, in all (data holds one page of them).")


class ClassDifferencePublic(BaseModel):
    label: int
    name: str
    images: int
    a_accuracy: float
    b_accuracy: float
    difference: float = Field(description="a_accuracy - b_accuracy.")


class DisagreementPublic(BaseModel):
    index: int
    label: int
    a: int = Field(description="What model A predicts.")
    b: int = Field(description="What model B predicts.")


class DisagreementsPublic(BaseModel):
    """Two models image by image on one split."""

    a: int
    b: int
    split: Split
    images: int
    a_right_b_wrong: int
    b_right_a_wrong: int
    both_right: int
    both_wrong: int
    p_value: float = Field(
        description="McNemar's exact test (binomial, two-sided) on a_right_b_wrong and b_right_a_wrong: "
        "how likely so uneven a split is if the two models were equally accurate."
    )
    per_class: list[ClassDifferencePublic]
    data: list[DisagreementPublic] = Field(description="One page of the images they disagree on.")
    count: int = Field(description="Images whose predictions differ (matching `only`), in all.")


class LabelPublic(BaseModel):
    index: int
    label: int


class LabelsPublic(BaseModel):
    name: str
    split: Split
    classes: list[str]
    data: list[LabelPublic]
    count: int = Field(description="Images in the split.")


class SplitInfo(BaseModel):
    train: int
    test: int


class DatasetPublic(BaseModel):
    name: str
    present: bool
    will_download: bool
    splits: SplitInfo
    classes: list[str]


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    database: str
    datasets: list[DatasetPublic]
