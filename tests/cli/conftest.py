"""The `mlplab` client commands against an in-process API (FastAPI's TestClient stands in for the
HTTP connection) and a worker run in-process when the test says so: fast, and the real routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.cli import main
from service.cli.http import ApiClient
from service.main import create_app
from service.settings import Settings
from tests.support import real_data_dir
from workers.worker import run_worker


@dataclass
class Api:
    client: TestClient
    settings: Settings
    connected: list[tuple[str, str | None]]  # the url and token of every ApiClient the CLI made

    def train(self) -> None:
        """Everything queued, trained by a worker in this process."""
        run_worker(self.settings, once=True)

    def post(self, path: str, **kwargs: Any) -> Any:
        response = self.client.post(path, **kwargs)
        assert response.status_code < 400, response.text
        return response.json()


@pytest.fixture
def api(tmp_path, monkeypatch):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'cli.db'}", data_dir=real_data_dir(), download=False
    )
    with TestClient(create_app(settings), base_url="http://mlplab.test") as client:
        made = Api(client, settings, [])

        def connect(self: ApiClient) -> None:  # every ApiClient the CLI makes talks to this app
            made.connected.append((self.url, self.token))
            self.http = client

        monkeypatch.setattr(ApiClient, "__post_init__", connect)
        monkeypatch.setattr(ApiClient, "close", lambda self: None)
        yield made


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def elsewhere(monkeypatch):
    """Make every ApiClient the CLI makes talk to a server the test writes: a handler of requests."""

    def serve(handler: Handler) -> None:
        def connect(self: ApiClient) -> None:
            self.http = httpx.Client(base_url=self.url, transport=httpx.MockTransport(handler))

        monkeypatch.setattr(ApiClient, "__post_init__", connect)

    return serve


def mlplab(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `mlplab argv...` in this process: its exit status, stdout and stderr."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err
