"""Request and response models, named by direction: *Create in, *Public out, *sPublic lists."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr
from pydantic_core import PydanticCustomError

from service.api.params import ID_RANGE, is_id
from service.errors import worded
from service.ml.evaluation import SAMPLE_SIZE
from service.ml.provenance import Provenance, Reproduction
from service.ml.spec import EarlyStopping, SplitName, TrainSpec
from service.ml.splits import ImageUse
from service.search import FEW_TRIALS_FOR_IMPORTANCE, TPE_RANDOM_TRIALS, StudyCreate
from service.selection import ALPHA, SMALL_VALIDATION, Tested, Versus
from service.store.models import MAX_ALIAS_CHARS, AliasAction, JobStatus, StudyStatus

# Sweep ids are made by POST /sweeps (12 hex digits); anything else cannot name one, and a NUL in
# it would reach PostgreSQL as an error (a 500) rather than a 404.
SWEEP_ID_PATTERN = worded(r"^[0-9a-f]{1,32}$", "a sweep id: 1 to 32 hex digits, as POST /sweeps made it")
# An alias starts with a letter, so that no alias reads as a model id where either is accepted.
ALIAS_NAME = rf"[a-z][a-z0-9-]{{0,{MAX_ALIAS_CHARS - 1}}}"
ALIAS_WORDS = (
    f"lowercase letters, digits and dashes, starting with a letter, at most {MAX_ALIAS_CHARS} characters"
)
ALIAS_PATTERN = worded(f"^{ALIAS_NAME}$", f"an alias: {ALIAS_WORDS}")
MODEL_PATTERN = worded(  # a model's id, or an alias naming it
    rf"^(?:[0-9]+|{ALIAS_NAME})$", f"a model id (digits) or an alias ({ALIAS_WORDS})"
)
# Every response about a model says which one answered: an alias may name another by the next request.
MODEL_ID_HEADER = "X-Model-Id"
AliasName = Annotated[
    str,
    Field(
        pattern=ALIAS_PATTERN,
        description=f"{ALIAS_WORDS.capitalize()}.",
        examples=["champion"],
    ),
]


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
JOB_ERROR = "Why it failed; on a queued job, why a worker gave it back (its machine lacks the dataset)."
MODEL_WARNING = (
    "The model's near-chance warning (its `warning` as a job): it learned next to nothing, so its "
    "predictions mean little. null for a model that learned."
)
RANKED_BY = (
    "What the order reads: 'validation_accuracy'; 'test_accuracy (no validation split)' when none has a "
    "validation split; with some of each, those without one come after, by test accuracy."
)
STUDY_OF = "The study it is a trial of (GET /studies/{id})."
MAX_CURVE_POINTS = 2000  # per loss curve sent to a browser or drawn: more than a chart's width in pixels


BEST_EPOCH = "The epoch whose weights these are: with early stopping, the lowest validation loss."
# wall-clock: a job beside others on its machine (workers share the cores) takes longer than alone
TRAINING_TIME = (
    "evaluation and progress writes excluded; wall-clock seconds on its worker's machine, so other jobs "
    "training there at the same time lengthen it."
)
STOPPED_EPOCH = "The last epoch trained: before `epochs` when early stopping ended it."


class Answer(BaseModel):
    """A response body. Every field is sent, its default included, so the schema lists each as required:
    pydantic leaves a field with a default out of `required`, and a generated client typed it optional."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class Progress(Answer):
    epoch: int | None = Field(None, description="Epoch in progress (1-based).")
    epochs: int
    step: int | None = Field(None, description="Global step of the last recorded loss.")
    steps: int | None = Field(None, description="Total steps of the job.")
    loss: float | None = Field(None, description="The last recorded loss (LossPoint says which).")


