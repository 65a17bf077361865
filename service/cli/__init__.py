"""The `mlplab` command. Two programs behind one parser: serve.py runs the processes (api, worker,
dev); client.py talks to a running API over HTTP (submit, watch, cancel, jobs, models, compare,
predict, sweep) with http.py's ApiClient, studies.py the study commands and aliases.py the alias one."""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable
from typing import Annotated, get_args

from pydantic import TypeAdapter, ValidationError

from service import __version__
from service.api.paging import MAX_PAGE
from service.cli import aliases, client, serve, studies
from service.imaging import ACCEPTED_NAMES
from service.ml.spec import NUM_CLASSES, DatasetName
from service.settings import Settings, SettingsError
from service.store.models import JobStatus
from service.store.queries import MODEL_SORTS

# --port takes what MLPLAB_PORT takes (0 fell back to MLPLAB_PORT; 70000 was a traceback).
PORT = TypeAdapter(Annotated[int, *Settings.model_fields["port"].metadata])


def _port(text: str) -> int:
    try:
        return PORT.validate_python(text.strip(), strict=False)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: {exc.errors()[0]['msg']}") from None


def _processes(text: str) -> int:
    """--workers: a whole number of uvicorn processes, at least one."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of processes, at least 1")
    return value


PORT_HELP = f"port (MLPLAB_PORT, default {Settings.model_fields['port'].default})"
HOST_HELP = f"bind address (MLPLAB_HOST, default {Settings.model_fields['host'].default})"


def _serve_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = sub.add_parser("api", help="run the HTTP API (never trains)")
    api.add_argument("--host", help=HOST_HELP)
    api.add_argument("--port", type=_port, help=PORT_HELP)
    api.add_argument("--workers", type=_processes, default=1, help="uvicorn processes (at least 1)")
    worker = sub.add_parser("worker", help="run a training worker")
    worker.add_argument("--once", action="store_true", help="process what is queued, then exit")
    dev = sub.add_parser("dev", help="the API and one worker together, for one machine")
    dev.add_argument("--host", help=HOST_HELP)
    dev.add_argument("--port", type=_port, help=PORT_HELP)
    health = sub.add_parser(
        "health",
        help="exit 0 when this machine's API is ready (MLPLAB_HOST, MLPLAB_PORT; not --url) or, with "
        "--worker, its worker is alive: a container's HEALTHCHECK",
    )
    health.add_argument("--worker", action="store_true", help="check this host's worker instead of the API")
    for parser in (api, worker, dev, health):
        parser.set_defaults(run=serve.run)


def _remote_flags(parser: argparse.ArgumentParser, default: object) -> None:
    """--url and --token, before the command or after it (a command's own leave the first alone)."""
    parser.add_argument("--url", default=default, help="the API (MLPLAB_URL, default http://127.0.0.1:8000)")
    parser.add_argument(
        "--token", default=default, help="bearer token for a protected API (MLPLAB_API_TOKEN)"
    )


def _client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    remote = argparse.ArgumentParser(add_help=False)
    _remote_flags(remote, argparse.SUPPRESS)

    def command(
        name: str, call: client.Command, help: str, description: str | None = None
    ) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, parents=[remote], help=help, description=description)
        parser.set_defaults(run=client.run, call=call)
        return parser

    submit = command(
        "submit",
        client.cmd_submit,
        "submit a training job",
        description="Submit a training job; --watch follows it to the end.",
    )
    client.add_spec_flags(submit)
    submit.add_argument(
        "--watch", action="store_true", help="show its progress until it ends, then its accuracies"
    )
    command("watch", client.cmd_watch, "follow a job's progress until it ends").add_argument(
        "job_id", type=int, metavar="JOB_ID", help="the job's id, as submit or `mlplab jobs` shows it"
    )
    cancel = command(
        "cancel",
        client.cmd_cancel,
        "cancel a queued or running job, or a whole sweep (--sweep)",
        description="Cancel JOB_ID, or with --sweep every job of the sweep still to end: queued ones at "
        "once, running ones at their worker's next write; ended ones keep their results.",
    )
    which = cancel.add_mutually_exclusive_group(required=True)
    which.add_argument("job_id", type=int, nargs="?", metavar="JOB_ID", help="the job to cancel")
    which.add_argument("--sweep", metavar="SWEEP_ID", help="cancel this sweep's queued and running jobs")
    jobs = command("jobs", client.cmd_jobs, "list jobs, newest first")
    jobs.add_argument("--status", choices=[s.value for s in JobStatus], help="only the jobs in this status")
    jobs.add_argument("--sweep", metavar="SWEEP_ID", help="only the jobs of this sweep, best first")
    jobs.add_argument(
        "--limit", type=int, default=50, help=f"the most jobs to list (1 to {MAX_PAGE}, default %(default)s)"
    )
    models = command("models", client.cmd_models, "list trained models, best first")
    models.add_argument(
        "--sort",
        choices=MODEL_SORTS,
        default=MODEL_SORTS[0],
        help="validation_accuracy or test_accuracy: highest first; created_at: newest first "
        "(default %(default)s)",
    )
    models.add_argument("--dataset", choices=get_args(DatasetName), help="only the models of this dataset")
    compare = command(
        "compare",
        client.cmd_compare,
        "trained models side by side",
        description="The hyperparameters that set the models apart, then their accuracies, "
        "the kept epoch's training loss, training time (GET /compare), and what the test images say of the "
        "first one's lead over the next (McNemar).",
    )
    compare.add_argument("model_ids", nargs="+", metavar="MODEL", help="2 to 20 model (job) ids or aliases")
    compare.add_argument(
        "--all", action="store_true", help="every hyperparameter, not only those that differ"
    )
    predict = command("predict", client.cmd_predict, "predict the digit (or garment) in an image file")
    predict.add_argument(
        "image", help=f"a {ACCEPTED_NAMES} image of one digit or garment (- reads standard input)"
    )
    predict.add_argument("--model", required=True, help="the model: its (job) id, or an alias (champion)")
    predict.add_argument(
        "--top", type=client.top, default=3, help=f"how many classes to list (1 to {NUM_CLASSES})"
    )
    export = command(
        "export",
        client.cmd_export,
        "download a model's weights (.npz) or its ONNX graph",
        description="Write MODEL's weights (mlplab's .npz: docs/guide.md, 'The weight format') or, with --format onnx, "
        "its ONNX graph to a file (default: mlplab-model-ID.npz or .onnx; '-': standard output).",
    )
    export.add_argument("model", metavar="MODEL", help="the model: its (job) id, or an alias (champion)")
    export.add_argument("--format", choices=list(client.EXPORTS), default="npz", help="npz (default) or onnx")
    export.add_argument("-o", "--output", metavar="FILE", help="where to write it ('-': standard output)")
    _sweep_commands(command)


