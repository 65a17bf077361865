"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a real API and
worker: submit, watch, a job's page, a model's page (charts, confusion matrix, scores, mistakes, a
drawn digit and the 28x28 image the model saw, an uploaded line of text flagged), a comparison, the jobs list (labels, filters, order, pages), a phone-sized screen.

Screenshots of each step and of every chart land in artifacts/dashboard/ (kept by CI as artifacts);
those README shows, of the models trained here on real MNIST, in docs/."""

from __future__ import annotations

import io
import json
import math
import re

import httpx
import pytest
from PIL import Image, ImageDraw

from tests.e2e.browser import (  # noqa: F401 - browser is a fixture
    DESKTOP,
    DOCS,
    PHONE,
    browser,
    keep,
    moved,
    open_new_job_form,
    rendered,
    scroll_width,
    shot,
    until,
    watched_page,
)
from tests.support import start_service, wait_for

pytestmark = pytest.mark.slow  # real API and worker processes: seconds each

SMALL = {
    "hidden_layers": "64",
    "activation": "relu",
    "init": "he",
    "optimizer": "adam",
    "learning_rate": "0.003",
    "epochs": "2",
    "train_limit": "3000",
    "log_every": "5",
}
# The rows and columns of the 28x28 "what the model saw" canvas that hold ink.
SEEN_INK = """() => { const d = document.querySelector('#seen').getContext('2d').getImageData(0, 0, 28, 28).data;
  const rows = new Set(), cols = new Set();
  for (let i = 0; i < 784; i++) if (d[4 * i] >= 128) { rows.add(Math.floor(i / 28)); cols.add(i % 28); }
  return [[...rows], [...cols]]; }"""
SMALL_JSON = {"backend": "numpy", "hidden_layers": [64], "epochs": 1, "train_limit": 500}
SMALL_STUDY = {
    "base": SMALL_JSON | {"validation_size": 1000},
    "space": {
        "learning_rate": {"choice": [1e-6, 0.1]},  # 1e-6: a trial that learns nothing
        "early_stopping": {"choice": [None, {"patience": 1}]},  # an object, shown as its fields
    },
    "sampler": "grid",
    "pruner": "none",
    "trials": 4,
    "seed": 0,
}

# Every tick label, axis title and legend text a chart shows lies inside the chart's box: none
# clipped (hidden ticks have no box).
LABELS_INSIDE = """el => { const box = el.getBoundingClientRect();
  const ticks = [...el.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text, .legendtext')].map(t => t.getBoundingClientRect()).filter(r => r.width > 0);
  return ticks.length >= 4 && ticks.every(r =>
    r.left >= box.left - 1 && r.right <= box.right + 1 && r.top >= box.top - 1 && r.bottom <= box.bottom + 1); }"""
# No two tick labels of an axis overlap (a crowded log axis drew 0.7, 0.8 and 0.9 over each other).
TICKS_APART = """el => ['.xtick text', '.ytick text'].every(sel => {
  const r = [...el.querySelectorAll(sel)].map(t => t.getBoundingClientRect()).filter(b => b.width > 0);
  return r.every((a, i) => r.slice(i + 1).every(b =>
    a.right <= b.left + 0.5 || b.right <= a.left + 0.5 || a.bottom <= b.top + 0.5 || b.bottom <= a.top + 0.5)); })"""
# The y axis's visible tick labels, as text.
Y_TICKS = "el => [...el.querySelectorAll('.ytick text')].filter(t => t.getBoundingClientRect().width > 0).map(t => t.textContent)"


@pytest.fixture
def page(browser, service):  # noqa: F811
    with watched_page(browser, service.url) as w:
        yield w.page
        w.assert_clean()


def fill_spec(page, values: dict[str, str]) -> None:
    for name, value in values.items():
        locator = page.locator(f"#spec-{name}")
        if locator.evaluate("e => e.tagName") == "SELECT":
            locator.select_option(value)
        else:
            locator.fill(value)


def chart(page, selector: str) -> dict:
    """What plotly drew: trace names and point counts, the y axis, and whether the ticks fit."""
    page.wait_for_selector(f"{selector}.js-plotly-plot .scatterlayer .trace")
    return page.locator(selector).evaluate(
        """el => ({names: el.data.map(t => t.name), parts: el.data.map(t => t.meta), points: el.data.map(t => t.x.length),
                   visible: el.data.map(t => t.visible ?? true), y: el.layout.yaxis,
                   ytitle: el.layout.yaxis.title.text})"""
    ) | {
        "labels_inside": page.locator(selector).evaluate(LABELS_INSIDE)
        and page.locator(selector).evaluate(TICKS_APART)
    }


def training_time_shown(page, service, model_id: int) -> None:
    """The model page says how long training took, as the API measured it: milliseconds under a
    second, so that a real run of a twentieth of a second never reads "0.0 s" or "< 0.1 s"."""
    with service.client() as client:
        seconds = client.get(f"/models/{model_id}").json()["seconds"]
    shown = page.inner_text("#model-accuracy").rsplit("training time ", 1)[1]
    assert seconds > 0, seconds  # a real time (a quiet machine trains the walk's sweep in 0.02 s)
    assert shown == duration_shown(seconds), (shown, seconds)


def duration_shown(seconds: float) -> str:
    """How the dashboard prints a duration (dom.js duration()): ms under a second, tenths under ten."""
    if seconds < 0.9995:
        return "< 1 ms" if 0 < seconds < 0.0005 else f"{round(1000 * seconds)} ms"
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    return f"{round(seconds)} s" if round(seconds) < 60 else "minutes"


# Each word of these texts (split at spaces) lies on one line: long labels wrap between words, never
# inside one ("n=30/00").
WORDS_WHOLE = """sel => [...document.querySelectorAll(sel)].flatMap(el => {
  const text = el.firstChild; if (!text || text.nodeType !== 3) return [];
  const broken = []; let at = 0;
  for (const word of text.data.split(' ')) {
    if (word) { const r = document.createRange(); r.setStart(text, at); r.setEnd(text, at + word.length);
      const tops = new Set([...r.getClientRects()].filter(b => b.width > 0).map(b => Math.round(b.top)));
      if (tops.size > 1) broken.push(word); }
    at += word.length + 1;
  }
  return broken; })"""


def legend_toggles(page, selector: str) -> None:
    """Clicking a legend entry hides its curve; clicking it again shows it."""
    entry = page.locator(f"{selector} .legend .traces").first
    entry.click()
    until(page, f"() => document.querySelector('{selector}').data[0].visible === 'legendonly'")
    entry.click()
    until(page, f"() => document.querySelector('{selector}').data[0].visible === true")


def test_submit_watch_open_model_click_cell_draw_and_compare(page, service):
    page.goto("/")
    open_new_job_form(page)
    # each field says what it does, as the API's docs and the CLI's --help do (it gave limits alone)
    with service.client() as client:
        fields = client.get("/openapi.json").json()["components"]["schemas"]["TrainSpec"]["properties"]
    for name in ("init", "l2", "validation_size", "early_stopping"):
        assert page.inner_text(f"[data-field={name}] .help") == fields[name]["description"], name
    # momentum is read by the momentum optimizer alone: typed beside sgd, the API refused it on submit
    assert page.locator("#spec-momentum").is_disabled()  # sgd, the default
    page.select_option("#spec-optimizer", "momentum")
    page.fill("#spec-momentum", "0.5")
    page.select_option("#spec-optimizer", "adam")
    assert page.locator("#spec-momentum").is_disabled() and page.input_value("#spec-momentum") == "0.9"
    page.select_option("#spec-optimizer", "sgd")
    # invalid values are explained before anything is sent
    page.fill("#spec-epochs", "0")
    page.click("#submit")
    assert "epochs: must be ≥ 1" in page.inner_text("[data-field=epochs] .err")
    shot(page, "01-invalid-field")
    fill_spec(page, SMALL)
    page.click("#submit")
    link = page.wait_for_selector("#submit-note a")
    assert link.inner_text().endswith("queued")
    job_id = int(link.inner_text().split()[1])

    # "Job N queued" opens the job, which goes live to succeeded on its own page
    link.click()
    page.wait_for_url(f"**/#/jobs/{job_id}")
    page.wait_for_selector("h1 .status.succeeded", timeout=120_000)
    page.wait_for_selector("#open-model")
    loss = chart(page, "#loss-chart")
    assert loss["points"][0] > 10 and loss["labels_inside"]
    shot(page.locator("#loss-chart"), "02-job-loss-chart")
    shot(page, "02-job-succeeded")

    rendered(page, "/")
    row = f"tr[data-job='{job_id}']"
    page.wait_for_selector(f"{row} [role=progressbar][aria-valuenow='100']")
    assert page.inner_text(f"{row} [data-status]") == "succeeded"
    assert page.inner_text(f"{row} [data-duration]").endswith("s")
    assert page.inner_text(f"{row} [data-test]").endswith("%")
    shot(page, "03-jobs-list")

    page.click(f"{row} a:has-text('Open')")
    model_page(page, service, job_id)
    draw_a_one(page)
    compare_with_a_second_model(page, service, job_id)


def assert_chance_level(page, selector: str) -> None:
    """The loss of a uniform guess over MNIST's ten classes drawn across the chart, within its axis."""
    levels = page.locator(selector).evaluate(
        "el => el.layout.shapes.filter(s => s.xref === 'paper').map(s => [s.y0, s.label.text])"
    )
    assert [(round(y, 4), text) for y, text in levels] == [(2.3026, "a uniform guess: ln 10 = 2.30")], levels
    low, high = page.locator(selector).evaluate("el => el.layout.yaxis.range")
    assert low < math.log10(2.3026) < high


def model_page(page, service, job_id: int) -> None:
    page.wait_for_selector(".heatmap .cell")
    rendered(page)
    assert page.locator(".heatmap .cell").count() == 100

    # the curves: hover values, a legend that toggles, an accuracy axis that says where it starts
    loss, accuracy = chart(page, "#loss-chart"), chart(page, "#accuracy-chart")
    assert (
        loss["names"]
        == ["mean loss since the previous point", "mean loss per epoch", "validation loss per epoch"]
        and loss["y"]["type"] == "log"
    )
    # each epoch's validation loss beside its training mean, where overfitting shows (compare alone drew it)
    with service.client() as client:
        validation = [e["validation_loss"] for e in client.get(f"/jobs/{job_id}/epochs").json()]
    assert page.locator("#loss-chart").evaluate("el => el.data[2].y") == validation
    assert_chance_level(page, "#loss-chart")
    assert accuracy["names"] == ["train", "validation", "test"] and accuracy["points"] == [2, 2, 2]
    assert "on fixed samples of their images" in page.inner_text(".epoch-note")  # not the final figures
    # drawn apart from those on every image: open markers (they looked as exact as the last epoch's)
    symbols = page.locator("#accuracy-chart").evaluate("el => el.data.map(t => t.marker.symbol)")
    assert symbols == [["circle-open", "circle"], ["circle", "circle"], ["circle-open", "circle"]], symbols
    floor = accuracy["y"]["range"][0]
    assert floor in (0, 0.5, 0.8, 0.9) and f"axis from {round(100 * floor)} %" in accuracy["ytitle"]
    assert accuracy["y"]["range"][1] >= 1  # up to 100 %: a point of difference is drawn as one
    assert loss["labels_inside"] and accuracy["labels_inside"]
    # the loss axis is labelled at or beyond both ends of its points, the epochs' mean losses included
    every_loss = [
        y for trace in page.locator("#loss-chart").evaluate("el => el.data.map(t => t.y)") for y in trace
    ]
    ticks = [float(t) for t in page.locator("#loss-chart").evaluate(Y_TICKS)]
    assert len(ticks) >= 3 and min(ticks) <= min(every_loss) and max(ticks) >= max(every_loss), (
        ticks,
        every_loss,
    )
    training_time_shown(page, service, job_id)
    legend_toggles(page, "#accuracy-chart")
    box = page.locator("#accuracy-chart .nsewdrag").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#accuracy-chart .hoverlayer .legend")
    assert "test" in page.locator("#accuracy-chart .hoverlayer").text_content()
    shot(page.locator("#loss-chart"), "04-model-loss-chart")
    shot(page.locator("#accuracy-chart"), "04-model-accuracy-chart")

    # a cell: highlighted, its images listed; an image: its ten probabilities
    with service.client() as client:
        matrix = client.get(f"/models/{job_id}/confusion-matrix?split=test").json()["matrix"]
    cell = page.locator(".heatmap .cell[data-label='7'][data-predicted='7']")
    count = int(cell.inner_text())
    cell.click()
    page.wait_for_selector("[data-cell-images] img")
    assert cell.get_attribute("aria-pressed") == "true"
    assert page.locator(".heatmap .cell[aria-pressed=true]").count() == 1
    assert page.locator("[data-cell-images] img").count() == min(count, 60)
    assert f"{count} images" in page.inner_text("#cell")
    # the open cell stays marked (a ring around it), and the mark moves to the next cell clicked
    ring = "el => getComputedStyle(el).boxShadow"
    unmarked = page.locator(".heatmap .cell[data-label='0'][data-predicted='0']").evaluate(ring)
    assert cell.evaluate(ring) not in ("none", unmarked)
    n, i, j = max((n, i, j) for i, row in enumerate(matrix) for j, n in enumerate(row) if i != j)
    other = page.locator(f".heatmap .cell[data-label='{i}'][data-predicted='{j}']")
    other.click()
    page.wait_for_selector(f"#cell h3:has-text('True {i}, predicted {j}: {n} images')")
    assert other.get_attribute("aria-pressed") == "true" and cell.get_attribute("aria-pressed") == "false"
    assert page.locator(".heatmap .cell[aria-pressed=true]").count() == 1
    assert other.evaluate(ring) not in ("none", unmarked) and cell.evaluate(ring) == unmarked
    shot(page.locator("#confusion"), "05-model-cell-marked")
    cell.click()
    page.wait_for_selector("#cell h3:has-text('True 7, predicted 7')")
    page.locator("[data-cell-images] .thumb").first.click()
    page.wait_for_selector("#image-detail .prob")
    assert page.locator("#image-detail .prob").count() == 10
    assert "label 7" in page.inner_text("#image-detail figcaption")
    shot(page, "05-model-cell-and-image")
    # a mistake's bars: the predicted class's red (it was green, as a right one's), its label's row marked
    other.click()
    page.wait_for_selector(f"#cell h3:has-text('True {i}, predicted {j}')")
    page.locator("[data-cell-images] .thumb").first.click()
    page.wait_for_selector("#image-detail .prob.wrong")
    wrong = page.locator("#image-detail .prob.top.wrong")
    assert wrong.locator("span").first.inner_text() == str(j)
    assert (
        wrong.locator(".bar > span").evaluate("el => getComputedStyle(el).backgroundColor")
        == "rgb(179, 38, 30)"
    )
    assert page.locator("#image-detail .prob.truth span").first.inner_text() == f"{i} ◂"

    # precision, recall and F1 of each class, from the matrix the API serves
    column = [sum(row[k] for row in matrix) for k in range(10)]
    cells = page.locator("#scores tbody tr").nth(7).locator("td").all_inner_texts()
    precision, recall = matrix[7][7] / column[7], matrix[7][7] / sum(matrix[7])
    assert cells == [
        "7",
        f"{precision:.3f}",
        f"{recall:.3f}",
        f"{2 * precision * recall / (precision + recall):.3f}",
        f"{sum(matrix[7]):,}",
    ]
    assert page.locator("#scores tbody tr").count() == 10
    f1s = [2 * matrix[k][k] / (column[k] + sum(matrix[k])) for k in range(10)]
    mean = page.locator("#scores tfoot tr").inner_text().split()
    assert mean[0] == "mean" and mean[3] == f"{sum(f1s) / 10:.3f}"

    # the most frequent mistakes, largest first, each image opening its probabilities
    worst = max((n, i, j) for i, row in enumerate(matrix) for j, n in enumerate(row) if i != j)
    assert page.inner_text("#mistakes h3 >> nth=0") == f"{worst[1]} → {worst[2]}: {worst[0]} images"
    page.locator("#mistakes .thumb").first.click()
    page.wait_for_selector(f"#image-detail figcaption:has-text('label {worst[1]}, predicted {worst[2]}')")
    shot(page.locator("#mistakes"), "05-model-mistakes")

    # the mistakes it is surest of, surest first, as the API orders them
    with service.client() as client:
        query = {"correct": "false", "order": "confidence", "limit": 24}
        surest = client.get(f"/models/{job_id}/predictions/test", params=query).json()["data"]
    thumbs = page.locator("[data-surest] .thumb")
    assert thumbs.count() == len(surest) > 0
    sources = [thumbs.nth(k).locator("img").get_attribute("src") for k in range(len(surest))]
    assert [src.split("?")[0].rsplit("/", 1)[1] for src in sources] == [f"{o['index']}.png" for o in surest]
    first = surest[0]
    caption = thumbs.first.inner_text().split("\n")
    assert caption == [f"{first['label']}→{first['predicted']}", f"{100 * first['probability']:.2f}\u00a0%"]
    thumbs.first.click()
    page.wait_for_selector(
        f"#image-detail figcaption:has-text('#{first['index']}: label {first['label']}, predicted {first['predicted']}')"
    )
    shot(page.locator("#surest"), "05-model-surest-mistakes")
    keep(page, "dashboard-model", DOCS)  # README's picture of a model page

    # the validation images, which ranked it: their matrix, and their mistakes from the train file
    with service.client() as client:
        held = client.get(f"/models/{job_id}/confusion-matrix?split=validation").json()["matrix"]
        size = client.get(f"/models/{job_id}").json()["validation_size"]
    assert sum(map(sum, held)) == size > 0
    page.select_option("#cm-split", "validation")
    cells = "[...document.querySelectorAll('#cm .heatmap .cell')]"
    page.wait_for_function(f"() => {cells}.reduce((n, c) => n + Number(c.textContent), 0) === {size}")
    # its surest mistakes, from the train file (the page waited for none other: a stale test image fails)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#surest .thumb img')].some((i) => i.src.includes('/mnist/train/'))"
        " || document.querySelector('#surest p')?.textContent.startsWith('No mistakes on the validation')"
    )