class JobPublic(Answer):
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
    error: str | None = Field(description=JOB_ERROR)
    train_accuracy: float | None = Field(description=TRAIN_ACCURACY)
    validation_accuracy: float | None = Field(None, description=VALIDATION_ACCURACY)
    test_accuracy: float | None = Field(description=TEST_ACCURACY)
    cancel_requested: bool = False
    sweep_id: str | None = None
    study_id: int | None = Field(None, description=STUDY_OF)
    trial_number: int | None = Field(None, description="Its number among that study's trials: 0, 1, 2, ...")
    provenance: Provenance | None = Field(
        None,
        description="What trained it (its latest attempt), recorded when training starts and when its "
        "threads change.",
    )
    reproduces: int | None = Field(
        None, description="The model it trains again (POST /models/{id}/reproduce)."
    )
    reproduction: Reproduction | None = Field(
        None, description="A reproduction, once trained: how close it came to the model it reproduces."
    )
    loss_every: int | None = Field(
        None,
        description="Steps between its recorded losses, once it trains: spec.log_every, or wider when that "
        "would record more than MLPLAB_MAX_LOSS_POINTS.",
    )
    near_chance: bool = Field(False, description=NEAR_CHANCE)
    warning: str | None = Field(None, description=WARNING)


class JobsPublic(Answer):
    data: list[JobPublic]
    count: int


NOTEBOOK_SWEEP: dict[str, Any] = {
    # small enough to try from /docs: 8 jobs of 2 epochs on 5,000 images (the notebook's were 15 on all)
    "base": {
        "backend": "numpy",
        "activation": "sigmoid",
        "optimizer": "sgd",
        "epochs": 2,
        "train_limit": 5000,
    },
    "grid": {"init": ["random", "glorot"], "learning_rate": [0.01, 0.05, 0.1, 0.3]},
}


MAX_REPLICATES = 100


def _grid_values(given: Any) -> Any:
    # pydantic said only "Input should be a valid list" of a study's {"choice": [...]} sent to a sweep
    if not isinstance(given, list):
        raise PydanticCustomError("grid_values", "a grid lists the values to try, e.g. [0.1, 0.01]")
    return given


class SweepCreate(BaseModel):
    """A grid search: one job for every combination of the grid's values, each on top of `base`, and
    each once per seed with `seeds` (or `replicates`)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [NOTEBOOK_SWEEP]})

    base: dict[str, Any] = Field(default_factory=dict, description="TrainSpec fields shared by every job.")
    grid: dict[str, Annotated[list[Any], BeforeValidator(_grid_values)]] = Field(
        default_factory=dict,
        description="TrainSpec field -> the values to try; the jobs are the cartesian product.",
    )
    seeds: list[int] | None = Field(
        None,
        min_length=1,
        max_length=MAX_REPLICATES,
        description="Train every combination once per seed, to measure it with confidence intervals.",
    )
    replicates: int | None = Field(
        None, ge=1, le=MAX_REPLICATES, description="Shorthand for seeds: n means seeds 0 to n - 1."
    )


class SummaryPublic(Answer):
    """An accuracy over a configuration's succeeded runs."""

    mean: float
    std: float | None = Field(description="Sample standard deviation; null for a single run.")
    ci_low: float | None = Field(
        description="95 % confidence interval of the mean over the seeds (Student's t), clipped to [0, 1]: "
        "how far seeds move it. The evaluation images' own sampling error (about ±0.33 points on 10,000 "
        "test images at 97 %) is not in it."
    )
    ci_high: float | None
    clipped: bool = Field(
        description="Student's t reached past 0 or 1 and the interval was cut there: too few seeds to "
        "place the mean (more seeds narrow it)."
    )


class GapPublic(Answer):
    """A configuration's accuracy minus the best's, as the test that weighed them measures it."""

    difference: float = Field(
        description="Its mean minus the best's (paired: the mean of the seeds' differences)."
    )
    ci_low: float = Field(
        description="95 % confidence interval of that difference (the same t-test's, not clipped). An "
        "interval that holds 0 and reaches far below it leaves them apart by anything up to its low end: "
        "not a tie."
    )
    ci_high: float


