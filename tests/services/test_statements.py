"""Bank statement import (CSV and CAMT.053) and matching to open manual payments, on SQLite and
PostgreSQL. The sample statements are in tests/fixtures/statements/."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from factories import make_payment
from sqlmodel import Session, col, func, select

from payments_core.config import get_settings
from payments_core.models import AuditEntry, ManualProof, Payment, Role, StatementLine
from payments_core.money import MoneyError
from payments_core.services import proofs
from payments_core.services.permissions import Actor, PermissionDenied
from payments_core.services.statements import (
    ImportResult,
    StatementError,
    import_statement,
    parse_statement_amount,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "statements"
FINANCE = Actor("finance@example.com", Role.FINANCE)
MANAGER = Actor("manager@example.com", Role.MANAGER)
ANALYST = Actor("analyst@example.com", Role.ANALYST)

# The ids the sample statements quote.
PAY_A = "pay_06EADCEW00K9XWN79QJ55SNM70"  # CHF 1,234.50, paid exactly
PAY_B = "pay_06EADCEW0065S9N3MH86A4S71R"  # CHF 80.00, paid without its id
PAY_C = "pay_06EADCEW024JZMHZ10J152SF6C"  # CHF 100.00, paid 99.00 with its id
PAY_D = "pay_06EADCEW02AK2QCXS7W1G67824"  # EUR 250.00, structured reference
PAY_E = "pay_06EADCEW020YFT72BPA0XP84EM"  # EUR 30.00, inside a batch booking
PAY_F = "pay_06EADCEW00B002CSA3C3DXKNSG"  # CHF 50.00, its id quoted with a typo


def manual(session: Session, payment_id: str, amount: int, currency: str = "CHF") -> Payment:
    return make_payment(
        session,
        id=payment_id,
        provider="manual",
        provider_reference=None,
        method="bank_transfer",
        amount_minor=amount,
        currency=currency,
    )


@pytest.fixture
def open_payments(session: Session) -> None:
    manual(session, PAY_A, 123_450)
    manual(session, PAY_B, 8_000)
    manual(session, PAY_C, 10_000)
    manual(session, PAY_D, 25_000, "EUR")
    manual(session, PAY_E, 3_000, "EUR")
    manual(session, PAY_F, 5_000)
    make_payment(session, provider="stripe", amount_minor=8_000, currency="CHF")  # not manual
    session.commit()


def run(session: Session, name: str, actor: Actor = FINANCE) -> ImportResult:
    content = (FIXTURES / name).read_bytes()
    result = import_statement(
        session=session, settings=get_settings(), actor=actor, content=content, filename=name
    )
    session.commit()
    return result


def count(session: Session, model: type[StatementLine] | type[ManualProof]) -> int:
    return int(session.exec(select(func.count()).select_from(model)).one())


@pytest.mark.usefixtures("open_payments")
def test_csv_exact_matches_become_proofs_awaiting_approval(session: Session) -> None:
    result = run(session, "swiss_bank.csv")

    assert result.format == "csv"
    assert result.skipped == 1  # the card purchase (a debit)
    assert [(e.line, e.message) for e in result.errors] == [
        (6, result.errors[0].message),
        (8, result.errors[1].message),
    ]
    assert "12.5x" in result.errors[0].message
    assert "does not exist" in result.errors[1].message
    assert [line.payment_id for line in result.matched] == [PAY_A]
    assert result.imported == 5 and result.credits == 5 and result.already_imported == 0

    line = result.matched[0]
    assert line.line == 2 and line.amount_minor == 123_450 and line.booked_on == date(2026, 3, 2)
    assert line.amount == "1,234.50 CHF"
    proof = session.get(ManualProof, line.proof_id)
    assert proof is not None
    assert proof.status == "pending_review"
    assert proof.kind == "bank_transfer"
    assert proof.recorded_by == FINANCE.name
    assert proof.amount_minor == 123_450 and proof.file_sha256 is None
    assert proof.paid_on == date(2026, 3, 2)
    payment = session.get(Payment, PAY_A)
    assert payment is not None and payment.status == "pending"  # until a manager approves

    # The importer cannot approve what the import recorded in their name; a manager can.
    with pytest.raises(proofs.ProofError):
        proofs.approve_proof(
            session=session, actor=Actor(FINANCE.name, Role.ADMIN), proof_id=proof.id
        )
    session.rollback()
    proofs.approve_proof(session=session, actor=MANAGER, proof_id=proof.id)
    session.commit()
    assert session.get(Payment, PAY_A).status == "succeeded"  # type: ignore[union-attr]


@pytest.mark.usefixtures("open_payments")
def test_unmatched_lines_carry_their_nearest_candidates(session: Session) -> None:
    result = run(session, "swiss_bank.csv")
    by_line = {line.line: line for line in result.unmatched}
    assert sorted(by_line) == [4, 5, 7, 9]

    # Same amount, no id: the manual payment of 80.00 (the Stripe one is not a candidate).
    invoice = by_line[4]
    assert [(c.payment_id, c.reason) for c in invoice.candidates] == [(PAY_B, "same amount")]
    # Amounts come formatted for people (the dashboard shows them as they are).
    assert invoice.amount == "80.00 CHF" and invoice.candidates[0].amount == "80.00 CHF"
    assert by_line[9].candidates == invoice.candidates  # the identical second transfer

    # An id with one character wrong, and the same amount.
    typo = by_line[5].candidates[0]
    assert typo.payment_id == PAY_F
    assert "same amount" in typo.reason and "resembles the payment id" in typo.reason

    # The id is right but the amount is not.
    short = by_line[7].candidates[0]
    assert short.payment_id == PAY_C
    assert "names this payment" in short.reason and "100.00 CHF" in short.reason
    assert all(len(line.candidates) <= 3 for line in result.unmatched)

    stored = session.exec(
        select(StatementLine).where(col(StatementLine.import_id) == result.import_id)
    ).all()
    assert {s.status for s in stored} == {"matched", "unmatched"}
    unmatched = next(s for s in stored if s.reference == "Invoice 77")
    assert unmatched.candidates[0]["payment_id"] == PAY_B
    assert unmatched.candidates[0]["reason"] == "same amount"
    assert unmatched.imported_by == FINANCE.name


@pytest.mark.usefixtures("open_payments")
def test_camt053_entries_are_read_and_matched(session: Session) -> None:
    result = run(session, "camt053.xml")

    assert result.format == "camt.053"
    assert result.skipped == 2  # the debit and the pending entry
    assert len(result.errors) == 1
    assert result.errors[0].line == 56 and "Ccy" in result.errors[0].message
    assert sorted(line.payment_id or "" for line in result.matched) == sorted([PAY_D, PAY_E])
    structured = next(line for line in result.matched if line.payment_id == PAY_D)
    assert structured.counterparty == "Erika Mustermann"
    assert structured.line == 11 and structured.amount_minor == 25_000
    batch = next(line for line in result.matched if line.payment_id == PAY_E)
    assert batch.counterparty == "Frank Kunde" and batch.booked_on == date(2026, 3, 3)
    assert [(line.amount_minor, line.reference) for line in result.unmatched] == [
        (2_000, "Birthday gift")
    ]
    assert count(session, ManualProof) == 2


@pytest.mark.usefixtures("open_payments")
@pytest.mark.parametrize("name", ["swiss_bank.csv", "camt053.xml"])
def test_a_reimport_adds_nothing(session: Session, name: str) -> None:
    first = run(session, name)
    lines, proofs_before = count(session, StatementLine), count(session, ManualProof)

    again = run(session, name)

    assert again.imported == 0 and again.matched == () and again.unmatched == ()
    assert again.already_imported == first.imported
    assert count(session, StatementLine) == lines
    assert count(session, ManualProof) == proofs_before
    imports = session.exec(
        select(AuditEntry).where(col(AuditEntry.action) == "statement.imported")
    ).all()
    assert len(imports) == 2


@pytest.mark.usefixtures("open_payments")
def test_a_second_transfer_for_a_matched_payment_is_not_matched_again(session: Session) -> None:
    run(session, "swiss_bank.csv")
    content = f"date,amount,currency,reference\n2026-03-09,1234.50,CHF,{PAY_A}\n".encode()
    result = import_statement(
        session=session, settings=get_settings(), actor=FINANCE, content=content, filename="x.csv"
    )
    assert result.matched == ()
    assert "already matched" in result.unmatched[0].candidates[0].reason


def test_amount_formats(session: Session) -> None:
    assert parse_statement_amount("1'234.50", "CHF") == 123_450
    assert parse_statement_amount("1\u2019234.50", "CHF") == 123_450
    assert parse_statement_amount("1234,50", "EUR") == 123_450
    assert parse_statement_amount("1.234,50", "EUR") == 123_450
    assert parse_statement_amount("1 234,50", "EUR") == 123_450
    assert parse_statement_amount("1,234.50", "USD") == 123_450
    assert parse_statement_amount("1,234", "CHF") == 123_400
    assert parse_statement_amount("1500", "JPY") == 1_500
    assert parse_statement_amount("12.00-", "CHF") == -1_200
    for bad, currency, message in [
        ("1,234", "KWD", "ambiguous"),
        ("12.345", "CHF", "at most 2 decimal places"),
        ("1'234,567.50", "CHF", "mixes"),
        ("12.5x", "CHF", "not an amount"),
        ("1e3", "CHF", "not an amount"),
    ]:
        with pytest.raises(MoneyError, match=message):
            parse_statement_amount(bad, currency)


def test_csv_columns_currency_in_amount_and_bad_lines(session: Session) -> None:
    manual(session, PAY_A, 123_450)
    content = (
        "Date,Credit,Debit,Remittance,Name\n"
        f"2026-03-02,CHF 1'234.50,,Thanks {PAY_A.upper()},Ada Zürcher\n"
        "2026-03-02,,CHF 20.00,Rent,Landlord\n"
        '2026-03-02,"KWD 1,234",,x,y\n'
        "03/04/2026,CHF 5.00,,ambiguous date,z\n"
        "2026-03-02,5.00,,no currency,z\n"
    ).encode("cp1252")
    result = import_statement(
        session=session, settings=get_settings(), actor=FINANCE, content=content, filename="a.csv"
    )
    assert [line.payment_id for line in result.matched] == [PAY_A]
    assert result.matched[0].counterparty == "Ada Zürcher"
    assert result.skipped == 1
    messages = {e.line: e.message for e in result.errors}
    assert set(messages) == {4, 5, 6}
    assert "ambiguous" in messages[5] and "currency" in messages[6]


def test_files_that_cannot_be_read_are_refused_whole(session: Session) -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;">]><Document>&lol2;</Document>'
    )
    for content, message in [
        (laughs, "DTD"),
        (b"<Document><Other/></Document>", "not a CAMT.053"),
        (b"<Document><BkToCstmrStmt>", "not well-formed"),
        (b"Date;Reference\n2026-03-01;x\n", "no amount column"),
        (b"", "empty"),
    ]:
        with pytest.raises(StatementError, match=message):
            import_statement(
                session=session,
                settings=get_settings(),
                actor=FINANCE,
                content=content,
                filename="s",
            )
    assert count(session, StatementLine) == 0


def test_analysts_cannot_import(session: Session) -> None:
    with pytest.raises(PermissionDenied):
        run(session, "swiss_bank.csv", actor=ANALYST)
