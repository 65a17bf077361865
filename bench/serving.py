"""What serving by alias, /metrics and provenance cost: printed figures, not a test.

1. A temporary SQLite database, one model trained through the API and `python -m workers --once`,
   the alias `champion` pointing at it, the API as its own process.
2. Alias resolution: the same request by id and by alias, interleaved one for one on one keep-alive
   connection (--requests of each, after a warm-up): POST /models/{m}/predict with one image, and
   GET /models/{m}/accuracy (a route that reads the database anyway). Median, p90 and p99 in ms;
   the difference of medians is what resolving the alias adds. Twice: with the API's alias cache
   (MLPLAB_ALIAS_CACHE_SECONDS=1, the default) and without it (0: a query every request).
3. GET /metrics: its time against a database holding --jobs finished jobs of --epochs epochs each
   (rows inserted directly), median of 50 scrapes.
4. Provenance: the SHA-256 of MNIST's decoded arrays (once per worker process), and the rest.

    python bench/serving.py                   # 2,000 requests of each kind
    python bench/serving.py --requests 500 --jobs 2000 --epochs 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service.ml.data import load_dataset  # noqa: E402
from service.ml.provenance import collect, dataset_sha256  # noqa: E402
from service.ml.spec import TrainSpec  # noqa: E402
from service.store.db import make_engine, make_sessionmaker, migrate, session_scope  # noqa: E402
from service.store.models import EpochMetric, Job, JobStatus  # noqa: E402
from tests.support import Service, real_data_dir, start_service  # noqa: E402

PIXELS = [0] * 784


def percentiles(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return f"median {statistics.median(ms):6.3f}  p90 {pick(0.9):6.3f}  p99 {pick(0.99):6.3f}"


def timed(client: httpx.Client, method: str, path: str, **kw) -> float:
    started = time.perf_counter()
    response = client.request(method, path, **kw)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed


def alias_cost(url: str, model: int, requests: int) -> None:
    print(f" {requests:,} requests each, by id and by alias, interleaved, one keep-alive connection (ms)")
    with httpx.Client(base_url=url, timeout=30) as client:
        for method, route, kw in (
            ("POST", "/models/{m}/predict", {"json": {"pixels": PIXELS}}),
            ("GET", "/models/{m}/accuracy", {}),
        ):
            times: dict[str, list[float]] = {"id": [], "alias": []}
            for i in range(requests + 200):
                for name, ref in (("id", str(model)), ("alias", "champion")):
                    elapsed = timed(client, method, route.replace("{m}", ref), **kw)
                    if i >= 200:  # warm-up
                        times[name].append(elapsed)
            extra = statistics.median(times["alias"]) - statistics.median(times["id"])
            for name in ("id", "alias"):
                print(f"  {method} {route:<24} by {name:<5}  {percentiles(times[name])}")
            print(f"  {'':<31} alias adds {extra * 1000:+.3f} ms at the median")


def scrape_cost(root: Path, jobs: int, epochs: int) -> None:
    url = f"sqlite:///{root / 'metrics.db'}"
    engine = make_engine(url)
    migrate(engine)
    spec = TrainSpec(backend="numpy", hidden_layers=[16], epochs=epochs)
    with session_scope(make_sessionmaker(engine)) as session:
        rows = [
            Job(
                name=spec.name, spec=spec.model_dump(mode="json"), backend="numpy", status=JobStatus.succeeded
            )
            for _ in range(jobs)
        ]
        session.add_all(rows)
        session.flush()
        session.add_all(
            EpochMetric(
                job_id=job.id, epoch=e, loss=0.1, train_accuracy=0.9, test_accuracy=0.9, seconds=e * 0.37
            )
            for job in rows
            for e in range(1, epochs + 1)
        )
    engine.dispose()
    service = start_service(root, db_url=url)
    try:
        with httpx.Client(base_url=service.url, timeout=30) as client:
            for _ in range(5):
                client.get("/metrics")
            times = [timed(client, "GET", "/metrics") for _ in range(50)]
    finally:
        service.stop()
    print(f"\nGET /metrics with {jobs:,} jobs and {jobs * epochs:,} epoch rows (ms): {percentiles(times)}")


def provenance_cost() -> None:
    data = load_dataset("mnist", real_data_dir(), download=False)
    started = time.perf_counter()
    dataset_sha256(data)
    digest = time.perf_counter() - started
    spent = []
    for _ in range(3):  # the first call also runs git and reads the CPU's name, once per process
        started = time.perf_counter()
        collect(TrainSpec(backend="numpy"), data, {})
        spent.append(time.perf_counter() - started)
    print(
        f"\nprovenance: MNIST's SHA-256 {digest * 1000:.0f} ms (once per worker process); the rest "
        f"{spent[0] * 1000:.0f} ms for a process's first job, then {statistics.median(spent[1:]) * 1000:.1f} ms"
    )


def trained_service(root: Path, cache: str) -> tuple[Service, int]:
    """The API with MLPLAB_ALIAS_CACHE_SECONDS=cache, one trained model, and `champion` naming it."""
    service = start_service(root, MLPLAB_ALIAS_CACHE_SECONDS=cache)
    with httpx.Client(base_url=service.url, timeout=30) as client:
        model = client.post("/jobs", json={"backend": "numpy", "epochs": 1, "train_limit": 2000}).json()["id"]
        worker = [sys.executable, "-m", "workers", "--once"]
        subprocess.run(worker, env=service.env, cwd=REPO, check=True, capture_output=True)
        client.put("/aliases/champion", json={"model_id": model}).raise_for_status()
    return service, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; the API on SQLite, one uvicorn process")
    with tempfile.TemporaryDirectory(prefix="mlplab-bench-") as tmp:
        root = Path(tmp)
        for cache in ("1", "0"):
            (root / cache).mkdir()
            service, model = trained_service(root / cache, cache)
            try:
                print(f"\nMLPLAB_ALIAS_CACHE_SECONDS={cache}:", end="")
                alias_cost(service.url, model, args.requests)
            finally:
                service.stop()
        (root / "scrape").mkdir()
        scrape_cost(root / "scrape", args.jobs, args.epochs)
    provenance_cost()


if __name__ == "__main__":
    main()
