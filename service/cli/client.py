"""The `mlplab` commands that talk to a running API over HTTP: submit (--watch), watch, cancel, jobs,
models, compare, predict, sweep. Each prints what it got and returns the exit status."""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.progress_bar import ProgressBar as Bar
from rich.table import Table
from rich.text import Text

from service.api.schemas import MODEL_ID_HEADER
from service.cli.http import ApiClient, ApiError, answer, not_mlplab, shown_url
from service.ml.spec import NUM_CLASSES, TrainSpec, momentum_unread
from service.quoting import counted
from service.selection import (
    CUT_MARK,
    CUT_NOTE,
    MODELS_NOT_SETTINGS,
    PAIRED,
    VERSUS_BEST_NOTE,
    WELCH,
    gap_cut,
    gap_text,
    p_text,
    rank_key,
    tests_note,
    versus_best,
)
from service.settings import Settings, get_settings, token_problem
from service.store.models import JobStatus

Json = dict[str, Any]  # a JSON object as the API sent it
PIPE_WIDTH = 10_000  # a table written to a pipe or a file is never wrapped
FOLD_WIDTH = 24  # the narrowest a text column (SPEC, HYPERPARAMETERS) wraps to on a narrow terminal
GAP = 2  # spaces between two columns of a table
TEST_FINAL = "TEST (FINAL)"  # test accuracy: the final, unbiased figure, never what ranks
Command = Callable[[ApiClient, argparse.Namespace], int]


def _flag_type(annotation: Any) -> tuple[Callable[[str], Any], list[str] | None]:
    """How a TrainSpec field is read from the command line: a converter, and its choices if it has any."""
    origin = get_origin(annotation)
    if origin is Literal:
        return str, [str(choice) for choice in get_args(annotation)]
    if origin in (Union, UnionType):
        return _flag_type(next(arg for arg in get_args(annotation) if arg is not type(None)))
    if origin is list:
        return _int_list, None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _json_object, None
    if annotation is float:
        return finite_float, None
    return annotation, None


def finite_float(text: str) -> float:
    """A number as argparse reads it; nan and inf refused (JSON has no such numbers)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number, e.g. 0.01") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number, e.g. 0.01")
    return value


def seconds(text: str) -> float:
    """A wait between two checks: a finite number of seconds above 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0, e.g. 2")
    return value


def top(text: str) -> int:
    """How many classes `predict` lists: 1 to all of them."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= NUM_CLASSES:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from 1 to {NUM_CLASSES}")
    return value


class NotFinite(ValueError):
    """A JSON number that is NaN or infinite: JSON proper has no such numbers, nor has the API."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotFinite(f"{text} is not a finite number")
    return value


def loads(text: str) -> Any:
    """JSON without NaN or Infinity, which the API can't be sent."""
    return json.loads(text, parse_float=_finite, parse_constant=_finite)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = loads(text)
    except NotFinite as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r}: give a JSON object, e.g. '{{\"patience\": 3}}'")
    return value


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give comma-separated integers, e.g. 500,250,100"
        ) from None


METAVARS: dict[Callable[[str], Any], str] = {_int_list: "N,N,...", _json_object: "JSON"}


def add_spec_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainSpec field; those not given are left to the API's defaults."""
    group = parser.add_argument_group("training spec (unset flags take the API's defaults)")
    for name, info in TrainSpec.model_fields.items():
        convert, choices = _flag_type(info.annotation)
        value = None if info.is_required() else info.get_default(call_default_factory=True)
        shown = ",".join(map(str, value)) if isinstance(value, list) else value
        # learning_rate's default is its optimizer's, which its description gives
        depends = isinstance(info.json_schema_extra, dict) and any(
            key.startswith("x-default-by-") for key in info.json_schema_extra
        )
        default = "" if value is None or depends else f" (default {shown})"
        example = " e.g. '{\"patience\": 3}'" if convert is _json_object else ""
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"spec_{name}",
            type=convert,
            choices=choices,
            required=info.is_required(),
            default=argparse.SUPPRESS,
            metavar=METAVARS.get(convert) or (None if choices else name.upper()),
            help=f"{info.description or ''}{_range(info.metadata)}{example}{default}".strip(),
        )


def _range(metadata: list[Any]) -> str:
    """' (1 to 200)', ' (above 0, at most 10)' from a field's bounds, as the API checks them; '' without."""

    def number(value: Any) -> str:
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"

    ge, gt, le, lt = (
        number(getattr(m, name)) if (m := next((x for x in metadata if hasattr(x, name)), None)) else None
        for name in ("ge", "gt", "le", "lt")
    )
    if ge and le:
        return f" ({ge} to {le})"
    words = [
        f"at least {ge}" if ge else f"above {gt}" if gt else "",
        f"at most {le}" if le else f"below {lt}" if lt else "",
    ]
    return f" ({', '.join(w for w in words if w)})" if any(words) else ""


class UsageError(Exception):
    """A mistake in the command line or the environment: exit status 2, as argparse gives."""


def _checked_url(url: str, where: str) -> str:
    """The API's URL if the client can use it; a UsageError that names it (and `where` it came from)."""
    named = f"{where} {shown_url(url)!r}"
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            scheme = f"give its scheme, e.g. http://{shown_url(url).split('://')[-1]}"
            raise UsageError(f"{named} is not a URL: {scheme}")
        port = parts.port  # raises for a port that is not a number from 0 to 65535
        httpx.URL(url)
        # a host name the resolver cannot encode (an empty label, one past 63 characters): a traceback
        (parts.hostname or "").encode("idna")
    except (ValueError, httpx.InvalidURL) as exc:  # UnicodeError is a ValueError
        raise UsageError(f"{named} is not a URL: {exc}") from None
    if not parts.hostname:
        raise UsageError(f"{named} is not a URL: give its host, e.g. http://127.0.0.1:8000")
    if port == 0:
        raise UsageError(f"{named} is not a URL: its port must be from 1 to 65535")
    if parts.query or parts.fragment:  # requests went to /?x=1 in place of /jobs
        raise UsageError(
            f"{named} is not the API's address: it has a query or fragment; give scheme, host and port"
        )
    return url


def _client(args: argparse.Namespace) -> ApiClient:
    settings = get_settings(serving=False)  # the URL and the token: a server's settings are not its concern
    for flag, value in (("--token", args.token), ("--url", args.url)):
        if value is not None and not value.strip():  # as blank as MLPLAB_API_TOKEN="", refused as that is
            raise UsageError(f"{flag} is blank: give a value, or leave the flag out")
    if args.token is not None and (problem := token_problem(args.token)):
        raise UsageError(f"--token {problem}")
    token = args.token or (settings.api_token.get_secret_value() if settings.api_token else None)
    url = _checked_url(args.url or settings.url, "--url" if args.url else "MLPLAB_URL")
    return ApiClient(url, token)


