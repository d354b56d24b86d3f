"""Seeding demo data: `paydesk seed` for N payments (default 100,000) on SQLite, against the
baseline of inserting N bare payment rows with one executemany in the same kind of database.

The seeder writes about five child rows per payment (timeline, webhook history, refunds, ...),
so a ratio around 5-10x the bare insert means it spends its time writing, not generating.
Target (issue: foundation): 100,000 payments in well under a minute.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import insert

from payments_core import migrations
from payments_core.db import make_engine
from payments_core.models import Payment
from payments_core.services.seed import seed_demo_data


def _fresh_sqlite(folder: Path, name: str):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{folder / name}")
    migrations.upgrade(engine)
    return engine


def bare_insert_seconds(folder: Path, n: int) -> float:
    engine = _fresh_sqlite(folder, "baseline.sqlite3")
    created = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {
            "id": f"pay_{i:026d}",
            "provider": "stripe",
            "provider_reference": f"pi_{i}",
            "amount_minor": 1000 + i,
            "currency": "CHF",
            "method": "card",
            "status": "succeeded",
            "captured_minor": 1000 + i,
            "livemode": True,
            "host_metadata": {},
            "created_at": created,
            "updated_at": created,
            "status_changed_at": created,
        }
        for i in range(n)
    ]
    start = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(insert(Payment.__table__), rows)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def seed_seconds(folder: Path, n: int) -> float:
    engine = _fresh_sqlite(folder, "seeded.sqlite3")
    start = time.perf_counter()
    seed_demo_data(engine=engine, payments=n, days=90, seed=1, until=date(2026, 11, 25))
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def main() -> None:
    n = int(os.environ.get("BENCH_SEED_PAYMENTS", "100000"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        baseline = bare_insert_seconds(folder, n)
        seeded = seed_seconds(folder, n)
    print(
        f"seed {n:,} payments (SQLite): {seeded:.1f} s "
        f"= {seeded / baseline:.1f}x a bare insert of {n:,} payment rows ({baseline:.2f} s); "
        f"target: well under 60 s -> {'OK' if seeded < 60 else 'MISSED'}"
    )
