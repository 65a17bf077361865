"""What the API keeps of a trained model: loaded once at a time however many ask at once, figures drawn
once, and a figure's cost bounded by what it shows rather than by the split's size."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest

from service import plots
from service.api import inference
from service.main import create_app
from service.ml import weights
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker
from tests.factories import finished_jobs
from tests.support import real_data_dir


@pytest.fixture
def app(tmp_path):
    """An app over a database holding two trained models (ids 1 and 2) and a failed job (4)."""
    url = f"sqlite:///{tmp_path / 'api.db'}"
    app = create_app(Settings(database_url=url, data_dir=real_data_dir(), download=False))
    engine = make_engine(url)
    from service.store.db import migrate

    migrate(engine)
    history = finished_jobs(make_sessionmaker(engine), 4)
    engine.dispose()
    assert history.models == [1, 2, 3]
    return app


def _at_once(app, paths: list[str]) -> list[httpx.Response]:
    """Every path requested concurrently, by one client on the app's own event loop."""

    async def main() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                return await asyncio.gather(*(client.get(path) for path in paths))

    return asyncio.run(main())


class Counted:
    """Wraps a function: how often it was called, and with how many images in all."""

    def __init__(self, fn, pause: float = 0.0):
        self.fn, self.pause, self.calls, self.images = fn, pause, 0, 0
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.calls += 1
            if len(args) > 1 and isinstance(args[1], np.ndarray):
                self.images += len(args[1])
        time.sleep(self.pause)  # widen the window in which twenty requests find nothing loaded
        return self.fn(*args, **kwargs)


def test_twenty_first_requests_load_the_model_once(app, monkeypatch):
    loads = Counted(inference.load_weights, pause=0.2)
    monkeypatch.setattr(inference, "load_weights", loads)
    responses = _at_once(app, ["/models/1/predictions/test/7"] * 20 + ["/models/2/predictions/test/7"] * 5)
    assert [r.status_code for r in responses] == [200] * 25
    assert len({r.content for r in responses[:20]}) == 1
    assert loads.calls == 2  # one per model


def test_a_failed_load_fails_every_waiter_and_is_not_kept(app, monkeypatch):
    loads = Counted(inference.load_weights, pause=0.1)
    monkeypatch.setattr(inference, "load_weights", loads)
    responses = _at_once(app, ["/models/4/predictions/test/0"] * 10 + ["/models/99/predictions/test/0"] * 10)
    assert [r.status_code for r in responses] == [409] * 10 + [404] * 10
    assert loads.calls == 0  # the problems come from the lookup, before any weights are read
    again = _at_once(app, ["/models/99/predictions/test/0"])
    assert again[0].status_code == 404  # asked again, answered again: a failure is not cached


def test_a_figure_is_drawn_once(app, monkeypatch):
    drawn = Counted(plots.mistakes_png)
    monkeypatch.setattr(plots, "mistakes_png", drawn)
    responses = _at_once(app, ["/models/1/mistakes.png?limit=12"] * 10)
    assert {r.status_code for r in responses} == {200} and len({r.content for r in responses}) == 1
    assert responses[0].headers["content-type"] == "image/png"
    assert drawn.calls == 1


def test_mistakes_of_the_train_split_stop_at_the_limit(app, monkeypatch):
    predicted = Counted(weights.predict_proba)
    monkeypatch.setattr(weights, "predict_proba", predicted)
    (figure,) = _at_once(app, ["/models/1/mistakes.png?split=train&limit=5"])
    assert figure.status_code == 200
    # Random weights get most images wrong: the first chunk holds five mistakes, and that is all it reads.
    assert predicted.images == inference.CHUNK < 60_000


def test_mistakes_use_the_splits_predictions_once_known(app, monkeypatch):
    predicted = Counted(weights.predict_proba)
    monkeypatch.setattr(weights, "predict_proba", predicted)
    outcomes, first, second = _at_once(
        app,
        [
            "/models/1/predictions/test?label=3",  # the whole split's predictions, computed once
            "/models/1/mistakes.png?limit=7",
            "/models/1/mistakes.png?limit=9",
        ],
    )
    assert outcomes.status_code == first.status_code == second.status_code == 200
    assert predicted.images <= 10_000 + 2 * inference.CHUNK  # not a split's worth per figure


def test_a_started_api_decodes_what_its_models_need_before_anyone_asks(app, tmp_path):
    """The first predictions after a start do not all wait for the dataset and its input profile."""
    from fastapi.testclient import TestClient

    with TestClient(app):  # started: nothing asked yet
        warm = app.state.inference
        assert warm.profiles.peek("mnist") is not None and warm.datasets.peek("mnist") is not None
        assert warm.datasets.peek("fashion-mnist") is None  # no model learned it: not loaded
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    empty = create_app(Settings(database_url=url, data_dir=real_data_dir(), download=False))
    with TestClient(empty):
        assert empty.state.inference.datasets.peek("mnist") is None  # no model: nothing held in memory
