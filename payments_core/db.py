"""Engines and sessions: the only module that creates database engines.

SQLite (the embedded default) gets WAL, foreign keys, a busy timeout, and write transactions that
start with ``BEGIN IMMEDIATE``: a transaction that reads then writes takes the write lock up front
instead of failing half-way when another writer got there first. Read-only work can use
``read_engine()``, whose transactions start deferred so readers never wait for writers.

PostgreSQL (production) uses psycopg 3; ``schema=`` pins the search_path (tests give every test its
own schema). Services never commit: callers own the transaction (``with transaction() as s:``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from payments_core.config import get_settings

_READ_ONLY = "paydesk_read_only"
_engines: dict[tuple[str, str | None], Engine] = {}


def make_engine(url: str, *, schema: str | None = None, pool_size: int | None = None) -> Engine:
    """A new engine for ``url``; most code wants the cached ``get_engine()`` instead."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database)
    if parsed.get_backend_name() == "postgresql":
        connect_args: dict[str, Any] = {}
        if schema:
            connect_args["options"] = f"-c search_path={schema}"
        return create_engine(
            url,
            connect_args=connect_args,
            pool_pre_ping=True,
            pool_size=pool_size or get_settings().database_pool_size,
            max_overflow=10,
        )
    raise ValueError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite:///path or "
        "postgresql+psycopg://user@host/db"
    )


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit one is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk when it returns, so a webhook answered 2xx survives a power
        # loss, not only a process crash (WAL's NORMAL). Group commit keeps the fsyncs few.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def get_engine(url: str | None = None, *, schema: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the configured database)."""
    key = (url or get_settings().effective_database_url, schema)
    if key not in _engines:
        _engines[key] = make_engine(key[0], schema=schema)
    return _engines[key]


def read_engine(engine: Engine | None = None) -> Engine:
    """The same pool, with transactions that only read (deferred BEGIN on SQLite)."""
    return (engine or get_engine()).execution_options(**{_READ_ONLY: True})


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


@contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Session]:
    """A session inside one transaction: committed when the block ends, rolled back on error."""
    with Session(engine or get_engine(), expire_on_commit=False) as session, session.begin():
        yield session


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
