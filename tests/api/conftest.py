from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from tests.support import real_data_dir


@pytest.fixture
def settings(tmp_path, migrated_sqlite) -> Settings:
    shutil.copyfile(migrated_sqlite, tmp_path / "api.db")
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        data_dir=real_data_dir(),
        download=False,
        max_queued=3,
    )


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c
