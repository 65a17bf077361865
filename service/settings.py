"""All configuration, read once from MLPLAB_* environment variables (and .env)."""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from service.ml.spec import MAX_EPOCHS

Count = Annotated[int, Field(ge=1)]  # how many of something: at least one
# A duration a setting waits: more than none, at most a day (inf overflowed the datetimes it is added to).
Seconds = Annotated[float, Field(gt=0, le=86_400)]

log = logging.getLogger("mlplab")

LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?")  # a name MLPLAB_HOST may bind (api, a.b)


def token_problem(token: str) -> str | None:
    """Why a bearer token cannot work, or None. Clients send header values as bytes, the server reads
    them as latin-1: only visible ASCII arrives as typed (the dashboard's tokenProblem says the same)."""
    if all("!" <= c <= "~" for c in token):
        return None
    return "has a space or a character outside ASCII: a token is letters, digits and ASCII punctuation"


class Settings(BaseSettings):
    """Every setting mlplab reads; README's settings table documents each one."""

    # validate_by_name: Settings(metrics_dir=...) is still accepted beside that field's environment aliases
    # allow_inf_nan=False: NaN seconds were refused as "less than or equal to 86400"
    model_config = SettingsConfigDict(
        env_prefix="MLPLAB_", env_file=".env", extra="ignore", validate_by_name=True, allow_inf_nan=False
    )

    database_url: str = Field(
        "sqlite:///./var/mlplab.db",
        description="SQLAlchemy URL. SQLite by default; postgresql+psycopg://... for several machines.",
    )
    data_dir: Path = Field(
        Path("./var/data"),
        description="Folder holding <dataset>/ IDX files (or torchvision's MNIST/raw/); downloads land here.",
    )
    download: bool = Field(True, description="Download missing MNIST files from the public mirrors.")

    host: str = Field("127.0.0.1", description="Address the API binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port the API listens on.")

    url: str = Field(
        "http://127.0.0.1:8000",
        description="Where the `mlplab` client commands (submit, jobs, ...) find the API.",
    )

    api_token: SecretStr | None = Field(
        None, description="When set, state-changing requests need 'Authorization: Bearer <token>'."
    )
    protect_reads: bool = Field(False, description="With api_token set, require the token for reads too.")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(LOCAL_HOSTS),
        description="Host names the API answers to, comma-separated (also the address a connection arrives "
        "on); '*' for any, behind a proxy that checks it.",
    )

    max_body_bytes: Count = Field(1_000_000, description="Largest request body of every route but predict.")
    max_upload_bytes: Count = Field(5_000_000, description="Largest request body accepted for predictions.")
    max_image_pixels: Count = Field(
        4_000_000, description="Largest uploaded image (width x height) that is decoded."
    )
    max_batch_images: Count = Field(10_000, description="Most images in one JSON predict request.")
    max_parameters: Count = Field(
        20_000_000, description="Largest network (weights + biases) a job may ask for."
    )
    max_sample_epochs: Count = Field(
        12_000_000,
        description="Largest epochs x training images a job may ask for (200 epochs of 60,000).",
    )
    # Two limits on one step, as neither bounds the other: its multiply-adds (its time, which a cancel or
    # SIGTERM waits out) grow with its images x parameters, its activations (memory) with images x units.
    max_batch_parameters: Count = Field(
        100_000_000_000,
        description="Largest images in one step x parameters a job may ask for: a step's time "
        "(about 3-10 s on 2 cores; docs/performance.md).",
    )
    max_batch_units: Count = Field(
        90_000_000,
        description="Largest images in one step x hidden units a job may ask for: a step's memory "
        "(a worker's peak under 2 GB; docs/performance.md).",
    )
    max_queued: Count = Field(
        1000, description="Queued jobs beyond which submissions get 429 (more at once than it holds: 422)."
    )
    max_queued_per_client: Count = Field(
        250,
        description="Queued jobs one client address may have (its studies' trials included): one more gets "
        "429, so that one client's burst leaves the queue's room to others (more at once: 422).",
    )
    max_sweep_jobs: Count = Field(64, description="Most jobs one sweep may create.")
    max_study_trials: Count = Field(500, description="Most trials one study may run, extensions included.")
    model_cache_size: Count = Field(16, description="Trained models the API keeps decoded in memory.")
    model_cache_mb: Count = Field(
        512,
        description="The most megabytes of their weights it keeps (and as much of ONNX graphs): the "
        "largest networks are 80 MB each; one is kept whatever its size.",
    )
    max_loss_points: int = Field(
        10_000,
        ge=2 * MAX_EPOCHS,  # each epoch's last step (and the first) is recorded besides the interval's
        le=100_000,
        description="Most losses one job records; a spec that would record more records them further apart.",
    )
    max_streams: Count = Field(
        500, description="Event streams one API process keeps open; more get 503 with Retry-After."
    )
    max_streams_per_client: Count = Field(
        100,
        description="Event streams one client address keeps open on one API process (a dashboard page "
        "opens at most 3); more get 429 with Retry-After: one client cannot hold them all.",
    )
    max_in_flight: int = Field(
        32,
        ge=1,
        le=1000,
        description="Database sessions one API process has open at once (so its connections, plus 2 for /readyz "
        "and 4 for GET /jobs/{id}'s reads); "
        "requests beyond that wait their turn.",
    )

    alias_cache_seconds: float = Field(
        1.0,
        ge=0,
        le=5,
        description="How long an API process reuses what an alias names before asking the database again "
        "(0: every request); a move by another process is seen within it.",
    )
    metrics_dir: Path | None = Field(
        None,
        # prometheus_client's own variable too: the one `mlplab api` hands its uvicorn processes.
        validation_alias=AliasChoices("MLPLAB_METRICS_DIR", "PROMETHEUS_MULTIPROC_DIR"),
        description="Folder where the API's uvicorn processes share their /metrics counts; "
        "`mlplab api --workers N` makes a temporary one when unset.",
    )
    keep_alive_seconds: int = Field(
        5,
        ge=1,
        le=86_400,
        description="An API connection idle this long (before its first request too) is closed; a request's "
        "head must arrive within it (else 408) and its body may pause no longer.",
    )
    max_connections: Count = Field(
        1000, description="Concurrent connections one API process serves; requests past it get 503."
    )
    max_connections_per_client: Count = Field(
        250,
        description="Connections one client address holds open on one API process; more are answered 429 "
        "and closed: one client cannot take them all (behind a proxy, every client is the proxy).",
    )

    worker_poll_seconds: Seconds = Field(1.0, description="Idle worker's longest sleep between queue polls.")
    lease_seconds: Seconds = Field(
        30.0, description="A running job whose heartbeat is older than this is re-queued."
    )
    heartbeat_seconds: Seconds = Field(
        5.0, description="How often a worker renews its job's lease; at most half of lease_seconds."
    )
    max_attempts: Count = Field(3, description="Tries before a job that keeps losing its worker fails.")
    checkpoint_seconds: float = Field(
        30.0,
        ge=0,
        le=86_400,
        description="Least time between two checkpoints of a running job (also written after its "
        "second-to-last epoch and when the worker stops); 0 = after every epoch.",
    )

    torch_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = cuda when available, else cpu."
    )
    worker_threads: int = Field(
        0,
        ge=0,
        le=1024,  # 100,000 crashed torch (a segmentation fault); no host has more cores
        description="Threads a worker trains with (torch's and NumPy's BLAS); "
        "0 = its share of its machine's cores among the jobs running there (docs/deployment.md).",
    )
    torch_cpu_matmul: Literal["onednn", "blas"] = Field(
        "onednn",
        description="Library for the torch backend's CPU matrix products: oneDNN, or torch's BLAS (MKL).",
    )

    @field_validator("database_url")
    @classmethod
    def _a_database_url(cls, url: str) -> str:
        example = "e.g. sqlite:///./var/mlplab.db or postgresql+psycopg://user:password@host/mlplab"
        try:
            parsed = make_url(url)
            parsed.get_dialect()
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ValueError(f"{exc}; {example}") from None
        if parsed.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(
                f"mlplab stores its data in SQLite or PostgreSQL, not {parsed.get_backend_name()}; {example}"
            )
        return url

    @field_validator("heartbeat_seconds")
    @classmethod
    def _beats_within_a_lease(cls, heartbeat: float, info: ValidationInfo) -> float:
        # A lease that can expire between two beats of a healthy worker hands its job to another.
        lease = info.data.get("lease_seconds")
        if lease is not None and heartbeat * 2 > lease:
            raise ValueError(
                f"{heartbeat:g} s is more than half of MLPLAB_LEASE_SECONDS ({lease:g} s): a healthy worker's "
                "job would be re-queued between two heartbeats"
            )
        return heartbeat

    @field_validator("api_token")
    @classmethod
    def _token_not_blank(cls, token: SecretStr | None) -> SecretStr | None:
        # An empty line in a compose .env gives MLPLAB_API_TOKEN=""; taken as "no token" it opened the API.
        if token is not None and not token.get_secret_value().strip():
            raise ValueError("set but blank: give it a secret value, or unset it to run without a token")
        if token is None:
            return None
        # the Authorization header is read without the spaces around it: so is the token
        value = token.get_secret_value().strip()
        if problem := token_problem(value):
            raise ValueError(problem)
        return SecretStr(value)

    @field_validator("host", "metrics_dir", mode="before")
    @classmethod
    def _not_blank(cls, value: object, info: ValidationInfo) -> object:
        # An empty line in a compose .env: a blank host bound every interface, a blank folder was "."
        if isinstance(value, str) and not value.strip():
            advice = {"host": "127.0.0.1 for this machine alone, 0.0.0.0 for every interface"}
            raise ValueError(
                f"set but blank: {advice.get(str(info.field_name), 'give a folder')}, or unset it"
            )
        return value

    @field_validator("host")
    @classmethod
    def _address(cls, host: str) -> str:
        # uvicorn's own refusal names no variable: "[Errno -2] Name or service not known"
        if host.startswith("["):
            raise ValueError(f"{host!r}: give an IPv6 address without its brackets, e.g. ::1")
        looks_numeric = host.replace(".", "").isdigit()
        if looks_numeric or ":" in host:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(
                    f"{host!r} is not an IP address: 127.0.0.1 for this machine alone, 0.0.0.0 (or ::) "
                    "for every interface"
                ) from None
        elif not HOST_NAME.fullmatch(host):
            raise ValueError(f"{host!r} is not an address or a host name: 127.0.0.1, 0.0.0.0 or a name")
        return host

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        hosts = [host.strip().lower() for host in value.split(",") if host.strip()]
        if not hosts:  # every Host refused, this machine's names too
            raise ValueError(f"set but blank: {','.join(LOCAL_HOSTS)} for this machine alone, or unset it")
        for host in hosts:
            if "/" in host or "@" in host:  # never equal to a Host header: every request a 400
                raise ValueError(
                    f"{host!r} is not a host name: give the name alone (example.com, not http://...)"
                )
        return hosts


