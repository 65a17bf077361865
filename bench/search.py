#!/usr/bin/env python
"""Samplers and pruners on the issue's 81-point space, run as mlplab runs a study: the store's
verbs on a fresh SQLite file and the real worker loop (threads running run_worker).

    python bench/search.py                                   # grid (81), random, TPE, TPE + ASHA, TPE + Hyperband (40 each)
    python bench/search.py --runs tpe-asha --trials 20       # one run, fewer trials
    python bench/search.py --train-limit 2000 --epochs 3 --validation-size 1000   # a quick smoke run

The space: learning rate {0.001, 0.01, 0.1} x init {glorot, he, random} x activation {sigmoid,
tanh, relu} x hidden layers {[128], [512, 256], [500, 250, 100]}; SGD with momentum, 10 epochs,
batch 128, NumPy. For each run: best validation accuracy, that trial's test accuracy, the epochs
trained, the wall time, and what importance (PED-ANOVA) ranks first. Fashion-MNIST by default
(MNIST saturates too early to tell samplers apart); when its files are not in --data-dir the run
says so and uses MNIST. A table on stdout, everything to bench/results/search-<dataset>.json
("-quick" appended when shrunk), after each run; the runs a file holds from the same setup are kept
and shown with the new ones. Not a test: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout even where the package is not installed

import workers  # noqa: E402, F401 - first: the worker's OpenBLAS setting must precede NumPy
from bench._table import table  # noqa: E402
from service.ml.data import dataset_status  # noqa: E402
from service.search import StudyCreate, best_trial, importance  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.store.db import make_engine, make_sessionmaker, migrate, session_scope  # noqa: E402
from service.store.models import StudyStatus  # noqa: E402
from service.store.queries import get_study, study_jobs, study_trials  # noqa: E402
from service.store.studies import create_study  # noqa: E402
from workers.worker import run_worker  # noqa: E402

SPACE = {
    "learning_rate": {"choice": [0.001, 0.01, 0.1]},
    "init": {"choice": ["glorot", "he", "random"]},
    "activation": {"choice": ["sigmoid", "tanh", "relu"]},
    "hidden_layers": {"choice": [[128], [512, 256], [500, 250, 100]]},
}
BASE = {"backend": "numpy", "optimizer": "momentum", "epochs": 10, "batch_size": 128}
GRID_POINTS = 81
RUNS = {  # name -> (sampler, pruner, whether it runs the whole grid rather than --trials)
    "grid": ("grid", "none", True),
    "random": ("random", "none", False),
    "tpe": ("tpe", "none", False),
    "tpe-asha": ("tpe", "asha", False),
    "tpe-hyperband": ("tpe", "hyperband", False),
}


def pick_dataset(name: str, data_dir: Path) -> str:
    if dataset_status(name, data_dir, download=False)["present"]:
        return name
    print(
        f"bench/search.py: {name} is not in {data_dir} (no download here); using mnist instead, "
        "where the samplers are hard to tell apart (MNIST saturates early)",
        file=sys.stderr,
    )
    return "mnist"


def run_study(config: StudyCreate, settings: Settings, workers_count: int) -> dict[str, Any]:
    """The study on a fresh database, `workers_count` worker loops until it is no longer running."""
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    with session_scope(sessions) as session:
        study_id = create_study(session, config)[0].id
    stop = threading.Event()
    threads = [
        threading.Thread(target=run_worker, args=(settings,), kwargs={"stop_event": stop})
        for _ in range(workers_count)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        while not stop.wait(0.5):
            with session_scope(sessions) as session:
                study = get_study(session, study_id)
                if study is None or study.status != StudyStatus.running:
                    stop.set()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    seconds = time.perf_counter() - started
    with session_scope(sessions) as session:
        study = get_study(session, study_id)
        assert study is not None
        config, trials = study_trials(session, study)
        jobs = {job.trial_number: job for job in study_jobs(session, study_id)}
    engine.dispose()
    best = best_trial(trials)
    scores = importance(config, trials)
    first = next(iter(scores.items()), (None, None))
    return {
        "trials": len(trials),
        "pruned": sum(t.status == "pruned" for t in trials),
        "failed": sum(t.status in ("failed", "cancelled") for t in trials),
        "best_validation_accuracy": best.value if best else None,
        "best_test_accuracy": jobs[best.number].test_accuracy if best else None,
        "best_params": dict(best.params) if best else None,
        "epochs_trained": sum(len(t.intermediate) for t in trials),
        "wall_seconds": seconds,
        "importance": scores,
        "most_important": first[0],
        "most_important_score": first[1],
        "trials_seen": [  # each trial: what it searched, how it ended, its last validation accuracy
            {
                "number": t.number,
                "params": dict(t.params),
                "status": t.status,
                "epochs": len(t.intermediate),
                "validation_accuracy": t.intermediate[max(t.intermediate)] if t.intermediate else None,
            }
            for t in trials
        ],  # fmt: skip
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    body = [
        [name, r["trials"], r["pruned"], _pct(r["best_validation_accuracy"]), _pct(r["best_test_accuracy"]),
         r["epochs_trained"], f"{r['wall_seconds']:.1f}",
         f"{r['most_important']} {r['most_important_score']:.2f}" if r["most_important"] else "-"]
        for name, r in rows.items()
    ]  # fmt: skip
    header = ["run", "trials", "pruned", "best val", "its test", "epochs", "wall s", "importance first"]
    print(table(header, body, right={1, 2, 3, 4, 5, 6}))
    print()
    grid = rows.get("grid")
    for name, run in rows.items():
        if (
            not grid
            or run["pruner"] == "none"
            or not grid["best_validation_accuracy"]
            or not run["best_validation_accuracy"]
        ):
            continue
        gap = 100 * (grid["best_validation_accuracy"] - run["best_validation_accuracy"])
        share = run["epochs_trained"] / grid["epochs_trained"]
        met = "met" if gap <= 0.3 and share <= 0.4 else "not met"
        print(f"{name}: {gap:.2f} points below the grid's best, {share:.0%} of its epochs "
              f"(target: within 0.3 points, at most 40 %: {met})")  # fmt: skip


def earlier_runs(out: Path, setup: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The runs already in `out` from the same setup (so the grid is trained once while the samplers
    are tried again, or the runs are spread over several sittings); none when anything differs."""
    try:
        report = json.loads(out.read_text())
    except (OSError, ValueError):
        return {}
    if {key: report.get(key) for key in setup} != json.loads(json.dumps(setup)):
        return {}
    print(f"keeping the runs {', '.join(report['runs'])} of {out} (same setup)", file=sys.stderr)
    return dict(report["runs"])


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "mnist"])
    parser.add_argument(
        "--data-dir", default=os.environ.get("MLPLAB_DATA_DIR") or str(REPO.parent / "shared" / "data")
    )
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--trials", type=int, default=40, help="trials of the random and TPE runs")
    parser.add_argument("--epochs", type=int, default=BASE["epochs"], help="shrink for a quick run")
    parser.add_argument("--train-limit", type=int, default=None, help="training images (default: all)")
    parser.add_argument("--validation-size", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1, help="worker loops, and the study's parallelism")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="default bench/results/search-<dataset>[-quick].json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    data_dir = Path(args.data_dir)
    dataset = pick_dataset(args.dataset, data_dir)
    base = BASE | {"epochs": args.epochs, "dataset": dataset, "validation_size": args.validation_size}
    if args.train_limit:
        base["train_limit"] = args.train_limit
    quick = args.train_limit is not None or args.epochs != BASE["epochs"]
    out = (
        Path(args.json)
        if args.json
        else REPO / "bench" / "results" / f"search-{dataset}{'-quick' if quick else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    setup = {"machine": platform.platform(), "cpus": os.cpu_count(), "dataset": dataset, "base": base,
             "space": SPACE, "workers": args.workers, "seed": args.seed, "trials": args.trials}  # fmt: skip
    rows = earlier_runs(out, setup)
    for name in args.runs.split(","):
        sampler, pruner, whole = RUNS[name]
        config = StudyCreate.model_validate(
            {"base": base, "space": SPACE, "sampler": sampler, "pruner": pruner, "trials": GRID_POINTS if whole else args.trials,
             "parallelism": args.workers, "seed": args.seed}
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as folder:
            settings = Settings(database_url=f"sqlite:///{folder}/search.db", data_dir=data_dir, download=False,
                                worker_poll_seconds=0.1)  # fmt: skip
            print(f"{name}: {config.trials} trials ...", file=sys.stderr, flush=True)
            rows[name] = {"sampler": sampler, "pruner": pruner} | run_study(config, settings, args.workers)
        out.write_text(
            json.dumps(setup | {"runs": rows}, indent=2) + "\n"
        )  # after each run: an hour's work survives a stop
    print(
        f"\n{dataset}, {args.epochs} epochs, train limit {args.train_limit or 'none'}, {args.workers} worker(s)\n"
    )
    print_table(rows)
    print(f"\nwritten to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
