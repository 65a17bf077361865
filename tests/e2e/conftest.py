"""The e2e `service`: a uvicorn process and one worker on a fresh database (a temporary SQLite file;
PostgreSQL too in modules marked ON_EVERY_DATABASE), shared by the tests of a module."""

from __future__ import annotations

import pytest

from tests.support import start_service


@pytest.fixture(scope="module")
def service(tmp_path_factory, module_db_url):
    svc = start_service(tmp_path_factory.mktemp("service"), module_db_url)
    svc.start_worker()
    yield svc
    svc.stop()