def draw_a_one(page) -> None:
    page.locator("#pad").scroll_into_view_if_needed()
    # nothing drawn: the API's reason once (it was said twice, the second time as "body.file: ...")
    page.click("#predict")
    problem = page.wait_for_selector("#probs .problem").inner_text()
    assert problem.count("no digit found") == 1 and "body.file" not in problem, problem
    pad = page.locator("#pad").bounding_box()  # viewport coordinates, as the mouse uses
    x = pad["x"] + pad["width"] / 2
    page.mouse.move(x, pad["y"] + 30)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x, pad["y"] + 30 + k * (pad["height"] - 60) / 10)
    page.mouse.up()
    page.click("#predict")
    page.wait_for_selector("#predicted")
    assert page.locator("#probs .prob").count() == 10
    assert page.inner_text("#predicted") == "1"
    # beside it, the 28x28 image the model saw: a vertical stroke, centred as MNIST's digits are
    rows, cols = page.evaluate(SEEN_INK)
    assert 15 <= len(rows) <= 20 and 1 <= len(cols) <= 5 and 11 <= sum(cols) / len(cols) <= 16
    assert page.locator("#input-warning[data-out-of-distribution=true]").count() == 0
    shot(page, "06-drawn-one")

    # an image of text is answered too, with a warning that the input is unlike the training images
    line = Image.new("L", (120, 24), 255)
    ImageDraw.Draw(line).text((4, 6), "Hello world", fill=0)
    png = io.BytesIO()
    line.save(png, format="PNG")
    page.set_input_files(
        "#upload", files=[{"name": "text.png", "mimeType": "image/png", "buffer": png.getvalue()}]
    )
    page.wait_for_selector("#input-warning[data-out-of-distribution=true]")
    assert "looks unlike the training images" in page.inner_text("#input-warning")
    assert page.locator("#probs .prob").count() == 10
    rows, _ = page.evaluate(SEEN_INK)
    assert len(rows) <= 8  # a line of text comes out a few pixels tall
    shot(page.locator("#probs"), "06-uploaded-text-warning")


