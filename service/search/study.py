"""A study's configuration: the request (`StudyCreate`), its validation, and its Optuna distributions.

A space names TrainSpec fields, each with one distribution:

    {"float": [low, high], "log": false}   a real number in [low, high] (log: uniform in log space)
    {"int": [low, high], "log": false}     an integer in [low, high]
    {"choice": [v1, v2, ...]}              one of the values, any JSON the spec accepts ([256] too)

`check_study` finds everything TrainSpec would refuse before a trial is queued; pydantic has
already refused what is not even the right shape.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, NamedTuple, cast

import annotated_types
import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    SuccessiveHalvingPruner,
    ThresholdPruner,
)
from optuna.samplers import BaseSampler, GridSampler, RandomSampler, TPESampler
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_serializer,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from service.errors import part_reason, validation_reason
from service.ml.spec import (
    FIXED_IN_A_SEARCH,
    MOMENTUM_DEFAULT,
    OPTIMIZER_DEFAULT,
    SMALLEST_REAL,
    TrainSpec,
    momentum_unread,
    not_a_field,
)
from service.quoting import counted, echo, listed_again


def _finite(value: object) -> object:
    # before the union: NaN, or no number at all, failed both its branches, named .float and .int
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("number_type", "Input should be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    return value


Bound = Annotated[StrictFloat | StrictInt, BeforeValidator(_finite)]

# Values of a space's choices, all together: each is checked against TrainSpec when a study is submitted,
# and each study GET /studies lists carries them (seven choices of 1,000 made its pages 150 kB a row).
MOST_CHOICES = 1_000
MOST_POINTS = 10_000  # points of a space held in memory at once: a grid's, or those listed to avoid repeats


class Invalid(NamedTuple):
    """One problem with a study request: `name` as the API's invalid_params name it, and why."""

    name: str  # "space.learning_rate", "base.epochs", "trials", ...
    reason: str


DIMENSION_FORMS = (
    'give {"float": [low, high]} (with "log": true), {"int": [low, high]} or {"choice": [values]}'
)