class ConfigurationPublic(Answer):
    hyperparameters: dict[str, Any] = Field(description="The grid's fields (but the seed) and their values.")
    jobs: list[int] = Field(description="Its jobs' ids, one per seed, whatever their status.")
    seeds: list[int] = Field(description="Its jobs' seeds, in the order of `jobs`.")
    n: int = Field(
        description="Its succeeded jobs, which the statistics are of. Where another configuration has "
        "several, one with a single run ranks after those with several (a cancelled sweep's, say)."
    )
    validation_accuracy: SummaryPublic | None = Field(description=VALIDATION_ACCURACY)
    test_accuracy: SummaryPublic | None = Field(description=TEST_ACCURACY)
    seconds: float | None = Field(
        description="Median training time of its succeeded jobs: one slowed by the host's other work (a "
        "16 s run among 0.3 s ones) does not move it as it moves a mean."
    )
    failed: int = Field(
        description="Its jobs that failed (diverged, say). Among configurations with a succeeded job, one "
        "with any failed ranks after those without: the mean of its survivors alone would flatter it."
    )
    diverged: int = Field(
        description="Of its failed jobs, those whose training diverged (a smaller learning_rate may train)."
    )
    versus_best: Versus | None = Field(
        description="Where a t-test against the best configuration (on the accuracy that ranks them) puts it: "
        f"best (the first with a result); can't tell (p >= {ALPHA:g}: the seeds do not tell them apart, "
        "which with few seeds is no tie: `gap_to_best` says how far apart they may be); behind "
        f"(p < {ALPHA:g}); ahead (a mean above the best's, ranked after it for its failed runs). Null when "
        "it or the best has fewer than 2 runs, or their runs leave nothing to weigh (neither varies, or "
        "every seed puts them the same distance apart; equal results are can't tell, p = 1)."
    )
    tied_with_best: bool | None = Field(
        deprecated=True,
        description="Deprecated, for `versus_best`, which says the same in words: true where it is best or "
        "can't tell, which with few seeds is no tie.",
    )
    p_value: float | None = Field(description="That test's two-sided p-value; null for the best itself.")
    tested_by: Tested | None = Field(
        description="paired: a paired t-test on the seeds both ran (seed k gives every configuration its "
        "data order and, where the networks match, its initial weights, so their results move together "
        "and a paired test sees a difference the seeds' spread would hide); welch: Welch's t-test, when "
        "they did not run the same seeds (one failed on a seed, or the sweep is still running). Either way "
        "on the runs whose means are shown. Null without a test."
    )
    pairs: int | None = Field(description="How many seeds the paired test paired; null for Welch's.")
    gap_to_best: GapPublic | None = Field(
        description="That test's measure of how far this configuration is from the best (negative: behind; "
        "positive for one ranked after for its failed runs); null where `p_value` is."
    )


