"""`mlplab sweep --watch`, `jobs --sweep` and `models` on a real (tiny) sweep: progress while it runs,
the ranking after, and the next command to run; `sweeps ID` on served sweeps no real one gives on cue."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
from rich.console import Console

from service.cli import client
from service.selection import gap_text
from tests.cli.conftest import mlplab
from tests.factories import job_body

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _job(
    id: int, status: str, started: float | None = None, ended: float | None = None, step=None, steps=None
):
    """A job as GET /sweeps/{id} lists it, with times in seconds before NOW."""
    at = lambda s: None if s is None else (NOW - timedelta(seconds=s)).isoformat()  # noqa: E731
    return {
        "id": id,
        "status": status,
        "spec": {"learning_rate": 0.1 * id},
        "started_at": at(started),
        "finished_at": at(ended),
        "progress": {"epoch": 1 if step else None, "epochs": 3, "step": step, "steps": steps, "loss": 0.5},
        "train_accuracy": None,
        "validation_accuracy": None,
        "test_accuracy": None,
    }


SWEEP = {
    "id": "3f9c2a1b7d4e",
    "grid": {"learning_rate": [0.1, 0.2, 0.3, 0.4]},
    "status": {"queued": 2, "running": 1, "succeeded": 1, "failed": 0, "cancelled": 0},
    "jobs": [
        _job(1, "succeeded", started=100, ended=40),  # took 60 s
        _job(2, "running", started=30, step=10, steps=40),  # a quarter done in 30 s: 90 s left
        _job(3, "queued"),
        _job(4, "queued"),
    ],
}


def test_the_sweeps_eta_adds_what_runs_and_what_waits():
    assert client.elapsed(SWEEP["jobs"][0], NOW) == 60
    assert client.job_eta(SWEEP["jobs"][1], NOW) == 90
    assert client.sweep_eta(SWEEP, NOW) == 90 + 2 * 60  # one worker: the queued jobs one after the other
    assert (
        client.sweep_status_line(SWEEP, NOW)
        == "sweep 3f9c2a1b7d4e: 2 queued, 1 running, 1 succeeded; ETA 3m30s"
    )
    nothing_done = SWEEP | {"jobs": SWEEP["jobs"][1:]}
    assert client.sweep_eta(nothing_done, NOW) is None  # no finished job to time the queued ones by
    # a running job yet to report a step: the succeeded jobs' mean duration less its 20 s so far (the
    # whole ETA was '-' until it reported, most of a small job's life)
    silent = SWEEP | {"jobs": [SWEEP["jobs"][0], _job(2, "running", started=20), *SWEEP["jobs"][2:]]}
    assert client.sweep_eta(silent, NOW) == (60 - 20) + 2 * 60


def test_the_live_view_shows_each_jobs_progress_elapsed_and_eta():
    console = Console(record=True, width=120, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(client.SweepProgress(SWEEP, NOW))
    lines = console.export_text().splitlines()
    assert lines[0] == "sweep 3f9c2a1b7d4e: 2 queued, 1 running, 1 succeeded; ETA 3m30s"
    assert lines[1].split() == ["ID", "HYPERPARAMETERS", "STATUS", "EPOCH", "PROGRESS", "ELAPSED", "ETA"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["1"][1:3] == ["learning_rate=0.1", "succeeded"] and rows["1"][-2:] == ["1m00s", "-"]
    assert rows["2"][2:4] == ["running", "1/3"] and rows["2"][-2:] == ["30.0s", "1m30s"]
    assert rows["3"][2] == "queued" and rows["3"][-2:] == ["-", "-"]


def test_the_live_view_on_a_narrow_terminal_drops_the_bar_before_any_figure():
    """At 80 columns rich cut the EPOCH and ETA figures to "…" and dropped whole columns."""
    sweep = SWEEP | {"grid": {"learning_rate": [0.1, 0.2], "hidden_layers": [[500, 250, 100], [64]]}}
    sweep["jobs"] = [j | {"spec": j["spec"] | {"hidden_layers": [500, 250, 100]}} for j in SWEEP["jobs"]]
    sweep["jobs"][1]["progress"] = sweep["jobs"][1]["progress"] | {"step": 1234, "steps": 4000}
    for width, headers in [
        (120, ["ID", "HYPERPARAMETERS", "STATUS", "EPOCH", "PROGRESS", "ELAPSED", "ETA"]),
        (80, ["ID", "HYPERPARAMETERS", "STATUS", "EPOCH", "ELAPSED", "ETA"]),
        (72, ["ID", "HYPERPARAMETERS", "STATUS", "EPOCH", "ETA"]),
    ]:
        console = Console(record=True, width=width, file=open("/dev/null", "w"))  # noqa: SIM115
        console.print(client.SweepProgress(sweep, NOW))
        text = console.export_text()
        lines = text.splitlines()
        assert lines[1].split() == headers and max(map(len, lines)) <= width, text
        assert "…" not in text and "1/3 step 1,234/4,000" in text and "1m07s" in text, text
        assert text.count("hidden_layers=500-250-100") == 4, text  # wrapped whole, after its comma


def test_sweep_watch_ends_with_the_ranking_and_the_next_command(api, capsys, tmp_path, monkeypatch):
    grid = tmp_path / "sweep.json"
    grid.write_text(json.dumps({"base": job_body(), "grid": {"learning_rate": [0.001, 0.3, 1e-6]}}))
    monkeypatch.setattr(client.time, "sleep", lambda seconds: api.train())  # the worker runs while it waits
    status, out, err = mlplab(capsys, "sweep", str(grid), "--watch")
    assert status == 0, err
    sweep = api.client.get("/sweeps").json()["data"][0]
    ranked = [j["id"] for j in sweep["jobs"]]  # best first
    assert [line for line in err.splitlines() if line.startswith("sweep ")] == [
        f"sweep {sweep['id']}: 3 queued; ETA -"  # one line while it waited, none left over
    ]
    assert "queued" not in out and out.splitlines()[0] == f"sweep {sweep['id']}: 3 jobs"
    assert f"next: mlplab compare {' '.join(map(str, ranked))}" in err
    # one seed each: every VS BEST but the best's is "-", and why is said (it was only on the page)
    assert 'VS BEST -: no test, which needs 2 succeeded seeds on each side ("replicates": 2 or more)' in err
    # the run that learned nothing is flagged in both tables and said why: no 'behind' taken as measured
    stuck = next(j["id"] for j in sweep["jobs"] if j["spec"]["learning_rate"] == 1e-6)
    assert f"! {stuck}: " in err and "near chance" in err
    flagged = [line for line in out.splitlines() if "learning_rate=1e-06" in line]
    assert len(flagged) == 2 and all(" !" in line for line in flagged), out
    assert flagged[0].split()[:2] == ["learning_rate=1e-06", "!"]  # beside the configuration, whichever split

    # jobs --sweep: best first, as the sweep ranks them; models: schedule, train limit, validation
    status, out, err = mlplab(capsys, "jobs", "--sweep", sweep["id"])
    assert [int(line.split()[0]) for line in out.splitlines()[1:]] == ranked
    assert "ranked by validation_accuracy" in err
    status, out, err = mlplab(capsys, "models")
    header, *rows = [line.split() for line in out.splitlines()]
    assert header[7:18] == [
        "LR",
        "L2",
        "SCHEDULE",
        "EPOCHS",
        "BATCH",
        "SEED",
        "TRAIN_LIMIT",
        "TRAIN",
        "VALIDATION",
        "TEST",
        "(FINAL)",
    ]
    models = {m["id"]: m for m in api.client.get("/models").json()["data"]}
    for row in rows:
        model = models[int(row[0])]
        assert row[9] == "constant" and row[13] == "500"
        assert (row[8], row[12]) == (f"{model['l2']:g}", str(model["seed"]))  # replicates told apart
        assert row[15] == f"{model['validation_accuracy']:.2%}"
    assert f"! {stuck}: " in err  # the model that learned nothing, flagged
    assert mlplab(capsys, "models", "--dataset", "mnist")[1] == out  # all of them learned MNIST
    status, out, _ = mlplab(capsys, "models", "--dataset", "fashion-mnist")
    assert status == 0 and len(out.splitlines()) == 1  # the header alone


def test_a_replicated_sweep_shows_each_configurations_interval_as_numbers_and_a_bar(api, capsys):
    base = job_body(early_stopping={"patience": 5})
    grid = {"learning_rate": [0.02, 0.3]}
    sweep = api.post("/sweeps", json={"base": base, "grid": grid, "seeds": [0, 1, 2]})
    api.train()
    ranked = api.client.get(f"/sweeps/{sweep['id']}").json()["configurations"]
    status, out, err = mlplab(capsys, "sweeps", sweep["id"])
    assert status == 0, err
    header, *rows = out.split("\n\n")[0].splitlines()[1:]  # under "sweep ID: 6 jobs"
    low = min(c["validation_accuracy"]["ci_low"] for c in ranked)
    high = max(c["validation_accuracy"]["ci_high"] for c in ranked)
    assert f"95% CI, AXIS {100 * low:.2f} TO {100 * high:.2f}%" in header and "TEST (FINAL, 95% CI)" in header
    means = []
    for row, c in zip(rows, ranked, strict=True):
        # "!": a configuration with a run near chance (a few steps at lr 0.02 can learn little)
        cells, v, t = [x for x in row.split() if x != "!"], c["validation_accuracy"], c["test_accuracy"]
        assert cells[:4] == [
            f"learning_rate={c['hyperparameters']['learning_rate']:g}",
            "3",
            f"{v['mean']:.2%}",
            f"({100 * v['ci_low']:.2f}-{100 * v['ci_high']:.2f})",
        ]
        bar = cells[4]
        assert len(bar) == client.BAR_WIDTH and bar.count("●") == 1 and "━" in bar
        assert cells[5:7] == [f"{t['mean']:.2%}", f"({100 * t['ci_low']:.2f}-{100 * t['ci_high']:.2f})"]
        means.append(bar.index("●"))
    assert means[0] >= means[1]  # the best's mean is right of the other's, on the one scale
    assert rows[0].split()[-3:] == ["best", "-", "-"]
    other = ranked[1]
    gap = other["gap_to_best"]
    verdict = "can't tell" if other["tied_with_best"] else "behind"
    shown = [verdict, gap_text(gap["difference"], gap["ci_low"], gap["ci_high"]), f"{other['p_value']:.3g}"]
    assert re.split(r"\s{2,}", rows[1])[-3:] == shown, rows[1]
    assert gap["ci_low"] <= gap["difference"] <= gap["ci_high"] and gap["difference"] <= 0
    # the three seeds of each configuration are the same: paired by seed
    assert [c["tested_by"] for c in ranked] == [None, "paired"] and ranked[1]["pairs"] == 3
    assert (
        "VS BEST by paired t-test against the best on the seeds both ran: can't tell (p >= 0.05): "
        "the seeds do not tell it from the best, which with few seeds is no tie" in err
    )
    assert "behind (p < 0.05): unlikely to be seed noise alone; ahead: ahead on its mean" in err
    assert (
        "ahead on its mean, ranked after for its failed runs. One configuration tested against the best: one test."
        in err
    )
    assert "GAP: its accuracy minus the best's, in points, and that test's 95% interval" in err

    # compare --all: early stopping as its fields, not a Python dict
    first, second = (c["jobs"][0] for c in ranked)
    status, out, err = mlplab(capsys, "compare", str(first), str(second), "--all")
    assert status == 0, err
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert rows["early_stopping"] == ["patience=5,min_delta=0"] * 2 and "{" not in out
    assert rows["optimizer"] == ["sgd"] * 2 and rows["momentum"] == ["-"] * 2  # sgd never reads it
    # the epoch each model kept, as the API says (it read the highest validation accuracy of the epochs)
    cells = {re.split(r"\s{2,}", line)[0]: re.split(r"\s{2,}", line)[1:] for line in out.splitlines()[1:]}
    models = [api.client.get(f"/models/{job}").json() for job in (first, second)]
    # as `mlplab models` words it: "3 (4 of 8)", or the epochs asked for when all were trained and the last kept
    shown = [
        str(m["epochs"])
        if m["best_epoch"] == m["stopped_epoch"] == m["epochs"]
        else f"{m['best_epoch']} ({m['stopped_epoch']} of {m['epochs']})"
        for m in models
    ]
    assert cells["kept epoch"] == shown, out
    epochs = [api.client.get(f"/jobs/{m['id']}/epochs").json() for m in models]
    assert cells["its training loss"] == [
        f"{e[m['best_epoch'] - 1]['loss']:.4f}" for m, e in zip(models, epochs, strict=True)
    ]


def test_interval_bars_share_one_scale():
    one = {"mean": 0.5, "ci_low": None, "ci_high": None}
    wide = {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    scale, bars = client.interval_bars([wide, one, None], width=5)
    assert scale == "95% CI, AXIS 40.00 TO 60.00%"  # the bars' axis: read as no interval
    assert bars == ["━━●━━", "··●··", "-"]


def test_a_configuration_without_a_succeeded_run_is_not_called_best(api, capsys):
    sweep = api.post("/sweeps", json={"base": job_body(), "grid": {"learning_rate": [0.01, 0.1]}})
    for job in api.client.get(f"/sweeps/{sweep['id']}").json()["jobs"]:
        api.post(f"/jobs/{job['id']}/cancel")
    assert [c["n"] for c in api.client.get(f"/sweeps/{sweep['id']}").json()["configurations"]] == [0, 0]
    status, out, err = mlplab(capsys, "sweeps", sweep["id"])
    assert status == 0, err
    header, *rows = out.split("\n\n")[0].splitlines()[1:]
    assert header.split()[-4:] == ["VS", "BEST", "GAP", "P"]  # no test, no interval
    assert [row.split()[-3:] for row in rows] == [["-"] * 3] * 2  # N 0: best at nothing


def test_a_sweep_file_with_a_number_json_cannot_carry_is_refused_naming_it(api, capsys, tmp_path):
    grid = tmp_path / "sweep.json"
    grid.write_text('{"base": {"backend": "numpy"}, "grid": {"learning_rate": [0.01, NaN]}}')
    status, out, err = mlplab(capsys, "sweep", str(grid))
    assert (status, out, err) == (1, "", f"mlplab: {grid} is not valid JSON: NaN is not a finite number\n")
    assert api.client.get("/sweeps").json()["data"] == []


def _summary(mean: float, low: float | None = None, high: float | None = None) -> dict:
    """A summary as the API sends it: Student's interval (low, high) cut to [0, 1], and whether it was."""
    if low is None or high is None:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None, "clipped": False}
    cut = {"ci_low": max(low, 0.0), "ci_high": min(high, 1.0), "clipped": low < 0 or high > 1}
    return {"n": 2, "mean": mean, "std": None} | cut