class Dimension(BaseModel):
    """One searched field: exactly one of `float`, `int` or `choice` (checked by `check_study`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, serialize_by_alias=True)

    float_: list[Bound] | None = Field(
        None, alias="float", min_length=2, max_length=2, description="[low, high]: a real number in between."
    )
    int_: list[Bound] | None = Field(
        None, alias="int", min_length=2, max_length=2, description="[low, high]: an integer in between."
    )
    choice: list[Any] | None = Field(
        None, description=f"The values to choose from (any JSON the spec accepts), at most {MOST_CHOICES:,}."
    )
    log: StrictBool = Field(False, description="Sample a range uniformly in log space (both bounds > 0).")

    @model_validator(mode="before")
    @classmethod
    def _a_kind(cls, given: Any) -> Any:
        # pydantic's own words ("a valid dictionary", "Extra inputs are not permitted") named no kind
        if isinstance(given, list):
            raise PydanticCustomError("dimension", f"a list alone is not a dimension: {DIMENSION_FORMS}")
        if not isinstance(given, dict):
            raise PydanticCustomError("dimension", f"not a dimension: {DIMENSION_FORMS}")
        if unknown := [key for key in given if key not in ("float", "int", "choice", "log")]:
            raise PydanticCustomError(
                "dimension", f"{echo(unknown[0])} is no kind of dimension: {DIMENSION_FORMS}"
            )
        return given

    @model_serializer(mode="wrap")
    def _without_nones(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # {"float": [a, b], "log": true} round-trips as written, without the kinds it is not.
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def bounds(self) -> list[float | int] | None:
        return self.float_ if self.float_ is not None else self.int_


def seed_for(seed: int, n_trials: int) -> int:
    """A sampler seed for the decision after `n_trials` trials: fresh for each trial, the same on a retry."""
    return int(np.random.SeedSequence([seed, n_trials]).generate_state(1)[0])


TPE_RANDOM_TRIALS = (
    10  # TPE's first trials are drawn at random (Optuna's n_startup_trials); it models from then on
)


def sampler_note(study: StudyCreate, modelled: int | None = None) -> str | None:
    """What the named sampler does not do for this study, or None: a TPE study that ends within its random
    trials is a random search, and so is one ended with fewer trials to model (`modelled`: those that
    succeeded or were pruned; None while it runs) than TPE waits for."""
    if study.sampler != "tpe":
        return None
    if study.trials <= TPE_RANDOM_TRIALS:
        return (
            f"TPE draws its first {TPE_RANDOM_TRIALS} trials at random and models the results only after them: "
            f"with {counted(study.trials, 'trial')} this study is a random search"
        )
    if modelled is not None and modelled < TPE_RANDOM_TRIALS:
        return (
            f"TPE models the results only once {TPE_RANDOM_TRIALS} trials have succeeded or been pruned; "
            f"{counted(modelled, 'trial')} of this study did, so every trial was drawn at random"
        )
    return None


def _tpe(study: StudyCreate, n_trials: int) -> BaseSampler:
    # The liar gives in-flight trials the worst value, so parallel trials do not crowd one point.
    return TPESampler(
        seed=seed_for(study.seed, n_trials),
        n_startup_trials=TPE_RANDOM_TRIALS,
        multivariate=True,
        constant_liar=True,
    )


def _random(study: StudyCreate, n_trials: int) -> BaseSampler:
    return RandomSampler(seed=seed_for(study.seed, n_trials))


def _grid(study: StudyCreate, n_trials: int) -> BaseSampler:
    # One seed for the whole study: the grid's shuffled order must be the same at every decision.
    values = {field: [encode(v) for v in dim.choice or ()] for field, dim in study.space.items()}
    return GridSampler(values, seed=study.seed)


# Name -> the sampler for the decision after n_trials trials. The names are the API's `sampler` values.
SAMPLERS: dict[str, Callable[[StudyCreate, int], BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
    "grid": _grid,
}


def most_epochs(study: StudyCreate) -> int:
    """The most epochs one of the study's trials may train: Hyperband's largest resource."""
    dim = study.space.get("epochs")
    searched = (dim.choice or dim.bounds) if dim is not None else None
    if searched:
        return int(max(searched))
    return int(study.base.get("epochs", TrainSpec.model_fields["epochs"].default))


# Name -> a fresh pruner for the study (StudyCreate.pruner's description says what each does); its
# unit of resource is the epoch.
PRUNERS: dict[str, Callable[[StudyCreate], BasePruner]] = {
    "asha": lambda study: SuccessiveHalvingPruner(min_resource=1),
    "hyperband": lambda study: HyperbandPruner(
        min_resource=1, max_resource=most_epochs(study), reduction_factor=3
    ),
    "median": lambda study: MedianPruner(),
    "none": lambda study: NopPruner(),
}

# For tests, not offered to users: `monkeypatch.setitem(PRUNERS, "always", TEST_PRUNERS["always"])`
# makes "always" a valid `pruner` of StudyCreate in that process; or pass `pruner=` to should_prune.
TEST_PRUNERS: dict[str, Callable[[StudyCreate], BasePruner]] = {
    # every value is below it: pruned at its first report
    "always": lambda study: ThresholdPruner(lower=math.inf),
    "never": lambda study: NopPruner(),
}


def _known(registry: dict[str, Any], what: str) -> Callable[[str], str]:
    def check(name: str) -> str:
        if name not in registry:
            raise ValueError(f"unknown {what} {name!r}; the {what}s are {', '.join(registry)}")
        return name

    return check


class StudyCreate(BaseModel):
    """An adaptive search: `trials` jobs, each `base` plus a point of `space` chosen by `sampler`."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,  # as TrainSpec: false is not a seed, "3" not a count
        json_schema_extra={
            "examples": [
                {
                    # small enough to try from /docs: 3 epochs of 5,000 images a trial
                    "base": {"backend": "numpy", "optimizer": "momentum", "epochs": 3, "train_limit": 5000},
                    "space": {
                        "learning_rate": {"float": [1e-4, 1], "log": True},
                        "activation": {"choice": ["sigmoid", "tanh", "relu"]},
                        "hidden_layers": {"choice": [[500, 250, 100], [256], [1024, 512]]},
                        "batch_size": {"int": [32, 512], "log": True},
                        "l2": {"float": [0, 0.01]},
                    },
                    "sampler": "tpe",
                    "trials": 12,
                    "parallelism": 2,
                    "pruner": "asha",
                    "seed": 0,
                }
            ]
        },
    )

    base: dict[str, Any] = Field(default_factory=dict, description="TrainSpec fields every trial shares.")
    space: dict[str, Dimension] = Field(description="TrainSpec field -> its distribution.")
    sampler: Annotated[str, AfterValidator(_known(SAMPLERS, "sampler"))] = Field(
        "tpe", json_schema_extra={"enum": list(SAMPLERS)}, description="Optuna sampler that picks each trial."
    )
    trials: int = Field(ge=1, description="How many trials (jobs) the study runs in all.")
    parallelism: int = Field(1, ge=1, description="Trials kept in flight at once.")
    pruner: Annotated[str, AfterValidator(_known(PRUNERS, "pruner"))] = Field(
        "none",
        json_schema_extra={"enum": list(PRUNERS)},
        description="Optuna pruner asked after each epoch whether to stop the trial: asha (successive "
        "halving, first rung after epoch 1), hyperband (ASHA in brackets starting after 1, 3, 9, ... epochs), "
        "median, none.",
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seeds the sampler (the jobs' own seed is base.seed)."
    )


# --- Optuna's view of a dimension: lists and other JSON become strings, as categorical values must be scalars.


def encode(value: Any) -> CategoricalChoiceType:
    """A choice as Optuna can hold it: scalars unchanged, lists and objects as their JSON text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value)


def distribution(dim: Dimension) -> BaseDistribution:
    """The Optuna distribution of a dimension that `check_study` accepted."""
    if dim.choice is not None:
        return CategoricalDistribution([encode(v) for v in dim.choice])
    if dim.int_ is not None:
        return IntDistribution(int(dim.int_[0]), int(dim.int_[1]), log=dim.log)
    assert dim.float_ is not None
    return FloatDistribution(float(dim.float_[0]), float(dim.float_[1]), log=dim.log)


def distributions(study: StudyCreate) -> dict[str, BaseDistribution]:
    return {field: distribution(dim) for field, dim in study.space.items()}


def decode(study: StudyCreate, params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's params back to spec values: an encoded choice becomes the value it stands for, a real
    below float32's smallest normal (which a spec refuses) 0."""
    values = {}
    for field, value in params.items():
        choices = study.space[field].choice
        if choices is not None:
            value = choices[[encode(c) for c in choices].index(value)]
        elif isinstance(value, float) and abs(value) < SMALLEST_REAL:  # from a range down to 0: trains as 0
            value = 0.0
        values[field] = value
    return values


def stored_point(base: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], str]:
    """A point as its job's stored spec holds it beside `base` (TrainSpec's form: 1 as 1.0 in a float
    field, an object with its defaults), as JSON: the same key however a space or a grid wrote a value."""
    memo: dict[tuple[str, str], Any] = {}

    def stored(field: str, value: Any) -> Any:
        key = (field, json.dumps(value, sort_keys=True))
        if key not in memo:
            try:
                memo[key] = TrainSpec.read_back({**base, field: value}).model_dump(mode="json")[field]
            except PydanticValidationError:  # valid only beside other searched values: compared as written
                memo[key] = value
        return memo[key]

    return lambda params: json.dumps({f: stored(f, v) for f, v in params.items()}, sort_keys=True)


