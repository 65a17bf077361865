"""docker-compose.yml and the Dockerfile, proven without a container engine (none runs in CI).

`docker-compose config` validates the file. Then each service is started the way compose would
start it, as a local process: its command, and the environment the image (Dockerfile ENV) and the
compose file (interpolated as compose does, with README's defaults) give it. Three things are
mapped, and only these: each volume's mount point (/data) to one folder under tmp_path shared by
both services, the container's port 8000 to a free local port, and the API's 0.0.0.0 to 127.0.0.1.
The api is ready when the image's HEALTHCHECK command exits 0, the worker when its compose
healthcheck does; then a small job goes through them. Once on SQLite (the compose default), once on
PostgreSQL (MLPLAB_DATABASE_URL set, as with `--profile postgres`).

Not exercised here: building the image (pip from PyTorch's CPU index), the non-root user, the
named volume's permissions, compose's own start order and restarts, the postgres container.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
import yaml

from service.settings import Settings
from service.store.db import BUSY_TIMEOUT_MS
from tests.factories import job_body
from tests.support import REPO, environment_without_settings, free_port, real_data_dir, wait_for

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
CONTAINER_PORT = 8000
JOB = job_body(log_every=5)


# --- reading the two files ---------------------------------------------------------------------


def compose_file() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default} (unset or empty), ${VAR-default} (unset), $$."""

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group("name"), match.group("op"), match.group("default") or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    pattern = r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
    return re.sub(pattern, substitute, value)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each logical line, continuations joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in logical]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def image_env() -> dict[str, str]:
    """The final stage's ENV, as KEY=value pairs (PATH is the image's business, not ours)."""
    env: dict[str, str] = {}
    for op, args in final_stage():
        if op == "ENV":
            env |= dict(pair.split("=", 1) for pair in shlex.split(args))
    env.pop("PATH", None)
    return env


def image_healthcheck() -> list[str]:
    (args,) = [args for op, args in final_stage() if op == "HEALTHCHECK"]
    return json.loads(args[args.index("CMD ") + 4 :])


def healthcheck_argv(test: list[str]) -> list[str]:
    """A compose healthcheck `test` (["CMD", ...] or ["CMD-SHELL", "..."]) as a local argv."""
    kind, *argv = test
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", argv[0]]
    assert kind == "CMD", test
    program = {"python": [sys.executable], "mlplab": [sys.executable, "-m", "service.cli"]}
    return [*program.get(argv[0], [argv[0]]), *argv[1:]]


# --- running a service as a local process ------------------------------------------------------


def local_path(value: str, mounts: Mapping[str, Path]) -> str:
    """`value` with each mount point (say /data) replaced by the local folder standing in for it."""
    for target, folder in mounts.items():
        value = re.sub(rf"(?<![\w.]){re.escape(target)}(?=/|$)", str(folder), value)
    return value


def service_environment(
    name: str, host: Mapping[str, str], mounts: Mapping[str, Path], port: int
) -> dict[str, str]:
    """What the container of service `name` would see, mapped to this machine."""
    declared = compose_file()["services"][name].get("environment") or {}
    env = dict(image_env())
    for key, value in declared.items():
        if value is None:  # passed through from the host when set there
            if key in host:
                env[key] = host[key]
            continue
        env[key] = interpolate(str(value), host)
    env = {key: local_path(value, mounts) for key, value in env.items()}
    if env.get("MLPLAB_HOST") == "0.0.0.0":
        env["MLPLAB_HOST"] = "127.0.0.1"  # the same code path, without listening on CI's interfaces
    env["MLPLAB_PORT"] = str(port)
    return environment_without_settings() | env


def local_command(command: list[str]) -> list[str]:
    """The compose command with `mlplab` the console script of this environment."""
    program = Path(sys.executable).with_name(command[0])
    assert program.exists(), f"{command[0]} is not installed beside {sys.executable}"
    return [str(program), *command[1:]]


def mounts_for(name: str, root: Path) -> dict[str, Path]:
    """Each `volume:/target` of the service, as root/<volume> (so services sharing a volume share it)."""
    mounts = {}
    for spec in compose_file()["services"][name].get("volumes", []):
        volume, target = spec.split(":")[:2]
        mounts[target] = root / volume
        mounts[target].mkdir(parents=True, exist_ok=True)
    return mounts


