"""Serving benchmark: how fast does the API answer predictions under load?

Not a pass/fail test: it prints a table (figures beside their targets) and writes
bench/results/serve.json. Steps:

1. a temporary SQLite database (or --database-url, an empty one); one model trained through the API and `python -m workers --once`
   (784-500-250-100-10, ReLU, He, Adam, 1 epoch on 10,000 images), or an existing one
   reused with --model-db PATH --model-id N (the file is copied, never written to);
2. the API as its own process (`python -m service.cli api --port P --workers N`), ready on /readyz;
3. wrk (2 threads, 32 connections, --latency) from another process on GET /healthz (the ceiling),
   GET /jobs/{id} (what the dashboard, the CLI and scripts poll: the model's finished job, and a queued job
   that no worker runs, whose answer changes and so is read from the database every time), GET /jobs (the first page),
   POST /models/{id}/predict (one real test image as JSON) and GET /models/{id}/predictions/test/{index}
   (index cycling over 0..9999), each twice: cold (the first run after a fresh start of the API, as the
   first users see it: weights, dataset and caches loaded under load) and warm (after a short warm-up);
4. 1,000 real test images in one POST, timed with httpx (median and max of 20 after warm-up).

Needs wrk (`apt-get install wrk`) and the MNIST files (--data-dir, MLPLAB_DATA_DIR or ../shared/data).

    python bench/serve.py                      # 10 s per endpoint, one uvicorn process
    python bench/serve.py --duration 5 --workers 2
    python bench/serve.py --model-db var/mlplab.db --model-id 3
    python bench/serve.py --jobs 1000             # and GET /jobs, /models, /sweeps on 1,000 finished jobs
    python bench/serve.py --server-env OPENBLAS_NUM_THREADS=1
    python bench/serve.py --database-url postgresql+psycopg://... --output bench/results/serve-postgresql.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # runnable from a checkout: bench._table

from bench._table import table  # noqa: E402
from service.ml.spec import TrainSpec  # noqa: E402
from service.store.db import make_engine, make_sessionmaker  # noqa: E402
from tests.factories import finished_jobs  # noqa: E402
from tests.support import free_port, wait_for  # noqa: E402  (one poller and one port picker)

DEFAULT_OUTPUT = REPO / "bench" / "results" / "serve.json"
# TrainSpec's example (the one /docs shows) on twice its images; hidden layers default to 500-250-100
DEFAULT_SPEC = TrainSpec.model_json_schema()["examples"][0] | {"train_limit": 10000}
TARGETS = {  # what the service should reach on the reference 2-core machine
    "predict_rps": 2000,
    "predict_p99_ms": 30,
    "per_image_rps": 2000,
    "job_rps": 2000,
    "job_p99_ms": 30,
    "batch_1000_ms": 150,
}

# ----------------------------------------------------------------------------------------- processes

_procs: list[subprocess.Popen] = []  # everything this script started, stopped on any exit


def spawn(args: list[str], log: Path | None = None, **kw) -> subprocess.Popen:
    """A child in its own process group (so its uvicorn workers can be stopped with it)."""
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - the child writes to it
    proc = subprocess.Popen(
        args,
        stdout=out,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        start_new_session=True,
        **kw,
    )
    _procs.append(proc)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # the group's stragglers (uvicorn's worker processes), and a leader that ignored SIGTERM
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def stop_all() -> None:
    while _procs:
        stop(_procs.pop())


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through main's finally: every child is stopped


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ----------------------------------------------------------------------------------------- wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unreadable wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> dict:
    """Requests/sec, latency percentiles (ms), request count, non-2xx/3xx responses and socket errors."""
    result: dict = {
        "latency_ms": {},
        "non_2xx_3xx": 0,
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
    }
    if m := re.search(r"Requests/sec:\s+([\d.]+)", output):
        result["requests_per_s"] = float(m.group(1))
    else:
        raise ValueError(f"no Requests/sec in wrk's output:\n{output}")
    for pct, value in re.findall(r"^\s+(\d+(?:\.\d+)?)%\s+([\d.]+(?:us|ms|s|m|h))\s*$", output, re.M):
        result["latency_ms"][f"p{pct.rstrip('0').rstrip('.') if '.' in pct else pct}"] = round(_ms(value), 3)
    if m := re.search(r"Latency\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", output):
        result["latency_ms"].update(
            avg=round(_ms(m.group(1)), 3), stdev=round(_ms(m.group(2)), 3), max=round(_ms(m.group(3)), 3)
        )
    if m := re.search(r"(\d+) requests in ([\d.]+\w+)", output):
        result["requests"] = int(m.group(1))
        result["seconds"] = round(_ms(m.group(2)) / 1e3, 3)
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        result["non_2xx_3xx"] = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        result["socket_errors"] = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
    result["errors"] = result["non_2xx_3xx"] + sum(result["socket_errors"].values())
    return result


def run_wrk(
    wrk: str,
    url: str,
    script: Path | None,
    seconds: float,
    threads: int,
    connections: int,
    latency: bool = True,
) -> str:
    args = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s"]
    if latency:
        args.append("--latency")
    if script:
        args += ["-s", str(script)]
    proc = subprocess.Popen(
        [*args, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    _procs.append(proc)
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        if proc in _procs:
            _procs.remove(proc)
            if proc.poll() is None:
                stop(proc, timeout=2)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{out}")
    return out


def lua_string(text: str) -> str:
    """A Lua long-bracket literal that cannot be closed early by the text."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def write_scripts(root: Path, model_id: int, pixels: list[int], n_test: int) -> dict[str, Path]:
    predict = root / "predict.lua"
    predict.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {lua_string(json.dumps({'pixels': pixels}, separators=(',', ':')))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    per_image = root / "per_image.lua"
    # Each wrk thread has its own Lua state; they start at different offsets so they don't ask in lockstep.
    per_image.write_text(
        "local i = 0\n"
        "local n = 0\n"
        'setup = function(thread) n = n + 1; thread:set("offset", n * 4999) end\n'
        "init = function(args) i = tonumber(offset) or 0 end\n"
        "request = function()\n"
        f"  i = (i + 1) % {n_test}\n"
        f'  return wrk.format("GET", "/models/{model_id}/predictions/test/" .. i)\n'
        "end\n"
    )
    return {"predict": predict, "per_image": per_image}


# ----------------------------------------------------------------------------------------- the run


def load_test_images(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The real MNIST test split as 0..255 ints (N, 784), and its labels."""
    from service.ml.data import DataError, load_dataset

    try:
        data = load_dataset("mnist", data_dir, download=False)
    except DataError as exc:
        sys.exit(f"serve.py: MNIST is not under {data_dir}: {exc}\n(set --data-dir or MLPLAB_DATA_DIR)")
    return np.rint(data.test_images * 255).astype(np.int64), data.test_labels


def start_api(root: Path, env: dict[str, str], port: int, workers: int) -> tuple[subprocess.Popen, str]:
    log = root / "api.log"
    proc = spawn(
        [
            sys.executable,
            "-m",
            "service.cli",
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        log=log,
        env=env,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"

    def ready():
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode}:\n{tail(log)}")
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, 60, "the API's /readyz")
    return proc, url


def train_model(client: httpx.Client, root: Path, env: dict[str, str], spec: dict) -> int:
    r = client.post("/jobs", json=spec)
    if r.status_code != 202:
        raise RuntimeError(f"POST /jobs answered {r.status_code}: {r.text}")
    job_id = r.json()["id"]
    log = root / "worker.log"
    t0 = time.perf_counter()
    worker = spawn([sys.executable, "-m", "workers", "--once"], log=log, env=env, cwd=REPO)
    rc = worker.wait()
    _procs.remove(worker)
    job = client.get(f"/jobs/{job_id}").json()
    if rc != 0 or job["status"] != "succeeded":
        raise RuntimeError(
            f"training job {job_id} ended {job['status']} (worker exit {rc}): {job.get('error')}\n{tail(log)}"
        )
    print(
        f"trained job {job_id} in {time.perf_counter() - t0:.1f} s: {spec_name(job)}; "
        f"test accuracy {job['test_accuracy']:.4f}"
    )
    return job_id


def spec_name(job: dict) -> str:
    spec = job["spec"]
    return f"{spec['backend']} 784-{'-'.join(map(str, spec['hidden_layers']))}-10 {spec['activation']}"


def time_batch(client: httpx.Client, model_id: int, images: np.ndarray, repeats: int, warmup: int) -> dict:
    body = json.dumps({"images": images.tolist()}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        r = client.post(f"/models/{model_id}/predict", content=body, headers=headers)
        elapsed = (time.perf_counter() - t0) * 1e3
        if r.status_code != 200 or r.json().get("count") != len(images):
            raise RuntimeError(f"POST {len(images)} images answered {r.status_code}: {r.text[:500]}")
        if i >= warmup:
            times.append(elapsed)
    return {
        "images": len(images),
        "body_bytes": len(body),
        "repeats": repeats,
        "median_ms": round(statistics.median(times), 2),
        "max_ms": round(max(times), 2),
        "min_ms": round(min(times), 2),
        "all_ms": [round(t, 2) for t in times],
    }


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def verdict(ok: bool) -> str:
    return "ok" if ok else "BELOW"


def main(argv: list[str] | None = None) -> int:
    default_data = os.environ.get("MLPLAB_DATA_DIR") or str(REPO.parent / "shared" / "data")
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=10, help="seconds of wrk load per endpoint (default 10)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2, help="seconds of unmeasured wrk load first (default 2)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn processes (mlplab api --workers; default 1)"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(default_data),
        help="MNIST folder (default MLPLAB_DATA_DIR or ../shared/data)",
    )
    parser.add_argument(
        "--model-db", type=Path, help="reuse a trained model from this SQLite file (copied first)"
    )
    parser.add_argument(
        "--model-id", type=int, help="the model (job id) in --model-db; default its best model"
    )
    parser.add_argument(
        "--database-url",
        help="an empty database to serve from instead of a temporary SQLite file (PostgreSQL, say)",
    )
    parser.add_argument(
        "--batch-repeats", type=int, default=20, help="timed 1,000-image requests (default 20)"
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the API process, e.g. OPENBLAS_NUM_THREADS=1 (repeatable)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="finished jobs written into the database first, so that GET /jobs, /models and /sweeps "
        "(measured then too) read full pages (default 0)",
    )
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results (default bench/results/serve.json)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (database, logs, Lua scripts)"
    )
    args = parser.parse_args(argv)

    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit(
            "serve.py: wrk is not installed. It is the load generator this benchmark uses:\n"
            "    sudo apt-get update && sudo apt-get install -y wrk   (Debian/Ubuntu)\n"
            "    brew install wrk                                     (macOS)"
        )
    if args.model_id is not None and args.model_db is None:
        sys.exit("serve.py: --model-id needs --model-db (without it a fresh model is trained)")
    if args.database_url and args.model_db:
        sys.exit("serve.py: --database-url trains its own model; --model-db reuses an SQLite file's")
    if args.model_db is not None and not args.model_db.is_file():
        sys.exit(f"serve.py: --model-db {args.model_db} is not a file")
    extra_env = {}
    for item in args.server_env:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"serve.py: --server-env {item!r} is not KEY=VALUE")
        extra_env[key] = value

    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(
        signal.SIGINT, signal.default_int_handler
    )  # Ctrl-C even when started with SIGINT ignored (`&`)
    root = Path(tempfile.mkdtemp(prefix="mlplab-serve-bench-"))
    try:
        return run(args, wrk, root, extra_env)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        return 130
    finally:
        stop_all()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def run(args, wrk: str, root: Path, extra_env: dict[str, str]) -> int:
    cores = cpu_count()
    data_dir = args.data_dir.expanduser().resolve()
    images, _ = load_test_images(data_dir)

    db = root / "mlplab.db"
    if args.model_db:
        shutil.copyfile(args.model_db, db)
    port = args.port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPLAB_")} | {
        "MLPLAB_DATABASE_URL": args.database_url or f"sqlite:///{db}",
        "MLPLAB_DATA_DIR": str(data_dir),
        "MLPLAB_DOWNLOAD": "false",
        "MLPLAB_HOST": "127.0.0.1",
        "MLPLAB_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    server_env = env | extra_env

    print(
        f"CPU: {cores} core(s) available ({os.cpu_count()} on the machine), {platform.processor() or platform.machine()}; "
        f"wrk ({args.threads} threads) and the API ({args.workers} process(es)) share them, so the figures are a floor."
    )
    api, url = start_api(root, server_env, port, args.workers)
    client = httpx.Client(base_url=url, timeout=60)

    if args.model_db:
        model_id = args.model_id
        if model_id is None:
            models = client.get("/models").json()["data"]
            if not models:
                raise RuntimeError(f"{args.model_db} holds no trained model")
            model_id = models[0]["id"]
        r = client.get(f"/models/{model_id}")
        if r.status_code != 200:
            raise RuntimeError(f"model {model_id} in {args.model_db}: {r.status_code} {r.text}")
        model = r.json()
        print(f"reusing model {model_id} from {args.model_db}: {model['name']}")
    else:
        model_id = train_model(client, root, env, DEFAULT_SPEC)
        model = client.get(f"/models/{model_id}").json()

    if args.jobs:
        print(f"writing {args.jobs:,} finished jobs (tests.factories.finished_jobs) ...", flush=True)
        engine = make_engine(env["MLPLAB_DATABASE_URL"])
        finished_jobs(make_sessionmaker(engine), args.jobs, sweep=min(500, args.jobs // 2))
        engine.dispose()

    # A job no worker will run: a poll of a job in flight, whose answer the API cannot keep.
    live = client.post("/jobs", json=DEFAULT_SPEC | {"epochs": 1})
    if live.status_code != 202:
        raise RuntimeError(f"could not queue the job to poll: {live.status_code} {live.text}")
    live_id = live.json()["id"]
    scripts = write_scripts(root, model_id, images[0].tolist(), len(images))
    endpoints = [
        ("healthz", "GET /healthz", f"{url}/healthz", None),
        ("job", "GET /jobs/{id} (finished)", f"{url}/jobs/{model_id}", None),
        ("live_job", "GET /jobs/{id} (queued)", f"{url}/jobs/{live_id}", None),
        ("jobs", "GET /jobs", f"{url}/jobs", None),
        *(
            [
                ("models", "GET /models", f"{url}/models", None),
                ("sweeps", "GET /sweeps", f"{url}/sweeps", None),
            ]
            if args.jobs
            else []
        ),
        (
            "predict",
            "POST /models/{id}/predict (1 image, JSON)",
            f"{url}/models/{model_id}/predict",
            scripts["predict"],
        ),
        ("per_image", "GET /models/{id}/predictions/test/{i}", url, scripts["per_image"]),
    ]
    results: dict[str, dict] = {}
    for key, label, target, script in endpoints:
        client.close()
        stop(api)
        _procs.remove(api)
        api, url = start_api(root, server_env, port, args.workers)  # cold: nothing loaded, nothing cached
        client = httpx.Client(base_url=url, timeout=60)
        print(f"wrk: {label}: cold {args.duration:g} s, {args.warmup:g} s warm-up, warm {args.duration:g} s")
        cold = run_wrk(wrk, target, script, args.duration, args.threads, args.connections)
        if args.warmup > 0:
            run_wrk(wrk, target, script, args.warmup, args.threads, args.connections, latency=False)
        raw = run_wrk(wrk, target, script, args.duration, args.threads, args.connections)
        results[key] = parse_wrk(raw) | {"endpoint": label, "wrk_output": raw}
        results[key]["cold"] = parse_wrk(cold) | {"wrk_output": cold}

    print(f"1,000 images in one request: 3 warm-up + {args.batch_repeats} timed ...", flush=True)
    batch = time_batch(client, model_id, images[:1000], args.batch_repeats, warmup=3)
    client.close()

    ceiling = results["healthz"]["requests_per_s"]
    for r in results.values():
        r["ratio_to_healthz"] = round(r["requests_per_s"] / ceiling, 3) if ceiling else None

    # ------------------------------------------------------------------ the table
    rows = [("endpoint", "run", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "vs /healthz", "target")]
    job_ok = {
        key: results[key]["requests_per_s"] >= TARGETS["job_rps"]
        and results[key]["latency_ms"].get("p99", 1e9) <= TARGETS["job_p99_ms"]
        for key in ("job", "live_job")
    }
    job_target = f"≥ {TARGETS['job_rps']:,} req/s, p99 ≤ {TARGETS['job_p99_ms']} ms: "
    tgt = {
        "healthz": "(ceiling)",
        "job": job_target + verdict(job_ok["job"]),
        "live_job": job_target + verdict(job_ok["live_job"]),
        "jobs": "(10,000 jobs: bench/runs.py)",
        "models": "",
        "sweeps": "",
        "predict": f"≥ {TARGETS['predict_rps']:,} req/s, p99 ≤ {TARGETS['predict_p99_ms']} ms: "
        + verdict(
            results["predict"]["requests_per_s"] >= TARGETS["predict_rps"]
            and results["predict"]["latency_ms"].get("p99", 1e9) <= TARGETS["predict_p99_ms"]
        ),
        "per_image": f"≥ {TARGETS['per_image_rps']:,} req/s: "
        + verdict(results["per_image"]["requests_per_s"] >= TARGETS["per_image_rps"]),
    }
    for key, r in results.items():
        for run_name, figures in (("cold", r["cold"]), ("warm", r)):
            lat = figures["latency_ms"] if figures.get("requests") else {}  # none answered within the run
            rows.append(
                (
                    r["endpoint"] if run_name == "cold" else "",
                    run_name,
                    f"{figures['requests_per_s']:,.0f}",
                    f"{lat.get('p50', float('nan')):.2f}",
                    f"{lat.get('p99', float('nan')):.2f}",
                    f"{lat.get('max', float('nan')):.2f}",
                    str(figures["errors"]),
                    f"{figures['requests_per_s'] / ceiling:.0%}" if ceiling else "",
                    tgt[key] if run_name == "warm" else "",
                )
            )
    print()
    print(
        f"model {model_id}: {model['name']}   database: {env['MLPLAB_DATABASE_URL'].split(':')[0]}   "
        f"API: {args.workers} uvicorn process(es)   "
        f"wrk: {args.threads} threads, {args.connections} connections, {args.duration:g} s"
        + (f"   server env: {extra_env}" if extra_env else "")
    )
    header, *body = rows
    print(table(list(header), [list(row) for row in body], right=set(range(len(header))) - {0, 1, 8}))
    batch_ok = batch["median_ms"] <= TARGETS["batch_1000_ms"]
    print(
        f"\n1,000 images in one POST ({batch['body_bytes'] / 1e6:.1f} MB of JSON), {batch['repeats']} requests: "
        f"median {batch['median_ms']:.1f} ms, max {batch['max_ms']:.1f} ms "
        f"(target ≤ {TARGETS['batch_1000_ms']} ms: {verdict(batch_ok)})"
    )
    for r in results.values():
        for run_name, figures in (("cold", r["cold"]), ("warm", r)):
            if figures["errors"]:
                print(
                    f"note: {r['endpoint']} ({run_name}): {figures['non_2xx_3xx']} non-2xx/3xx responses, "
                    f"socket errors {figures['socket_errors']}"
                )
    print(f"note: {cores} core(s) shared by wrk and the server (and anything else running): noisy, a floor.")

    out = {
        "benchmark": "serve",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus_available": cores,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_end": list(os.getloadavg()),
        },
        "git": _git_rev(),
        "settings": {
            "workers": args.workers,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "wrk_threads": args.threads,
            "wrk_connections": args.connections,
            "batch_repeats": args.batch_repeats,
            "server_env": extra_env,
            "model_db": str(args.model_db) if args.model_db else None,
            "finished_jobs_written": args.jobs,
            "database": env["MLPLAB_DATABASE_URL"].split(":")[0],
        },
        "model": {
            "id": model_id,
            "name": model["name"],
            "hidden_layers": model.get("hidden_layers"),
            "test_accuracy": model.get("test_accuracy"),
        },
        "targets": TARGETS,
        "endpoints": results,
        "batch_1000": batch,
        "meets_targets": {
            "predict": results["predict"]["requests_per_s"] >= TARGETS["predict_rps"]
            and results["predict"]["latency_ms"].get("p99", 1e9) <= TARGETS["predict_p99_ms"],
            "per_image": results["per_image"]["requests_per_s"] >= TARGETS["per_image_rps"],
            "job": job_ok["job"],
            "live_job": job_ok["live_job"],
            "batch_1000": batch_ok,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


def _git_rev() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    sys.path.insert(
        0, str(REPO)
    )  # `python bench/serve.py` from anywhere: import service.* from this checkout
    sys.exit(main())