def _configuration(lr: float, job_ids: list[int], validation: dict, test: dict, p=None, tied=None) -> dict:
    return {
        "hyperparameters": {"learning_rate": lr},
        "jobs": job_ids,
        "n": validation["n"],
        "validation_accuracy": validation,
        "test_accuracy": test,
        "seconds": 1.0,
        "failed": 0,
        "tied_with_best": tied,
        "p_value": p,
    }


def _serve_sweep(elsewhere, capsys, configurations: list[dict], **changes) -> tuple[str, str]:
    """`mlplab sweeps ID` against a server that answers with these configurations (and `changes` to the
    sweep): its stdout and stderr."""
    sweep = {
        "id": "5eed",
        "count": 4,
        "grid": {"learning_rate": [0.1, 0.3]},
        "ranked_by": "validation_accuracy",
        "status": {"queued": 0, "running": 0, "succeeded": 4, "failed": 0, "cancelled": 0},
        "configurations": configurations,
        "jobs": [],
    } | changes
    elsewhere(lambda request: httpx.Response(200, json=sweep))
    status, out, err = mlplab(capsys, "--url", "http://api.test", "sweeps", "5eed")
    assert status == 0, err
    return out, err


def _served_sweep(elsewhere, capsys, configurations: list[dict]) -> tuple[list[str], str]:
    """The configurations table's lines (header first), and stderr."""
    out, err = _serve_sweep(elsewhere, capsys, configurations)
    return out.split("\n\n")[0].splitlines()[1:], err