def grid_size(study: StudyCreate) -> int | None:
    """How many points the grid sampler has (None for other samplers): a grid study's most trials."""
    if study.sampler != "grid" or any(dim.choice is None for dim in study.space.values()):
        return None
    return space_size(study)


def _sizes(study: StudyCreate) -> list[int] | None:
    """How many values each dimension has; None with a real-valued range among them (no end of values)."""
    sizes = []
    for dim in study.space.values():
        if dim.float_ is not None:
            return None
        low, high = dim.bounds or (0, 0)
        sizes.append(len(dim.choice) if dim.choice is not None else int(high) - int(low) + 1)
    return sizes


def space_word(study: StudyCreate) -> str:
    """What a study's problems call its space: a grid's is its grid."""
    return "grid" if study.sampler == "grid" else "space"


def space_size(study: StudyCreate) -> int | None:
    """How many points the space has, whatever the sampler (None: a real-valued range, no end): a study's
    most trials, since a point tried again trains the same spec again (its seed is the base's)."""
    sizes = _sizes(study)
    return None if sizes is None else math.prod(sizes)


# --- Validation: what TrainSpec would refuse, found before anything is queued.


def _outside_limits(field: str, low: float, high: float) -> str | None:
    """TrainSpec's own bounds of the field (its gt/ge/lt/le), as text, when [low, high] reaches past them."""
    limits, outside = [], False
    for m in TrainSpec.model_fields[field].metadata:
        if isinstance(m, annotated_types.Gt):
            limits.append(f"> {m.gt}")
            outside |= not low > cast(float, m.gt)
        elif isinstance(m, annotated_types.Ge):
            limits.append(f">= {m.ge}")
            outside |= not low >= cast(float, m.ge)
        elif isinstance(m, annotated_types.Lt):
            limits.append(f"< {m.lt}")
            outside |= not high < cast(float, m.lt)
        elif isinstance(m, annotated_types.Le):
            limits.append(f"<= {m.le}")
            outside |= not high <= cast(float, m.le)
    return " and ".join(limits) if outside else None


