"""One client asking for many figures never drawn before (every order of /compare.png's ids is a new one),
or for many large predictions, cannot queue every other user's request behind its own (service.turns): at
most so many queue, one more is refused at once with a 503 and Retry-After, and a figure drawn before, or a
prediction of a few images, is still served."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

import httpx
from fastapi.testclient import TestClient

from service import plots
from service.errors import PROBLEM_JSON
from service.turns import CLIENT
from tests.api.test_inference import app  # noqa: F401  (the fixture: trained models 1, 2 and 3)

JSON = {"content-type": "application/json"}

# Twelve figures never drawn before: every order of three models' loss curves, on each x axis.
FLOOD = [
    f"/compare.png?ids={','.join(map(str, ids))}&x={x}"
    for ids in itertools.permutations([1, 2, 3])
    for x in ("step", "samples")
]


async def _until(condition: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still not {what} after {seconds} s"
        await asyncio.sleep(0.01)


def _assert_queue_full(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text[:300]
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == str(plots.RETRY_AFTER_SECONDS)
    body = response.json()
    assert body["title"] == "Figure queue full"
    assert f"{plots.DRAWS_WAITING} figures already queue to be drawn" in body["detail"]


BATCH = json.dumps({"images": [[0] * 784] * 50}).encode()  # past ON_LOOP_BYTES: read in a turn


def _client_at(asgi_app, address: str) -> httpx.AsyncClient:
    """A client of `asgi_app` from another address (each client has its own share of the turns)."""
    transport = httpx.ASGITransport(app=asgi_app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


def _serve(asgi_app, scenario) -> None:
    async def main() -> None:
        async with asgi_app.router.lifespan_context(asgi_app):
            transport = httpx.ASGITransport(app=asgi_app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                await scenario(client)

    asyncio.run(main())


def test_a_flood_of_new_figures_is_refused_past_the_queue_and_drawn_figures_still_served(app):  # noqa: F811
    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get("/models/1/confusion-matrix.png")).status_code == 200  # drawn, kept
        with plots.DRAWING:  # a slow figure being drawn: every figure not drawn before queues behind it
            flood = [asyncio.create_task(_client_at(app, f"10.0.4.{i}").get(p)) for i, p in enumerate(FLOOD)]
            refused = len(FLOOD) - plots.DRAWS_WAITING
            await _until(lambda: sum(t.done() for t in flood) == refused, f"{refused} answered")
            await _until(lambda: plots.DRAWING.waiting == plots.DRAWS_WAITING, "the rest at the lock")
            for task in (t for t in flood if t.done()):
                _assert_queue_full(task.result())
            started = time.perf_counter()
            drawn_before = await asyncio.wait_for(client.get("/models/1/confusion-matrix.png"), 5)
            assert drawn_before.status_code == 200 and time.perf_counter() - started < 1.0
            victim = await asyncio.wait_for(client.get("/models/2/loss-curve.png"), 5)
            _assert_queue_full(victim)  # at once, not after the flood's figures
        queued = await asyncio.gather(*flood)
        assert sorted(r.status_code for r in queued) == [200] * plots.DRAWS_WAITING + [503] * refused
        assert all(r.headers["content-type"] == "image/png" for r in queued if r.status_code == 200)
        again = await client.get("/models/2/loss-curve.png")  # a refusal is not kept: retried, drawn
        assert again.status_code == 200 and again.headers["content-type"] == "image/png"

    _serve(app, scenario)


def test_one_client_holds_only_its_share_of_the_figure_queue(app):  # noqa: F811
    """One client asking for a dozen new figures at once filled the queue: every other client's new
    figure was refused until its burst was drawn."""

    async def scenario(client: httpx.AsyncClient) -> None:
        greedy = _client_at(app, "10.0.6.1")
        share = plots.DRAWS_PER_CLIENT
        with plots.DRAWING:  # a slow figure being drawn: new ones queue behind it
            admitted = [asyncio.create_task(greedy.get(path)) for path in FLOOD[:share]]
            await _until(lambda: plots.DRAWING.waiting == share, "its share queued")
            for path in FLOOD[share : share + 2]:  # refused at once, before any work
                answer = await asyncio.wait_for(greedy.get(path), 5)
                assert answer.status_code == 429 and answer.headers["retry-after"] == "2", answer.text
                assert answer.json()["title"] == "Too many requests from this client"
            other = asyncio.create_task(client.get("/models/3/loss-curve.png"))  # another client: queued
            await _until(lambda: plots.DRAWING.waiting == share + 1, "the other one queued")
            # the same figure as one of the greedy client's: drawn once, for both, and not its 429
            same = asyncio.create_task(client.get(FLOOD[0]))
            # and the greedy client, past its share, may wait for the other's figure: no more work
            waits = asyncio.create_task(greedy.get("/models/3/loss-curve.png"))
            await asyncio.sleep(0.2)
            assert not same.done() and not waits.done()
        answers = await asyncio.gather(*admitted, other, same, waits)
        assert [a.status_code for a in answers] == [200] * (share + 3)
        assert answers[share + 1].content == answers[0].content  # same: the figure drawn for both

    _serve(app, scenario)


def test_a_figure_drawn_without_gathering_through_the_queue_is_refused_at_the_lock(app):  # noqa: F811
    """disagreements.png (and a study's figures) draw straight under the lock: the bound holds there too."""

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get("/compare/disagreements?a=1&b=2")).status_code == 200  # predictions known
        with plots.DRAWING:
            waiting = [
                asyncio.create_task(_client_at(app, f"10.0.5.{i}").get(path))
                for i, path in enumerate(FLOOD[: plots.DRAWS_WAITING])
            ]
            await _until(lambda: plots.DRAWING.waiting == plots.DRAWS_WAITING, "the queue full")
            gallery = await asyncio.wait_for(client.get("/compare/disagreements.png?a=1&b=2"), 5)
            _assert_queue_full(gallery)
        assert {r.status_code for r in await asyncio.gather(*waiting)} == {200}
        assert (await client.get("/compare/disagreements.png?a=1&b=2")).status_code == 200

    _serve(app, scenario)


