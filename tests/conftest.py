"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

Each test gets its own database: a copy of a migrated SQLite template file, or a fresh PostgreSQL
schema migrated by Alembic (the URL pins ``search_path``, so subprocesses given the URL see the
same schema). PostgreSQL comes from ``PAYDESK_TEST_POSTGRES_URL``. When it is unreachable the
PostgreSQL tests are skipped with a loud summary line, except with ``CI=true``, where that is a
failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Settings come from the environment; pin them before any test imports payments_core.
os.environ.update(
    {
        "PAYDESK_ENV": "test",
        "SECRET_KEY": "test-secret-key-0123456789abcdef0123456789",
        "DATABASE_URL": "",
    }
)

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from payments_core import migrations
from payments_core.config import get_settings
from payments_core.db import make_engine

pytest_plugins = ["fakes.fixtures"]

POSTGRES_URL = os.environ.get(
    "PAYDESK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_postgres_problem: list[str] = []


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "paydesk.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    migrations.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    engine = create_engine(POSTGRES_URL, pool_pre_ping=True)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        reason = f"PostgreSQL at {make_url(POSTGRES_URL)!r} is unreachable: {exc.orig}"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
        _postgres_problem.append(reason)
        pytest.skip(f"PostgreSQL tests SKIPPED: {reason}")
    yield engine
    engine.dispose()


def postgres_schema_url(schema: str) -> str:
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated database for this test, as a URL (once per backend)."""
    url = request.getfixturevalue(f"_database_url_{request.param}")
    assert isinstance(url, str)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url, pool_size=5)
    yield engine
    engine.dispose()


@pytest.fixture
def _database_url_sqlite(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "paydesk.sqlite3"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def _database_url_postgresql(postgres_admin: Engine) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with postgres_admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = postgres_schema_url(schema)
    engine = make_engine(url, pool_size=2)
    migrations.upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with postgres_admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _postgres_problem:
        terminalreporter.write_line(
            f"!!! PostgreSQL tests were SKIPPED: {_postgres_problem[0]}", red=True, bold=True
        )