def test_intervals_past_0_or_100_percent_are_printed_within_them(elsewhere, capsys):
    """Student's t over two seeds reaches past 100 % (and below 0): no accuracy is 101.50 %."""
    wide = _configuration(0.1, [1, 2], _summary(0.583, 0.151, 1.015), _summary(0.40, -0.1249, 0.9249))
    narrow = _configuration(0.3, [3, 4], _summary(0.5, 0.45, 0.55), _summary(0.5, 0.45, 0.55), 0.3, True)
    (header, best, _), err = _served_sweep(elsewhere, capsys, [wide, narrow])
    assert "95% CI, AXIS 15.10 TO 100.00%" in header
    assert best.split()[2:4] == ["58.30%", "(15.10-100.00)*"] and best.split()[5:7] == [
        "40.00%",
        "(0.00-92.49)*",
    ]
    assert "101.50" not in best and "-12.49" not in best
    assert "* an interval cut at 0 or 100 %" in err  # and said so: "100.00" read as a computed bound
    assert (
        "the seeds do not tell it from the best" in err
        and "One configuration tested against the best: one test." in err
    )
    # an API from before the paired test sends no tested_by: the legend names the test it ran
    assert "VS BEST by Welch's t-test against the best: can't tell (p >= 0.05)" in err


def test_one_seed_each_prints_no_interval_header(elsewhere, capsys):
    """With one run a configuration there is no interval: the headers do not promise one, nor the tie legend;
    the dashes of VS BEST are said to be no test, as the sweep page says it."""
    one = [
        _configuration(0.1, [1], _summary(0.583), _summary(0.57)),
        _configuration(0.3, [2], _summary(0.5), _summary(0.49)),
    ]
    (header, *_), err = _served_sweep(elsewhere, capsys, one)
    assert "CI" not in header and "MEAN, AXIS 50.00 TO 58.30%" in header and "TEST (FINAL)" in header
    assert "VS BEST by" not in err and "VS BEST -: no test, which needs 2 succeeded seeds" in err


