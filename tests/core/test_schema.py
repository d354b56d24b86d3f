"""The migrated schema: it matches the models, and the database itself holds the invariants."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from factories import make_payment
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, SQLModel

from payments_core import migrations
from payments_core.models import (
    AuditEntry,
    IdempotencyRecord,
    ManualProof,
    Refund,
    WebhookEvent,
    new_id,
    utcnow,
)


def test_migrations_match_models(engine: Engine) -> None:
    assert migrations.current_revision(engine) == migrations.head_revision(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_migrate_is_idempotent(engine: Engine) -> None:
    migrations.upgrade(engine)
    assert migrations.current_revision(engine) == migrations.head_revision(engine)


def _violates(engine: Engine, build: Callable[[Session], Any]) -> None:
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        build(session)
        session.flush()


def test_amount_must_be_positive(engine: Engine) -> None:
    _violates(engine, lambda s: make_payment(s, amount_minor=0))
    _violates(engine, lambda s: make_payment(s, amount_minor=-5))


def test_unknown_status_refused(engine: Engine) -> None:
    _violates(engine, lambda s: make_payment(s, status="paid-ish"))


def test_provider_reference_unique_per_provider(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        make_payment(session, provider="stripe", provider_reference="pi_same")
        # The same reference at another provider is a different payment.
        make_payment(session, provider="paystack", provider_reference="pi_same")
    _violates(engine, lambda s: make_payment(s, provider="stripe", provider_reference="pi_same"))


def test_refunds_never_above_captured(engine: Engine) -> None:
    _violates(
        engine,
        lambda s: make_payment(
            s,
            status="succeeded",
            captured_minor=1000,
            refunded_minor=800,
            refund_pending_minor=300,
        ),
    )
    with Session(engine) as session, session.begin():
        make_payment(s := session, status="succeeded", captured_minor=1000, refunded_minor=1000)
        assert s


def test_webhook_event_unique_per_provider(engine: Engine) -> None:
    def inbox(session: Session, provider: str) -> None:
        session.add(
            WebhookEvent(provider=provider, event_id="evt_1", event_type="x", payload=b"{}")
        )
        session.flush()

    with Session(engine) as session, session.begin():
        inbox(session, "stripe")
        inbox(session, "paystack")
    _violates(engine, lambda s: inbox(s, "stripe"))


def test_idempotency_key_unique_per_scope(engine: Engine) -> None:
    def record(session: Session, scope: str) -> None:
        session.add(IdempotencyRecord(scope=scope, key="k1", request_hash="h", expires_at=utcnow()))
        session.flush()

    with Session(engine) as session, session.begin():
        record(session, "api:1")
        record(session, "api:2")
    _violates(engine, lambda s: record(s, "api:1"))


def _refund(payment_id: str, **overrides: Any) -> Refund:
    values: dict[str, Any] = {
        "id": new_id("re"),
        "payment_id": payment_id,
        "amount_minor": 100,
        "currency": "CHF",
        "status": "pending_approval",
        "reason": "requested_by_customer",
        "requested_by": "user:a@x.test",
        "idempotency_key": new_id("idem"),
    }
    return Refund(**(values | overrides))


def test_refund_requester_cannot_approve(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        payment_id = make_payment(session, status="succeeded", captured_minor=4990).id
        session.add(_refund(payment_id, decided_by="user:b@x.test"))
    _violates(engine, lambda s: s.add(_refund(payment_id, decided_by="user:a@x.test")))
    _violates(
        engine,
        lambda s: (
            s.add(_refund(payment_id, idempotency_key="dup"))
            or s.flush()
            or s.add(_refund(payment_id, idempotency_key="dup"))
        ),
    )


def test_proof_recorder_cannot_review(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        payment_id = make_payment(session, provider="manual", method="bank_transfer").id

    def proof(session: Session) -> None:
        session.add(
            ManualProof(
                id=new_id("pf"),
                payment_id=payment_id,
                kind="bank_transfer",
                reference="PD-1",
                amount_minor=4990,
                currency="CHF",
                recorded_by="user:a@x.test",
                reviewed_by="user:a@x.test",
                status="approved",
            )
        )

    _violates(engine, proof)


def test_foreign_keys_enforced(engine: Engine) -> None:
    _violates(engine, lambda s: s.add(_refund("pay_does_not_exist")))


def test_audit_entries_cannot_be_updated_or_deleted(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add(
            AuditEntry(
                seq=1,
                actor="a",
                action="b",
                entity_type="c",
                entity_id="d",
                prev_hash="0" * 64,
                hash="1" * 64,
            )
        )
    for statement in ("UPDATE audit_entry SET actor = 'mallory'", "DELETE FROM audit_entry"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))


SEARCHES = {
    "ix_payment_customer_email": "customer_email = 'a@example.com'",
    "ix_payment_customer_phone": "customer_phone = '+254700000000'",
    "ix_payment_host_reference": "host_reference = 'order-1'",
    "uq_payment_provider_reference": "provider_reference = 'pi_1'",
    "ix_payment_status_created": "status = 'failed' ORDER BY created_at DESC, id DESC",
    "ix_payment_created": "created_at >= '2026-01-01' ORDER BY created_at DESC, id DESC",
}


@pytest.mark.parametrize("index", sorted(SEARCHES))
def test_searches_use_an_index(engine: Engine, index: str) -> None:
    query = f"SELECT id FROM payment WHERE {SEARCHES[index]} LIMIT 50"
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            plan = " ".join(
                str(r[-1]) for r in connection.execute(text(f"EXPLAIN QUERY PLAN {query}"))
            )
        else:
            # An empty table makes a sequential scan cheapest; ask whether the index is usable.
            connection.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(r[0] for r in connection.execute(text(f"EXPLAIN {query}")))
    if index.startswith("uq_") and engine.dialect.name == "sqlite":
        # SQLite implements a UNIQUE constraint with an index it names itself.
        assert "USING INDEX sqlite_autoindex_payment" in plan and "provider_reference=?" in plan
    else:
        assert index in plan, plan