class SweepPublic(Answer):
    id: str
    created_at: datetime
    base: dict[str, Any] = Field(description="The spec fields every job of the sweep shares.")
    grid: dict[str, list[Any]] = Field(
        description="The spec fields that vary between its jobs, and their values."
    )
    follows: dict[str, str] = Field(
        default_factory=dict,
        description='Fields of `grid` that vary only as another\'s default: {"learning_rate": "optimizer"} '
        "when every job took its optimizer's default rate. No factor of their own: the sweep page draws no "
        "chart by them.",
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


class SweepsPublic(Answer):
    data: list[SweepPublic]
    count: int


class LossPoint(Answer):
    """The loss recorded at a step (the first, every log_every steps, and each epoch's last): the mean
    cross-entropy over the images trained since the step recorded before (jobs trained before 2026-12-03:
    the step's batch alone); GET /epochs has each epoch's mean."""

    epoch: int
    step: int = Field(description="Global step (1-based).")
    samples: int = Field(
        description="Training images seen (an epoch's steps may hold one image fewer than batch_size), to "
        "compare batch sizes. Jobs trained before 0.2.0 ended an epoch on a smaller batch: mid-epoch, "
        "theirs reads up to a batch off; at an epoch's end, exact."
    )
    loss: float


class LossesPublic(Answer):
    """One page of a job's recorded losses, in step order."""

    data: list[LossPoint]
    next: str | None = Field(
        description="The URL of the next page (its after_step is this page's last step); null on the last page."
    )


class LossCurvePublic(Answer):
    """A job's loss curve for drawing (service.store.queries.get_loss_curve)."""

    data: list[LossPoint] = Field(
        description=f"At most {MAX_CURVE_POINTS:,} points: up to that many recorded losses as they are; of more, the first "
        "and the last are kept as recorded and those between averaged over equal spans of steps, each mean "
        "at its span's last step."
    )
    count: int = Field(description="How many recorded losses these points summarise.")


EPOCH_SAMPLE = (
    f"a fixed sample of {SAMPLE_SIZE:,} of them for an epoch before the last trained, every one for the last "
    "(the model's own figures are its kept weights' on every image)."
)


class EpochPoint(Answer):
    """One finished epoch. Intermediate epochs' train and test accuracies are measured on fixed samples
    (EPOCH_SAMPLE), the last epoch's on every image; validation on every validation image each epoch."""

    epoch: int
    loss: float = Field(
        description="Mean cross-entropy over the epoch's training images (a job trained before this rule: "
        "the mean of its batches' losses, a smaller last batch weighed as a whole one)."
    )
    train_accuracy: float = Field(description=f"On the trained images: {EPOCH_SAMPLE}")
    test_accuracy: float = Field(description=f"On the test split: {EPOCH_SAMPLE}")
    seconds: float = Field(description=f"Training time of the epoch, {TRAINING_TIME}")
    validation_loss: float | None = Field(None, description="Cross-entropy on the validation images.")
    validation_accuracy: float | None = Field(None, description=VALIDATION_ACCURACY)
    sampled: bool = Field(
        description=f"train_accuracy and test_accuracy are on fixed samples of at most {SAMPLE_SIZE:,} images "
        "(every epoch but the last trained), not on every image."
    )


class ModelPublic(Answer):
    """A trained model: its hyperparameters and accuracies (a succeeded job's, under the job's id)."""

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
    momentum: float
    epochs: int
    batch_size: int
    seed: int
    train_limit: int | None
    validation_size: int
    early_stopping: EarlyStopping | None
    sweep_id: str | None
    study_id: int | None = Field(None, description=STUDY_OF)
    train_accuracy: float = Field(description=TRAIN_ACCURACY)
    validation_accuracy: float | None = Field(description=VALIDATION_ACCURACY)
    test_accuracy: float = Field(description=TEST_ACCURACY)
    best_epoch: int = Field(description=BEST_EPOCH)
    stopped_epoch: int = Field(description=STOPPED_EPOCH)
    seconds: float = Field(description=f"Training time, {TRAINING_TIME}")
    created_at: datetime = Field(description="When the model was stored: its job's end, not its submission.")
    aliases: list[str] = Field(default_factory=list, description="The aliases that name it now.")
    near_chance: bool = Field(description=NEAR_CHANCE)
    warning: str | None = Field(description=WARNING)
    validation_note: str | None = Field(
        None,
        description="Set when its validation split is too small to rank it by (fewer than "
        f"{SMALL_VALIDATION:,} images): "
        "how much one image moves its validation accuracy. Its test accuracy stands as it is.",
    )


class ModelsPublic(Answer):
    data: list[ModelPublic]
    count: int = Field(description="How many trained models there are, listed or not.")
    ranked_by: str = Field(description=RANKED_BY)


def _id_or_alias(value: object) -> object:
    # before the union: a value of neither type failed both branches, named body.model_id.int and .str
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PydanticCustomError(
            "model_reference_type", f"Input should be a model id ({ID_RANGE}) or an alias"
        )
    return value


def _model_reference(value: int | str) -> int | str:
    if isinstance(value, int) and not is_id(str(value)):
        raise ValueError(f"a model id is {ID_RANGE}")  # the problem quotes the value
    if isinstance(value, str) and value.isascii() and value.isdigit():  # a path's "12"
        if not is_id(value):
            raise ValueError(f"a model id is {ID_RANGE}")
        raise ValueError(f"a model id is a JSON number: send {int(value)}, not the string")
    if isinstance(value, str) and not re.fullmatch(ALIAS_NAME, value):
        raise ValueError(f"not an alias: {ALIAS_WORDS}")  # the problem quotes the value, cut
    return value


class AliasUpdate(BaseModel):
    """Point the alias at a trained model: by its id, or by another alias (promote staging to champion)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"model_id": 12}]})

    model_id: Annotated[
        StrictInt | StrictStr, BeforeValidator(_id_or_alias), AfterValidator(_model_reference)
    ] = Field(description="A model's id (12), or an alias whose model it takes (staging).")


class ReproduceCreate(BaseModel):
    """Nothing: a reproduction trains the model's own spec. A field sent is a 422 rather than ignored
    (a seed or epochs sent here changed nothing); to train another spec, POST /jobs."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{}]})


class PromoteCreate(BaseModel):
    """The alias to point at the best model."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"alias": "champion"}]}
    )

    alias: AliasName


class AliasPublic(Answer):
    name: str
    model_id: int = Field(description="The model it names now.")
    updated_at: datetime
    detail: str | None = Field(
        description="What its latest change said, as its history keeps it: a promote's names the sweep or "
        'study, the figure it ranked by and what that cannot show ("it is not shown better than the next '
        'configuration (p = 0.31)"). Null for a change that says nothing more (a PUT, a rollback). A change '
        "to the model it names already writes nothing: the detail is then the earlier change's."
    )
    rollback_to: int | None = Field(
        description="The model POST /aliases/{name}/rollback would name (null: nothing to roll back to)."
    )
    warning: str | None = Field(
        description="The model's near-chance sentence, as GET /models/{id} gives it: what it serves learned "
        "next to nothing. Null when nothing needs a look."
    )


class AliasEventPublic(Answer):
    action: AliasAction
    from_model_id: int | None = Field(description="The model it named before (null: it was created).")
    to_model_id: int | None = Field(description="The model it names after (null: it was deleted).")
    detail: str | None
    at: datetime


class AliasHistoryPage(Answer):
    data: list[AliasEventPublic] = Field(description="Changes of the name, newest first: a page of limit.")
    count: int = Field(description="How many changes the name has had, listed or not.")


class AliasHistoryPublic(AliasPublic):
    history: list[AliasEventPublic] = Field(description="The name's latest changes, newest first (limit).")
    history_count: int = Field(
        description="How many changes it has had: GET /aliases/{name}/history pages them."
    )


class AliasesPublic(Answer):
    data: list[AliasPublic]
    count: int


class ComparedModelPublic(Answer):
    id: int
    name: str
    label: str = Field(description="The hyperparameters that set it apart from the others, for legends.")
    spec: TrainSpec
    train_accuracy: float = Field(description=TRAIN_ACCURACY)
    validation_accuracy: float | None = Field(description=VALIDATION_ACCURACY)
    test_accuracy: float = Field(description=TEST_ACCURACY)
    best_epoch: int = Field(description=BEST_EPOCH)
    stopped_epoch: int = Field(description=STOPPED_EPOCH)
    epochs: list[EpochPoint]
    losses: list[LossPoint] = Field(description="Its loss curve, as GET /jobs/{id}/loss-curve draws it.")
    near_chance: bool = Field(description=NEAR_CHANCE)
    warning: str | None = Field(description=WARNING)


class ComparisonPublic(Answer):
    data: list[ComparedModelPublic]
    count: int
    hyperparameters: dict[str, list[Any]] = Field(
        description="Each spec field, one value per model (in `data` order)."
    )
    differing: list[str] = Field(
        description="The spec fields whose values set the models apart: not log_every (what was recorded), "
        "nor momentum unless an optimizer uses it."
    )


class AccuracyPublic(Answer):
    train: float = Field(description=TRAIN_ACCURACY)
    validation: float | None = Field(description=VALIDATION_ACCURACY)
    test: float = Field(description=TEST_ACCURACY)


class ScoresPublic(Answer):
    precision: float | None = Field(
        description="Of the images predicted as the class, the share that are; null when none is."
    )
    recall: float | None = Field(
        description="Of the class's images, the share predicted as it; null when the split has none."
    )
    f1: float | None = Field(
        description="2 TP / (2 TP + FP + FN), the harmonic mean of precision and recall; null when the class "
        "is neither a label nor a prediction."
    )


class ClassScoresPublic(ScoresPublic):
    label: int
    support: int = Field(description="The class's images in the split.")


# The splits a model is measured and compared on: validation is carved out of the train file
EvalSplit = Literal["train", "validation", "test"]


class ConfusionMatrixPublic(Answer):
    split: EvalSplit
    labels: list[int]
    classes: list[str]
    matrix: list[list[int]] = Field(description="Rows are the true class, columns the predicted one.")
    per_class: list[ClassScoresPublic] = Field(
        description="Precision, recall and F1 of each class, read from `matrix` (service/ml/metrics.py)."
    )
    macro_average: ScoresPublic = Field(
        description="Their mean over the classes that are a label or a prediction of the split, an undefined "
        "score counted as 0 (scikit-learn's default labels and zero_division=0)."
    )


class PredictionPublic(Answer):
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
    model_warning: str | None = Field(
        None, description=f"{MODEL_WARNING} On a single prediction; null in a batch."
    )


class PredictionsPublic(Answer):
    data: list[PredictionPublic]
    count: int
    model_warning: str | None = Field(None, description=MODEL_WARNING)


class PredictCreate(BaseModel):
    """One image as `pixels` (784 values, or 28 rows of 28, each 0-255), or many as `images`."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # every request body: true is not a 1, "3" not a number
        json_schema_extra={"examples": [{"pixels": [0] * 784}]},
    )

    pixels: list[float] | list[list[float]] | None = None
    images: list[list[float] | list[list[float]]] | None = None