def _variable(name: str) -> str:
    """A setting's environment variable: a field's name is prefixed, an alias (MLPLAB_METRICS_DIR) is one."""
    name = name.upper()
    return name if name.startswith(("MLPLAB_", "PROMETHEUS_")) else f"MLPLAB_{name}"


class SettingsError(Exception):
    """The environment's settings are invalid; the message names each variable at fault."""


@lru_cache
def get_settings(*, serving: bool = True) -> Settings:
    """The environment's settings; `serving` (the API, a worker): also those a server cannot run with,
    which the command line's client commands, reading MLPLAB_URL and the token, do not care about."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = [
            f"{_variable(str(error['loc'][0]))}: {error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors()
        ]
        raise SettingsError("invalid settings: " + "; ".join(map(_where_set, problems))) from None
    if serving and (problems := serving_problems(settings)):
        raise SettingsError("invalid settings: " + "; ".join(map(_where_set, problems)))
    _warn_of_misspellings()  # the client commands too: MLPLAB_API_TOKN left a write unauthorised, unexplained
    return settings


def _env_file() -> tuple[Path, dict[str, str | None]]:
    """The .env file the settings read, and its variables (none when there is no such file)."""
    env_file = Path(str(Settings.model_config["env_file"]))
    return env_file, dotenv_values(env_file) if env_file.is_file() else {}


def _where_set(problem: str) -> str:
    """A problem ("MLPLAB_X: ...") with "(.env)" after its variable when that file set it, not the
    environment: a value nobody exported was hunted for in the shell."""
    name, colon, rest = problem.partition(": ")
    env_file, in_file = _env_file()
    return (
        f"{name} ({env_file}){colon}{rest}"
        if colon and name in in_file and name not in os.environ
        else problem
    )


def _warn_of_misspellings() -> None:
    env_file, in_file = _env_file()
    # the variables the settings read: the environment's, and the .env file's (which a typo hides in too)
    for name in unknown_variables({**in_file, **os.environ}):
        near = difflib.get_close_matches(name, SETTING_VARIABLES, n=1)
        where = f" ({env_file})" if name not in os.environ else ""
        log.warning(
            "%s%s is not a setting and is ignored%s",
            name,
            where,
            f" (did you mean {near[0]}?)" if near else "",
        )


def serving_problems(settings: Settings) -> list[str]:
    """What a server cannot run with, each naming its variable (a test's app may: an in-memory database)."""
    from service.store.db import is_in_memory  # here: the store imports these settings' neighbours

    problems = []
    if is_in_memory(settings.database_url):  # the API's jobs would reach no worker
        problems.append(
            "MLPLAB_DATABASE_URL: an in-memory SQLite database is one process's alone, and no worker would "
            "see its jobs; name a file, e.g. sqlite:///./var/mlplab.db"
        )
    if settings.protect_reads and settings.api_token is None:  # reads stayed open, and nothing said so
        problems.append(
            "MLPLAB_PROTECT_READS: true, but MLPLAB_API_TOKEN is not set: set the token the reads should need"
        )
    # a file where a folder belongs: a traceback at start (metrics), or every job failing (data)
    for name in ("data_dir", "metrics_dir"):
        folder = getattr(settings, name)
        if folder is not None and folder.exists() and not folder.is_dir():
            problems.append(f"{_variable(name)}: {folder} is a file, not a folder: name a folder")
    return problems


# Every variable a setting reads, and those mlplab reads elsewhere: a name in neither is a misspelling.
SETTING_VARIABLES = [_variable(name) for name in Settings.model_fields]
OTHER_VARIABLES = ("MLPLAB_PUBLISH",)  # compose's published address
OTHER_PREFIXES = ("MLPLAB_TEST_", "MLPLAB_FUZZ_")  # the tests'


def unknown_variables(environ: Mapping[str, str | None]) -> list[str]:
    """The MLPLAB_* variables in `environ` that nothing reads (MLPLAB_LEASE_SECOND, say)."""
    return sorted(
        name
        for name in environ
        if name.startswith("MLPLAB_")
        and name not in SETTING_VARIABLES
        and name not in OTHER_VARIABLES
        and not name.startswith(OTHER_PREFIXES)
    )
