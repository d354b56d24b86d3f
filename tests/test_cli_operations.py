"""Operators script routine work through `paydesk`: the same services as the dashboard, with the
same permission checks (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from factories import make_payment
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from payments_core.cli import app as cli
from payments_core.config import get_settings
from payments_core.models import AppUser, ManualProof, Payment, Refund, utcnow
from payments_core.services.proofs import record_proof
from payments_core.services.users import create_user

PASSWORD = "long-enough-password"


@pytest.fixture
def people(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    get_settings.cache_clear()
    with Session(engine) as session, session.begin():
        for email, role in (
            ("fin@example.com", "finance"),
            ("boss@example.com", "manager"),
            ("ana@example.com", "analyst"),
            ("root@example.com", "admin"),
        ):
            create_user(session=session, email=email, role=role, password=PASSWORD, actor="t")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def captured_payment(engine: Engine, provider: str = "dummy", amount: int = 100_000) -> str:
    with Session(engine) as session, session.begin():
        payment = make_payment(
            session,
            provider=provider,
            provider_reference=None if provider == "manual" else f"{provider}-ref-{amount}",
            amount_minor=amount,
            status="succeeded",
            captured_minor=amount,
            paid_at=utcnow() - timedelta(days=1),
        )
        return payment.id


def test_refund_request_approval_and_refusals(people: None, engine: Engine) -> None:
    payment_id = captured_payment(engine)
    code, out = run("refund", payment_id, "--amount", "600.00", "--reason", "damaged",
                    "--actor", "fin@example.com")  # fmt: skip
    assert code == 0, out
    assert "pending_approval" in out
    with Session(engine) as session:
        refund = session.exec(select(Refund)).one()
    # Finance may not approve; the requester never may; another manager does.
    code, out = run("refunds", "approve", refund.id, "--actor", "fin@example.com")
    assert code == 2 and "may not approve" in out
    code, out = run("refunds", "pending")
    assert refund.id in out and "1 refund(s) awaiting approval" in out
    code, out = run("refunds", "approve", refund.id, "--actor", "boss@example.com")
    assert code == 0, out
    assert "succeeded" in out
    # Analysts read; they do not refund.
    code, out = run("refund", payment_id, "--amount", "1.00", "--reason", "x",
                    "--actor", "ana@example.com")  # fmt: skip
    assert code == 2 and "may not request refunds" in out
    # More than is left: refused with the amount that is.
    code, out = run("refund", payment_id, "--amount", "500.00", "--reason", "again",
                    "--actor", "fin@example.com")  # fmt: skip
    assert code == 2
    assert "400.00" in out
    code, out = run("refund", payment_id, "--amount", "1.234", "--reason", "x",
                    "--actor", "fin@example.com")  # fmt: skip
    assert code == 2 and "--amount" in out
    code, out = run("refund", payment_id, "--amount", "1.00", "--reason", "x",
                    "--actor", "nobody@example.com")  # fmt: skip
    assert code == 2 and "no user nobody@example.com" in out
    with Session(engine) as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
    assert payment.refunded_minor == 60_000


def test_small_refunds_skip_approval_and_reject_needs_a_reason(
    people: None, engine: Engine
) -> None:
    payment_id = captured_payment(engine)
    code, out = run("refund", payment_id, "--amount", "5.00", "--reason", "goodwill",
                    "--actor", "fin@example.com")  # fmt: skip
    assert code == 0 and "succeeded" in out, out
    run("refund", payment_id, "--amount", "700.00", "--reason", "big",
        "--actor", "fin@example.com")  # fmt: skip
    with Session(engine) as session:
        waiting = session.exec(select(Refund).where(col(Refund.status) == "pending_approval")).one()
    code, out = run("refunds", "reject", waiting.id, "--actor", "boss@example.com")
    assert code == 2 and "say why" in out
    code, out = run("refunds", "reject", waiting.id, "--actor", "boss@example.com",
                    "--reason", "not our fault")  # fmt: skip
    assert code == 0 and "rejected" in out


def test_proof_review_from_the_command_line(people: None, engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        payment = make_payment(
            session, provider="manual", provider_reference=None, status="pending",
            method="bank_transfer", amount_minor=12_000,
        )  # fmt: skip
        proof = record_proof(
            session=session,
            settings=get_settings(),
            payment_id=payment.id,
            reference="BANK-1",
            amount_minor=12_000,
            actor="boss@example.com",
        )
        payment_id, proof_id = payment.id, proof.id
    code, out = run("proofs", "approve", proof_id, "--actor", "boss@example.com")
    assert code == 2 and "recorded" in out  # never the person who recorded it
    code, out = run("proofs", "approve", proof_id, "--actor", "fin@example.com")
    assert code == 2 and "may not review" in out
    code, out = run("proofs", "approve", proof_id, "--actor", "root@example.com")
    assert code == 0, out
    with Session(engine) as session:
        assert session.get(Payment, payment_id).status == "succeeded"  # type: ignore[union-attr]
        assert session.get(ManualProof, proof_id).status == "approved"  # type: ignore[union-attr]


def test_attention_lists_what_needs_a_person(people: None, engine: Engine) -> None:
    payment_id = captured_payment(engine)
    run("refund", payment_id, "--amount", "900.00", "--reason", "r", "--actor", "fin@example.com")
    code, out = run("attention", "--json")
    assert code == 0, out
    items = json.loads(out)
    assert [item["kind"] for item in items] == ["refund_approval"]
    assert items[0]["payment_id"] == payment_id
    code, out = run("attention")
    assert "1 item(s) need attention" in out


def test_user_roles_and_statement_import(people: None, engine: Engine, tmp_path: Path) -> None:
    code, out = run("user", "set-role", "ana@example.com", "finance", "--actor", "fin@example.com")
    assert code == 2 and "may not manage users" in out
    code, out = run("user", "set-role", "ana@example.com", "finance", "--actor", "root@example.com")
    assert code == 0 and "is now finance" in out
    code, out = run("user", "disable", "ana@example.com", "--actor", "root@example.com")
    assert code == 0, out
    with Session(engine) as session:
        user = session.exec(select(AppUser).where(col(AppUser.email) == "ana@example.com")).one()
    assert (user.role, user.is_active) == ("finance", False)

    with Session(engine) as session, session.begin():
        manual = make_payment(
            session, provider="manual", provider_reference=None, status="pending",
            method="bank_transfer", amount_minor=25_000,
        )  # fmt: skip
        manual_id = manual.id
    statement = tmp_path / "statement.csv"
    statement.write_text(
        "Date,Amount,Currency,Reference,Name\n"
        f"2026-11-20,250.00,CHF,Invoice {manual_id},Ada Muster\n"
        "2026-11-21,99.00,CHF,unknown transfer,Someone\n"
    )
    code, out = run("statements", "import", str(statement), "--actor", "fin@example.com")
    assert code == 0, out
    assert "1 matched" in out and "1 unmatched" in out
    assert manual_id in out
