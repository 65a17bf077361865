"""Issue 15 §2's study page in a real browser (Debian's chromium, driven by Playwright) against a real API
and worker: a small random search (4 trials of 1 epoch on 500 images) runs to its end; the jobs page
lists it, and its page shows its trials by status, its best trial a click from its model, validation
accuracy by trial with the best so far, each searched parameter against validation accuracy, and the
parameters' importance; the model links back to its study. Screenshots land in artifacts/dashboard/."""

from __future__ import annotations

import pytest

from tests.e2e.browser import browser, moved, rendered, shot, until, watched_page  # noqa: F401 - browser is a fixture
from tests.factories import alike_study, job_body

pytestmark = pytest.mark.slow  # a real API and worker train four models: seconds

STUDY = {
    "base": job_body(),
    "space": {
        "learning_rate": {"float": [0.001, 0.5], "log": True},
        "activation": {"choice": ["tanh", "relu"]},
    },
    "sampler": "random",
    "pruner": "none",
    "trials": 4,
    "parallelism": 2,
    "seed": 0,
}


def traces(page, selector: str) -> list[dict]:
    """What plotly drew in a chart: each trace's name, type and points."""
    page.wait_for_selector(f"{selector}.js-plotly-plot")
    return page.locator(selector).evaluate(
        "el => el.data.map(t => ({name: t.name, type: t.type, x: t.x, y: t.y}))"
    )


def test_a_finished_study_shows_its_trials_and_its_best_a_click_from_its_model(browser, service):  # noqa: F811
    with service.client() as client:
        response = client.post("/studies", json=STUDY)
        assert response.status_code == 202, response.text
        study_id = response.json()["id"]
    with watched_page(browser, service.url) as w:
        page = w.page
        rendered(page, "/")
        page.wait_for_selector(f"#studies [data-study-page='{study_id}']")
        shot(page.locator("#studies"), "studies-list")
        page.click(f"#studies [data-study-page='{study_id}']")
        page.wait_for_selector("#study-counts")
        until(
            page,
            "() => document.querySelector('#study-counts')?.textContent.startsWith('4 of 4 trials ended')",
            timeout=120,
        )
        rendered(page)
        with service.client() as client:
            study = client.get(f"/studies/{study_id}").json()
            importance = client.get(f"/studies/{study_id}/importance").json()["importance"]
        best = study["best"]
        assert study["counts"]["succeeded"] == 4 and best is not None
        counts = page.inner_text("#study-counts")
        assert "4 succeeded · 0 pruned" in counts and "0 running · 0 queued" in counts

        rows = page.locator("#trials tbody tr")
        assert rows.count() == 4
        assert [rows.nth(i).get_attribute("data-trial") for i in range(4)] == ["0", "1", "2", "3"]
        assert page.locator("#trials tr.best").get_attribute("data-trial") == str(best["number"])
        assert page.inner_text("#best-trial").startswith(f"Trial {best['number']}: ")
        assert page.inner_text("#best-accuracy") == f"{100 * best['validation_accuracy']:.2f}\u00a0%"
        assert f"test accuracy (final, unbiased): {100 * best['test_accuracy']:.2f}" in page.inner_text(
            "#study-best"
        )
        assert page.inner_text("#best-note").startswith(
            "One run a trial: it is not shown better than the next"
        )

        trial, best_so_far = traces(page, "#study-history")
        by_number = {t["number"]: t["validation_accuracy"] for t in study["trials"]}
        assert (trial["name"], trial["x"], trial["y"]) == (
            "trial",
            [0, 1, 2, 3],
            [by_number[n] for n in range(4)],
        )
        assert best_so_far["name"] == "best so far"
        assert best_so_far["y"] == [max(by_number[k] for k in range(n + 1)) for n in range(4)]
        assert best_so_far["y"][-1] == best["validation_accuracy"]
        for field, axis in (("learning_rate", "log"), ("activation", "category")):
            (points,) = traces(page, f"#study-by-{field}")
            assert len(points["x"]) == 4
            assert page.locator(f"#study-by-{field}").evaluate("el => el.layout.xaxis.type") == axis
        # the choices in the order the study lists them, not as its trials happened to draw them
        categories = page.locator("#study-by-activation").evaluate("el => el.layout.xaxis.categoryarray")
        assert categories == STUDY["space"]["activation"]["choice"], categories
        # the learning rate's log axis labelled at decades: "0.001 0.01 0.1 1", not "2 3 4 ... 0.1 2 3"
        ticks = page.locator("#study-by-learning_rate").evaluate(
            "el => [...el.querySelectorAll('.xtick text')].filter(t => t.getBoundingClientRect().width > 0).map(t => t.textContent)"
        )
        assert ticks == ["0.001", "0.01", "0.1", "1"], ticks
        # parallel coordinates of the succeeded trials: each searched parameter, then the objective
        (parcats,) = traces(page, "#study-parcoords")
        assert parcats["type"] == "parcats"
        dims = page.locator("#study-parcoords").evaluate(
            "el => el.data[0].dimensions.map(d => ({label: d.label, values: d.values}))"
        )
        assert [d["label"] for d in dims] == ["learning_rate", "activation", "validation accuracy"]
        assert all(len(d["values"]) == 4 for d in dims)
        assert all("–" in v for v in dims[0]["values"])  # a searched number as ranges, not one per trial
        assert page.locator("#study-parcoords svg .paths path").count() >= 1
        # the best accuracy at the top, as on the charts above it (parcats draws its first category there)
        order = page.locator("#study-parcoords").evaluate("el => el.data[0].dimensions[2].categoryarray")
        assert order == sorted(order, key=lambda v: -int(v.removesuffix(" %"))), order
        # four trials: the page says what the bars rest on, and that it is little
        assert page.inner_text("#importance-trials").startswith(
            "From 4 succeeded trials, fewer than 10: too few to say much"
        )
        (bars,) = traces(page, "#study-importance")
        assert (
            bars["type"] == "bar" and bars["x"] == list(importance) and bars["y"] == list(importance.values())
        )
        # and the bars are hatched, not as solid as a ranking that holds (a 99 % bar from 4 trials looked sure)
        pattern = page.locator("#study-importance").evaluate("el => el.data[0].marker.pattern?.shape")
        assert pattern == "/", pattern
        shot(page, "study-page")

        assert study_eta(page) == pytest.approx(8, rel=0.01)  # 6 + 10 epochs left at 2 a second

        # the compare page's picker shows the study's models alone
        rendered(page, f"/#/compare?study={study_id}")
        picked = page.locator(".picker tbody tr")
        assert picked.count() == 4
        trial_jobs = {t["job_id"] for t in study["trials"]}
        assert {int(picked.nth(k).get_attribute("data-model")) for k in range(4)} == trial_jobs
        assert page.locator("#pick-from").input_value() == f"study:{study_id}"
        rendered(page, f"/#/studies/{study_id}")

        moved(page, lambda: page.click("#best-model"))
        assert page.url.endswith(f"#/models/{best['job_id']}")
        assert page.inner_text("#its-study") == f"study {study_id}, trial {best['number']}"
        moved(page, lambda: page.click("#its-study"))
        assert page.url.endswith(f"#/studies/{study_id}")
        rendered(page, "/")
        row = page.locator(f"#studies-table tr[data-study='{study_id}']")
        assert (
            "4 of 4" in row.inner_text() and row.locator(f"a[href='#/models/{best['job_id']}']").count() == 1
        )
        w.assert_clean()