IMAGE_USE = (
    "What the model did with this image: 'trained' on it, held it out for 'validation', left it 'unused' "
    "(past its train_limit), or a 'test' image."
)


class ImagePredictionPublic(Answer):
    split: SplitName
    index: int
    label: int
    predicted: int
    probabilities: list[float]
    correct: bool
    use: ImageUse = Field(description=IMAGE_USE)
    model_warning: str | None = Field(None, description=MODEL_WARNING)


class OutcomePublic(Answer):
    index: int
    label: int
    predicted: int
    probability: float = Field(description="The probability the model gives its prediction: its confidence.")
    use: ImageUse = Field(description=IMAGE_USE)


class OutcomesPublic(Answer):
    """A split's images filtered by true and predicted class: the images a confusion-matrix cell counts."""

    split: SplitName
    label: int | None
    predicted: int | None
    data: list[OutcomePublic]
    count: int = Field(description="How many images match, in all (data holds one page of them).")
    model_warning: str | None = Field(None, description=MODEL_WARNING)


class ClassDifferencePublic(Answer):
    label: int
    name: str
    images: int
    a_accuracy: float | None = Field(
        description="Of the class's images, the share A got right; null when none."
    )
    b_accuracy: float | None
    difference: float | None = Field(
        description="a_accuracy - b_accuracy; null when the class has no images."
    )