def healthy(argv: list[str], env: dict[str, str], cwd: Path) -> bool:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=30).returncode == 0


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", [[], ["--profile", "postgres"]], ids=["default", "postgres-profile"])
def test_docker_compose_validates_the_file(profile):
    tool = shutil.which("docker-compose")
    if tool is None:
        why = "docker-compose is not installed (Debian package docker-compose; .ci/run installs it)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    checked = subprocess.run([tool, "-f", str(COMPOSE), *profile, "config", "-q"], capture_output=True, text=True,
                             env=environment_without_settings())  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def test_the_files_describe_one_image_two_roles_and_a_postgres_profile():
    services = compose_file()["services"]
    api, worker, postgres = services["api"], services["worker"], services["postgres"]
    assert api["command"] == ["mlplab", "api"] and worker["command"] == ["mlplab", "worker"]
    assert api["image"] == worker["image"] and api["build"] == worker["build"] == "."
    assert api["volumes"] == worker["volumes"] == ["mlplab-data:/data"]
    assert worker["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert "container_name" not in worker and "ports" not in worker  # `--scale worker=3`
    # a stopping worker's release may wait out SQLite's busy timeout: the grace must outlast it
    assert int(worker["stop_grace_period"].removesuffix("s")) > BUSY_TIMEOUT_MS / 1000
    assert {name: s.get("restart") for name, s in services.items()} == dict.fromkeys(
        services, "unless-stopped"
    )
    assert postgres["profiles"] == ["postgres"] and "pg_isready" in postgres["healthcheck"]["test"][1]
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    assert api["ports"] == ["${MLPLAB_PUBLISH:-127.0.0.1:8000}:8000"]  # localhost unless asked

    # Every default in the compose file is Settings' (README's table) default.
    defaults = {
        f"MLPLAB_{name.upper()}": field.get_default(call_default_factory=True)
        for name, field in Settings.model_fields.items()
    }
    for key, value in api["environment"].items():
        match = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value))
        if match:
            assert match.group(1) == key
            if key not in ("MLPLAB_DATABASE_URL", "MLPLAB_ALLOWED_HOSTS"):  # the volume's path; + "api"
                assert Settings.model_validate({key[7:].lower(): match.group(2)}).model_dump()[key[7:].lower()] == \
                    defaults[key], key  # fmt: skip
    assert api["environment"]["MLPLAB_API_TOKEN"] is None  # absent unless the host sets it
    allowed = Settings.model_validate(
        {"allowed_hosts": interpolate(api["environment"]["MLPLAB_ALLOWED_HOSTS"], {})}
    )
    assert allowed.allowed_hosts == [
        *defaults["MLPLAB_ALLOWED_HOSTS"],
        "api",
    ]  # its name on compose's network

    stages = [args for op, args in dockerfile_instructions() if op == "FROM"]
    assert len(stages) == 2 and all(s.startswith("python:3.11-slim") for s in stages)
    final = dict(final_stage())
    assert final["USER"] == "mlplab" and final["CMD"] == '["mlplab", "api"]'
    assert image_env()["MLPLAB_HOST"] == "0.0.0.0"


@pytest.fixture
def compose_root(tmp_path) -> Path:
    """The named volumes' stand-in, with the MNIST files where the container keeps its datasets."""
    datasets = tmp_path / "mlplab-data" / "datasets"
    datasets.mkdir(parents=True)
    (datasets / "mnist").symlink_to(real_data_dir() / "mnist")
    return tmp_path


@pytest.mark.slow
def test_each_service_runs_as_compose_starts_it(compose_root, db_url):
    host = {"MLPLAB_DOWNLOAD": "false", "MLPLAB_WORKER_POLL_SECONDS": "0.2"}
    if db_url.startswith("postgresql"):
        host["MLPLAB_DATABASE_URL"] = (
            db_url  # as `MLPLAB_DATABASE_URL=... docker compose --profile postgres up`
        )
    port = free_port()
    procs: list[subprocess.Popen] = []

    def start(name: str) -> tuple[dict[str, str], Path]:
        mounts = mounts_for(name, compose_root)
        env = service_environment(name, host, mounts, port)
        cwd = Path(local_path(dict(final_stage())["WORKDIR"], mounts))
        command = local_command(compose_file()["services"][name]["command"])
        with open(compose_root / f"{name}.log", "w") as log:
            procs.append(subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT))
        return env, cwd

    def logs() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(compose_root.glob("*.log")))

    try:
        api_env, api_cwd = start("api")
        volume_db = f"sqlite:///{compose_root}/mlplab-data/mlplab.db"
        assert api_env["MLPLAB_DATABASE_URL"] == host.get("MLPLAB_DATABASE_URL", volume_db)
        assert api_env["MLPLAB_DATA_DIR"] == str(compose_root / "mlplab-data" / "datasets")
        check = healthcheck_argv(["CMD", *image_healthcheck()])

        def api_healthy() -> bool:
            assert procs[0].poll() is None, logs()
            return healthy(check, api_env | {"http_proxy": "http://127.0.0.1:9"}, api_cwd)  # never asked

        wait_for(api_healthy, 60, "the api's HEALTHCHECK")

        check = healthcheck_argv(compose_file()["services"]["worker"]["healthcheck"]["test"])
        assert not healthy(check, api_env, api_cwd)  # no worker yet: a crash-looping one is not healthy
        worker_env, worker_cwd = start("worker")  # depends_on: api healthy
        wait_for(lambda: healthy(check, worker_env, worker_cwd), 60, "the worker's healthcheck")

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            ready = client.get("/readyz").json()
            assert ready["status"] == "ready" and ready["database"] == "migrated"
            assert client.get("/healthz", headers={"host": "api:8000"}).status_code == 200
            assert client.get("/healthz", headers={"host": "rebind.evil.example:8000"}).status_code == 400
            job = client.post("/jobs", json=JOB)
            assert job.status_code == 202, job.text

            def finished():
                body = client.get(f"/jobs/{job.json()['id']}").json()
                return body if body["status"] in ("succeeded", "failed", "cancelled") else None

            final = wait_for(finished, 90, "the job to finish", interval=0.2)
        assert (final["status"], final["attempts"], final["error"]) == ("succeeded", 1, None), logs()

        # `docker compose stop`: SIGTERM, and both stop cleanly well within the grace period
        # (uvicorn shuts down, then re-raises the SIGTERM on itself: -15 here, 143 in a container).
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        api_code, worker_code = (proc.wait(timeout=10) for proc in procs)
        assert (api_code in (0, -signal.SIGTERM), worker_code) == (True, 0), logs()
        assert "Application shutdown complete" in (compose_root / "api.log").read_text()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
