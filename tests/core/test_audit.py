"""The audit hash chain: appends link up, and any altered or deleted row is found."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from payments_core.db import transaction
from payments_core.models import GENESIS_HASH, AuditEntry
from payments_core.services.audit import jsonable, record_audit, verify_chain


def _append(engine: Engine, n: int, actor: str = "user:a@x.test") -> None:
    for i in range(n):
        with transaction(engine) as session:
            record_audit(
                session=session,
                actor=actor,
                action="payment.status_changed",
                entity_type="payment",
                entity_id=f"pay_{i}",
                before={"status": "pending"},
                after={"status": "succeeded", "captured_minor": i},
            )


def _report(engine: Engine):  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return verify_chain(session=session, batch_size=3)


def _without_triggers(engine: Engine, statement: str) -> None:
    """Change audit rows the way someone with raw database access could."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_entry DISABLE TRIGGER USER"))
            connection.execute(text(statement))
            connection.execute(text("ALTER TABLE audit_entry ENABLE TRIGGER USER"))
        else:
            connection.execute(text("DROP TRIGGER audit_entry_no_update"))
            connection.execute(text("DROP TRIGGER audit_entry_no_delete"))
            connection.execute(text(statement))


def test_empty_chain_is_intact(engine: Engine) -> None:
    report = _report(engine)
    assert report.ok and report.checked == 0 and report.head_hash == GENESIS_HASH


def test_entries_link_up(engine: Engine) -> None:
    _append(engine, 7)
    with Session(engine) as session:
        entries = list(session.exec(select(AuditEntry).order_by(col(AuditEntry.seq))))
    assert [e.seq for e in entries] == list(range(1, 8))
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    report = _report(engine)
    assert report.ok and report.checked == 7 and report.head_hash == entries[-1].hash


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("UPDATE audit_entry SET actor = 'user:mallory@x.test' WHERE seq = 4", "altered"),
        ('UPDATE audit_entry SET after = \'{"status": "failed"}\' WHERE seq = 4', "altered"),
        ("UPDATE audit_entry SET at = at WHERE seq = 4", None),
        ("DELETE FROM audit_entry WHERE seq = 4", "missing"),
    ],
)
def test_tampering_is_found_at_the_first_broken_entry(
    engine: Engine, statement: str, problem: str | None
) -> None:
    _append(engine, 6)
    _without_triggers(engine, statement)
    report = _report(engine)
    if problem is None:  # a no-op update changes nothing
        assert report.ok
        return
    assert not report.ok
    assert report.broken_seq in (4, 5)
    assert report.checked == 3
    assert problem in (report.problem or "")


def test_rewritten_entry_with_recomputed_hash_breaks_the_next_link(engine: Engine) -> None:
    _append(engine, 5)
    # Change the first hex digit (to another one: 'f' stays 'f' one time in sixteen otherwise).
    _without_triggers(
        engine,
        "UPDATE audit_entry SET hash = CASE WHEN substr(hash, 1, 1) = 'f' THEN 'e' ELSE 'f' END"
        " || substr(hash, 2) WHERE seq = 2",
    )
    report = _report(engine)
    assert not report.ok and report.broken_seq == 2


def test_snapshots_are_plain_json() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert jsonable({"at": when, "n": 5, "tags": ("a", "b")}) == {
        "at": "2026-01-02T03:04:05+00:00",
        "n": 5,
        "tags": ["a", "b"],
    }
    with pytest.raises(TypeError, match="floats"):
        jsonable({"amount": 1.5})


def test_concurrent_writers_keep_one_chain(engine: Engine) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            _append(engine, 10, actor=f"user:w{n}@x.test")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    report = _report(engine)
    assert report.ok and report.checked == 50