def test_a_run_near_chance_is_marked_in_the_sweeps_jobs(elsewhere, capsys):
    """Its best at 11.78 % read like any other figure: the '!' and its note, as `mlplab models` gives them."""
    chance = _job(1, "succeeded", started=100, ended=40) | {
        "test_accuracy": 0.1178,
        "near_chance": True,
        "warning": "test accuracy 11.78 % is near chance level (10 %)",
    }
    learned = _job(2, "succeeded", started=100, ended=40) | {"test_accuracy": 0.91, "near_chance": False}
    configurations = [
        _configuration(0.2, [2], _summary(0.91), _summary(0.91)),
        _configuration(0.1, [1], _summary(0.1178), _summary(0.1178)),
    ]
    out, err = _serve_sweep(elsewhere, capsys, configurations, count=2, jobs=[learned, chance])
    jobs = out.split("\n\n")[1].splitlines()
    assert jobs[1].split()[0] == "2" and not jobs[1].endswith("!")
    assert jobs[2].split()[0] == "1" and jobs[2].endswith("11.78% !")
    assert "! 1: test accuracy 11.78 % is near chance level (10 %)" in err


def test_the_sweeps_are_listed_with_their_best_configuration(api, capsys):
    """`mlplab sweeps` without an id was a usage error: a lost sweep id meant curl."""
    sweep = api.post(
        "/sweeps", json={"base": job_body(), "grid": {"learning_rate": [0.01, 0.05]}, "replicates": 2}
    )
    api.train()
    status, out, err = mlplab(capsys, "sweeps")
    assert status == 0, err
    header, row = out.splitlines()
    assert header.split()[:4] == ["SWEEP", "CREATED", "(UTC)", "JOBS"]
    best = api.client.get(f"/sweeps/{sweep['id']}").json()["configurations"][0]["validation_accuracy"]
    cells = re.split(r"\s{2,}", row)
    assert [cells[0], *cells[2:]] == [
        sweep["id"],
        "4",
        "4 succeeded",
        "learning_rate; 2 seeds",
        f"{best['mean']:.2%} ({100 * best['ci_low']:.2f}-{100 * best['ci_high']:.2f})",
    ]
    assert err == "1 of 1 sweeps; mlplab sweeps SWEEP for one ranked\n"