def study_eta(page) -> float:
    """studyEta() of a running study 60 s old with 120 epochs trained (2 a second) of 10-epoch trials:
    one running at epoch 4 (6 left), one succeeded, one to come (10)."""
    return page.evaluate(
        """() => import('/static/js/pages/study.js').then(m => m.studyEta({
          status: 'running', epochs_trained: 120, created_at: new Date(Date.now() - 60000).toISOString(),
          config: {trials: 3}, trials: [{status: 'running', epochs: 4}, {status: 'succeeded', epochs: 10}]}, 10))"""
    )


def test_a_study_whose_trials_scored_alike_says_why_nothing_is_ranked(browser, service):  # noqa: F811
    """The page said 'shown once two trials have succeeded with different accuracies', naming nothing."""
    with service.client() as client:
        study_id = client.post("/studies", json=alike_study()).json()["id"]
        for trial in client.get(f"/studies/{study_id}").json()["trials"]:
            service.wait_job(client, trial["job_id"])
        warning = client.get(f"/studies/{study_id}/importance").json()["warning"]
    with watched_page(browser, service.url) as w:
        rendered(w.page, f"/#/studies/{study_id}")
        w.page.wait_for_selector("#study-importance p")
        shown = w.page.inner_text("#study-importance p")
        assert shown == f"{warning[0].upper()}{warning[1:]}." and "batch_size varied" in shown
        w.assert_clean()


def test_a_pruned_trials_page_says_where_it_was_stopped_and_why_it_has_no_accuracies(browser, tmp_path):  # noqa: F811
    """Its page showed '– / – / –' and nothing of the pruner."""
    from service.ml.train import EpochEnd
    from service.store.db import make_engine, make_sessionmaker, session_scope
    from service.store.jobs import claim_job, prune_job, record_epoch
    from tests.support import start_service

    svc = start_service(tmp_path)  # no worker: the trial is played here
    try:
        with svc.client() as client:
            study = client.post("/studies", json=STUDY | {"pruner": "asha", "trials": 2, "parallelism": 1})
            assert study.status_code == 202, study.text
        engine = make_engine(f"sqlite:///{tmp_path / 'mlplab.db'}")
        with session_scope(make_sessionmaker(engine)) as s:
            job = claim_job(s, "w")
            assert job is not None
            record_epoch(
                s,
                job.id,
                "w",
                EpochEnd(1, 0.9, 0.4, 0.4, 1.0, validation_loss=1.5, validation_accuracy=0.3354),
            )
            prune_job(s, job.id, "w")
        engine.dispose()
        with watched_page(browser, svc.url) as w:
            rendered(w.page, f"/#/jobs/{job.id}")
            note = w.page.inner_text("#pruned-note")
            assert note.startswith(
                f"Pruned: its study's pruner stopped it after epoch 1 of {job.spec['epochs']}, "
            )
            assert "its validation accuracy then (33.54\u00a0%)" in note and "it has no model" in note
            # its study's table says it too, as `mlplab study show` does (it said "–")
            rendered(w.page, f"/#/studies/{study.json()['id']}")
            shown = w.page.inner_text("#trials tr[data-trial='0'] [data-validation]")
            assert shown == "33.54\u00a0% at epoch 1", shown
            w.assert_clean()
    finally:
        svc.stop()
