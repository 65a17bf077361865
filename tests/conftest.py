"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.store.db import make_engine, make_sessionmaker, migrate
from tests.factories import make_tiny_dataset
from tests.support import REPO, real_data_dir

# The store, worker and end-to-end suites run once per database kind (the `db_url` fixtures below).
DB_KINDS = ("sqlite", "postgresql")
POSTGRES_URL_VAR = "MLPLAB_TEST_POSTGRES_URL"


def postgres_test_url() -> str:
    """MLPLAB_TEST_POSTGRES_URL: a role that may create databases. Missing: a failure in CI, else a skip."""
    url = os.environ.get(POSTGRES_URL_VAR)
    if not url:
        why = f"{POSTGRES_URL_VAR} is not set (`export {POSTGRES_URL_VAR}=$(sudo .ci/postgres)` starts PostgreSQL)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{why}; CI must run the PostgreSQL tests", pytrace=False)
        pytest.skip(why)
    return url


def drop_database(admin, name: str) -> None:
    """FORCE, as a killed worker's connection may linger; again after a pause, as ending an
    autovacuum worker needs pg_signal_backend (.ci/postgres grants it; another server may not)."""
    from sqlalchemy.exc import DBAPIError

    for attempt in range(10):
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except DBAPIError:
            if attempt == 9:
                raise
            time.sleep(1)


@contextmanager
def fresh_database(kind: str, folder: Path, template: str | None = None) -> Iterator[str]:
    """The URL of a new database of `kind`: an SQLite file in `folder`, or a PostgreSQL database
    made for the caller on MLPLAB_TEST_POSTGRES_URL's server and dropped afterwards. Empty, or a copy
    of `template` (an SQLite file's path, a PostgreSQL database's name)."""
    if kind == "sqlite":
        path = folder / "db" / "mlplab.db"
        if template:
            path.parent.mkdir()
            shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    assert kind == "postgresql", kind
    from sqlalchemy import create_engine, make_url

    url = make_url(postgres_test_url())
    name = f"mlplab_t_{secrets.token_hex(6)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
            )
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            drop_database(admin, name)
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> str:
    """An SQLite file at the newest revision: copying it is ten times faster than migrating."""
    path = tmp_path_factory.mktemp("migrated") / "mlplab.db"
    migrate(f"sqlite:///{path}")
    return str(path)


@pytest.fixture(scope="session")
def migrated_postgresql(tmp_path_factory) -> Iterator[str]:
    """The name of a PostgreSQL database at the newest revision, the template of migrated ones."""
    from sqlalchemy import make_url

    with fresh_database("postgresql", tmp_path_factory.getbasetemp()) as url:
        migrate(url)
        yield str(make_url(url).database)


@pytest.fixture(params=DB_KINDS)
def db_url(request, tmp_path) -> Iterator[str]:
    """A fresh database for this test: SQLite file, then PostgreSQL database. Empty (unmigrated), or at
    the newest revision when the test asks for `sessions` too."""
    template = (
        request.getfixturevalue(f"migrated_{request.param}") if "sessions" in request.fixturenames else None
    )
    with fresh_database(request.param, tmp_path, template) as url:
        yield url


@pytest.fixture
def sessions(db_url):
    """A migrated database on each kind of db_url, as sessions (the engine disposed afterwards)."""
    engine = make_engine(db_url)
    migrate(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def module_db_url(request, tmp_path_factory) -> Iterator[str]:
    """A fresh database for a module-scoped fixture: SQLite, unless the module is marked ON_EVERY_DATABASE."""
    kind = getattr(request, "param", "sqlite")
    with fresh_database(kind, tmp_path_factory.mktemp(kind)) as url:
        yield url


# `pytestmark = ON_EVERY_DATABASE`: the module's module_db_url (the e2e `service`) is SQLite, then PostgreSQL.
ON_EVERY_DATABASE = pytest.mark.parametrize("module_db_url", DB_KINDS, indirect=True, scope="module")


# A test that is about one database only: @SQLITE_ONLY or @POSTGRES_ONLY (db_url gets just that kind).
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
POSTGRES_ONLY = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return real_data_dir()


@pytest.fixture(scope="session")
def mnist(data_dir):
    """The real MNIST. Missing files fail the test that asks for them: never a skip."""
    from service.ml.data import load_dataset

    return load_dataset("mnist", data_dir, download=False)


@pytest.fixture
def tiny_dataset():
    return make_tiny_dataset()


LEAKS = re.compile(
    "|".join(["Traceback", 'File "', "site-packages", "/usr/lib", "/root", re.escape(str(REPO))])
)


def assert_problem(response, status: int, *says: str) -> dict:
    """The response is an RFC 9457 problem with this status, naming what it says, leaking nothing."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert not LEAKS.search(response.text), response.text  # no traceback, no path of the installation
    for text in says:
        assert text in body["detail"], body["detail"]
    return body
