"""SQLite connections are set up for a payments inbox: WAL, durable commits, foreign keys."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from payments_core.db import make_engine


def test_sqlite_commits_are_durable_and_constrained(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    try:
        with engine.connect() as connection:
            pragma = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    # synchronous 2 = FULL: an acknowledged webhook survives a power loss, not only a crash.
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 30000,
    }
