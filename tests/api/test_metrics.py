"""GET /metrics: scraped after a job and a few predictions, parsed with prometheus_client's own parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import update

from service.api.monitoring import EPOCH_BUCKETS, MAX_ALIAS_LABELS, OTHER_ALIAS, Monitoring
from service.main import create_app
from service.ml.train import EpochEnd
from service.settings import Settings
from service.store.db import begin_write, make_engine, make_sessionmaker, session_scope
from service.store.jobs import claim_job, record_epoch, requeue_stalled
from service.store.models import Job
from service.store.workers import register_worker, worker_heartbeat
from tests.conftest import assert_problem
from tests.factories import job_body
from tests.support import metric_samples, real_data_dir
from workers.worker import run_worker

TOKEN = "metrics-token-9d2"


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}, parsed by prometheus_client."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return metric_samples(response.text)


def value(samples, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", data_dir=real_data_dir(), download=False)


def test_a_scrape_after_a_job_and_predictions_counts_them(settings):
    with TestClient(create_app(settings)) as client:
        job = client.post("/jobs", json=job_body(epochs=3)).json()["id"]
        queued_first = scrape(client)
        run_worker(settings, once=True)
        waiting = client.post("/jobs", json=job_body(seed=1)).json()["id"]
        client.put("/aliases/champion", json={"model_id": job})
        for _ in range(2):
            assert client.post(f"/models/{job}/predict", json={"pixels": [0] * 784}).status_code == 200
        client.post("/models/champion/predict", json={"images": [[0] * 784] * 3})
        client.get("/models/champion/predictions/test/0")
        assert client.post("/models/999/predict", json={"pixels": [0] * 784}).status_code == 404
        samples = scrape(client)
        epochs = client.get(f"/jobs/{job}/epochs").json()

    assert value(samples, "mlplab_database_up") == 1
    assert (
        value(queued_first, "mlplab_queue_depth") == 1
        and value(queued_first, "mlplab_jobs", status="queued") == 1
    )
    # the predict route: its template, whatever the id; and the images by model and alias
    route = {"method": "POST", "route": "/models/{model}/predict"}
    assert value(samples, "mlplab_http_requests_total", **route, status="200") == 3
    assert value(samples, "mlplab_http_requests_total", **route, status="404") == 1
    assert value(samples, "mlplab_http_request_duration_seconds_count", **route, status="200") == 3
    assert (
        value(samples, "mlplab_http_request_duration_seconds_bucket", **route, status="200", le="+Inf") == 3
    )
    assert value(samples, "mlplab_http_requests_total", method="GET", route="/metrics", status="200") == 1
    assert value(samples, "mlplab_predictions_total", model=str(job), alias="") == 2
    assert value(samples, "mlplab_predictions_total", model=str(job), alias="champion") == 4
    assert ("mlplab_predictions_total", (("alias", ""), ("model", "999"))) not in samples
    # the service's state, from the database
    assert (
        value(samples, "mlplab_jobs", status="succeeded") == 1
        and value(samples, "mlplab_jobs", status="queued") == 1
    )
    assert value(samples, "mlplab_queue_depth") == 1 and value(samples, "mlplab_queue_oldest_age_seconds") > 0
    # --once has ended: its worker removed its own record
    assert value(samples, "mlplab_workers_live") == value(samples, "mlplab_workers_training") == 0
    assert value(samples, "mlplab_epochs_trained_total", backend="numpy") == 3
    assert value(samples, "mlplab_epochs_trained_total", backend="torch") == 0
    assert value(samples, "mlplab_epoch_seconds_count", backend="numpy") == 3
    assert value(samples, "mlplab_epoch_seconds_sum", backend="numpy") == pytest.approx(
        sum(e["seconds"] for e in epochs)
    )
    for bound in EPOCH_BUCKETS:
        under = sum(e["seconds"] <= bound for e in epochs)
        assert value(samples, "mlplab_epoch_seconds_bucket", backend="numpy", le=str(bound)) == under
    assert [e["sampled"] for e in epochs] == [True, True, False]  # the last on every image
    assert waiting


def test_predictions_by_ever_new_alias_names_add_a_bounded_number_of_series():
    """An alias costs a PUT: 1,500 rounds of create, predict by it, delete left 1,500 series for ever."""
    monitoring = Monitoring(metrics_dir=None)
    for n in range(MAX_ALIAS_LABELS + 25):
        monitoring.predicted(7, f"card-{n}", 1)
    monitoring.predicted(7, "card-0", 2)  # a name already counted keeps its series
    monitoring.predicted(7, None, 1)
    samples = metric_samples(monitoring.exposition(state=None).decode())
    aliases = {
        dict(labels)["alias"]: v
        for (name, labels), v in samples.items()
        if name == "mlplab_predictions_total"
    }
    assert len(aliases) == MAX_ALIAS_LABELS + 2 and aliases[OTHER_ALIAS] == 25
    assert aliases["card-0"] == 3 and aliases[""] == 1
    # a deleted alias frees its slot (and, in one process, its series): champion is not "(other)"
    monitoring.forget_alias("card-1")
    monitoring.predicted(7, "champion", 1)
    samples = metric_samples(monitoring.exposition(state=None).decode())
    aliases = {
        dict(labels)["alias"] for (name, labels), _ in samples.items() if name == "mlplab_predictions_total"
    }
    assert "champion" in aliases and "card-1" not in aliases and len(aliases) == MAX_ALIAS_LABELS + 2


def test_deleting_an_alias_frees_its_metric_label(settings):
    with TestClient(create_app(settings)) as client:
        job = client.post("/jobs", json=job_body(epochs=1)).json()["id"]
        run_worker(settings, once=True)
        client.put("/aliases/pr-1", json={"model_id": job})
        client.post("/models/pr-1/predict", json={"pixels": [0] * 784})
        assert ("mlplab_predictions_total", (("alias", "pr-1"), ("model", str(job)))) in scrape(client)
        assert client.delete("/aliases/pr-1").status_code == 204
        assert ("mlplab_predictions_total", (("alias", "pr-1"), ("model", str(job)))) not in scrape(client)


def test_unmatched_paths_share_one_label(settings):
    with TestClient(create_app(settings)) as client:
        for path in ("/nothing", "/nothing/else", "/models/1/nothing"):
            assert client.get(path).status_code == 404
        samples = scrape(client)
    assert value(samples, "mlplab_http_requests_total", method="GET", route="unmatched", status="404") == 3


def test_a_request_refused_before_routing_is_counted_as_refused_not_unmatched(settings):
    """A Host outside MLPLAB_ALLOWED_HOSTS was counted as route="unmatched", which the docs define as a
    path no route matches: an alert on scans fired on refusals."""
    with TestClient(create_app(settings)) as client:
        for path in ("/jobs/1", "/static/app.css", "/nothing"):
            assert client.get(path, headers={"Host": "evil.example"}).status_code == 400
        foreign = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
        assert client.get("/jobs", headers=foreign).status_code == 403
        samples = scrape(client)
    assert value(samples, "mlplab_http_requests_total", method="GET", route="refused", status="400") == 3
    assert value(samples, "mlplab_http_requests_total", method="GET", route="refused", status="403") == 1
    assert not [key for key in samples if ("route", "unmatched") in key[1]]


def test_the_dashboards_files_are_counted_under_their_mount_not_as_unmatched(settings):
    """Every page load added about ten requests to route="unmatched", which the docs define as paths no
    route matches: an alert on it fired on normal dashboard use."""
    with TestClient(create_app(settings)) as client:
        for path in (
            "/static/js/main.js",
            "/static/app.css",
            "/static/vendor/plotly.min.js",
            "/static/no.js",
        ):
            client.get(path)
        samples = scrape(client)
    assert (
        value(samples, "mlplab_http_requests_total", method="GET", route="/static/{path}", status="200") == 2
    )
    assert (
        value(samples, "mlplab_http_requests_total", method="GET", route="/static/{path}", status="404") == 1
    )
    vendor = value(
        samples, "mlplab_http_requests_total", method="GET", route="/static/vendor/{path}", status="200"
    )
    assert vendor == 1
    assert not [key for key in samples if ("route", "unmatched") in key[1]]


def test_behind_a_root_path_unmatched_paths_are_unmatched_and_the_files_their_mount(settings):
    """Under root_path /api every unmatched request was labelled /api/{path}, as if a mount had taken it."""
    with TestClient(create_app(settings), root_path="/api") as client:
        assert client.get("/nothing").status_code == 404
        client.get("/static/js/main.js")
        samples = scrape(client)
    assert value(samples, "mlplab_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert [key for key in samples if ("route", "/static/{path}") in key[1]]


def test_metrics_need_the_token_when_reads_do(settings):
    protected = settings.model_copy(update={"api_token": SecretStr(TOKEN), "protect_reads": True})
    with TestClient(create_app(protected)) as client:
        assert_problem(client.get("/metrics"), 401)
        assert_problem(client.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401)
        assert value(scrape(client, Authorization=f"Bearer {TOKEN}"), "mlplab_queue_depth") == 0
    open_reads = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    with TestClient(create_app(open_reads)) as client:
        assert value(scrape(client), "mlplab_queue_depth") == 0


def test_the_workers_gauges_count_training_and_standing_by_workers(settings):
    with TestClient(create_app(settings)) as client:
        sessions = make_sessionmaker(make_engine(settings.database_url))
        job = client.post("/jobs", json=job_body()).json()["id"]
        with session_scope(sessions) as s:
            for name in ("a", "b", "c"):
                register_worker(s, name, "box", "boot-1", 1, lease_seconds=30)
        with session_scope(sessions) as s:
            worker_heartbeat(s, "a", job, 1)
            worker_heartbeat(s, "c", None, 0, standing_by=True)  # beyond the box's cores
        samples = scrape(client)
    assert value(samples, "mlplab_workers_live") == 3
    assert value(samples, "mlplab_workers_training") == 1
    assert value(samples, "mlplab_workers_standing_by") == 1


def test_a_job_given_back_to_the_queue_neither_unwinds_the_epoch_counter_nor_its_wait(settings):
    """A worker lost (or stopped) before its first checkpoint: the job trains its epochs again. The
    counter of epochs trained fell from 12 to 10 (Prometheus reads a fall as a reset), and the queue's
    oldest age counted the job's time running as waiting."""
    with TestClient(create_app(settings)) as client:
        sessions = make_sessionmaker(make_engine(settings.database_url))
        job = client.post("/jobs", json=job_body(epochs=5)).json()["id"]
        started = datetime.now(UTC) - timedelta(minutes=20)  # it ran 20 minutes before its worker was lost
        with session_scope(sessions) as s:
            begin_write(s)
            s.execute(update(Job).where(Job.id == job).values(created_at=started))
            claim_job(s, "lost-worker", now=started)
            for epoch in (1, 2):
                record_epoch(s, job, "lost-worker", EpochEnd(epoch, 1.0, 0.5, 0.5, 0.25 * epoch), now=started)
        before = scrape(client)
        given_back = datetime.now(UTC) - timedelta(seconds=10)
        with session_scope(sessions) as s:
            requeue_stalled(s, lease_seconds=30, max_attempts=3, now=given_back)
        assert client.get(f"/jobs/{job}").json()["status"] == "queued"
        assert client.get(f"/jobs/{job}/epochs").json() == []  # trained again from the start
        after = scrape(client)
    for name in ("mlplab_epochs_trained_total", "mlplab_epoch_seconds_count"):
        assert value(before, name, backend="numpy") == value(after, name, backend="numpy") == 2
    assert value(after, "mlplab_epoch_seconds_sum", backend="numpy") == pytest.approx(0.75)
    assert value(after, "mlplab_epoch_seconds_bucket", backend="numpy", le="0.25") == 1
    # waiting since it went back 10 s ago, not since it was submitted 20 minutes ago
    assert 10 <= value(after, "mlplab_queue_oldest_age_seconds") < 60


def test_every_change_and_every_refusal_is_one_log_line_and_a_poll_is_none(client, caplog):
    """The API logged no request at all: an operator could not tell when a job was submitted or cancelled,
    nor see the 4xx a client kept getting."""
    import logging

    with caplog.at_level(logging.INFO, logger="mlplab.api"):
        job = client.post("/jobs", json=job_body()).json()["id"]
        client.get("/jobs")
        client.get(f"/jobs/{job}", params={"ticket": "not-logged"})
        client.post(f"/jobs/{job}/cancel")
        client.get("/jobs/999%1B")
        client.post("/models/999/predict", json={"pixels": [0] * 784})  # refused: logged; answered: not
    lines = [r.getMessage() for r in caplog.records if r.name == "mlplab.api"]
    assert [line.rsplit(" ", 3)[0] for line in lines] == [
        "POST /jobs 202",
        f"POST /jobs/{job}/cancel 200",
        "GET /jobs/999%1B 422",
        "POST /models/999/predict 404",
    ], lines
    assert all(line.endswith(" ms (testclient)") for line in lines) and "not-logged" not in str(lines)