class DisagreementPublic(Answer):
    index: int
    label: int
    a: int = Field(description="What model A predicts.")
    b: int = Field(description="What model B predicts.")


class DisagreementsPublic(Answer):
    """Two models image by image on one split."""

    a: int
    b: int
    split: EvalSplit
    images: int = Field(
        description="The images compared: every test image; on train, those both models trained on "
        "(each one's validation images and those past its train_limit left out); on validation, those "
        "both held out for validation (their indices are the train file's)."
    )
    a_right_b_wrong: int
    b_right_a_wrong: int
    both_right: int
    both_wrong: int = Field(
        description="Images both get wrong, with the same answer or not: those with two different wrong "
        "answers are disagreements too (in `count` and `data`, `only=both_wrong`), and weigh in no test."
    )
    both_wrong_alike: int = Field(
        description="Of both_wrong, the images both get wrong with the same answer: no disagreement."
    )
    p_value: float = Field(
        description="McNemar's exact test (binomial, two-sided) on a_right_b_wrong and b_right_a_wrong: "
        "how likely so uneven a split is if the two models were equally accurate; 0.0 when it is too small "
        "for a float (the PNG's title then says p < 1e-300)."
    )
    beyond_chance: bool = Field(
        description=f"p_value < {ALPHA:g}: so uneven a split is unlikely for two equally "
        "accurate models. Of these two models on these images only: seeds alone split a configuration's "
        "models beyond chance often."
    )
    per_class: list[ClassDifferencePublic]
    data: list[DisagreementPublic] = Field(description="One page of the images they disagree on.")
    count: int = Field(
        description="Images whose predictions differ (matching `only`), in all: a_right_b_wrong, "
        "b_right_a_wrong and the images both get wrong with different answers."
    )