def _flag_location(name: str, flags: dict[str, str]) -> str:
    """An API problem's location as the command line says it: body.hidden_layers.0 -> --hidden-layers[0]
    where a flag set body.hidden_layers; unchanged where none did."""
    head, *rest = name.split(".")
    flag = flags.get(f"{head}.{rest[0]}") if rest else None
    if flag is None:
        return name
    return flag + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in rest[1:])


@contextmanager
def flags_named(flags: dict[str, str]) -> Iterator[None]:
    """An ApiError raised inside names the flag (--epochs) where it named what the flag set (body.epochs)."""
    try:
        yield
    except ApiError as exc:
        named = {p["name"]: _flag_location(p["name"], flags) for p in exc.invalid_params}
        for param in exc.invalid_params:
            param["name"] = named[param["name"]]
        # the detail lists the first problems as "name: reason; name: reason"
        exc.detail = re.sub(r"(^|; )([^:;]+): ", lambda m: f"{m[1]}{named.get(m[2], m[2])}: ", exc.detail)
        raise


def seconds_figure(seconds: float) -> str:
    """Seconds as a figure: a tenth from 1 s up, two significant digits below ('0.018', not '0.0')."""
    if seconds == 0:
        return "0"
    return f"{seconds:.1f}" if seconds >= 1 else f"{seconds:#.2g}"  # '#': 0.10 beside 0.16, not 0.1


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def table(headers: list[str], rows: list[list[Any]], fold: Sequence[str] = ()) -> str:
    """Aligned columns (rich): bold headers on a terminal; plain, unwrapped text into a pipe or a file.
    On a narrow terminal the text columns named in `fold` wrap; the others (figures) are never cut: past
    what they need, the lines are wider than the terminal, which wraps them."""
    grid = _grid(headers, rows, fold)
    return render(grid, _least_width(grid))


def _width(cell: Bar | Text) -> int:
    return (cell.width or 0) if isinstance(cell, Bar) else cell.cell_len


def _least_width(grid: Table) -> int:
    """How wide `grid` must be for rich to draw every cell whole (the folding columns folded)."""
    return sum(column.min_width or 0 for column in grid.columns) + GAP * (len(grid.columns) - 1)