def _sweep_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    sweep = command(
        "sweep",
        client.cmd_sweep,
        "submit a grid of jobs from a JSON file",
        description="FILE holds "
        '{"base": {...spec...}, "grid": {"field": [values], ...}, "replicates": n} ("-": standard input); '
        '"seeds": [...] or "replicates": n runs every combination once per seed.',
    )
    sweep.add_argument("file", metavar="FILE", help="the sweep's JSON file ('-': standard input)")
    sweep.add_argument("--watch", action="store_true", help="wait until every job has ended, then rank them")
    sweep.add_argument(
        "--interval", type=client.seconds, default=2.0, help="seconds between checks with --watch"
    )
    sweeps = command(
        "sweeps",
        client.cmd_sweeps,
        "a sweep's configurations ranked, with confidence intervals; without SWEEP_ID, the sweeps",
        description="Its jobs grouped by configuration, best first: mean and 95 % confidence interval "
        "of validation and test accuracy over the seeds, and how each stands against the best, with the "
        "gap's interval (GET /sweeps/ID). Without SWEEP_ID: the last 100 sweeps, newest first (GET /sweeps).",
    )
    sweeps.add_argument("sweep_id", nargs="?", metavar="SWEEP_ID")
    study = command(
        "study",
        studies.cmd_study,
        "run an adaptive search from a JSON file; show or cancel one",
        description='FILE holds {"base": {...spec...}, "space": {"field": {"float": [low, high], "log": true} | '
        '{"int": [low, high]} | {"choice": [...]}}, "sampler": "tpe", "trials": 40, "parallelism": 2, '
        '"pruner": "asha"} (POST /studies). `mlplab study show ID`: its trials best first and importance; '
        "`mlplab study extend ID --trials N`: N more trials; `mlplab study list`: the studies.",
    )
    studies.add_study_command(study)
    command(
        "studies",
        studies.cmd_studies,
        "a study's trials best first and their importance; without STUDY_ID, the studies",
        description="As `mlplab study show ID` (GET /studies/ID and its importance); without STUDY_ID: the "
        "last 100 studies, newest first (GET /studies), as `mlplab study list`.",
    ).add_argument("study_id", nargs="?", type=int, metavar="STUDY_ID")
    alias = command(
        "alias",
        aliases.cmd_alias,
        "name a model (or a sweep's or study's best), roll the name back, or show it",
        description="With MODEL, --sweep or --study: point NAME at that model (PUT /aliases/NAME, or "
        "promote); --rollback: back to its previous model; --delete: remove it; alone: the model it names "
        "and its history. `mlplab aliases` lists them.",
    )
    aliases.add_alias_command(alias)
    command("aliases", aliases.cmd_aliases, "list the aliases and the models they name")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlplab", description="Train, compare and serve MNIST MLPs.")
    parser.add_argument("--version", action="version", version=f"mlplab {__version__}")
    _remote_flags(parser, None)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_commands(sub)
    _client_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `mlplab` console script; the exit status."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):  # one that can't encode λ or ● writes ?, not a traceback
            stream.reconfigure(errors="replace")
    args = _parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        status = run(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not in the interpreter's exit
        return status
    except SettingsError as exc:  # a configuration mistake: its message, not a traceback
        print(f"mlplab: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `mlplab jobs | head` closed the pipe: stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush goes nowhere
        return 141