class LabelPublic(Answer):
    index: int
    label: int


class LabelsPublic(Answer):
    name: str
    split: SplitName
    classes: list[str]
    data: list[LabelPublic]
    count: int = Field(description="Images in the split.")


class SplitInfo(Answer):
    train: int
    test: int


class DatasetPublic(Answer):
    name: str
    present: bool = Field(description="Every file found and its header read.")
    damaged: list[str] = Field(
        description="Files found whose header cannot be read (not gzip, cut short): jobs of the dataset "
        "fail until they are replaced."
    )
    will_download: bool
    splits: SplitInfo
    classes: list[str]


class DatasetsPublic(Answer):
    data: list[DatasetPublic]
    count: int


class Health(Answer):
    status: Literal["ok"] = "ok"


class ReadTicket(Answer):
    ticket: str = Field(
        description="Add `?ticket=<this>` to a GET: it reads without the Authorization header."
    )
    expires_at: datetime


LOW_DISK_BYTES = 200 * 2**20  # a few of the largest models' weights and checkpoints
FULL_DISK_BYTES = 2**20  # below this, even a job's rows (a few pages each) may not fit


class Readiness(Answer):
    status: Literal["ready", "not ready"]
    database: str
    datasets: list[DatasetPublic]
    workers: str = Field(
        description="Whether a worker has been alive in the last MLPLAB_LEASE_SECONDS: queued jobs run only "
        "then. Informative: the API serves without workers, so it does not make the status 'not ready'."
    )
    disk: str | None = Field(
        None,
        description="The free space where the SQLite database lives, said to be short below "
        f"{LOW_DISK_BYTES // 2**20} MB (writes then fail: 503 'Database full'; reads go on). Informative, "
        "as `workers`; "
        "null on a database server.",
    )
    writes: str = Field(
        "possible",
        description="'possible', or why the database takes no writes though it reads (a SQLite file this "
        f"process may not write, under {FULL_DISK_BYTES // 2**20} MB free on its disk, a server's read-only "
        "session): submits, cancels and alias moves then "
        "answer 503, and workers cannot record. Informative, as `disk`: reads go on.",
    )


class WorkerPublic(Answer):
    id: str = Field(description="host:pid:tag, as a job's `worker` names it.")
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    job_id: int | None = Field(description="The job it trains now; null while it waits for one.")
    threads: int = Field(description="Threads its job trains with; 0 while it waits for one.")
    standing_by: bool = Field(
        description="Beyond its host's cores (one training worker a core): it claims no job until one of "
        "the host's first workers stops."
    )