def test_a_file_for_the_other_search_or_a_listing_word_says_which_command_it_meant(api, capsys, tmp_path):
    study, grid = tmp_path / "study.json", tmp_path / "grid.json"
    study.write_text(json.dumps({"base": {"backend": "numpy"}, "space": {"l2": {"float": [0, 0.01]}}}))
    grid.write_text(json.dumps({"base": {"backend": "numpy"}, "grid": {"l2": [0, 0.01]}}))
    status, _, err = mlplab(capsys, "sweep", str(study))
    assert (status, err) == (
        2,
        f"mlplab: {study} holds a study (its 'space'): run it with mlplab study {study}\n",
    )
    status, _, err = mlplab(capsys, "study", str(grid))
    assert (status, err) == (
        2,
        f"mlplab: {grid} holds a sweep (its 'grid'): run it with mlplab sweep {grid}\n",
    )
    status, _, err = mlplab(capsys, "sweep", "list")
    assert status == 1 and err.endswith(
        "(sweeps are listed, or one shown, by: mlplab sweeps [SWEEP_ID])\n"
    ), err
    status, _, err = mlplab(capsys, "jobs", "--sweep", "nope")
    assert status == 1 and "--sweep" in err and "path.sweep_id" not in err, err
    assert api.client.get("/sweeps").json()["data"] == [] and api.client.get("/studies").json()["data"] == []