def _spec_problems(study: StudyCreate, field: str | None, value: Any = None) -> Iterator[Invalid]:
    """TrainSpec's verdict on base (plus `field` = value): errors at `field` name the space, others the base.

    The other searched fields are left to their defaults and their errors ignored: they are
    checked on their own.
    """
    values = {f: v for f, v in study.base.items() if f in TrainSpec.model_fields and f not in study.space}
    if field is not None:
        values[field] = value
    try:
        TrainSpec.model_validate(values)
    except PydanticValidationError as exc:
        for error in exc.errors():
            at, *inner = [str(part) for part in error["loc"]] or [""]
            if at == field:
                hint = ': use {"int": [low, high]}' if error["type"] == "int_type" else ""
                reason = part_reason(error, value) if inner else f"{error['msg']} (got {echo(value)}){hint}"
                yield Invalid(f"space.{field}", reason)
            elif at not in study.space:
                yield Invalid(".".join(["base", at, *inner]) if at else "base", validation_reason(error))


def _range_problems(study: StudyCreate, field: str, dim: Dimension) -> Iterator[Invalid]:
    name = f"space.{field}"
    low, high = dim.bounds or (0, 0)
    if dim.int_ is not None and not all(isinstance(b, int) for b in dim.int_):
        yield Invalid(name, f"int bounds must be integers (got {dim.int_})")
        return
    if dim.float_ is not None and (problem := _float_bounds_problem(dim.float_)):
        yield Invalid(name, problem)
        return
    if low > high:
        yield Invalid(name, f"low > high (got [{low}, {high}])")
        return
    if low == high:  # every trial would train the same spec
        yield Invalid(name, f"[{low}, {high}] is one value: fix {field} in base, or search a range")
        return
    if dim.log and low <= 0:
        yield Invalid(name, f"log needs bounds > 0 (got [{low}, {high}])")
        return
    limits = _outside_limits(field, low, high)
    if limits:
        yield Invalid(name, f"[{low}, {high}] reaches outside TrainSpec's limits: {field} must be {limits}")
        return
    kind = float if dim.float_ is not None else int
    for bound in dict.fromkeys((low, high)):
        yield from _spec_problems(study, field, kind(bound))


def _float_bounds_problem(bounds: list[float | int]) -> str | None:
    """Why float bounds cannot be searched, or None: an integer past a float's range (500 on converting it),
    or a subnormal one, from which the samplers draw NaN (TPE, past its random trials) or log-scale nothing."""
    for bound in bounds:
        try:
            value = float(bound)
        except OverflowError:
            return f"{echo(bound)} is too large for a float (at most {sys.float_info.max:g})"
        if value != 0 and abs(value) < sys.float_info.min:
            return f"{echo(bound)} is below the smallest normal float, {sys.float_info.min:.3g}: give a larger bound (or 0, where the field takes it)"
    return None


def _choice_problems(study: StudyCreate, field: str, choices: list[Any]) -> Iterator[Invalid]:
    name = f"space.{field}"
    if not choices:
        yield Invalid(name, "an empty choice: give at least one value")
    if (
        len(choices) > MOST_CHOICES
    ):  # checked here, not by the model: a stored study reads back whatever it holds
        yield Invalid(name, f"{len(choices):,} values; the limit is {MOST_CHOICES:,}")
        return
    point = stored_point(study.base)
    seen: dict[str, tuple[Any, int]] = {}  # as its job would store it (1 and 1.0 are one value): times
    for value in choices:
        key = point({field: value})
        seen[key] = (value, seen.get(key, (value, 0))[1] + 1)  # shown as listed again
        yield from _spec_problems(study, field, value)
    for value, times in seen.values():  # each once, however often
        if times > 1:
            yield Invalid(name, listed_again(echo(value), times))


def _optimizers(study: StudyCreate) -> list[object]:
    """The optimizers a study's trials may use: its space's choices, else its base's."""
    searched = study.space.get("optimizer")
    if searched is not None and searched.choice is not None:
        return list(searched.choice)
    return [study.base.get("optimizer", OPTIMIZER_DEFAULT)]


