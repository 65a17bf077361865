"""A sweep request as its jobs' specs: the grid's product, once per seed, every problem named at once."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from service.api.presenters import check_budget_of
from service.api.schemas import SweepCreate
from service.errors import invalid, invalid_all, part_reason, validation_reason
from service.ml.spec import (
    FIXED_IN_A_SEARCH,
    MOMENTUM_DEFAULT,
    OPTIMIZER_DEFAULT,
    TrainSpec,
    momentum_unread,
    not_a_field,
)
from service.quoting import cut, echo, listed_again
from service.settings import Settings


def sweep_seeds(body: SweepCreate) -> list[int] | None:
    """The seeds every combination runs with (seeds, or replicates n: 0 to n - 1); None: the spec's."""
    if body.replicates is not None:
        return list(range(body.replicates))
    return body.seeds


def check_seeds(body: SweepCreate) -> None:
    """Refuse seeds given twice over (both ways, or also in the grid or base) or repeated."""
    if body.seeds is not None and body.replicates is not None:
        raise invalid("replicates", "give seeds or replicates, not both")
    seeds = sweep_seeds(body)
    if seeds is None:
        return
    name = "seeds" if body.seeds is not None else "replicates"
    for part in ("grid", "base"):
        if "seed" in getattr(body, part):
            raise invalid(f"{part}.seed", f"`{name}` sets the seeds: leave seed out of the {part}")
    repeated = next((seed for seed, n in Counter(seeds).items() if n > 1), None)
    if repeated is not None:
        raise invalid("seeds", f"{repeated} is listed twice: the sweep would train the same job twice")


def count_field(body: SweepCreate) -> str:
    """The field a problem with the sweep's number of jobs names: its seeds, replicates or grid."""
    return "seeds" if body.seeds is not None else "replicates" if body.replicates is not None else "grid"


def check_grid(body: SweepCreate, max_jobs: int) -> None:
    """Refuse a grid that names no spec field (without seeds), an empty list of values, or too many jobs."""
    check_seeds(body)
    seeds = sweep_seeds(body)
    if not body.grid and seeds is None:
        raise invalid(
            "grid",
            "name at least one TrainSpec field to vary, or give seeds or replicates "
            "(one job alone is POST /jobs)",
        )
    for field, values in body.grid.items():
        if field not in TrainSpec.model_fields:
            raise invalid(f"grid.{field}", not_a_field(field, "grid"))
        if not values:
            raise invalid(f"grid.{field}", "an empty list: give at least one value")
        if field in FIXED_IN_A_SEARCH and len(values) > 1:
            raise invalid(f"grid.{field}", FIXED_IN_A_SEARCH[field])
    optimizers = body.grid.get("optimizer") or [body.base.get("optimizer", OPTIMIZER_DEFAULT)]
    if "momentum" in body.grid and (why := momentum_unread(optimizers)):  # one value too, as a study's space
        raise invalid("grid.momentum", why)
    if body.base.get("momentum", MOMENTUM_DEFAULT) != MOMENTUM_DEFAULT and (
        why := momentum_unread(optimizers)
    ):
        raise invalid("base.momentum", why)
    for field in body.base:
        if field not in TrainSpec.model_fields:
            raise invalid(f"base.{field}", not_a_field(field))
    # counted before any value is read as a spec: 120,000 of them took 5.9 s to be refused for their number
    sizes = [len(values) for values in body.grid.values()] + ([len(seeds)] if seeds is not None else [])
    count = math.prod(sizes)
    if count > max_jobs:
        product = " x ".join(map(str, sizes)) + " = " if len(sizes) > 1 else ""
        where = count_field(body)
        raise invalid(where, f"{product}{count:,} jobs; the limit is {max_jobs:,} (MLPLAB_MAX_SWEEP_JOBS)")
    if problems := list(_listing_problems(body)):
        raise invalid_all(problems)


def _listing_problems(body: SweepCreate) -> Iterator[tuple[str, str]]:
    """A grid field also set in base (which one trains?), or a value listed more than once in a field's
    list (meant another?): refused as a study's space refuses them, not quietly trained once. A value the
    spec refuses is left to sweep_specs, which says why."""
    for field, values in body.grid.items():
        if field in body.base:
            yield f"grid.{field}", "also set in base: a field is either fixed (base) or varied (grid)"
            continue
        stored: Counter[str] = Counter()  # each value as its spec stores it (1 as 1.0, -0.0 as 0.0), as JSON
        for value in values:
            try:
                spec = TrainSpec.model_validate({**body.base, field: value})
            except ValidationError:
                continue
            stored[json.dumps(spec.model_dump(mode="json")[field], sort_keys=True)] += 1
        for value, times in stored.items():
            if times > 1:
                yield f"grid.{field}", listed_again(cut(value), times)


def sweep_specs(body: SweepCreate) -> list[TrainSpec]:
    """One TrainSpec per combination of the grid (in the grid's order) and seed, each validated in full, each
    once: an optimizer beside a momentum it never reads trains one model whatever the momentum.

    Every invalid value of every combination is reported at once, named `grid.<field>` (`seeds`, or
    `base.<field>` when the shared part is at fault), with the value that failed.
    """
    fields = list(body.grid)
    given = sweep_seeds(body)
    seeds: list[int | None] = [None] if given is None else [*given]  # None: the spec's own
    specs: list[TrainSpec] = []
    problems: dict[tuple[str, str], None] = {}  # (name, reason), each once, in order
    for values in itertools.product(*body.grid.values()):
        for seed in seeds:
            combination = dict(zip(fields, values, strict=True)) | ({} if seed is None else {"seed": seed})
            try:
                specs.append(TrainSpec.model_validate(body.base | combination))
            except ValidationError as exc:
                problems |= dict.fromkeys(_problems(exc, combination, body))
    if problems:
        raise invalid_all(problems)
    # specs that train the same model, one job: sgd's or adam's beside a momentum they never read
    # (optimizer [sgd, momentum] x momentum [0.5, 0.9])
    trained: dict[str, TrainSpec] = {}
    for spec in specs:
        trained.setdefault(json.dumps(spec.as_trained(), sort_keys=True), spec)
    return list(trained.values())


def _problems(exc: ValidationError, combination: dict[str, Any], body: SweepCreate) -> list[tuple[str, str]]:
    """(name, reason) of each error of a combination, named for the part of the request at fault."""
    found = []
    for error in exc.errors():
        field, *inner = [str(part) for part in error["loc"]] or ["base"]
        if field in combination:  # one value of a list: named by its field, and the part of it at fault
            part = "seeds" if field == "seed" and field not in body.grid else f"grid.{field}"
            value = combination[field]
            found.append(
                (part, part_reason(error, value) if inner else f"{error['msg']} (got {echo(value)})")
            )
        else:
            found.append((".".join(["base", field, *inner]), validation_reason(error)))
    return found


def check_budgets(specs: list[TrainSpec], body: SweepCreate, settings: Settings) -> None:
    """POST /jobs's budgets, for every combination; the problem names the grid values at fault."""
    for spec in specs:
        check_budget_of(spec, settings, "grid", {f: getattr(spec, f) for f in body.grid})