def test_every_figure_route_documents_the_full_queue(app):  # noqa: F811
    with TestClient(app) as client:
        paths = client.get("/openapi.json").json()["paths"]
    # every drawn figure: all PNGs but a dataset's images, which are its pixels, not drawn
    figures = [path for path in paths if path.endswith(".png") and not path.startswith("/datasets/")]
    assert len(figures) == 6, figures
    for path in figures:
        documented = paths[path]["get"]["responses"]["503"]
        assert documented["description"].startswith(plots.FIGURE_QUEUE_FULL), path
        assert PROBLEM_JSON in documented["content"], path


def test_large_predictions_are_read_in_turns_and_one_too_many_is_refused_unread(app):  # noqa: F811
    """240 uploads of 4 MB at once were each read before waiting for a decode: the API grew from 820 MB
    to 1.76 GB, and another client's 137-byte upload waited 12.6 s."""
    from service.imaging import UPLOADS_AT_ONCE, UPLOADS_PER_CLIENT, UPLOADS_WAITING

    turns = app.state.uploads

    async def scenario(client: httpx.AsyncClient) -> None:
        async with AsyncExitStack() as held:
            for i in range(UPLOADS_AT_ONCE):  # every turn taken (slow senders): large bodies wait, unread
                CLIENT.set(f"10.0.1.{i}")
                await held.enter_async_context(turns.turn())
            senders = [_client_at(app, f"10.0.2.{i}") for i in range(UPLOADS_WAITING // UPLOADS_PER_CLIENT)]
            waiting = [
                asyncio.create_task(sender.post("/models/1/predict", content=BATCH, headers=JSON))
                for sender in senders
                for _ in range(UPLOADS_PER_CLIENT)
            ]
            await _until(lambda: turns.waiting == UPLOADS_WAITING, "the large ones waiting")
            refused = await asyncio.wait_for(client.post("/models/1/predict", content=BATCH, headers=JSON), 5)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
            assert refused.json()["title"] == "Upload queue full"
            one = json.dumps({"pixels": [0] * 784}).encode()  # a few images are answered at once
            quick = await asyncio.wait_for(client.post("/models/1/predict", content=one, headers=JSON), 5)
            assert quick.status_code == 200
        answered = await asyncio.gather(*waiting)
        assert [r.status_code for r in answered] == [200] * UPLOADS_WAITING
        assert all(r.json()["count"] == 50 for r in answered)

    _serve(app, scenario)


def test_one_slow_client_holds_only_its_share_of_the_upload_turns(app):  # noqa: F811
    """Two uploads sent slowly (8 kB/s keeps a connection: 5 MB in ten minutes) held both turns, and
    every other client's large prediction waited behind them, or was refused."""
    from service.imaging import UPLOADS_PER_CLIENT

    turns = app.state.uploads

    async def scenario(client: httpx.AsyncClient) -> None:
        slow = _client_at(app, "10.0.3.1")
        async with AsyncExitStack() as held:
            for _ in range(UPLOADS_PER_CLIENT):  # its share, sending slowly
                CLIENT.set("10.0.3.1")
                await held.enter_async_context(turns.turn())
            more = await asyncio.wait_for(slow.post("/models/1/predict", content=BATCH, headers=JSON), 5)
            assert more.status_code == 429 and more.headers["retry-after"] == "2"
            assert f"already has {UPLOADS_PER_CLIENT} large prediction requests" in more.json()["detail"]
            other = await asyncio.wait_for(client.post("/models/1/predict", content=BATCH, headers=JSON), 5)
            assert other.status_code == 200 and other.json()["count"] == 50
        assert (await slow.post("/models/1/predict", content=BATCH, headers=JSON)).status_code == 200

    _serve(app, scenario)


def test_a_small_body_whose_work_is_costly_takes_its_clients_share_of_the_decoding_turns(app, monkeypatch):  # noqa: F811
    """An attacker's pass: 240 PNGs of 24 kB (each 2000x2000 pixels to decode) from one client, or 41
    images through a network of 20 million weights, waited on a plain semaphore with no share: another
    client's upload waited 14.4 s. Decoding (an image, a large JSON batch) and a forward pass too large to
    run inline take a turn of which one client holds or waits for 2; a few JSON images on a small network
    are still answered at once."""
    import io

    from PIL import Image

    from service.api import inference
    from service.imaging import DECODES_PER_CLIENT

    turns = app.state.decodes
    png = io.BytesIO()
    Image.new("L", (28, 28), 0).save(png, format="PNG")
    image = {"content-type": "image/png"}
    few = json.dumps({"images": [[0] * 784] * 3}).encode()

    async def post(c: httpx.AsyncClient, body: bytes, headers: dict) -> httpx.Response:
        return await asyncio.wait_for(c.post("/models/1/predict", content=body, headers=headers), 5)

    async def scenario(client: httpx.AsyncClient) -> None:
        busy = _client_at(app, "10.0.4.1")
        async with AsyncExitStack() as held:
            for _ in range(DECODES_PER_CLIENT):  # its share, held
                CLIENT.set("10.0.4.1")
                await held.enter_async_context(turns.turn())
            more = await post(busy, png.getvalue(), image)
            assert (
                more.status_code == 429
                and f"already has {DECODES_PER_CLIENT} predictions that need decoding"
                in more.json()["detail"]
            )
            cheap = await post(busy, few, JSON)
            assert cheap.status_code == 200 and cheap.json()["count"] == 3
            monkeypatch.setattr(inference, "INLINE_MACS", 1)  # three images through a "large" network
            assert (await post(busy, few, JSON)).status_code == 429
            monkeypatch.setattr(inference, "INLINE_MACS", 10_000_000)
            # another client's image waits for a turn (both are held here), not refused
            other = asyncio.create_task(
                client.post("/models/1/predict", content=png.getvalue(), headers=image)
            )
            await _until(lambda: turns.waiting == 1, "the other client's image waiting")
        assert (await asyncio.wait_for(other, 5)).status_code == 422  # decoded: a blank image, no digit
        assert (
            await busy.post("/models/1/predict", content=png.getvalue(), headers=image)
        ).status_code == 422

    _serve(app, scenario)