def test_a_configuration_none_of_whose_runs_succeeded_says_they_failed(elsewhere, capsys):
    """A newcomer's relu with init random: both seeds diverged, and its row read "0  -  -"."""
    good = _configuration(0.1, [1, 2], _summary(0.9, 0.89, 0.91), _summary(0.9, 0.89, 0.91))
    lost = _configuration(0.3, [3, 4], {"n": 0}, None) | {"validation_accuracy": None, "failed": 2}
    (_, _, row), _ = _served_sweep(elsewhere, capsys, [good, lost])
    assert row.split()[:5] == ["learning_rate=0.3", "0", "none:", "2", "failed"], row


def test_many_models_near_chance_share_one_note_for_each_advice(capsys):
    """`mlplab models` printed 15 near-chance sentences of about 300 characters below its table."""
    said = "Test accuracy {} % is near chance level (10 % with 10 classes): the model learned next to nothing. Try "
    items = [
        {"id": i, "near_chance": True, "warning": said.format(10 + i) + advice}
        for i, advice in enumerate(["another init than zeros first.", "a larger learning_rate."] * 2)
    ] + [{"id": 9, "near_chance": False, "warning": None}]
    client.chance_notes(items)
    assert capsys.readouterr().err.splitlines() == [
        "! 0, 2: near chance level, learned next to nothing. Try another init than zeros first.",
        "! 1, 3: near chance level, learned next to nothing. Try a larger learning_rate.",
    ]
    client.chance_notes(items[:2])  # one or two: each its whole sentence
    assert capsys.readouterr().err.splitlines()[0] == f"! 0: {items[0]['warning']}"