class WorkersPublic(Answer):
    """The workers whose heartbeat is younger than MLPLAB_LEASE_SECONDS, oldest first."""

    data: list[WorkerPublic]
    count: int


# --- studies (service.search): the request is service.search.StudyCreate


class TrialPublic(Answer):
    """One trial of a study: a job whose spec is the study's base plus `params`."""

    number: int = Field(description="0, 1, 2, ... in the order the sampler asked for them.")
    job_id: int
    status: JobStatus = Field(description="'pruned': its study's pruner stopped it after an epoch.")
    params: dict[str, Any] = Field(description="The searched fields' values.")
    epochs: int = Field(description="Epochs trained so far (a pruned trial's last is where it stopped).")
    best_epoch: int | None = Field(
        description="The epoch whose weights the model kept; null until it succeeds."
    )
    validation_accuracy: float | None = Field(description="The objective: " + VALIDATION_ACCURACY)
    test_accuracy: float | None = Field(description=TEST_ACCURACY)
    validation_curve: list[float] = Field(
        description="Validation accuracy after each epoch, as the pruner saw it (epoch 1 first)."
    )
    near_chance: bool = Field(description=NEAR_CHANCE)
    warning: str | None = Field(description=WARNING)
    error: str | None = Field(description=JOB_ERROR)


class StudyPublic(Answer):
    id: int
    status: StudyStatus = Field(
        description="running, finished (every trial asked for has ended), or cancelled."
    )
    config: StudyCreate = Field(description="As submitted (its `trials` as extended since).")
    objective: Literal["validation_accuracy"] = "validation_accuracy"
    created_at: datetime
    finished_at: datetime | None
    trials: list[TrialPublic] = Field(
        description="Every trial so far, in trial order (GET /studies: the latest trials_limit; counts has them all)."
    )
    best: TrialPublic | None = Field(
        description="The succeeded trial with the highest validation accuracy (ties as GET /models orders them), "
        "the one POST /studies/{id}/promote points an alias at."
    )
    epochs_trained: int = Field(description="Epochs trained by all its trials together.")
    counts: dict[JobStatus, int] = Field(description="Its trials by status; pruned ones apart.")
    best_note: str | None = Field(
        description="What `best` cannot show, once two trials have succeeded: each trial is one run of its "
        "configuration, so its lead over the next may be its seed's luck (the sentence a promote of it keeps)."
    )
    sampler_note: str | None = Field(
        description="Set when the sampler cannot do what it is named for in this study: a TPE study of "
        f"{TPE_RANDOM_TRIALS} trials or fewer never leaves TPE's random first trials, nor does one that ended "
        f"with fewer than {TPE_RANDOM_TRIALS} trials succeeded or pruned."
    )


class StudiesPublic(Answer):
    data: list[StudyPublic]
    count: int


class StudyExtend(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    trials: int = Field(ge=1, description="How many more trials to run.", examples=[10])


class ImportancePublic(Answer):
    objective: Literal["validation_accuracy"] = "validation_accuracy"
    importance: dict[str, float] = Field(
        description="Each searched field that took two or more values among the succeeded trials, its "
        "importance (Optuna's PED-ANOVA), most important first, summing to 1; empty before two trials have "
        "succeeded with different accuracies. It weighs how far a field's values in the best 10 % of "
        "trials differ from its values in all: what sets the best apart, not how much the field moves "
        "accuracy over the space."
    )
    not_varied: list[str] = Field(
        description="The searched fields that took one value among the succeeded trials: nothing to credit "
        "them with, so not ranked."
    )
    trials: int = Field(description="The succeeded trials it rests on (the others weigh nothing).")
    warning: str | None = Field(
        description=f"Set when the scores rest on fewer than {FEW_TRIALS_FOR_IMPORTANCE} succeeded trials: they "
        "say little, and fields that varied together are not told apart (one may take nearly all the credit "
        "for both); or when fields varied but every succeeded trial scored the same, so none has a score."
    )
