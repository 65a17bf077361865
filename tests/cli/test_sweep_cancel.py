"""`mlplab cancel --sweep ID`: what it cancelled, said in one line; a problem, or a usage error, otherwise."""

from __future__ import annotations

import httpx
import pytest

from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.jobs import claim_job
from tests.cli.conftest import mlplab
from tests.factories import job_body


def test_cancel_sweep_says_what_it_cancelled_and_what_it_asked_to_stop(api, capsys):
    sweep = api.post("/sweeps", json={"base": job_body(), "grid": {"seed": [1, 2, 3]}})
    other = api.post("/jobs", json=job_body())
    engine = make_engine(api.settings.database_url)
    with session_scope(make_sessionmaker(engine)) as s:
        running = claim_job(s, "w")
        assert running is not None and running.sweep_id == sweep["id"]
    engine.dispose()

    status, out, err = mlplab(capsys, "cancel", "--sweep", sweep["id"])

    assert (status, err) == (0, "")
    assert out == f"sweep {sweep['id']}: 2 queued jobs cancelled, 1 running asked to stop\n"
    after = api.client.get(f"/sweeps/{sweep['id']}").json()["status"]
    assert (after["queued"], after["running"], after["cancelled"]) == (0, 1, 2)
    assert api.client.get(f"/jobs/{other['id']}").json()["status"] == "queued"

    # Again: nothing more cancelled, its running job asked again.
    status, out, err = mlplab(capsys, "cancel", "--sweep", sweep["id"])
    assert (status, out) == (0, f"sweep {sweep['id']}: 0 queued jobs cancelled, 1 running asked to stop\n")


def test_cancel_sweep_says_the_apis_problem(api, capsys):
    sweep = api.post("/sweeps", json={"base": job_body(), "grid": {"seed": [1]}})
    status, out, err = mlplab(capsys, "cancel", "--sweep", sweep["id"])
    assert (status, out) == (0, f"sweep {sweep['id']}: 1 queued job cancelled, 0 running asked to stop\n")
    status, out, err = mlplab(capsys, "cancel", "--sweep", sweep["id"])
    assert (status, out) == (1, "")
    assert err.startswith(f"mlplab: Sweep not running (409): Every job of sweep {sweep['id']} has ended")
    status, out, err = mlplab(capsys, "cancel", "--sweep", "0123456789ab")
    assert (status, out, err) == (1, "", "mlplab: Sweep not found (404): There is no sweep 0123456789ab.\n")


def test_cancel_quotes_the_sweep_id_into_its_path(elsewhere, capsys):
    paths: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"title": "Sweep not found", "status": 404, "detail": "no"})

    elsewhere(server)
    status, _, _ = mlplab(capsys, "cancel", "--sweep", "a/b?c")
    assert status == 1 and paths == ["/sweeps/a%2Fb%3Fc"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["cancel"], "one of the arguments JOB_ID --sweep is required"),
        (["cancel", "3", "--sweep", "3f9c"], "argument --sweep: not allowed with argument JOB_ID"),
    ],
)
def test_cancel_takes_a_job_or_a_sweep_not_both(capsys, argv, says):
    with pytest.raises(SystemExit) as exit_:
        mlplab(capsys, *argv)
    assert exit_.value.code == 2
    assert f"mlplab cancel: error: {says}" in capsys.readouterr().err


def test_an_empty_sweep_id_is_a_usage_error(api, capsys):
    assert mlplab(capsys, "cancel", "--sweep", " ") == (
        2,
        "",
        "mlplab: --sweep is empty: give a sweep id, as `mlplab sweep` printed it\n",
    )
