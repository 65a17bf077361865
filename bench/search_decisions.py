"""How long a study's decisions take: the next trial's is the database transaction that records a trial's end.

For studies of 40 and 200 trials (the issue's space, 10 epochs each, a quarter pruned, two in
flight), the median wall time of next_params (per sampler), of next_trials once a worker has foreseen
it (the lookup its end makes under the write lock), should_prune (per pruner, asked at the last
epoch of a trial in flight), importance and a figure. Not pass/fail: prints a table.

    .venv/bin/python bench/search_decisions.py [--sizes 40,200] [--repeats 7]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from service.search import StudyCreate, TrialRecord, importance, next_params, next_trials, should_prune
from service.search.figures import figure_png

SPACE = {
    "learning_rate": {"float": [1e-4, 1], "log": True},
    "activation": {"choice": ["sigmoid", "tanh", "relu"]},
    "hidden_layers": {"choice": [[500, 250, 100], [256], [1024, 512]]},
    "batch_size": {"int": [32, 512], "log": True},
    "l2": {"float": [0, 0.01]},
}
EPOCHS = 10


def study(n: int, **fields: Any) -> StudyCreate:
    body = {
        "base": {"backend": "numpy", "epochs": EPOCHS},
        "space": SPACE,
        "trials": n + 10,
        "parallelism": 2,
    }
    return StudyCreate.model_validate(body | fields)


def synthetic_trials(n: int) -> list[TrialRecord]:
    """n trials drawn at random: every 4th pruned after 1 epoch, the last two in flight."""
    config = study(n, sampler="random")
    trials: list[TrialRecord] = []
    for i in range(n):
        params = next_params(config, trials)
        level = 0.95 - 0.1 * abs(math.log10(params["learning_rate"]) + 2)
        curve = {e: level * (1 - 0.5**e) for e in range(1, EPOCHS + 1)}
        if i >= n - 2:
            trials.append(TrialRecord(i, params, "running", None, {e: curve[e] for e in range(1, EPOCHS)}))
        elif i % 4 == 3:
            trials.append(TrialRecord(i, params, "pruned", None, {1: curve[1]}))
        else:
            trials.append(TrialRecord(i, params, "succeeded", curve[EPOCHS], curve))
    return trials


def median_ms(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up: imports and caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def decisions(n: int) -> list[tuple[str, Callable[[], object]]]:
    trials = synthetic_trials(n)
    rows: list[tuple[str, Callable[[], object]]] = []
    for sampler in ("tpe", "random"):
        config = study(n, sampler=sampler)
        rows.append((f"next_params {sampler}", lambda c=config: next_params(c, trials)))
    # median_ms's warm-up call is the worker's foresight: each timed call finds the decision remembered
    config = study(n, sampler="tpe")
    rows.append(("next_trials tpe, foreseen", lambda: next_trials(config, trials)))
    for pruner in ("asha", "median", "none"):
        config = study(n, pruner=pruner)
        rows.append((f"should_prune {pruner}", lambda c=config: should_prune(c, trials, n - 1, EPOCHS, 0.9)))
    rows.append(("importance (PED-ANOVA)", lambda: importance(study(n), trials)))
    rows.append(("figure_png slice", lambda: figure_png("slice", study(n), trials)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="40,200")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{'trials':>6}  {'decision':<28} {'median ms':>9}")
    for n in map(int, args.sizes.split(",")):
        for name, call in decisions(n):
            print(f"{n:>6}  {name:<28} {median_ms(call, args.repeats):>9.1f}")


if __name__ == "__main__":
    main()