def _grid(headers: list[str], rows: list[list[Any]], fold: Sequence[str] = ()) -> Table:
    """table's columns: those in `fold` wrap down to FOLD_WIDTH, the rest keep their widest cell whole.
    A cell is text, or a Bar (drawn its own width)."""
    cells = [[cell if isinstance(cell, Bar) else Text(str(cell)) for cell in row] for row in rows]
    grid = Table(box=None, pad_edge=False, padding=(0, GAP // 2), header_style="bold")
    for i, header in enumerate(headers):
        natural = max([cell_len(header), *(_width(row[i]) for row in cells)])
        folds = header in fold
        grid.add_column(
            header,
            no_wrap=not folds,
            overflow="fold",
            min_width=min(natural, FOLD_WIDTH) if folds else natural,
        )
    for row in cells:
        grid.add_row(*row)
    return grid


def render(renderable: RenderableType, least: int = 0) -> str:
    """What rich draws of it for standard output, each line without its trailing padding; on a terminal,
    at least `least` wide (rich would cut what does not fit to an ellipsis)."""
    terminal = sys.stdout.isatty()
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=None if terminal else PIPE_WIDTH)
    console.width = max(console.width, least)
    console.print(renderable)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


class ProgressBar:
    """A job's training on stderr: a line per status change and per epoch, and on a terminal a live bar
    of the epoch's steps below them (rich; cleared when it ends)."""

    def __init__(self, job: Json, console: Console | None = None, announced: bool = False):
        self.job_id, self.epochs = job["id"], job["spec"]["epochs"]
        # A job that had ended when we looked replays its progress under a passing `running`: not news.
        self.ended = JobStatus(job["status"]).finished
        # the status line last printed (a reconnection resends it); `announced`: its status is on stdout
        self.shown: tuple[str, int] | None = (job["status"], job["attempts"]) if announced else None
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self.task = self.progress.add_task(f"job {self.job_id}", total=None, detail="")
        self.progress.start()

    def _line(self, text: str) -> None:
        self.console.print(text, soft_wrap=True, markup=False, highlight=False)

    def update(self, event: str, data: Json) -> None:
        if event == "status":
            status = (data["status"], data["attempts"])
            if not self.ended and not JobStatus(data["status"]).finished and status != self.shown:
                self.shown = status  # how it ended is reported after
                attempt = f" (attempt {data['attempts']})" if data["attempts"] > 1 else ""
                self._line(f"job {self.job_id} {data['status']}{attempt}")
        elif event == "progress":
            steps = data["steps"] or None
            self.progress.update(
                self.task,
                description=f"epoch {data['epoch']}/{self.epochs}",
                completed=data["step"],
                total=steps,
                detail=f"step {data['step']:,}/{steps or 0:,}  loss {data['loss']:.4f}",
            )
        elif event == "epoch":
            validation = data.get("validation_accuracy")
            shown = (
                ""
                if validation is None
                else f"validation {pct(validation)} (loss {data['validation_loss']:.4f}), "
            )
            # before the last epoch, train and test on fixed samples; .get: an API older than the field
            sampled = "on samples: " if data.get("sampled", data["epoch"] < self.epochs) else ""
            self._line(
                f"epoch {data['epoch']}/{self.epochs}: loss {data['loss']:.4f}, {shown}"
                f"{sampled}train {pct(data['train_accuracy'])}, test {pct(data['test_accuracy'])} "
                f"({seconds_figure(data['seconds'])} s)"
            )

    def close(self) -> None:
        self.progress.stop()


def _report(client: ApiClient, job: Json) -> int:
    """Print how a job ended; the exit status (0 when it succeeded)."""
    if job["status"] == JobStatus.succeeded:
        print(f"job {job['id']} succeeded: {job['name']}")
        progress = job["progress"]
        if progress["epoch"] is not None and progress["epoch"] < progress["epochs"]:
            print(f"early stopping ended it after epoch {progress['epoch']} of {progress['epochs']}")
        if job["spec"].get("early_stopping"):  # its model may be an earlier epoch's, whose figures follow
            model = client.get(f"/models/{job['id']}")
            if model["best_epoch"] != model["stopped_epoch"]:
                print(
                    f"kept epoch {model['best_epoch']}'s weights (the lowest validation loss); its accuracies:"
                )
        print(f"train accuracy       {pct(job['train_accuracy'])}")
        print(f"validation accuracy  {pct(job['validation_accuracy'])}")
        print(f"test accuracy        {pct(job['test_accuracy'])}  (final, unbiased)")
        if job.get("warning"):
            print(f"warning: {job['warning']}", file=sys.stderr)
        return 0
    print(f"job {job['id']} {job['status']}" + (f": {job['error']}" if job.get("error") else ""))
    return 1


def _watch(client: ApiClient, job: Json, announced: bool = False) -> int:
    bar = ProgressBar(job, announced=announced)
    try:
        for event in client.events(job["id"]):
            if event.event == "end":
                bar.close()
                return _report(client, event.data)
            bar.update(event.event, event.data)
    except KeyboardInterrupt:
        bar.close()
        print(
            f"job {job['id']} goes on without you watching; to cancel it: mlplab cancel {job['id']}",
            file=sys.stderr,
        )
        raise
    finally:
        bar.close()
    return 1


def cmd_submit(client: ApiClient, args: argparse.Namespace) -> int:
    spec = {k.removeprefix("spec_"): v for k, v in vars(args).items() if k.startswith("spec_")}
    with flags_named({f"body.{field}": f"--{field.replace('_', '-')}" for field in spec}):
        job = client.post("/jobs", json=spec)
    print(f"job {job['id']} {job['status']}: {job['name']}")
    return _watch(client, job, announced=True) if args.watch else 0


def cmd_watch(client: ApiClient, args: argparse.Namespace) -> int:
    with flags_named({"path.job_id": "JOB_ID"}):  # `mlplab watch -1` named path.job_id
        job = client.get(f"/jobs/{args.job_id}")
    return _watch(client, job)


def cmd_cancel(client: ApiClient, args: argparse.Namespace) -> int:
    if args.sweep is not None:
        return _cancel_sweep(client, args.sweep)
    with flags_named({"path.job_id": "JOB_ID"}):
        job = client.post(f"/jobs/{args.job_id}/cancel")
    print(
        f"job {job['id']} {job['status']}"
        + (" (cancel requested)" if job["status"] == JobStatus.running else "")
    )
    return 0


def _cancel_sweep(client: ApiClient, sweep_id: str) -> int:
    """POST /sweeps/{id}/cancel; what it did, from the sweep's status counts before and after: the jobs it
    cancelled, and the running ones (each now asked to stop)."""
    if not sweep_id.strip():
        raise UsageError("--sweep is empty: give a sweep id, as `mlplab sweep` printed it")
    path = f"/sweeps/{quote(sweep_id, safe='')}"
    with flags_named({"path.sweep_id": "--sweep"}):
        before = client.get(path)["status"]
        sweep = client.post(f"{path}/cancel")
    after = sweep["status"]
    cancelled = max(after["cancelled"] - before["cancelled"], 0)
    running = after["running"]
    print(
        f"sweep {sweep['id']}: {counted(cancelled, 'queued job')} cancelled, {running} running asked to stop"
    )
    return 0


def _progress(job: Json) -> str:
    p = job["progress"]
    running = job["status"] == JobStatus.running and p["steps"] and p["step"]
    return f"{p['epoch'] or 0}/{p['epochs']}" + (f" step {p['step']:,}/{p['steps']:,}" if running else "")


def cmd_jobs(client: ApiClient, args: argparse.Namespace) -> int:
    """Newest first; one sweep's jobs best first, as GET /sweeps/{id} ranks them."""
    if args.sweep:
        with flags_named({"path.sweep_id": "--sweep"}):
            sweep = client.get(f"/sweeps/{quote(args.sweep, safe='')}")
        matching = [j for j in sweep["jobs"] if args.status in (None, j["status"])]
        page: Json = {"data": matching[: args.limit], "count": len(matching)}
        print(f"ranked by {sweep['ranked_by']}", file=sys.stderr)
    else:
        with flags_named({"query.limit": "--limit"}):
            page = client.get("/jobs", status=args.status, limit=args.limit)
    rows = [
        [
            j["id"],
            j["status"],
            _progress(j),
            pct(j["validation_accuracy"]),
            pct(j["test_accuracy"]) + chance_mark(j),
            j["name"],
        ]
        for j in page["data"]
    ]
    print(table(["ID", "STATUS", "EPOCH", "VALIDATION", TEST_FINAL, "SPEC"], rows, fold=["SPEC"]))
    print(f"{len(rows)} of {page['count']} jobs", file=sys.stderr)
    chance_notes(page["data"])
    return 0


def chance_mark(item: Json) -> str:
    return " !" if item.get("near_chance") else ""


ADVICE = " Try "  # where the API's near-chance sentence turns from what it saw to what to try


def chance_notes(items: list[Json], key: str = "id") -> None:
    """Under a table: what each '!' means, by the job id under `key`; past two, one line for each advice,
    naming its jobs (15 sentences of 300 characters buried the table), their accuracies being in it."""
    flagged = [item for item in items if item.get("near_chance")]
    if len(flagged) <= 2 or not all(ADVICE in item["warning"] for item in flagged):
        for item in flagged:
            print(f"! {item[key]}: {item['warning']}", file=sys.stderr)
        return
    advice: dict[str, list[str]] = {}
    for item in flagged:
        advice.setdefault(item["warning"].split(ADVICE, 1)[1], []).append(str(item[key]))
    for text, ids in advice.items():
        print(f"! {', '.join(ids)}: near chance level, learned next to nothing. Try {text}", file=sys.stderr)


def _validation_sizes(models: list[Json]) -> str | None:
    """ "5,000 or 10,000" when the models listed were validated on different numbers of images (a
    ranking then compares accuracies on different images); None when they were not."""
    # .get: an API older than the field; 0: no validation split, ranked apart on test accuracy
    sizes: list[int] = sorted({int(m.get("validation_size") or 0) for m in models} - {0})
    if len(sizes) < 2:
        return None
    return f"{', '.join(f'{n:,}' for n in sizes[:-1])} or {sizes[-1]:,}"


def kept_epochs(kept: int, stopped: int, asked: int) -> str:
    """'8' where all the epochs asked for were trained and the last kept; else '3 (4 of 8)': the epoch whose
    weights the model is, and how many of those asked for were trained (`mlplab models`, `compare`)."""
    return str(asked) if kept == stopped == asked else f"{kept} ({stopped} of {asked})"


# read as the row's own (a newcomer's "2 (3 of 3)" had no early end): the form, not an example
KEPT_NOTE = (
    "KEPT (TRAINED of ASKED): the epoch whose weights the model kept (early stopping's lowest validation "
    "loss), then how many epochs it trained of those asked for (fewer: early stopping ended it)"
)


def _epochs_cell(m: Json) -> str:
    # .get: an API older than the fields
    asked = int(m["epochs"])
    return kept_epochs(int(m.get("best_epoch", asked)), int(m.get("stopped_epoch", asked)), asked)


def cmd_models(client: ApiClient, args: argparse.Namespace) -> int:
    page = client.get("/models", sort=args.sort, dataset=args.dataset)
    rows = [
        [
            m["id"],
            m["dataset"],
            m["backend"],
            "-".join(map(str, m["hidden_layers"])),
            m["activation"],
            m["init"],
            m["optimizer"],
            f"{m['learning_rate']:g}",
            f"{m['l2']:g}",
            m["lr_schedule"],
            _epochs_cell(m),
            m["batch_size"],
            m.get("seed", "-"),  # .get: an API older than the field
            "all" if m["train_limit"] is None else m["train_limit"],
            pct(m["train_accuracy"]),
            pct(m["validation_accuracy"]) + (" ?" if m.get("validation_note") else ""),  # .get: an older API
            pct(m["test_accuracy"]) + chance_mark(m),
            seconds_figure(m["seconds"]),
            ",".join(m["aliases"]),
        ]
        for m in page["data"]
    ]
    print(
        table(
            [
                "ID",
                "DATASET",
                "BACKEND",
                "HIDDEN",
                "ACT",
                "INIT",
                "OPT",
                "LR",
                "L2",
                "SCHEDULE",
                "EPOCHS",
                "BATCH",
                "SEED",
                "TRAIN_LIMIT",
                "TRAIN",
                "VALIDATION",
                TEST_FINAL,
                "SECONDS",
                "ALIASES",
            ],
            rows,
            fold=["ALIASES"],
        )
    )
    print(f"{len(rows)} of {page['count']} models, ranked by {page['ranked_by']}", file=sys.stderr)
    if any(_epochs_cell(m) != str(m["epochs"]) for m in page["data"]):
        print(f"EPOCHS {KEPT_NOTE}", file=sys.stderr)
    if args.sort == "test_accuracy":
        print(
            "! picking a model by test accuracy selects on the test images: the first one's test figure is "
            "then no unbiased estimate (the default, validation accuracy, picks without them)",
            file=sys.stderr,
        )
    if args.sort == "validation_accuracy" and (sizes := _validation_sizes(page["data"])):
        print(
            f"validated on {sizes} held-out images: their validation accuracies are of different images",
            file=sys.stderr,
        )
    for m in page["data"]:
        if note := m.get("validation_note"):
            print(f"? {m['id']}: {note}", file=sys.stderr)
    if args.dataset is None and len(datasets := sorted({m["dataset"] for m in page["data"]})) > 1:
        print(
            f"models of {' and '.join(datasets)}: accuracies on two datasets rank nothing against each "
            "other; --dataset NAME lists one's",
            file=sys.stderr,
        )
    chance_notes(page["data"])
    return 0


def _image_type(content: bytes) -> str | None:
    """A PNG or JPEG by its first bytes, whatever its file is called (a PNG saved as .txt was a 415)."""
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return "image/jpeg" if content.startswith(b"\xff\xd8\xff") else None


def _model_id(response: httpx.Response) -> str:
    """The id of the model that answered, from its header: digits (printed, and put in a path or a file's
    name), or the server is not mlplab's API."""
    model_id = str(response.headers.get(MODEL_ID_HEADER, ""))
    if not model_id.isascii() or not model_id.isdigit():
        raise not_mlplab(response, f"no {MODEL_ID_HEADER} header of digits")
    return model_id


MAX_IMAGE_BYTES = 64 * 2**20  # the most of an image file predict reads and sends: /dev/zero stops here


def read_capped(read: Callable[[int], bytes], limit: int, name: str, most: str, setting: str) -> bytes:
    """At most `limit` bytes from `read`, or a UsageError naming `name`, saying the limit is `most` and what
    the API takes (`setting`, a Settings field): /dev/zero, or an endless input, filled the memory."""
    raw = read(limit + 1)
    if len(raw) > limit:
        default = Settings.model_fields[setting].default
        raise UsageError(
            f"{name} is past {limit:,} bytes, {most} (the API takes MLPLAB_{setting.upper()}, {default:,} "
            "unless set)"
        )
    return raw


def cmd_predict(client: ApiClient, args: argparse.Namespace) -> int:
    if not args.model.strip():  # sent, it made the path /models//predict: a 404 that names no model
        raise UsageError("--model is blank: give the model's (job) id or an alias, e.g. champion")
    try:  # "-": standard input, as sweep's and study's files
        content = read_input(
            args.image, MAX_IMAGE_BYTES, "the most `mlplab predict` sends", "max_upload_bytes"
        )
    except OSError as exc:
        raise ApiError(0, "cannot read the image", str(exc)) from None
    # not a PNG or JPEG by its bytes: sent as bytes, for the API to read (other formats) or say what it is not
    kind = _image_type(content) or "application/octet-stream"
    with flags_named({"path.model": "--model"}):
        response = client.response(
            "POST",
            f"/models/{quote(args.model, safe='')}/predict",
            content=content,
            headers={"Content-Type": kind},
        )
        result = answer(response)
    model_id = _model_id(response)  # the model that answered: an alias may move meanwhile
    dataset = client.get(f"/models/{model_id}")["dataset"]
    classes: list[str] = next(
        (d["classes"] for d in client.get("/datasets")["data"] if d["name"] == dataset), []
    )

    def name(label: int) -> str:
        return (
            f"{label} {classes[label]}"
            if label < len(classes) and classes[label] != str(label)
            else str(label)
        )

    probabilities = result["probabilities"]
    by = f" by model {model_id}" + (f" ({args.model})" if args.model != model_id else "")
    print(f"predicted {name(result['predicted'])} ({probabilities[result['predicted']]:.2%}){by}")
    for label in sorted(range(len(probabilities)), key=lambda i: -probabilities[i])[: args.top]:
        print(f"  {probabilities[label]:7.2%}  {name(label)}")
    for key in ("warning", "model_warning"):
        if result.get(key):
            print(f"warning: {result[key]}", file=sys.stderr)
    return 0


EXPORTS = {"npz": "weights", "onnx": "model.onnx"}  # --format: the route under /models/{model}/
SAFE_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


def cmd_export(client: ApiClient, args: argparse.Namespace) -> int:
    """The model's weights (.npz, mlplab's format) or its ONNX graph, written to a file as it comes."""
    if not args.model.strip():
        raise UsageError("MODEL is blank: give the model's (job) id or an alias, e.g. champion")
    with (
        flags_named({"path.model": "MODEL"}),
        client.streamed(f"/models/{quote(args.model, safe='')}/{EXPORTS[args.format]}") as response,
    ):
        model_id = _model_id(response)  # it names the file
        named = re.search(r'filename="([^"]*)"', response.headers.get("content-disposition", ""))
        offered = named[1] if named and SAFE_FILENAME.fullmatch(named[1]) else None  # never a path
        name = offered or f"mlplab-model-{model_id}.{args.format}"
        target = args.output or name
        if target != "-" and Path(target).is_dir():
            target = str(Path(target) / name)
        size = _write(target, response.iter_bytes())
    by = f"model {model_id}" + (f" ({args.model})" if args.model != model_id else "")
    print(f"{by}: {size:,} bytes of {args.format} to {target}", file=sys.stderr)
    return 0


def _write(target: str, pieces: Iterator[bytes]) -> int:
    """The pieces to standard output ('-'), or to the file `target` whole or not at all: to a file beside
    it, renamed over it once all have come. Returns the bytes written."""
    if target == "-":
        size = 0
        for piece in pieces:
            sys.stdout.buffer.write(piece)
            size += len(piece)
        sys.stdout.buffer.flush()
        return size
    path = Path(target)
    if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO, /dev/null: into it, as `>`
        return _write_into(path, pieces)
    part = path.with_name(f".{path.name}.part")
    try:
        with part.open("wb") as file:
            for piece in pieces:
                file.write(piece)
        part.replace(path)
    except OSError as exc:
        raise ApiError(0, f"cannot write {path}", str(exc)) from None
    finally:
        part.unlink(missing_ok=True)
    return path.stat().st_size


def _write_into(path: Path, pieces: Iterator[bytes]) -> int:
    """The pieces written into `path` itself (not a regular file: renaming over it would replace it)."""
    size = 0
    try:
        with path.open("wb") as file:
            for piece in pieces:
                size += file.write(piece)
    except OSError as exc:
        raise ApiError(0, f"cannot write {path}", str(exc)) from None
    return size


def cell(value: Any, field: str | None = None) -> str:
    """A hyperparameter's value in one word: 500-250, 0.01, patience=3,min_delta=0; unset, as the pages
    say it (spec.js showValue): off for an object field (early_stopping), all for another (train_limit)."""
    if isinstance(value, list):
        return "-".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}={cell(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        info = TrainSpec.model_fields.get(field or "")
        if info is None:
            return "-"
        kinds = get_args(info.annotation)
        return "off" if any(isinstance(k, type) and issubclass(k, BaseModel) for k in kinds) else "all"
    return str(value)


def _kept(model: Json) -> tuple[str, str]:
    """The epoch whose weights the model is, of those trained, and that epoch's loss."""
    loss = next((f"{e['loss']:.4f}" for e in model["epochs"] if e["epoch"] == model["best_epoch"]), "-")
    return kept_epochs(model["best_epoch"], model["stopped_epoch"], model["spec"]["epochs"]), loss


def cmd_compare(client: ApiClient, args: argparse.Namespace) -> int:
    """Models as columns: the hyperparameters that differ (all with --all), then how each did."""
    with flags_named({"query.ids": "MODEL"}):
        result = client.get("/compare", ids=",".join(map(str, args.model_ids)))
    models = result["data"]
    fields = list(result["hyperparameters"]) if args.all else result["differing"]
    optimizers = result["hyperparameters"].get("optimizer", [None] * len(models))

    def shown(field: str, i: int) -> str:  # a momentum its optimizer never reads: "-", as the pages show it
        value = result["hyperparameters"][field][i]
        return "-" if field == "momentum" and momentum_unread([optimizers[i]]) else cell(value, field)

    rows = [[field, *(shown(field, i) for i in range(len(models)))] for field in fields]
    kept = [_kept(m) for m in models]
    rows += [
        ["train accuracy", *(pct(m["train_accuracy"]) for m in models)],
        ["validation accuracy", *(pct(m["validation_accuracy"]) for m in models)],
        ["test accuracy (final)", *(pct(m["test_accuracy"]) + chance_mark(m) for m in models)],
        ["kept epoch", *(epoch for epoch, _ in kept)],
        ["its training loss", *(loss for _, loss in kept)],
        [
            "training seconds",
            *(seconds_figure(sum(e["seconds"] for e in m["epochs"])) if m["epochs"] else "-" for m in models),
        ],
    ]
    print(table(["", *(f"#{m['id']}" for m in models)], rows))
    chance_notes(models)
    if not result["differing"]:
        print("(no setting that shapes a model differs)", file=sys.stderr)
    print(_verdict(client, models))  # the answer, beside the table: `> out.txt` lost it from stderr
    return 0


def _verdict(client: ApiClient, models: list[Json]) -> str:
    """Which model ranks first and by how much, and what the test images say of its lead over the next
    (McNemar, GET /compare/disagreements), as the compare page says it."""
    if len({m["spec"]["dataset"] for m in models}) > 1:
        return "models of different datasets: their accuracies rank nothing against each other"
    best, after = sorted(
        models, key=lambda m: rank_key(m["validation_accuracy"], m["test_accuracy"], m["id"])
    )[:2]
    split = "validation" if best["validation_accuracy"] is not None else "test"
    a, b = f"#{best['id']}", f"#{after['id']}"
    if split == "validation" and after["validation_accuracy"] is None:
        return f"{a} ranks first on validation accuracy; {b} has no validation split (ranked after, on test): no gap"
    gap = 100 * (best[f"{split}_accuracy"] - after[f"{split}_accuracy"])
    said = (
        f"{a} and {b} are level on {split} accuracy"
        if gap == 0
        else f"{a} ranks first on {split} accuracy, {gap:.2f} points ahead of {b}"
    )
    try:
        d = client.get("/compare/disagreements", a=best["id"], b=after["id"], split="test", limit=1)
    except (
        ApiError
    ) as exc:  # the table stands; only the test is missing (a dataset this API lacks, a busy queue)
        return f"{said}; no test on the test images: {exc.title}"
    said += (
        f"; on the test images {a} alone is right on {d['a_right_b_wrong']:,}, {b} alone on "
        f"{d['b_right_a_wrong']:,}: McNemar {p_text(d['p_value'])}, "
    )
    if not d["beyond_chance"]:
        return said + "within what chance gives two equally accurate models"
    ahead = a if d["a_right_b_wrong"] > d["b_right_a_wrong"] else b
    checked = "; test ranked them too, so this is no independent check" if split == "test" else ""
    return said + f"{ahead} does better on them{checked}. {MODELS_NOT_SETTINGS}"


def _varying(sweep: Json, job: Json) -> str:
    return ", ".join(f"{field}={cell(job['spec'][field], field)}" for field in sweep["grid"])


def _within(value: float) -> float:
    """An accuracy's interval end within [0, 1]: with two or three seeds Student's t reaches past both."""
    return min(1.0, max(0.0, value))


def varied_text(sweep: Json) -> str:
    """'optimizer (+learning_rate), l2; 3 seeds': its factors, what varies only as their default with them
    (the sweep page's variesText), and its replicates' seeds."""
    follows = sweep.get("follows", {})
    parts = [
        field + "".join(f" (+{along})" for along, by in follows.items() if by == field)
        for field in sweep["grid"]
        if field != "seed" and field not in follows
    ]
    seeds = f"{len(sweep['grid']['seed'])} seeds" if "seed" in sweep["grid"] else ""
    return "; ".join(part for part in (", ".join(parts), seeds) if part) or "-"


def failed_text(c: Json) -> str:
    """'3 diverged', '3 failed (2 diverged)', '3 failed': a configuration's failed runs, and why where known
    (the sweep page's failedText)."""
    failed, diverged = c["failed"], c.get("diverged", 0)
    if diverged == failed:
        return f"{failed} diverged"
    return f"{failed} failed" + (f" ({diverged} diverged)" if diverged else "")


def _mean_ci(summary: Json | None) -> str:
    """'92.31% (91.90-92.72)': the mean and its 95 % interval ('92.31%' for one run)."""
    if summary is None:
        return "-"
    if summary["ci_low"] is None:
        return pct(summary["mean"])
    if summary["std"] == 0:  # a zero-width interval read as certainty: the runs just agreed
        return f"{pct(summary['mean'])} (every run alike)"
    low, high = _within(summary["ci_low"]), _within(summary["ci_high"])
    return f"{pct(summary['mean'])} ({100 * low:.2f}-{100 * high:.2f}){CUT_MARK if _cut(summary) else ''}"


def _cut(summary: Json | None) -> bool:
    return summary is not None and bool(summary.get("clipped"))  # .get: an API older than the field


BAR_WIDTH = 21  # characters of a configuration's interval bar


def interval_bars(summaries: list[Json | None], width: int = BAR_WIDTH) -> tuple[str, list[str]]:
    """Each summary's 95 % interval as a bar on one scale shared by all ('·····━━●━━·····'; '●' alone
    for one run), and that scale as a header ('95% CI, AXIS 91.20 TO 93.40%': the bars' ends, no interval's;
    without an interval, 'MEAN, AXIS ...')."""
    known = [x for x in summaries if x is not None]
    name = "95% CI" if _has_interval(summaries) else "MEAN"
    if not known:
        return name, ["-" for _ in summaries]
    low = min(_within(x["mean"] if x["ci_low"] is None else x["ci_low"]) for x in known)
    high = max(_within(x["mean"] if x["ci_high"] is None else x["ci_high"]) for x in known)

    def at(value: float) -> int:
        return width // 2 if high == low else round((value - low) / (high - low) * (width - 1))

    def bar(x: Json | None) -> str:
        if x is None:
            return "-"
        cells = ["·"] * width
        if x["ci_low"] is not None:
            for i in range(at(max(x["ci_low"], low)), at(min(x["ci_high"], high)) + 1):
                cells[i] = "━"
        cells[at(x["mean"])] = "●"
        return "".join(cells)

    return f"{name}, AXIS {100 * low:.2f} TO {100 * high:.2f}%", [bar(x) for x in summaries]


def _has_interval(summaries: Sequence[Json | None]) -> bool:
    """Whether any has a 95 % interval: with one seed each, none has."""
    return any(x is not None and x["ci_low"] is not None for x in summaries)


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return p_text(value).removeprefix("p = ")  # the column is headed p; an underflow keeps its "p <"


def _versus_best(c: Json, rank: int) -> str:
    if "versus_best" in c:
        return c["versus_best"] or "-"
    gap = c.get("gap_to_best")  # an API older than versus_best: its word from the fields it has
    # a configuration none of whose runs succeeded is best at nothing
    return versus_best(c["tied_with_best"], rank == 0 and bool(c["n"]), gap and gap["difference"]) or "-"


def _gap(c: Json) -> str:
    gap = c.get("gap_to_best")  # .get: an API older than the field
    return "-" if gap is None else gap_text(gap["difference"], gap["ci_low"], gap["ci_high"])


def _configurations_table(sweep: Json) -> str:
    """GET /sweeps/{id}'s configurations: mean and 95 % CI of each accuracy, the interval that ranks them
    drawn as a bar, tied with the best or not."""
    configurations = sweep["configurations"]
    ranking = "validation_accuracy" if sweep["ranked_by"].startswith("validation") else "test_accuracy"
    scale, bars = interval_bars([c[ranking] for c in configurations])
    near_chance = {j["id"] for j in sweep["jobs"] if j.get("near_chance")}
    rows = [
        [
            # its jobs' notes say which run learned nothing, and on which split: its gap measures no effect
            (", ".join(f"{k}={cell(v, k)}" for k, v in c["hyperparameters"].items()) or "(one configuration)")
            + (" !" if near_chance & set(c["jobs"]) else ""),
            c["n"],
            # none succeeded: it read "0  -  -", as if it had not run
            _mean_ci(c["validation_accuracy"])
            if c["n"] or not c.get("failed")
            else f"none: {failed_text(c)}",
            bar,
            _mean_ci(c["test_accuracy"]),
            "-" if c["seconds"] is None else seconds_figure(c["seconds"]),
            _versus_best(c, rank),
            _gap(c),
            _p(c["p_value"]),
        ]
        for rank, (c, bar) in enumerate(zip(configurations, bars, strict=True))
    ]
    intervals = _has_interval(
        [c[m] for c in configurations for m in ("validation_accuracy", "test_accuracy")]
    )
    headers = [
        "CONFIGURATION",
        "N",
        "VALIDATION (95% CI)" if intervals else "VALIDATION",
        scale,
        "TEST (FINAL, 95% CI)" if intervals else TEST_FINAL,
        "SECONDS",
        "VS BEST",
        "GAP (95% CI)" if intervals else "GAP",
        "P",
    ]
    return table(headers, rows, fold=["CONFIGURATION"])


def _sweep_table(sweep: Json) -> str:
    """The configurations, best first, then the jobs."""
    rows = [
        [
            j["id"],
            j["status"],
            _varying(sweep, j),
            pct(j["train_accuracy"]),
            pct(j["validation_accuracy"]),
            pct(j["test_accuracy"]) + chance_mark(j),
        ]
        for j in sweep["jobs"]
    ]
    jobs = table(
        ["ID", "STATUS", "HYPERPARAMETERS", "TRAIN", "VALIDATION", TEST_FINAL], rows, fold=["HYPERPARAMETERS"]
    )
    return f"{_configurations_table(sweep)}\n\n{jobs}"


def _tests_used(tested: list[Json]) -> str:
    """Which t-tests weighed these configurations against the best: paired by seed where both ran the same."""
    # an API older than the paired test sends no tested_by: its tests were Welch's
    welch = sum(c.get("tested_by", WELCH) != PAIRED for c in tested)
    if not welch:
        return "paired t-test against the best on the seeds both ran"
    if welch == len(tested):
        return "Welch's t-test against the best"
    return f"t-test against the best, paired on the seeds both ran; Welch's for {welch} not run on the same seeds"


def _ranked_note(sweep: Json) -> None:
    """Under a sweep's table: what ranks it, and the next command worth running."""
    print(f"ranked by {sweep['ranked_by']}", file=sys.stderr)
    tested = [c for c in sweep["configurations"] if c["p_value"] is not None]
    if tested:
        print(
            f"VS BEST by {_tests_used(tested)}: {VERSUS_BEST_NOTE}. {tests_note(len(tested)).capitalize()}. "
            "GAP: its accuracy minus the best's, in points, and that test's 95% interval",
            file=sys.stderr,
        )
    if len(tested) < len(sweep["configurations"]) - 1:  # the best itself is never tested
        print(
            'VS BEST -: no test, which needs 2 succeeded seeds on each side ("replicates": 2 or more); '
            "one seed's lead may be its seed's luck",
            file=sys.stderr,
        )
    summaries = [
        c[split] for c in sweep["configurations"] for split in ("validation_accuracy", "test_accuracy")
    ]
    gaps = [c["gap_to_best"] for c in sweep["configurations"] if c.get("gap_to_best")]
    if any(map(_cut, summaries)) or any(gap_cut(g["ci_low"], g["ci_high"]) for g in gaps):
        print(f"{CUT_MARK} {CUT_NOTE}", file=sys.stderr)
    best = _best_runs(sweep)
    if len(best) >= 2:
        print(f"next: mlplab compare {' '.join(map(str, best))}", file=sys.stderr)
    elif best:
        print(f"next: mlplab watch {best[0]}", file=sys.stderr)


def _best_runs(sweep: Json, most: int = 4) -> list[int]:
    """The best succeeded run of each of the top configurations (best first): what to compare next."""
    jobs = {j["id"]: j for j in sweep["jobs"] if j["status"] == JobStatus.succeeded}
    order = list(jobs)  # the sweep's jobs come best first
    picks = [
        min((i for i in c["jobs"] if i in jobs), key=order.index, default=None)
        for c in sweep["configurations"]
    ]
    return [i for i in picks if i is not None][:most]


def status_counts(counts: dict[str, int], empty: str = "none") -> str:
    """'4 succeeded, 2 queued': a sweep's or a study's jobs by status, those with none left out."""
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n) or empty


def list_sweeps(client: ApiClient) -> int:
    """The sweeps, newest first: what each varies, how far it got, its best configuration's figure."""
    page = client.get("/sweeps", limit=100, jobs_limit=0)
    rows = []
    for sweep in page["data"]:
        best = next((c for c in sweep["configurations"] if c["n"]), None)
        ranked = "validation_accuracy" if sweep["ranked_by"].startswith("validation") else "test_accuracy"
        rows.append(
            [
                sweep["id"],
                sweep["created_at"][:16].replace("T", " "),
                sweep["count"],
                status_counts(sweep["status"]),
                varied_text(sweep),
                "-" if best is None or best[ranked] is None else _mean_ci(best[ranked]),
            ]
        )
    print(table(["SWEEP", "CREATED (UTC)", "JOBS", "STATUS", "VARIED", "BEST (MEAN, 95% CI)"], rows))
    print(f"{len(rows)} of {page['count']} sweeps; mlplab sweeps SWEEP for one ranked", file=sys.stderr)
    return 0


def cmd_sweeps(client: ApiClient, args: argparse.Namespace) -> int:
    """One sweep's table (as `sweep --watch` ends with it); without one, the sweeps."""
    if args.sweep_id is None:
        return list_sweeps(client)
    sweep = client.get(f"/sweeps/{quote(args.sweep_id, safe='')}")
    print(f"sweep {sweep['id']}: {sweep['count']} jobs")
    _sweep_report(sweep)
    return 0


def _sweep_report(sweep: Json) -> None:
    """A sweep's tables, what each '!' means, and what ranks it."""
    print(_sweep_table(sweep))
    chance_notes(sweep["jobs"])
    _ranked_note(sweep)


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def elapsed(job: Json, now: datetime) -> float | None:
    """Seconds since the job started (to its end when it has ended); None before it starts."""
    started = _when(job["started_at"])
    return None if started is None else ((_when(job["finished_at"]) or now) - started).total_seconds()


def job_eta(job: Json, now: datetime) -> float | None:
    """Seconds left for a running job, at the pace of its steps so far; None when unknown."""
    p, spent = job["progress"], elapsed(job, now)
    if job["status"] != JobStatus.running or not p["step"] or not p["steps"] or spent is None:
        return None
    return float(spent * (p["steps"] - p["step"]) / p["step"])


def sweep_eta(sweep: Json, now: datetime) -> float | None:
    """Seconds until the sweep's last job ends: what its running jobs have left, plus its queued jobs at
    the mean duration of those that succeeded, shared among as many workers as jobs now run. A running
    job yet to report its steps has the mean duration less its time so far left: small jobs spend most
    of their life there, and the whole ETA was unknown ('-') while one did."""
    jobs = sweep["jobs"]
    running = [j for j in jobs if j["status"] == JobStatus.running]
    queued = sum(j["status"] == JobStatus.queued for j in jobs)
    durations = [d for j in jobs if j["status"] == JobStatus.succeeded and (d := elapsed(j, now)) is not None]
    per_job = sum(durations) / len(durations) if durations else None
    left = [
        t
        if (t := job_eta(j, now)) is not None or per_job is None
        else max(per_job - (elapsed(j, now) or 0.0), 0.0)
        for j in running
    ]
    if any(t is None for t in left) or (queued and per_job is None):
        return None
    work = sum(t for t in left if t is not None) + queued * (per_job or 0.0)
    return float(work / max(len(running), 1))


def _duration(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, secs = divmod(round(value), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{value:.1f}s"


def sweep_status_line(sweep: Json, now: datetime) -> str:
    """'sweep 3f9c: 2 succeeded, 1 running, 5 queued; ETA 1m20s'."""
    counts = ", ".join(f"{n} {s}" for s, n in sweep["status"].items() if n)
    return f"sweep {sweep['id']}: {counts}; ETA {_duration(sweep_eta(sweep, now))}"


class SweepProgress:
    """The live view of `sweep --watch`: the status line, then each job's progress, elapsed time and ETA.
    On a terminal too narrow for every column whole, PROGRESS goes first (EPOCH counts the steps too),
    then ELAPSED: rich would otherwise cut figures to "…" or drop columns at random."""

    DROPPED_FIRST = ("PROGRESS", "ELAPSED")

    def __init__(self, sweep: Json, now: datetime):
        self.sweep, self.now = sweep, now

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        jobs = [self._row(job) for job in sorted(self.sweep["jobs"], key=lambda j: j["id"])]
        headers = ["ID", "HYPERPARAMETERS", "STATUS", "EPOCH", "PROGRESS", "ELAPSED", "ETA"]
        for drop in (None, *self.DROPPED_FIRST):
            if drop is not None:
                headers.remove(drop)
            grid = _grid(headers, [[job[h] for h in headers] for job in jobs], fold=["HYPERPARAMETERS"])
            if _least_width(grid) <= options.max_width:
                break
        yield sweep_status_line(self.sweep, self.now)
        yield grid

    def _row(self, job: Json) -> dict[str, Any]:
        done = 1.0 if job["status"] == JobStatus.succeeded else _fraction(job)
        return {
            "ID": job["id"],
            "HYPERPARAMETERS": _varying(self.sweep, job),
            "STATUS": job["status"],
            "EPOCH": _progress(job),
            "PROGRESS": Bar(total=1.0, completed=done, width=20),
            "ELAPSED": _duration(elapsed(job, self.now)),
            "ETA": _duration(job_eta(job, self.now)),
        }


def _fraction(job: Json) -> float:
    p = job["progress"]
    return min(p["step"] / p["steps"], 1.0) if p["step"] and p["steps"] else 0.0


def _now() -> datetime:
    return datetime.now(UTC)


def _in_flight(sweep: Json) -> bool:
    return bool(sweep["status"][JobStatus.queued] or sweep["status"][JobStatus.running])


def _watch_sweep(client: ApiClient, sweep: Json, interval: float) -> Json:
    """Poll the sweep until none of its jobs is queued or running; a live view on a terminal (cleared
    at the end, so no stale line stays above the final table), a line per change otherwise."""
    console = Console(stderr=True)
    if not console.is_terminal:
        last = ""
        while _in_flight(sweep):
            line = sweep_status_line(sweep, _now())
            if line.split(";")[0] != last:
                print(line, file=sys.stderr, flush=True)
                last = line.split(";")[0]
            time.sleep(interval)
            sweep = client.get(f"/sweeps/{sweep['id']}")
        return sweep
    with Live(SweepProgress(sweep, _now()), console=console, transient=True, auto_refresh=False) as live:
        while _in_flight(sweep):
            time.sleep(interval)
            sweep = client.get(f"/sweeps/{sweep['id']}")
            live.update(SweepProgress(sweep, _now()), refresh=True)
    return sweep


def _is_sweep_id(text: str) -> bool:
    """Whether `text` looks like a sweep's id (hex), not a file's name."""
    return len(text) >= 4 and all(c in "0123456789abcdef" for c in text)


MAX_JSON_FILE_BYTES = 64 * 2**20  # the most of a sweep's or study's JSON file read, as MAX_IMAGE_BYTES


def input_name(file: str) -> str:
    return "standard input" if file == "-" else file


def read_input(file: str, limit: int, most: str, setting: str) -> bytes:
    """The bytes of `file` ("-": standard input), at most `limit` (read_capped: /dev/zero, an endless pipe)."""
    if file == "-":  # its bytes; a text stream (a test's, an embedding's) its characters
        stdin = getattr(sys.stdin, "buffer", None)
        read = stdin.read if stdin else lambda n: sys.stdin.read(n).encode()
        return read_capped(read, limit, input_name(file), most, setting)
    with Path(file).open("rb") as opened:
        return read_capped(opened.read, limit, file, most, setting)


def read_json(file: str, missing: str = "") -> Any:
    """The JSON in `file` ("-": standard input); an ApiError that names the file when it can't be read
    (followed by `missing` when it does not exist) or holds no JSON."""
    name = input_name(file)
    most = "the most mlplab reads of a JSON file"
    try:  # at most: /dev/zero, or an endless standard input, took the client to 6 GB
        text = read_input(file, MAX_JSON_FILE_BYTES, most, "max_body_bytes").decode()
    except FileNotFoundError as exc:
        raise ApiError(0, f"cannot read {name}", f"{exc}{missing}") from None
    except (OSError, ValueError) as exc:  # ValueError: bytes that are not UTF-8
        raise ApiError(0, f"cannot read {name}", str(exc)) from None
    try:
        return loads(text)
    except ValueError as exc:
        raise ApiError(0, f"{name} is not valid JSON", str(exc)) from None


def cmd_sweep(client: ApiClient, args: argparse.Namespace) -> int:
    listed = " (sweeps are listed, or one shown, by: mlplab sweeps [SWEEP_ID])"
    body = read_json(args.file, listed if args.file in ("list", "show") or _is_sweep_id(args.file) else "")
    if isinstance(body, dict) and "space" in body and "grid" not in body:
        raise UsageError(f"{args.file} holds a study (its 'space'): run it with mlplab study {args.file}")
    sweep = client.post("/sweeps", json=body)
    print(f"sweep {sweep['id']}: {sweep['count']} jobs")
    if not args.watch:
        print(_sweep_table(sweep))
        print(f"next: mlplab sweeps {sweep['id']} (its ranking once its jobs end)", file=sys.stderr)
        return 0
    sweep = _watch_sweep(client, sweep, args.interval)
    _sweep_report(sweep)
    return 0 if sweep["status"][JobStatus.succeeded] else 1


def run(args: argparse.Namespace) -> int:
    """Run a client command; the API's problems are printed (title, status, detail) with exit status 1."""
    client: ApiClient | None = None
    try:
        with _client(args) as client:
            command: Command = args.call
            return command(client, args)
    except (TypeError, ValueError, LookupError, AttributeError, ArithmeticError) as exc:
        # not after an answer (mlplab's own fault), nor the terminal's: its traceback, as ever
        if client is None or not client.answered or isinstance(exc, UnicodeError) or sys.stdout is None:
            raise
        frames = traceback.extract_tb(exc.__traceback__)
        where = next(
            (f for f in reversed(frames) if Path(f.filename).parent == Path(__file__).parent), frames[-1]
        )
        print(
            f"mlplab: an answer from {client.shown} holds a value mlplab does not expect ({type(exc).__name__}: "
            f"{exc}, at {Path(where.filename).name}:{where.lineno}): is it an mlplab API of this version "
            "(--url, MLPLAB_URL)? If it is, report this line.",
            file=sys.stderr,
        )
        return 1
    except ApiError as exc:
        status = f" ({exc.status})" if exc.status else ""
        print(f"mlplab: {exc.title}{status}: {exc.detail}", file=sys.stderr)
        for param in exc.invalid_params[5:]:  # the detail names the first five
            print(f"  {param['name']}: {param['reason']}", file=sys.stderr)
        if exc.status == 401 and client is not None and client.token:  # sent, and not the API's
            print("mlplab: the token given (--token or MLPLAB_API_TOKEN) is not the API's", file=sys.stderr)
        elif exc.status in (401, 403):  # the API speaks of headers; here the token is a flag
            print("mlplab: give the token with --token or MLPLAB_API_TOKEN", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"mlplab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