def _dimension_problems(study: StudyCreate, field: str, dim: Dimension) -> Iterator[Invalid]:
    name = f"space.{field}"
    kinds = [
        k for k, v in (("float", dim.float_), ("int", dim.int_), ("choice", dim.choice)) if v is not None
    ]
    if field not in TrainSpec.model_fields:
        yield Invalid(name, not_a_field(field, "space"))
    elif field in FIXED_IN_A_SEARCH:
        yield Invalid(name, FIXED_IN_A_SEARCH[field])
    elif field == "momentum" and (why := momentum_unread(_optimizers(study))):
        yield Invalid(name, why)
    elif field == "seed":  # searched, it made the luckiest seed "best" and gave seed an importance
        yield Invalid(
            name,
            "a seed is noise, not a hyperparameter: fix it in base (a sweep's replicates measure its noise)",
        )
    elif field in study.base:
        yield Invalid(name, "also set in base: a field is either fixed (base) or searched (space)")
    elif len(kinds) != 1:
        yield Invalid(name, f"give exactly one of float, int, choice (got {', '.join(kinds) or 'none'})")
    elif study.sampler == "grid" and dim.choice is None:
        yield Invalid(name, 'the grid sampler needs explicit values: use {"choice": [...]}')
    elif dim.choice is not None:
        if dim.log:
            yield Invalid(name, "log applies to float and int ranges, not to a choice")
        yield from _choice_problems(study, field, dim.choice)
    else:
        yield from _range_problems(study, field, dim)


OBJECTIVE_NEEDS = "a study's objective is validation accuracy: every trial needs validation_size > 0"


def _objective_problems(study: StudyCreate) -> Iterator[Invalid]:
    """A trial without a validation split would have no objective."""
    if study.base.get("validation_size") == 0:
        yield Invalid("base.validation_size", OBJECTIVE_NEEDS)
    dim = study.space.get("validation_size")
    if dim is not None and (0 in (dim.choice or ()) or (dim.bounds or [1])[0] == 0):
        yield Invalid("space.validation_size", OBJECTIVE_NEEDS)


def check_study(study: StudyCreate) -> list[Invalid]:
    """Every problem of a (well-shaped) study request, each once, in order; [] when it can run.

    Beyond pydantic's shape checks: unknown fields, a field both fixed and searched, ranges
    outside TrainSpec's limits, bad bounds, empty or repeated choices, choices and a base that
    TrainSpec refuses, no validation split (the objective), a grid over a range or with more trials
    than points.
    """
    problems: list[Invalid] = []
    if not study.space:
        problems.append(Invalid("space", "name at least one TrainSpec field to search"))
    for field in study.base:
        if field not in TrainSpec.model_fields:
            reason = not_a_field(field)
            problems.append(Invalid(f"base.{field}", reason))
    problems.extend(_spec_problems(study, None))
    if study.base.get("momentum", MOMENTUM_DEFAULT) != MOMENTUM_DEFAULT and (
        why := momentum_unread(_optimizers(study))
    ):
        problems.append(Invalid("base.momentum", why))
    for field, dim in study.space.items():
        problems.extend(_dimension_problems(study, field, dim))
    sizes = [len(d.choice or ()) for d in study.space.values()]
    if sum(sizes) > MOST_CHOICES and max(sizes) <= MOST_CHOICES:  # one over it alone is named by its field
        problems.append(
            Invalid(
                "space", f"{sum(sizes):,} choice values in all; the limit is {MOST_CHOICES:,} for a space"
            )
        )
    problems.extend(_objective_problems(study))
    # a grid's choices alone; any other space once its dimensions are sound (a range's bounds counted)
    if grid_size(study) is not None:
        counts: list[int] | None = sizes
    else:
        counts = None if problems else _sizes(study)
    if counts is None:
        return list(dict.fromkeys(problems))
    size = math.prod(counts)
    # "2 x 3 = 6 points"; one dimension's "2 = 2" says its count once
    points = f"{' x '.join(map(str, counts))} = " if len(counts) > 1 else ""
    if study.sampler == "grid" and size > MOST_POINTS:  # Optuna's grid sampler lists every point
        problems.append(
            Invalid("space", f"the grid has {points}{size:,} points; the limit is {MOST_POINTS:,}")
        )
    elif not problems and study.trials > size:
        problems.append(
            Invalid(
                "trials",
                f"the {space_word(study)} has {points}{counted(size, 'point')}: at most {counted(size, 'trial')}",
            )
        )
    return list(dict.fromkeys(problems))
