"""`mlplab study FILE.json [--watch]`, `mlplab study show ID` (or `mlplab studies ID`), `mlplab study
cancel ID`, `mlplab study extend ID --trials N`, `mlplab studies`: a study over HTTP, a line per trial as each ends, the best so far, and its table best first."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from service.cli.client import (
    TEST_FINAL,
    Json,
    UsageError,
    cell,
    chance_mark,
    chance_notes,
    pct,
    read_json,
    seconds,
    status_counts,
    table,
)
from service.cli.http import ApiClient
from service.quoting import counted
from service.selection import rank_key
from service.store.models import FINISHED, JobStatus, StudyStatus


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={cell(v, k)}" for k, v in params.items())


def _validation(trial: Json) -> str:
    """Its validation accuracy; a pruned trial's, where the pruner stopped it ("87.10% at epoch 1")."""
    curve = trial.get("validation_curve")  # .get: an API older than the field
    if trial["validation_accuracy"] is None and trial["status"] == JobStatus.pruned and curve:
        return f"{pct(curve[-1])} at epoch {len(curve)}"
    return pct(trial["validation_accuracy"])


def trial_line(trial: Json, best: Json | None) -> str:
    """One ended trial, and the best so far."""
    line = (
        f"trial {trial['number']:>3}  {trial['status']:<9} {counted(trial['epochs'], 'epoch'):>10}  "
        f"validation {_validation(trial):>7}  {_params(trial['params'])}"
    )
    if best is not None:
        line += f"  | best: trial {best['number']} {pct(best['validation_accuracy'])}"
    return line


def _rank(trial: Json) -> tuple[float, int]:
    """rank_key: as the API orders a study's trials to pick its best."""
    return rank_key(trial["validation_accuracy"], trial["test_accuracy"], trial["job_id"] or 0)


def study_table(study: Json) -> str:
    """Its trials best first, the best marked *."""
    best = study["best"]["number"] if study["best"] else None
    trials = sorted(study["trials"], key=_rank)
    rows = [
        [
            f"{t['number']}{' *' if t['number'] == best else ''}",
            t["job_id"],
            t["status"],
            t["epochs"],
            _validation(t),
            pct(t["test_accuracy"]) + chance_mark(t),
            _params(t["params"]),
        ]
        for t in trials
    ]
    return table(
        ["TRIAL", "JOB", "STATUS", "EPOCHS", "VALIDATION", TEST_FINAL, "PARAMETERS"],
        rows,
        fold=["PARAMETERS"],
    )


def summary(study: Json) -> str:
    return (
        f"study {study['id']} {study['status']}: {len(study['trials'])} of {study['config']['trials']} trials "
        f"({status_counts(study['counts'], 'none yet')}), {counted(study['epochs_trained'], 'epoch')} trained"
    )


def show(client: ApiClient, study: Json) -> None:
    print(summary(study))
    if note := study.get("sampler_note"):  # .get: an API older than the field
        print(f"! {note}", file=sys.stderr)
    print(study_table(study))
    if note := study.get("best_note"):  # .get: an API older than the field
        print(f"best (*): {note}", file=sys.stderr)
    chance_notes(study["trials"], key="job_id")
    for trial in study["trials"]:
        if trial["status"] == JobStatus.failed and trial.get("error"):  # .get: an API older than the field
            print(
                f"trial {trial['number']} (job {trial['job_id']}) failed: {trial['error']}", file=sys.stderr
            )
    answer = client.get(f"/studies/{study['id']}/importance")
    scores = answer["importance"]
    if scores:
        shown = ", ".join(f"{name} {score:.2f}" for name, score in scores.items())
        print(f"importance (from {answer['trials']} succeeded trials): {shown}")
    if warning := answer.get("warning"):  # .get: an API older than the field
        print(f"! importance {warning}", file=sys.stderr)
    if scores and (fixed := answer.get("not_varied")):  # .get: an API older than the field has none
        print(f"not ranked, one value among them: {', '.join(fixed)}")