def compare_with_a_second_model(page, service, job_id: int) -> None:
    with service.client() as client:
        other = client.post(
            "/jobs",
            json={
                "backend": "torch",
                "hidden_layers": [64],
                "activation": "tanh",
                "optimizer": "adam",
                "learning_rate": 0.003,
                "epochs": 2,
                "train_limit": 3000,
                "log_every": 5,
                "early_stopping": {"patience": 1},
            },
        ).json()
        assert service.wait_job(client, other["id"])["status"] == "succeeded"
    rendered(page, f"/#/compare?ids={job_id},{other['id']}")
    differing = page.locator("#table tr.diff th").all_inner_texts()
    assert {"backend", "activation", "early_stopping"} <= set(differing)
    assert "log_every" not in differing  # it records, it does not train
    # several settings at once: the page says the gap cannot be put down to one of them
    why = page.inner_text("#best-why")
    assert why.startswith(f"These models differ in {len(differing)} settings at once (") and (
        "this comparison cannot say which of them made it" in why
    )
    # settings in words: early stopping's own fields, and "off" where it is unset; never "None"
    stopping = page.locator("#table tr[data-field=early_stopping] td").all_inner_texts()
    assert stopping == ["off", "patience=1, min_delta=0"]
    loss, accuracy = chart(page, "#compare-loss"), chart(page, "#compare-accuracy")
    # validation and test accuracy (train toggled off); train and validation loss per epoch, and the
    # per-step loss smoothed
    assert len(accuracy["names"]) == 4 and len(loss["names"]) == 6
    for drawn in (loss, accuracy):
        assert drawn["labels_inside"]
        half = len(drawn["names"]) // 2
        assert drawn["names"][0].startswith(f"#{job_id} ") and drawn["names"][half].startswith(
            f"#{other['id']} "
        )
        assert all(len(n) <= 30 for n in drawn["names"])  # short: the full label on hover
    assert accuracy["parts"] == ["validation", "test"] * 2
    assert loss["parts"] == ["validation", "train", "recorded, smoothed"] * 2
    # one legend entry a model on both charts, so the same room for the legend, however many curves
    heights = [
        page.locator(s).evaluate("el => el.layout.height") for s in ("#compare-loss", "#compare-accuracy")
    ]
    assert heights[0] == heights[1], heights
    with service.client() as client:
        compared = client.get("/compare", params={"ids": f"{job_id},{other['id']}"}).json()["data"]
    drawn = page.locator("#compare-loss").evaluate(
        "el => el.data.filter(t => t.meta === 'recorded, smoothed').map(t => ({x: t.x, y: t.y, hover: t.hovertemplate}))"
    )
    for smooth, model in zip(drawn, compared, strict=True):
        raw = [p["loss"] for p in model["losses"]]
        # x in epochs: the last loss, at the last step, is at the end of epoch 2
        assert len(smooth["x"]) == len(raw) > 10 and smooth["x"][-1] == 2 and 0 < smooth["x"][0] < 1
        assert min(raw) <= min(smooth["y"]) and max(smooth["y"]) <= max(raw)
        assert smooth["y"][0] == pytest.approx(raw[0])  # bias-corrected: it starts where the curve does
        spread = lambda ys: max(ys[len(ys) // 2 :]) - min(ys[len(ys) // 2 :])  # noqa: E731
        assert spread(smooth["y"]) < spread(raw)  # smoother than the raw losses
        assert smooth["hover"].startswith(model["label"])  # the full label on hover
    assert "axis from" in accuracy["ytitle"]
    page.check("#split-toggles input[data-split=train]")
    until(page, "() => document.querySelector('#compare-accuracy').data.length === 6")
    legend_toggles(page, "#compare-loss")
    # one legend entry a model, which toggles its curves together
    entries = page.locator("#compare-loss .legend .traces")
    assert entries.count() == 2
    entries.nth(1).click()
    hidden = "() => document.querySelector('#compare-loss').data.map(t => t.visible === 'legendonly')"
    until(page, f"() => ({hidden})().join() === [false, false, false, true, true, true].join()")
    entries.nth(1).click()
    until(page, f"() => !({hidden})().some(Boolean)")
    # the confusion matrices, on one colour scale: the same count is the same shade in both
    assert page.locator("#matrices .heatmap").count() == 2
    assert matrices_share_a_scale(page)
    captions = page.locator("#matrices figcaption").all_inner_texts()
    assert [c.split()[0] for c in captions] == [f"#{job_id}", f"#{other['id']}"]
    assert not any("model " in c or "None" in c for c in captions)  # no "model 10: #10 ..."
    difference_coloured_by_verdict(page)
    assert "None" not in page.inner_text("main") and "[object Object]" not in page.inner_text("main")
    assert_chance_level(page, "#compare-loss")
    shot(page.locator("#compare-loss"), "07-compare-loss-chart")
    shot(page.locator("#compare-accuracy"), "07-compare-accuracy-chart")
    shot(page, "07-compare")
    keep(page, "dashboard-compare", DOCS)  # README's picture of a comparison

    # the job of the model with early stopping, and the jobs list, say so in words
    rendered(page, f"/#/jobs/{other['id']}")
    assert page.inner_text(".spec-table tr[data-field=early_stopping] td") == "patience=1, min_delta=0"
    # adam reads no momentum: "0.9" beside it read as a setting it used
    assert page.inner_text(".spec-table tr[data-field=momentum] td") == "– (unused by adam)"
    with service.client() as client:
        kept = client.get(f"/models/{other['id']}").json()
    # the job says which epoch its model kept, as its model's chart marks it (it said nothing of it)
    epochs = page.inner_text("table.facts tr:has(th:text-is('epochs')) td")
    whole = kept["best_epoch"] == kept["stopped_epoch"] == kept["epochs"]
    assert epochs == (
        str(kept["epochs"])
        if whole
        else f"kept epoch {kept['best_epoch']} of {kept['stopped_epoch']} trained"
        f" ({kept['epochs']} asked for{': early stopping ended it' if kept['stopped_epoch'] < kept['epochs'] else ''})"
    ), kept
    # both accuracy charts mark the epoch it kept, when early stopping kept an earlier one
    for where in (f"/#/jobs/{other['id']}", f"/#/models/{other['id']}"):
        rendered(page, where)
        page.wait_for_selector("#accuracy-chart .main-svg")
        marks = page.locator("#accuracy-chart").evaluate("el => el.layout.shapes.map((s) => s.x0)")
        assert marks == ([kept["best_epoch"]] if kept["best_epoch"] < kept["stopped_epoch"] else []), (
            where,
            kept,
        )
    rendered(page, f"/#/models/{job_id}")
    assert page.inner_text(".spec-table tr[data-field=early_stopping] td") == "off"
    rendered(page, "/")
    label = page.inner_text(f"tr[data-job='{other['id']}'] td.label > span")
    assert "early stopping patience=1, min_delta=0" in label and "[object Object]" not in label


def matrices_share_a_scale(page) -> bool:
    """Every confusion matrix of the compare page shades a cell by its count on one scale: the diagonal
    green from 0.15 to 0.75 at the largest right-answer count of all of them."""
    return page.evaluate(
        r"""() => {
      const grids = [...document.querySelectorAll('#matrices .heatmap')];
      const diag = grids.map(g => [...g.querySelectorAll('.cell')].filter(c => c.dataset.label === c.dataset.predicted));
      const top = Math.max(...diag.flat().map(c => Number(c.textContent)));
      const alpha = c => Number(getComputedStyle(c).backgroundColor.match(/[\d.]+(?=\))/)[0]);
      return diag.flat().every(c => Math.abs(alpha(c) - (0.15 + 0.6 * Number(c.textContent) / top)) < 0.01); }"""
    )


def difference_coloured_by_verdict(page) -> None:
    """The difference matrix is green where the best model does better (more on the diagonal, fewer
    off it) and red where it does worse, whatever the sign; its key says so."""
    cells = page.evaluate(
        """() => [...document.querySelectorAll('#difference-matrix tbody tr')].flatMap((tr, i) =>
          [...tr.querySelectorAll('td')].map((td, j) => ({i, j, v: Number(td.textContent), bg: getComputedStyle(td).backgroundColor})))"""
    )
    assert len(cells) == 100
    for c in cells:
        if c["v"] == 0:
            continue
        better = (c["v"] > 0) == (c["i"] == c["j"])
        colour = re.match(r"rgba?\((\d+), (\d+), (\d+)", c["bg"]).groups()
        assert colour == (("28", "124", "60") if better else ("179", "38", "30")), c
    key = page.inner_text("#difference-key")
    assert "does better" in key and "does worse" in key


def test_a_refused_spec_shows_the_problem_and_creates_nothing(page, service):
    with service.client() as client:
        before = client.get("/jobs").json()["count"]
    page.goto("/")
    open_new_job_form(page)
    fill_spec(page, {"hidden_layers": "4096,4096,4096"})  # valid per field, over the parameter budget
    page.click("#submit")
    page.wait_for_selector(".problem[role=alert]")
    assert "MLPLAB_MAX_PARAMETERS" in page.inner_text(".problem[role=alert]")
    with service.client() as client:
        assert client.get("/jobs").json()["count"] == before


def test_early_stopping_is_set_from_the_form_in_words(page, service):
    """An object field (early_stopping): typed as its labels show it, checked field by field, sent as JSON."""
    page.goto("/")
    open_new_job_form(page)
    assert page.get_attribute("#spec-early_stopping", "placeholder") == "off"
    assert "patience=" in page.inner_text("[data-field=early_stopping] .hint")
    for typed, says in [
        ("patience=0", "patience must be ≥ 1"),
        ("min_delta=0.1", "needs patience"),
        ("wait=3", "wait needs one of"),
        ("patience=2=3", "one value a setting"),
        ("2, 7", "patience is given twice"),
        ("patience=0x10", "patience must be a number"),
        ("=3", "a value needs one of"),
    ]:
        fill_spec(page, SMALL | {"early_stopping": typed})
        page.click("#submit")
        assert says in page.inner_text("[data-field=early_stopping] .err"), typed
    fill_spec(page, SMALL | {"epochs": "1", "early_stopping": "patience=2, min_delta=0.01"})
    page.click("#submit")
    job_id = int(page.wait_for_selector("#submit-note a").inner_text().split()[1])
    with service.client() as client:
        assert client.get(f"/jobs/{job_id}").json()["spec"]["early_stopping"] == {
            "patience": 2,
            "min_delta": 0.01,
        }


def test_a_sweep_from_the_grid_form_lists_its_jobs(page, service):
    page.goto("/")
    open_new_job_form(page)
    fill_spec(page, SMALL | {"epochs": "1", "train_limit": "500"})
    page.click("summary:has-text('Sweep a grid')")
    page.fill("#grid", '{"seed": [1, 2, 3]}')
    page.click("#sweep")
    page.wait_for_selector("#sweeps table")
    card = page.locator("#sweeps > div").first
    assert "3 jobs" in card.inner_text()
    # its whole id, as mlplab sweeps ID takes it (8 of its 12 characters were shown)
    with service.client() as client:
        sweep_id = client.get("/sweeps").json()["data"][0]["id"]
    assert len(sweep_id) == 12 and f"Sweep {sweep_id}" in card.inner_text()
    assert card.locator(".sweep-jobs tbody tr").count() == 3
    assert sorted(card.locator(".sweep-jobs tbody tr td:nth-child(2)").all_inner_texts()) == [
        "seed=1",
        "seed=2",
        "seed=3",
    ]
    shot(page, "08-sweep")


def test_a_replicated_sweep_shows_its_configurations_with_intervals(page, service):
    """Grouped over seeds as GET /sweeps/{id} groups them: best first, n, the interval as an error bar."""
    with service.client() as client:
        body = {"base": SMALL_JSON, "grid": {"l2": [0.001, 0.5]}, "replicates": 2}
        created = client.post("/sweeps", json=body)
        assert created.status_code == 202, created.text
        sweep_id = created.json()["id"]
        sweep = wait_for(
            lambda: (s := client.get(f"/sweeps/{sweep_id}").json())["status"]["succeeded"] == 4 and s,
            120,
            "the sweep's four jobs",
        )
    page.goto("/")
    table = page.locator(f"[data-sweep='{sweep_id}'] .sweep-configurations")
    table.wait_for()
    rows = table.locator("tbody tr")
    assert rows.count() == 2
    shown = [rows.nth(k).locator("td").all_inner_texts() for k in range(2)]
    for row, configuration in zip(shown, sweep["configurations"], strict=True):
        assert row[0] == f"l2={configuration['hyperparameters']['l2']}" and row[1] == "2"
    assert shown[0][5:7] == ["best", "–"] and shown[1][5].startswith(("can't tell (p ", "behind (p "))
    gap = sweep["configurations"][1]["gap_to_best"]
    points = [f"{abs(100 * x):.2f}" for x in (gap["difference"], gap["ci_low"], gap["ci_high"])]
    assert re.fullmatch(rf"[−+]{points[0]} \([−+]{points[1]} to [−+]{points[2]}\)", shown[1][6]), shown[1]
    assert rows.first.locator(".errorbar .range").count() == 1
    # the legend says what the test says: one uncorrected test, no "real difference" nor proven tie;
    # both configurations ran seeds 0 and 1, so it is paired
    legend = page.locator(f"[data-sweep='{sweep_id}'] .sweep-legend")
    caption = legend.inner_text()
    # a screen reader reads it with the table, as it did when it was the table's caption
    table = page.locator(f"[data-sweep='{sweep_id}'] table.sweep-configurations")
    assert table.get_attribute("aria-describedby") == legend.get_attribute("id")
    assert (
        "vs best, by a paired t-test against the best on the seeds both ran: can't tell (p ≥ 0.05)" in caption
    )
    assert "which with few seeds is no tie" in caption and "Gap: its accuracy minus the best's" in caption
    assert "ranked after for its failed runs. One configuration tested against the best: one test." in caption
    shot(page, "08-sweep-configurations")
    rendered(page, f"/#/sweeps/{sweep_id}")
    runner = sweep["configurations"][1]
    words = (
        "the seeds do not tell them apart" if runner["tied_with_best"] else "unlikely to be seed noise alone"
    )
    tested = f"a paired t-test on 2 seeds: {words} (p = "
    assert runner["p_value"] is None or tested in page.inner_text("#best-margin")
    if runner["tied_with_best"] and runner["gap_to_best"]["ci_low"] < 0:  # p >= 0.05 with 2 seeds: no tie
        assert "which is no tie: it lies " in page.inner_text("#best-margin")
    # l2 from 0.001 to 0.5: a log axis labelled at decades, not plotly's bare "2 3 4 ... 9" between them
    page.wait_for_selector("#sweep-by-l2.js-plotly-plot .scatterlayer .trace")
    xaxis = page.locator("#sweep-by-l2").evaluate("el => el.layout.xaxis")
    assert xaxis["type"] == "log" and xaxis["tickvals"] == [0.001, 0.01, 0.1, 1], xaxis
    # the sweep page's legend is read with its table too
    described = page.get_attribute("#configurations", "aria-describedby").split()
    assert "tied-note" in described and all(page.locator(f"#{i}").count() == 1 for i in described)


@pytest.fixture(scope="module")
def idle(tmp_path_factory):
    """A service of its own (its own SQLite file) without a worker: its jobs stay queued."""
    svc = start_service(tmp_path_factory.mktemp("idle"))
    with svc.client() as client:
        many = client.post("/sweeps", json={"base": SMALL_JSON, "grid": {"seed": list(range(55))}})
        few = client.post("/sweeps", json={"base": SMALL_JSON, "grid": {"l2": [0.001, 0.01]}})
        assert many.status_code == few.status_code == 202, (many.text, few.text)
        svc.sweeps = [many.json(), few.json()]
    yield svc
    svc.stop()


def test_presets_fill_the_folded_form(browser, idle):  # noqa: F811
    with watched_page(browser, idle.url) as w:
        page = w.page
        rendered(page, "/")
        assert not page.is_visible("#spec-backend")  # folded behind "New job"
        open_new_job_form(page)
        page.click("[data-preset='Best known']")
        values = {n: page.input_value(f"#spec-{n}") for n in ("backend", "activation", "init", "optimizer")}
        assert values == {"backend": "numpy", "activation": "relu", "init": "he", "optimizer": "adam"}
        assert page.input_value("#spec-learning_rate") == "0.002"
        assert page.input_value("#spec-lr_schedule") == "cosine"
        assert page.input_value("#spec-batch_size") == "128"
        assert page.input_value("#spec-epochs") == "15"
        page.click('[data-preset="The notebook\'s"]')
        values = {
            n: page.input_value(f"#spec-{n}") for n in ("activation", "init", "optimizer", "lr_schedule")
        }
        assert values == {
            "activation": "sigmoid",
            "init": "glorot",
            "optimizer": "sgd",
            "lr_schedule": "constant",
        }
        assert page.input_value("#spec-batch_size") == "64"  # back to the default
        assert page.input_value("#spec-learning_rate") == "0.1"
        page.select_option("#spec-optimizer", "adam")  # a learning rate at its default follows the optimizer
        assert page.input_value("#spec-learning_rate") == "0.001"
        page.fill("#spec-learning_rate", "0.02")
        page.select_option("#spec-optimizer", "sgd")  # one the user typed stays
        assert page.input_value("#spec-learning_rate") == "0.02"
        # a field's error line takes no room until there is an error to show
        assert page.locator("#spec-batch_size-err").bounding_box()["height"] == 0
        shot(page, "09-new-job-presets")
        w.assert_clean()


def test_jobs_list_labels_filters_order_and_pages(browser, idle):  # noqa: F811
    many, few = idle.sweeps
    with watched_page(browser, idle.url) as w:
        page = w.page
        rendered(page, "/")
        assert page.locator("table.jobs tbody tr").count() == 50
        assert page.inner_text("#jobs-range") == "1–50 of 57"
        # short labels: what differs from the spec's defaults, the full name on hover
        newest = page.locator("table.jobs tbody tr").first
        assert (
            newest.locator("td.label > span").inner_text()
            == "numpy · layers 64 · sigmoid · glorot · l2 0.01 · epochs 1 · n 500"
        )
        assert "l2=0.01" in newest.locator("td.label > span").get_attribute("title")
        assert newest.locator("[data-eta]").inner_text() == "–"  # queued: no pace to go by yet
        badges_clear_of_labels(page)

        # a job's page names what makes its network, defaults too (a sigmoid model's never said sigmoid)
        rendered(page, f"/#/jobs/{few['jobs'][0]['id']}")
        assert page.inner_text("p.subtitle").startswith(
            "numpy · layers 64 · sigmoid · glorot · sgd · lr 0.1 · "
        )
        rendered(page, "/")
        moved(page, lambda: page.click("#jobs-next"))
        assert page.inner_text("#jobs-range") == "51–57 of 57"
        assert page.locator("table.jobs tbody tr").count() == 7
        # a field its sweep varies is named at its default too: seed 0's row named no seed beside "seed 1"
        first, second = (
            page.inner_text(f"tr[data-job='{many['jobs'][n]['id']}'] td.label > span") for n in (0, 1)
        )
        assert "seed 0" in first and first.replace("seed 0", "seed 1") == second, (first, second)

        moved(page, lambda: page.select_option("#filter-sweep", few["id"]))
        assert page.inner_text("#jobs-range") == "1–2 of 2"  # the filter starts again from the first page
        moved(page, lambda: page.select_option("#sort", "id"))
        ids = [int(t) for t in page.locator("table.jobs td.id").all_inner_texts()]
        assert ids == sorted(ids) and len(ids) == 2

        # the API sorts the whole list: the oldest 50 of 57, not the newest 50 turned around
        rendered(page, "/#/?sort=id")
        ids = [int(t) for t in page.locator("table.jobs td.id").all_inner_texts()]
        assert ids == list(range(1, 51)) and page.inner_text("#jobs-range") == "1–50 of 57"
        moved(page, lambda: page.click("table.jobs th a.sort >> text=id"))  # the header again: descending
        assert page.locator("table.jobs td.id").first.inner_text() == "57"

        rendered(page, "/#/?status=failed")
        assert "No job matches" in page.inner_text("#jobs")
        rendered(page, f"/#/?status=queued&sweep={many['id']}")
        assert page.inner_text("#jobs-range") == "1–50 of 55"
        shot(page, "10-jobs-filtered")

        page.set_viewport_size(PHONE)
        rendered(page, "/")
        assert scroll_width(page) <= PHONE["width"]
        badges_clear_of_labels(page)
        shot(page, "10-jobs-phone")
        page.set_viewport_size(DESKTOP)
        w.assert_clean()


def badges_clear_of_labels(page) -> None:
    """Every status badge wholly visible: on top where it is drawn, and not overlapping its label."""
    overlaps = page.evaluate(
        """() => [...document.querySelectorAll('table.jobs tbody tr')].filter(tr => {
          const b = tr.querySelector('.status').getBoundingClientRect(), l = tr.querySelector('td.label > span').getBoundingClientRect();
          const hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
          const apart = b.right <= l.left || l.right <= b.left || b.bottom <= l.top || l.bottom <= b.top;
          const shown = b.top < 0 || b.bottom > innerHeight || hit === tr.querySelector('.status');
          return !(apart && shown); }).map(tr => tr.dataset.job)"""
    )
    assert overlaps == []


def test_every_page_fits_a_phone(browser, service):  # noqa: F811
    with service.client() as client:
        models = client.get("/models").json()["data"]
        sweeps = client.get("/sweeps").json()["data"]
        study = client.post("/studies", json=SMALL_STUDY)
        assert study.status_code == 202, study.text
        study_id = study.json()["id"]
        wait_for(lambda: client.get(f"/studies/{study_id}").json()["status"] == "finished", 120, "the study")
        trials = client.get(f"/studies/{study_id}").json()["trials"]
    by_rate = sorted(trials, key=lambda t: t["params"]["learning_rate"])
    assert [t["near_chance"] for t in by_rate] == [True, True, False, False]
    assert len(models) >= 2, "runs after the test that trains two models"
    assert sweeps, "runs after the test that submits a sweep"
    a, b = models[0]["id"], models[1]["id"]
    pages = {
        "datasets": f"/#/datasets?model={a}",
        "jobs": "/#/",
        "job": f"/#/jobs/{a}",
        "model": f"/#/models/{a}",
        "compare": f"/#/compare?ids={a},{b}",
        "disagreements": f"/#/compare/disagreements?a={a}&b={b}",
        "sweep": f"/#/sweeps/{sweeps[0]['id']}",
        "study": f"/#/studies/{study_id}",
    }
    with watched_page(browser, service.url, viewport=PHONE) as w:
        page = w.page
        rendered(page, "/#/datasets")
        assert page.locator("#images .thumb").count() == 48
        page.click("#next")
        page.wait_for_selector("text=48–95 of 10,000")
        for name, url in pages.items():
            rendered(page, url)
            if name == "study":  # the trial that learned nothing is marked, with the API's sentence
                marks = page.locator("#trials .chance-mark")
                assert marks.count() == 2 and "near chance level" in marks.first.get_attribute("title")
                shown = page.inner_text("#trials")
                assert "early_stopping=off" in shown and "early_stopping=(patience=1, min_delta=0)" in shown
                assert "[object Object]" not in page.inner_text("#view")
            if name == "jobs":
                open_new_job_form(page)
                assert page.evaluate(WORDS_WHOLE, "table.jobs td.label > span") == []
            if name == "compare":
                # the picker's labels wrap between words, and its accuracy column is on the screen
                assert page.evaluate(WORDS_WHOLE, ".picker td.label label") == []
                cells = page.locator(".picker tbody td.right:visible")
                # one accuracy a model: the one that ranks them
                assert cells.count() == page.locator(".picker tbody tr").count() >= 2
                assert all(
                    box["x"] + box["width"] <= PHONE["width"]
                    for box in (cells.nth(k).bounding_box() for k in range(cells.count()))
                )
                # the per-class note reads whole: as the table's caption it was the table's width, cut
                # mid-word in the table's scroller
                note = page.locator("#per-class-note").bounding_box()
                assert note is not None and note["x"] + note["width"] <= PHONE["width"], note
            # nothing wider than the screen: the page scrolls vertically only
            assert scroll_width(page) <= PHONE["width"], name
            for selector in (
                "#loss-chart",
                "#accuracy-chart",
                "#compare-loss",
                "#compare-accuracy",
                "#sweep-by-seed",
                "#study-by-learning_rate",
                "#study-history",
            ):
                if page.locator(selector).count():
                    assert chart(page, selector)["labels_inside"], (name, selector)
            shot(page, f"11-phone-{name}")
        page.set_viewport_size(DESKTOP)  # a model that learned nothing, marked beside its test accuracy
        rendered(page, f"/#/compare?ids={a},{by_rate[0]['job_id']}")
        assert page.locator("#hyperparameters .chance-mark").count() == 1
        # per class, the model with the better F1 is marked, not one that calls most images that class
        with service.client() as client:
            f1s = [
                [
                    s["f1"] or 0
                    for s in client.get(f"/models/{m}/confusion-matrix?split=test").json()["per_class"]
                ]
                for m in (a, by_rate[0]["job_id"])
            ]
        marked = page.locator("#per-class-table tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => td.classList.contains('best')))"
        )
        best = [max(f1s[0][k], f1s[1][k]) for k in range(10)]
        assert marked == [[f[k] == best[k] > 0 for f in f1s] for k in range(10)], (marked, f1s)
        w.assert_clean()


def test_a_model_page_by_alias_shows_its_aliases_provenance_and_onnx(page, service):
    with service.client() as client:
        models = client.get("/models").json()["data"]
        assert len(models) >= 2, "runs after the test that trains two models"
        a, b = models[0]["id"], models[1]["id"]
        assert client.put("/aliases/champion", json={"model_id": a}).status_code in (200, 201)
        rendered(page, "/#/models/champion")
        assert page.locator("h1").inner_text().startswith(f"Model {a}")
        assert page.locator("h1 [data-alias=champion]").get_attribute("href") == "#/models/champion"
        assert page.locator("#download-onnx").get_attribute("href") == f"/models/{a}/model.onnx"
        sha = client.get(f"/jobs/{a}").json()["provenance"]["dataset_sha256"]
        assert page.locator("#provenance tr", has_text="dataset sha256").inner_text().endswith(sha)
        assert page.locator("#provenance tr", has_text="threads changed").count() == 0  # none: no empty row
        shot(page, "12-model-by-alias")
        client.put("/aliases/champion", json={"model_id": b})  # moved: the same address shows b
        rendered(page, "/#/datasets")
        rendered(page, "/#/models/champion")
        assert page.locator("h1").inner_text().startswith(f"Model {b}")
        rendered(page, "/#/compare")
        assert page.locator(f"label[for=pick-{b}]").inner_text().endswith("(champion)")
        rendered(page, "/#/models/nobody")
        assert "There is no alias nobody." in page.locator(".problem").inner_text()
        client.delete("/aliases/champion")


def test_a_model_pages_mistakes_say_they_are_loading_until_they_come(page, service):
    """The mistakes panels stayed empty while their images' outcomes were computed (a second, cold)."""
    with service.client() as client:
        model = client.get("/models").json()["data"][0]["id"]
    held = []
    page.route(
        re.compile(rf"/models/{model}/predictions/test\?.*correct=false"), lambda route: held.append(route)
    )
    page.goto(f"/#/models/{model}")
    page.wait_for_selector("#surest [data-loading]")
    assert page.inner_text("#surest") == page.inner_text("#mistakes") == "Loading the test split's mistakes…"
    wait_for(lambda: held, 10, "the surest mistakes asked for")
    for route in held:
        route.continue_()
    page.wait_for_selector("[data-surest] .thumb")
    assert page.locator("#surest [data-loading]").count() == 0


def test_the_datasets_page_shows_a_models_mistakes_alone_and_its_validation_images(page, service):
    """A teacher's review: the images page had no validation split to browse, and no way to see only
    what a model gets wrong but a confusion-matrix cell at a time."""
    with service.client() as client:
        model = next(m for m in client.get("/models").json()["data"] if m["validation_size"])
        wrong = client.get(
            f"/models/{model['id']}/predictions/test",
            params={"correct": "false", "images": "all", "limit": 48},
        ).json()
    rendered(page, f"/#/datasets?model={model['id']}")
    page.check("#ds-wrong")
    page.wait_for_url("**wrong=1**")
    rendered(page)
    thumbs = page.locator("#images .thumb")
    assert (
        thumbs.count() == len(wrong["data"])
        and page.locator("#images .thumb.wrong").count() == thumbs.count()
    )
    assert page.inner_text("#range").endswith(f"of {wrong['count']:,} mistakes of test")
    # past the end (an offset typed in the address): what there is, and Previous to the last page
    rendered(page, f"/#/datasets?model={model['id']}&wrong=1&offset=99999")
    assert page.inner_text("#range") == f"none from 99,999: there are {wrong['count']:,} mistakes of test"
    page.click("#prev")
    page.wait_for_url(f"**offset={(wrong['count'] - 1) // 48 * 48}**")
    rendered(page)
    assert page.locator("#images .thumb").count() == (wrong["count"] - 1) % 48 + 1
    page.uncheck("#ds-wrong")
    page.wait_for_url(lambda url: "wrong=1" not in url)
    page.select_option("#ds-split", "validation")
    page.wait_for_url("**split=validation**")
    rendered(page)
    assert page.inner_text("#range").endswith(f"of {model['validation_size']:,} images of validation")
    assert "/mnist/train/" in page.locator("#images .thumb img").first.get_attribute("src")
    rendered(page, "/#/datasets?split=validation")  # no model: which images is a model's question
    assert "choose one" in page.inner_text("#ds-problem")


def test_a_model_near_chance_is_flagged_on_its_pages(page, service):
    """A model that learned next to nothing (zero weights, a learning rate that barely moves them)
    succeeds, and the dashboard says so: on its page, its job's page, and beside it in the jobs list."""
    body = SMALL_JSON | {"init": "zeros", "learning_rate": 1e-6, "validation_size": 1000}
    with service.client() as client:
        job = client.post("/jobs", json=body).json()
        done = service.wait_job(client, job["id"])
    assert done["status"] == "succeeded" and done["near_chance"], done
    rendered(page, f"/#/models/{job['id']}")
    warning = page.locator(".warning[data-near-chance=true]")
    assert warning.count() == 1 and "near chance level" in warning.inner_text()
    assert done["warning"] in warning.inner_text()
    rendered(page, f"/#/jobs/{job['id']}")
    assert page.locator(".warning[data-near-chance=true]").count() == 1
    rendered(page, "/")
    mark = page.locator(f"tr[data-job='{job['id']}'] .chance-mark")
    assert mark.count() >= 1 and mark.first.get_attribute("title") == done["warning"]
    shot(page.locator(f"tr[data-job='{job['id']}']"), "13-near-chance-in-the-list")


def test_a_sweep_page_marks_the_configuration_whose_run_learned_nothing(page, service):
    """A setting whose run stayed at chance read "behind (p = ...)" beside its gap as if measured."""
    body = {"base": SMALL_JSON | {"validation_size": 1000}, "grid": {"learning_rate": [0.1, 1e-6]}}
    with service.client() as client:
        sweep = client.post("/sweeps", json=body).json()
        done = {job["id"]: service.wait_job(client, job["id"]) for job in sweep["jobs"]}
        configurations = client.get(f"/sweeps/{sweep['id']}").json()["configurations"]
    stuck = [c["jobs"][0] for c in configurations if done[c["jobs"][0]]["near_chance"]]
    assert len(stuck) == 1 and done[stuck[0]]["spec"]["learning_rate"] == 1e-6
    rendered(page, f"/#/sweeps/{sweep['id']}")
    rows = page.locator("#configurations tbody tr")
    marked = [rows.nth(k).locator(".chance-mark").count() for k in range(2)]
    assert marked == [int(stuck[0] in c["jobs"]) for c in configurations]
    mark = page.locator("#configurations .chance-mark")
    assert mark.get_attribute("title") == done[stuck[0]]["warning"]


def test_addresses_past_the_list_or_of_a_long_id_say_what_is_not_there(browser, idle):  # noqa: F811
    """An offset past the last job, and an id longer than 15 digits: what the API says, never "1,000,000–999,999"
    nor "No page is called"."""
    with idle.client() as client:
        count = client.get("/jobs").json()["count"]
    with watched_page(browser, idle.url) as w:
        page = w.page
        rendered(page, "/#/?offset=999999")
        assert page.inner_text("#jobs-range") == "" and page.locator("table.jobs").count() == 0
        assert page.inner_text("#jobs-past-end") == f"No jobs on this page: there are {count}. The first page"
        moved(page, lambda: page.click("#jobs-prev"))  # "Newer": the last page that has jobs
        assert page.inner_text("#jobs-range") == f"51–{count} of {count}"
        rendered(page, "/#/?offset=999999")
        moved(page, lambda: page.click("#jobs-past-end a"))
        assert page.inner_text("#jobs-range") == f"1–50 of {count}"
        long_id = "99999999999999999999"
        for path in ("jobs", "models", "studies"):  # past any id the database holds: the API's 422 naming it
            rendered(page, f"/#/{path}/{long_id}")
            problem = page.inner_text("#view .problem")
            assert "(422)" in problem and re.search(r"2,?147,?483,?647", problem), problem
            assert "No page is called" not in page.inner_text("#view")
        w.assert_clean()


def test_models_level_on_validation_accuracy_are_called_tied_not_ranked(page, service):
    """Two runs of one spec and seed (NumPy trains them bit-identically) have the same accuracies: the
    compare page says they are tied, crowning neither with a star or "is best"."""
    body = SMALL_JSON | {"validation_size": 1000}
    with service.client() as client:
        twins = [service.wait_job(client, client.post("/jobs", json=body).json()["id"]) for _ in range(2)]
    assert [t["status"] for t in twins] == ["succeeded"] * 2
    assert twins[0]["validation_accuracy"] == twins[1]["validation_accuracy"], twins
    a, b = (t["id"] for t in twins)
    rendered(page, f"/#/compare?ids={a},{b}")
    line = page.inner_text("#best-line")
    figure = f"{100 * twins[0]['validation_accuracy']:.2f}\u00a0%"
    assert line == f"Tied on validation accuracy: model {b} and model {a}, both at {figure}: neither is best."
    assert "points ahead" not in page.inner_text("#compare-best")
    assert "★" not in page.inner_text("#view")
    assert not any("★" in n for n in chart(page, "#compare-accuracy")["names"])
    shot(page.locator("#compare-best"), "14-compare-tied")


def test_models_ranked_on_two_splits_are_given_no_gap(page, service):
    """One model with a validation split, one without: the first ranks on validation, the other after it
    on test, and the compare page subtracts neither from the other ("-3.54 points ahead")."""
    with service.client() as client:
        ids = [
            client.post("/jobs", json=SMALL_JSON | {"validation_size": size}).json()["id"]
            for size in (1000, 0)
        ]
        for job in ids:
            wait_for(
                lambda job=job: client.get(f"/jobs/{job}").json()["status"] == "succeeded", 120, "the job"
            )
    rendered(page, f"/#/compare?ids={ids[0]},{ids[1]}")
    page.wait_for_selector("#best-gap")
    gap = page.inner_text("#best-gap")
    assert gap.startswith("Ranked on different splits") and "points ahead" not in gap


def test_a_model_validated_on_a_few_images_says_what_its_rank_is_worth(page, service):
    with service.client() as client:
        few = client.post("/jobs", json=SMALL_JSON | {"validation_size": 50}).json()["id"]
        enough = client.post("/jobs", json=SMALL_JSON | {"validation_size": 1000}).json()["id"]
        for job in (few, enough):
            assert service.wait_job(client, job)["status"] == "succeeded"
    rendered(page, f"/#/models/{few}")
    note = page.wait_for_selector("#validation-note").inner_text()
    assert note.startswith("Its rank: validated on 50 images: one image is 2 points"), note
    rendered(page, f"/#/models/{enough}")
    page.wait_for_selector("#model-epochs")
    assert page.locator("#validation-note").count() == 0
    # and the compare page's picker, which orders models by validation accuracy, marks its figure
    rendered(page, "/#/compare")
    mark = page.wait_for_selector(f"tr[data-model='{few}'] .validation-mark")
    assert mark.get_attribute("title").startswith("validated on 50 images")
    assert page.locator(f"tr[data-model='{enough}'] .validation-mark").count() == 0


def test_the_compare_pages_lead_is_weighed_on_the_test_images_which_chose_nothing(page, service):
    """Two seeds of one configuration, and a third model that held out twice the images: the gap is
    weighed image by image on the test images, and a lead chance explains is not called best. On the
    validation images, which pick each model's epoch and a sweep's best seed, a seed picked as the best
    of three was "unlikely if equally accurate" (p = 2e-9) against its sibling."""
    with service.client() as client:
        ids = [
            client.post("/jobs", json=SMALL_JSON | {"seed": seed, "validation_size": size}).json()["id"]
            for seed, size in ((11, 1000), (12, 1000), (13, 2000))
        ]
        for job in ids:
            assert service.wait_job(client, job)["status"] == "succeeded"
        for pair in ((ids[0], ids[1]), (ids[0], ids[2])):
            rendered(page, f"/#/compare?ids={pair[0]},{pair[1]}")
            page.wait_for_selector("#best-evidence:not(:empty)")
            best = int(page.inner_text("#best-line").split()[2])
            other = pair[1] if best == pair[0] else pair[0]
            d = client.get("/compare/disagreements", params={"a": best, "b": other, "split": "test"}).json()
            evidence = page.inner_text("#best-evidence")
            assert evidence.startswith(
                f"Of the {d['images']:,} test images (which, unlike the validation images, chose neither"
            )
            assert (
                f"{d['a_right_b_wrong']:,} go to #{best} alone and {d['b_right_a_wrong']:,} to #{other} alone"
                in evidence
            )
            leads = d["beyond_chance"] and d["a_right_b_wrong"] > d["b_right_a_wrong"]
            assert ("unlikely if the two models were equally accurate" in evidence) == leads
            # of these two models, not of their settings (it said "seeds alone move a model this much")
            assert "McNemar weighs these two trained models, not the settings behind them" in evidence
            verb = page.inner_text("#best-verb")
            trails = d["beyond_chance"] and not leads
            assert verb == (
                "is best"
                if leads
                else f"ranks first on validation, but #{other} does better on the test images,"
                if trails
                else "ranks first, without a clear lead,"
            )
            assert d["images"] == 10_000
            link = page.locator("#image-by-image").get_attribute("href")
            assert link == f"#/compare/disagreements?a={best}&b={other}"


def test_two_models_disagreements_page_marks_each_image_by_which_model_was_right(page, service):
    """A teacher's review: two models' disagreements were a JSON answer and a PNG, whose count of the
    images they disagree on holds images both get wrong alike; no page showed who was right where."""
    with service.client() as client:
        a, b = (m["id"] for m in client.get("/models").json()["data"][:2])
        d = client.get("/compare/disagreements", params={"a": a, "b": b, "limit": 100}).json()
    rendered(page, f"/#/compare/disagreements?a={a}&b={b}")
    outcomes = {
        key: int(page.inner_text(f"#dis-outcomes #{key}").replace(",", ""))
        for key in ("a-right", "b-right", "both-right", "both-wrong")
    }
    assert outcomes == {
        "a-right": d["a_right_b_wrong"],
        "b-right": d["b_right_a_wrong"],
        "both-right": d["both_right"],
        "both-wrong": d["both_wrong"],
    }
    alike = d["both_wrong"] - (d["count"] - d["a_right_b_wrong"] - d["b_right_a_wrong"])  # count: unfiltered
    assert d["both_wrong_alike"] == alike
    assert f"{alike:,} alike, the rest with two different answers" in page.inner_text("#dis-outcomes + p")
    # each image marked by who was right, in the API's order
    thumbs = page.locator("#dis-images .thumb")
    marks = thumbs.evaluate_all("ts => ts.map(t => [Number(t.dataset.index), t.classList[1]])")
    expected = [
        [
            x["index"],
            "a-right" if x["a"] == x["label"] else "b-right" if x["b"] == x["label"] else "both-wrong",
        ]
        for x in d["data"]
    ]
    assert marks == expected and len(marks) == min(d["count"], 100)
    bars = page.locator("#dis-per-class").evaluate("el => el.data[0].y")
    assert bars == pytest.approx([100 * c["difference"] for c in d["per_class"]])
    # one kind of image at a time, as the API's only= filters them
    page.select_option("#dis-only", "b_right")
    page.wait_for_url("**only=b_right")
    rendered(page)
    kinds = page.locator("#dis-images .thumb").evaluate_all("ts => ts.map(t => t.classList[1])")
    assert set(kinds) <= {"b-right"} and len(kinds) == min(d["b_right_a_wrong"], 100)
    # the counts are the split's whatever the filter (the alike count was worked from the filtered one)
    assert f"{alike:,} alike, the rest" in page.inner_text("#dis-outcomes + p")
    page.wait_for_function("() => [...document.querySelectorAll('#dis-images img')].every(i => i.complete)")
    broken = page.locator("#dis-images img").evaluate_all(
        "imgs => imgs.filter(i => !i.naturalWidth).map(i => i.src)"
    )
    assert not broken, broken
    shot(page, "12-disagreements")
    # what the API refuses is its problem, shown on the page
    rendered(page, f"/#/compare/disagreements?a={a}&b={a}")
    assert "compare two different models" in page.inner_text("#dis-problem .problem")


def test_a_configuration_whose_runs_all_failed_stays_on_every_view_of_its_sweep(page, service):
    """A newcomer's relu with init random diverged on both seeds and vanished: the jobs page's table left
    it out, the sweep page's charts dropped it unmarked. And a running sweep named its best without
    saying the ranking was of the jobs ended so far (the last to end was the best)."""
    base = SMALL_JSON | {"hidden_layers": [500, 250, 100], "activation": "relu", "learning_rate": 1.0}
    body = {"base": base | {"validation_size": 1000}, "grid": {"init": ["he", "random"]}, "replicates": 2}
    with service.client() as client:
        sweep = client.post("/sweeps", json=body).json()
        ended = [service.wait_job(client, job["id"])["status"] for job in sweep["jobs"]]
        served = client.get(f"/sweeps/{sweep['id']}").json()
    assert sorted(ended) == ["failed", "failed", "succeeded", "succeeded"], ended  # random's diverge
    rendered(page, f"/#/sweeps/{sweep['id']}")
    notes = page.locator("[data-failed-note]")
    assert notes.count() == 2  # under the init chart and the parallel coordinates
    # and why, where the error says: "none: 2 failed" told a student nothing of the learning rate
    assert [(c["failed"], c["diverged"]) for c in served["configurations"]] == [(0, 0), (2, 2)]
    assert notes.first.inner_text() == "Not drawn, no run succeeded: init=random (2 diverged)."
    assert page.locator("#best-so-far").count() == 0
    rendered(page, f"/#/?sweep={sweep['id']}")
    row = page.locator("table.sweep-configurations tbody tr[data-failed='2']")
    assert row.locator("td").nth(2).inner_text() == "none: 2 diverged"
    # the same sweep with a job still running, as the API would send it: its best is so far
    running = served | {"status": served["status"] | {"succeeded": 1, "running": 1}}
    running["jobs"] = [
        j | {"status": "running"} if j["status"] == "succeeded" and k == 0 else j
        for k, j in enumerate(served["jobs"])
    ]
    page.route(f"**/sweeps/{sweep['id']}", lambda route: route.fulfill(json=running))
    rendered(page, f"/#/sweeps/{sweep['id']}")
    assert (
        page.inner_text("#best-so-far") == "So far: 1 job of 4 still to end, which may change this ranking."
    )
    # a failed job's model: the API's 409, and the way to the job, where its error is
    failed = next(j["id"] for j in served["jobs"] if j["status"] == "failed")
    # its job's page: diverged in its first epoch, no accuracy to draw (an empty chart, epochs -1 to 6)
    with service.client() as client:
        assert client.get(f"/jobs/{failed}/epochs").json() == []
    rendered(page, f"/#/jobs/{failed}")
    assert (
        page.inner_text("#no-epoch") == "No epoch ended before the job failed: there is no accuracy to draw."
    )
    assert page.locator("#accuracy-chart").count() == 0 and page.locator("#job-error").count() == 1
    rendered(page, f"/#/models/{failed}")
    assert "(409)" in page.inner_text("#view .problem")
    assert page.locator("#its-job").get_attribute("href") == f"#/jobs/{failed}"


def test_a_sweep_whose_configurations_tie_names_none_best(page, service):
    """A batch as large as the 500 training images or larger takes all of them at once: two configurations
    level to the last image, of which the page named one best, "0.00 points ahead of the next"."""
    body = {"base": SMALL_JSON | {"validation_size": 1000}, "grid": {"batch_size": [500, 1000]}}
    with service.client() as client:
        sweep = client.post("/sweeps", json=body).json()
        for job in sweep["jobs"]:
            assert service.wait_job(client, job["id"])["status"] == "succeeded"
        first, second = client.get(f"/sweeps/{sweep['id']}").json()["configurations"]
    assert first["validation_accuracy"]["mean"] == second["validation_accuracy"]["mean"]
    rendered(page, f"/#/sweeps/{sweep['id']}")
    assert page.inner_text("#best-config").startswith("Tied, 2 configurations level: ")
    assert page.inner_text("#best-margin").endswith("no configuration is best")
    assert "points ahead" not in page.inner_text("#sweep-best")
    assert page.locator("#configurations tr.best").count() == 0
    assert page.locator("#configurations tbody tr").first.locator("td").nth(6).inner_text() == "level"


def test_a_job_page_opened_while_queued_shows_it_running_as_it_trains(browser, tmp_path):  # noqa: F811
    svc = start_service(tmp_path)
    try:
        with svc.client() as client:
            job = client.post("/jobs", json=SMALL_JSON | {"train_limit": 20_000, "epochs": 8}).json()["id"]
        with watched_page(browser, svc.url) as w:
            rendered(w.page, f"/#/jobs/{job}")
            started = "table.facts tr:has(th:text-is('started')) td"
            assert w.page.inner_text("h1 [data-status]") == "queued" and w.page.inner_text(started) == "–"
            # each epoch's mean loss drawn as the epoch ends, styled as the reloaded page draws them: seen
            # from inside the page every 10 ms (a poll from the test missed the run on a loaded machine)
            w.page.evaluate(
                """() => { window.liveMeans = false; window.seen = []; setInterval(() => {
                  const status = document.querySelector('h1 [data-status]')?.textContent;
                  const epochs = document.querySelector('#accuracy-chart')?.data?.[0]?.x.length ?? 0;
                  const trace = document.querySelector('#loss-chart')?.data?.[1];
                  const shown = JSON.stringify([status, epochs, trace?.x, trace?.mode, trace?.showlegend]);
                  if (window.seen.at(-1) !== shown) window.seen.push(shown);  // for a failure's message
                  if (status !== 'running') return;
                  const drawn = trace?.mode === 'markers' && trace?.showlegend !== false;
                  if (epochs >= 1 && trace?.x.length === epochs && drawn) window.liveMeans = true;
                }, 10); }"""
            )
            svc.start_worker()
            # the heading said "queued" and the facts stood still until the job's end reloaded the page
            w.page.wait_for_selector("h1 [data-status]:text-is('running')", timeout=60_000)
            wait_for(lambda: w.page.inner_text(started) != "–", 30, "its start shown")
            assert w.page.locator("table.facts th:text-is('ETA')").count() == 1
            w.page.wait_for_selector("h1 [data-status]:text-is('succeeded')", timeout=120_000)
            assert w.page.evaluate("window.liveMeans") is True, w.page.evaluate("window.seen")
            w.assert_clean()
    finally:
        svc.stop()


def test_an_epoch_that_ends_before_the_page_knows_its_step_count_is_drawn_once_it_does(browser, tmp_path):  # noqa: F811
    """An epoch's event read before any progress that gives the job's step count: its mean was never drawn
    (the stream is played here, in that order, to the page of a queued job)."""
    svc = start_service(tmp_path)
    try:
        with svc.client() as client:
            job = client.post("/jobs", json=SMALL_JSON | {"epochs": 3}).json()["id"]
        point = {"epoch": 1, "loss": 0.8, "train_accuracy": 0.7, "test_accuracy": 0.69, "seconds": 0.5}
        events = [
            ("status", {"status": "running", "attempts": 1}),
            ("epoch", point | {"validation_loss": 0.9, "validation_accuracy": 0.68, "sampled": True}),
            ("progress", {"epoch": 2, "step": 12, "steps": 30, "loss": 0.6}),
        ]
        body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
        with watched_page(browser, svc.url) as w:
            w.page.route(
                f"**/jobs/{job}/events*",
                lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body),
            )
            rendered(w.page, f"/#/jobs/{job}")
            # 30 steps over 3 epochs: the first ends at step 10
            w.page.wait_for_function(
                "() => document.querySelector('#loss-chart')?.data?.[1]?.x.join() === '10'", timeout=10_000
            )
            assert w.page.evaluate("document.querySelector('#accuracy-chart').data[0].x") == [1]
            # its validation loss beside it, at the same step
            validation = w.page.evaluate(
                "(({x, y}) => ({x, y}))(document.querySelector('#loss-chart').data[2])"
            )
            assert validation == {"x": [10], "y": [0.9]}, validation
    finally:
        svc.stop()


def test_the_datasets_page_draws_no_predictions_of_a_model_of_another_dataset(browser, idle):  # noqa: F811
    """A model of Fashion-MNIST chosen over MNIST's images (by address): its predictions are of its own
    dataset's images, and were drawn over these, marked right or wrong. The model is the API's answer,
    played here, as no Fashion-MNIST is at hand."""
    fashion = {"id": 999, "name": "fashion", "dataset": "fashion-mnist"}
    guesses = {"data": [{"index": i, "label": 0, "predicted": 3, "probability": 0.9} for i in range(48)]}
    with watched_page(browser, idle.url) as w:
        w.page.route("**/models/999", lambda route: route.fulfill(json=fashion))
        w.page.route(re.compile(r"/models/999/predictions/test\?"), lambda route: route.fulfill(json=guesses))
        rendered(w.page, "/#/datasets?name=mnist&model=999")
        assert w.page.locator("#images .thumb").count() == 48
        assert "→" not in w.page.inner_text("#images") and w.page.locator("#images .wrong").count() == 0
        problem = w.page.locator("#ds-problem .problem")
        assert problem.inner_text().startswith("Model 999 was trained on fashion-mnist, not mnist")
        assert problem.locator("a").get_attribute("href") == "#/datasets?name=fashion-mnist&model=999"
        w.assert_clean()


def test_the_datasets_page_captions_each_image_with_its_own_prediction_and_use(browser, idle):  # noqa: F811
    """Train image 9 (the first validation image) was captioned with image 10's prediction: the page paired
    its images with the predictions of the images the model trained on, by position. The model and its
    predictions of every image (images=all) are the API's answers, played here."""
    model = {"id": 998, "name": "mnist", "dataset": "mnist"}
    uses = {9: "validation", 47: "unused"}
    rows = [
        {"index": i, "label": 0, "predicted": i % 10, "probability": 0.9, "use": uses.get(i, "trained")}
        for i in reversed(range(48))
    ]
    with watched_page(browser, idle.url) as w:
        w.page.route("**/models/998", lambda route: route.fulfill(json=model))
        w.page.route(
            re.compile(r"/models/998/predictions/train\?.*images=all"),
            lambda route: route.fulfill(json={"data": rows, "count": 60000}),
        )
        rendered(w.page, "/#/datasets?name=mnist&split=train&model=998")
        captions = w.page.locator("#images .thumb").all_inner_texts()
        labels = httpx.get(f"{idle.url}/datasets/mnist/train", params={"limit": 48}).json()["data"]
        for caption, image in zip(captions, labels, strict=True):
            i = image["index"]
            assert caption.split()[:4] == [f"#{i}:", str(image["label"]), "→", str(i % 10)], caption
        assert captions[9].endswith("(held out)") and captions[47].endswith("(not used)"), captions
        assert not captions[8].endswith(")"), captions
        w.assert_clean()


def test_a_job_page_that_loses_its_event_stream_follows_again(browser, idle):  # noqa: F811
    job = idle.sweeps[1]["jobs"][0]["id"]
    with watched_page(browser, idle.url) as w:
        opened = []

        def second_stream(request) -> bool:
            if request.url.endswith(f"/jobs/{job}/events"):
                opened.append(request.url)
            return len(opened) == 2

        # the first stream fails as if the API had restarted; it had closed for good, progress frozen
        w.page.route(f"**/jobs/{job}/events", lambda route: route.abort(), times=1)
        with w.page.expect_request(second_stream, timeout=15_000):
            rendered(w.page, f"/#/jobs/{job}")
        w.page.wait_for_selector("#view[aria-busy=false]")
        assert w.page.inner_text("h1 [data-status]") == "queued"
        w.assert_clean()


def test_a_sweeps_progress_names_its_cancelled_jobs(browser, idle):  # noqa: F811
    with idle.client() as client:
        created = client.post("/sweeps", json={"base": SMALL_JSON, "grid": {"l2": [0.1, 0.2, 0.3]}})
        assert created.status_code == 202, created.text
        for job in created.json()["jobs"][:2]:
            assert client.post(f"/jobs/{job['id']}/cancel").status_code == 200
    with watched_page(browser, idle.url) as w:
        rendered(w.page, f"/#/sweeps/{created.json()['id']}")
        assert w.page.inner_text("#sweep-counts").startswith(
            "2 of 3 done · 0 running · 1 queued · 2 cancelled"
        )
        w.page.click("#cancel-sweep")  # its last queued job
        # the note says so until the page's next refresh (every 3 s), which may come first on a busy machine
        w.page.wait_for_selector(
            "#sweep-cancel-note:has-text('1 queued job cancelled, 0 running asked to stop.'), "
            "#sweep-counts:has-text('3 cancelled')"
        )
        rendered(w.page)  # the page's refresh: every job has ended, so no button
        w.page.wait_for_selector("#sweep-counts:has-text('3 of 3 done · 0 running · 0 queued · 3 cancelled')")
        assert w.page.locator("#cancel-sweep").count() == 0
        w.assert_clean()
