"""`mlplab study FILE.json [--watch]`, `mlplab study show ID`, `mlplab study cancel ID`: a study
over HTTP, a line per trial as each ends, the best so far, and its table best first."""

from __future__ import annotations

import argparse
import time
from typing import Any

from service.cli.client import (
    TEST_FINAL,
    Json,
    cell,
    chance_mark,
    chance_notes,
    pct,
    read_json,
    seconds,
    table,
)
from service.cli.http import ApiClient, ApiError
from service.selection import rank_key
from service.store.models import FINISHED, StudyStatus


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={cell(v, k)}" for k, v in params.items())


def trial_line(trial: Json, best: Json | None) -> str:
    """One ended trial, and the best so far."""
    line = (
        f"trial {trial['number']:>3}  {trial['status']:<9} {trial['epochs']:>3} epochs  "
        f"validation {pct(trial['validation_accuracy']):>7}  {_params(trial['params'])}"
    )
    if best is not None:
        line += f"  | best: trial {best['number']} {pct(best['validation_accuracy'])}"
    return line


def study_table(study: Json) -> str:
    """Its trials best first (rank_key: as the API picks the best), the best marked *."""
    best = study["best"]["number"] if study["best"] else None
    trials = sorted(
        study["trials"],
        key=lambda t: rank_key(t["validation_accuracy"], t["test_accuracy"], t["job_id"] or 0),
    )
    rows = [
        [
            f"{t['number']}{' *' if t['number'] == best else ''}",
            t["job_id"],
            t["status"],
            t["epochs"],
            pct(t["validation_accuracy"]),
            pct(t["test_accuracy"]) + chance_mark(t),
            _params(t["params"]),
        ]
        for t in trials
    ]
    return table(["TRIAL", "JOB", "STATUS", "EPOCHS", "VALIDATION", TEST_FINAL, "PARAMETERS"], rows)


def summary(study: Json) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in study["counts"].items() if n)
    return (
        f"study {study['id']} {study['status']}: {len(study['trials'])} of {study['config']['trials']} trials "
        f"({counts or 'none yet'}), {study['epochs_trained']} epochs trained"
    )


def show(client: ApiClient, study: Json) -> None:
    print(summary(study))
    print(study_table(study))
    chance_notes(study["trials"], key="job_id")
    answer = client.get(f"/studies/{study['id']}/importance")
    if scores := answer["importance"]:
        shown = ", ".join(f"{name} {score:.2f}" for name, score in scores.items())
        print(f"importance (from {answer['trials']} succeeded trials): {shown}")
        if fixed := answer.get("not_varied"):  # .get: an API older than the field has none
            print(f"not ranked, one value among them: {', '.join(fixed)}")


def watch(client: ApiClient, study: Json, interval: float) -> Json:
    """Print each trial as it ends, until the study is no longer running; the study then."""
    printed: set[int] = set()
    while True:
        for trial in study["trials"]:
            if trial["status"] in FINISHED and trial["number"] not in printed:
                printed.add(trial["number"])
                print(trial_line(trial, study["best"]), flush=True)
        if study["status"] != StudyStatus.running:
            return study
        time.sleep(interval)
        study = client.get(f"/studies/{study['id']}")


def cmd_study(client: ApiClient, args: argparse.Namespace) -> int:
    if args.target in ("show", "cancel"):
        if args.study_id is None:
            raise ApiError(0, f"study {args.target} needs a study id", f"mlplab study {args.target} ID")
        path = f"/studies/{args.study_id}"
        study = client.post(f"{path}/cancel") if args.target == "cancel" else client.get(path)
        show(client, study)
        return 0
    study = client.post("/studies", json=read_json(args.target))
    print(
        f"study {study['id']}: {study['config']['trials']} trials, {study['config']['parallelism']} at once"
    )
    if not args.watch:
        return 0
    study = watch(client, study, args.interval)
    show(client, study)
    return 0 if study["best"] else 1


def add_study_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", metavar="FILE|show|cancel", help="a study's JSON file ('-': standard input)"
    )
    parser.add_argument("study_id", nargs="?", type=int, metavar="ID", help="with show or cancel")
    parser.add_argument("--watch", action="store_true", help="a line per trial as it ends, then the table")
    parser.add_argument("--interval", type=seconds, default=2.0, help="seconds between checks with --watch")