def watch(client: ApiClient, study: Json, interval: float) -> Json:
    """Print each trial as it ends with the best of those printed so far, until the study is no longer
    running; the study then."""
    printed: set[int] = set()
    best: Json | None = None  # the API's best is of every trial, some not printed yet
    while True:
        for trial in study["trials"]:
            if trial["status"] in FINISHED and trial["number"] not in printed:
                printed.add(trial["number"])
                # a study's best is a succeeded trial: the others have no model
                if trial["status"] == JobStatus.succeeded and (best is None or _rank(trial) < _rank(best)):
                    best = trial
                print(trial_line(trial, best), flush=True)
        if study["status"] != StudyStatus.running:
            return study
        time.sleep(interval)
        study = client.get(f"/studies/{study['id']}")


def list_studies(client: ApiClient) -> int:
    """The studies, newest first: how far each got and its best trial."""
    page = client.get("/studies", limit=100, trials_limit=0)
    rows = [
        [
            study["id"],
            study["created_at"][:16].replace("T", " "),
            study["status"],
            study["config"]["sampler"],
            f"{sum(study['counts'].values())} of {study['config']['trials']}",
            status_counts(study["counts"]),
            ", ".join(study["config"]["space"]),
            "-"
            if study["best"] is None
            else f"{pct(study['best']['validation_accuracy'])} (job {study['best']['job_id']})",
        ]
        for study in page["data"]
    ]
    headers = [
        "STUDY",
        "CREATED (UTC)",
        "STATUS",
        "SAMPLER",
        "TRIALS",
        "BY STATUS",
        "SEARCHED",
        "BEST VALIDATION",
    ]
    print(table(headers, rows))
    print(f"{len(rows)} of {page['count']} studies; mlplab study show ID for one", file=sys.stderr)
    return 0


def cmd_study(client: ApiClient, args: argparse.Namespace) -> int:
    if args.target == "list":
        return list_studies(client)
    if args.target in ("show", "cancel", "extend"):
        if args.study_id is None:
            more = " --trials N" if args.target == "extend" else ""
            raise UsageError(f"study {args.target} needs a study id: mlplab study {args.target} ID{more}")
        path = f"/studies/{args.study_id}"
        if args.target == "extend":
            if args.trials is None:
                raise UsageError(
                    f"study extend needs how many more trials: mlplab study extend {args.study_id} --trials N"
                )
            study = client.post(f"{path}/extend", json={"trials": args.trials})
            print(f"study {study['id']}: {study['config']['trials']} trials in all now")
            return watch_and_show(client, study, args) if args.watch else 0
        study = client.post(f"{path}/cancel") if args.target == "cancel" else client.get(path)
        show(client, study)
        return 0
    # a number that names no file: `mlplab study 1` meant `study show 1`
    shown = f" (to show study {args.target}: mlplab study show {args.target})"
    body = read_json(args.target, shown if args.target.isdigit() else "")
    if isinstance(body, dict) and "grid" in body and "space" not in body:
        raise UsageError(f"{args.target} holds a sweep (its 'grid'): run it with mlplab sweep {args.target}")
    study = client.post("/studies", json=body)
    print(
        f"study {study['id']}: {study['config']['trials']} trials, {study['config']['parallelism']} at once"
    )
    return watch_and_show(client, study, args) if args.watch else 0


def watch_and_show(client: ApiClient, study: Json, args: argparse.Namespace) -> int:
    """--watch: its trials as they end, then its table; 1 when none succeeded."""
    study = watch(client, study, args.interval)
    show(client, study)
    return 0 if study["best"] else 1


def cmd_studies(client: ApiClient, args: argparse.Namespace) -> int:
    """One study's trials and importance (as `study show`); without one, the studies (as `mlplab sweeps`)."""
    if args.study_id is None:
        return list_studies(client)
    show(client, client.get(f"/studies/{args.study_id}"))
    return 0


def add_study_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", metavar="FILE|show|cancel|extend|list", help="a study's JSON file ('-': standard input)"
    )
    parser.add_argument("study_id", nargs="?", type=int, metavar="ID", help="with show, cancel or extend")
    parser.add_argument("--trials", type=int, metavar="N", help="with extend: how many more trials to run")
    parser.add_argument("--watch", action="store_true", help="a line per trial as it ends, then the table")
    parser.add_argument("--interval", type=seconds, default=2.0, help="seconds between checks with --watch")
