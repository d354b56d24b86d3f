"""Working on disputes: the queue, evidence drafts (text fields, and files for Stripe's file
evidence fields), and answering through the real Stripe adapter talking to the fake Stripe
server (files uploaded, then referenced in the one submission), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import pytest
from factories import make_payment
from fakes.stripe import StripeFake, form_of
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from payments_core.config import Settings, get_settings
from payments_core.db import transaction
from payments_core.models import AuditEntry, Dispute, Payment, PaymentEvent, Role, new_id, utcnow
from payments_core.providers.base import CheckoutRequest, ProviderDeclined, ProviderUnavailable
from payments_core.providers.registry import Adapters
from payments_core.services import disputes
from payments_core.services.disputes import EvidenceUpload
from payments_core.services.permissions import Actor, PermissionDenied
from payments_core.services.proofs import ProofFile

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n"
JPEG = b"\xff\xd8\xff\xe0" + b"\x10" * 32
FINANCE = Actor("finance@example.com", Role.FINANCE)
ANALYST = Actor("analyst@example.com", Role.ANALYST)

Transaction = Callable[[], AbstractContextManager[Session]]


@pytest.fixture(autouse=True)
def _fake_handlers_did_not_crash(request: pytest.FixtureRequest) -> Iterator[None]:
    fake: StripeFake | None = None
    if "stripe_fake" in request.fixturenames:
        fake = request.getfixturevalue("stripe_fake")
    yield
    assert fake is None or fake.errors == []


@pytest.fixture
def tx(engine: Engine) -> Transaction:
    return lambda: transaction(engine)


@pytest.fixture
def adapters(stripe_fake: StripeFake) -> Adapters:
    settings = Settings(
        stripe_api_key=SecretStr(stripe_fake.api_key),
        stripe_api_base=stripe_fake.base_url,
        stripe_test_mode=True,
        provider_timeout_seconds=5.0,
        provider_max_retries=0,
        var_dir=get_settings().var_dir,
    )
    return Adapters(settings)


def stripe_dispute(
    tx: Transaction, adapters: Adapters, fake: StripeFake, *, status: str = "needs_response"
) -> str:
    """A paid Stripe payment with a dispute at the fake and the matching rows; the dispute id."""
    payment_id = new_id("pay")
    result = adapters.checkout("stripe").create_checkout(
        CheckoutRequest(
            payment_id=payment_id,
            amount_minor=4990,
            currency="CHF",
            idempotency_key=f"paydesk-{payment_id}-checkout",
            description="Order",
            success_url="https://shop.example/ok",
            cancel_url="https://shop.example/cancel",
        )
    )
    assert result.provider_reference
    intent = fake.complete_session(result.provider_reference)
    remote = fake.create_dispute(intent["id"], status=status)
    return add_dispute(tx, provider="stripe", provider_dispute_id=remote["id"], ref=intent["id"])


def add_dispute(
    tx: Transaction,
    *,
    provider: str,
    provider_dispute_id: str,
    ref: str | None = None,
    status: str = "needs_response",
    due_in: timedelta | None = timedelta(days=7),
) -> str:
    with tx() as session:
        payment = make_payment(
            session,
            provider=provider,
            provider_reference=ref or f"ref_{new_id('x')}",
            status="succeeded",
            captured_minor=4990,
            disputed_minor=4990,
        )
        dispute = Dispute(
            id=new_id("dp"),
            payment_id=payment.id,
            provider_dispute_id=provider_dispute_id,
            amount_minor=4990,
            currency="CHF",
            status=status,
            reason="fraudulent",
            evidence_due_at=utcnow() + due_in if due_in else None,
        )
        session.add(dispute)
        return dispute.id


def load(engine: Engine, dispute_id: str) -> tuple[Dispute, Payment]:
    with Session(engine) as session:
        dispute = session.get(Dispute, dispute_id)
        assert dispute is not None
        payment = session.get(Payment, dispute.payment_id)
        assert payment is not None
        return dispute, payment


def audit_actions(engine: Engine, dispute_id: str) -> list[str]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(AuditEntry.action)
                .where(col(AuditEntry.entity_id) == dispute_id)
                .order_by(col(AuditEntry.seq))
            )
        )


def save(tx: Transaction, dispute_id: str, actor: Actor = FINANCE, **kw: Any) -> Dispute:
    with tx() as session:
        return disputes.save_evidence_draft(
            session=session,
            actor=actor,
            dispute_id=dispute_id,
            fields=kw.pop("fields", {}),
            **kw,
        )


def test_the_queue_lists_disputes_by_due_date(engine: Engine, tx: Transaction) -> None:
    late = add_dispute(tx, provider="stripe", provider_dispute_id="du_late", due_in=timedelta(9))
    soon = add_dispute(tx, provider="stripe", provider_dispute_id="du_soon", due_in=timedelta(1))
    none = add_dispute(tx, provider="paystack", provider_dispute_id="42", due_in=None)
    won = add_dispute(tx, provider="stripe", provider_dispute_id="du_won", status="won")
    with Session(engine) as session:
        rows = disputes.list_disputes(session=session)
        assert [r.id for r in rows] == [soon, won, late, none]
        assert rows[0].amount == "49.90 CHF" and rows[0].provider == "stripe"
        open_ = disputes.list_disputes(session=session, status="needs_response")
        assert [r.id for r in open_] == [soon, late, none]
        due = disputes.list_disputes(session=session, due_before=utcnow() + timedelta(days=3))
        assert {r.id for r in due} == {soon}


def test_drafts_keep_stripe_text_fields_and_checked_files(engine: Engine, tx: Transaction) -> None:
    dispute_id = add_dispute(tx, provider="stripe", provider_dispute_id="du_1")
    save(
        tx,
        dispute_id,
        fields={"product_description": "Two concert tickets", "customer_name": "Ada"},
        files=[
            ProofFile("receipt.png", PNG),
            EvidenceUpload("refund_policy", ProofFile("../../terms.pdf", PDF)),
        ],
    )
    save(tx, dispute_id, fields={"customer_name": "", "uncategorized_text": "Delivered."})
    save(tx, dispute_id, files=[ProofFile("again.png", PNG)])  # same bytes: attached once

    dispute, _ = load(engine, dispute_id)
    assert disputes.evidence_fields(dispute) == {
        "product_description": "Two concert tickets",
        "uncategorized_text": "Delivered.",
    }
    files = disputes.evidence_files(dispute)
    assert [(f["name"], f["content_type"], f["field"]) for f in files] == [
        ("receipt.png", "image/png", "uncategorized_file"),
        ("terms.pdf", "application/pdf", "refund_policy"),
    ]
    stored = get_settings().var_dir / "proofs" / files[0]["sha256"][:2] / files[0]["sha256"]
    assert stored.read_bytes() == PNG
    assert audit_actions(engine, dispute_id).count("dispute.evidence_draft_saved") == 3

    with pytest.raises(disputes.DisputeError, match="unknown evidence field") as caught:
        save(tx, dispute_id, fields={"receipt": "file_123"})  # a file field, not text
    assert caught.value.field == "receipt"
    assert "take a file" in str(caught.value)
    with pytest.raises(disputes.DisputeError, match="PNG, JPEG or PDF"):
        save(tx, dispute_id, files=[ProofFile("evil.pdf", b"MZ\x90\x00 not a pdf")])
    with pytest.raises(disputes.DisputeError, match="empty"):
        save(tx, dispute_id, files=[ProofFile("empty.png", b"")])
    with pytest.raises(disputes.DisputeError, match="20,000"):
        save(tx, dispute_id, fields={"uncategorized_text": "x" * 20_001})
    assert len(disputes.evidence_files(load(engine, dispute_id)[0])) == 2


def test_evidence_is_submitted_once_through_stripe(
    engine: Engine, tx: Transaction, adapters: Adapters, stripe_fake: StripeFake
) -> None:
    dispute_id = stripe_dispute(tx, adapters, stripe_fake)
    with pytest.raises(disputes.DisputeError, match="no evidence to submit"):
        disputes.submit_evidence(
            transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
        )
    save(
        tx,
        dispute_id,
        fields={"product_description": "Tickets", "shipping_tracking_number": "99 123"},
        files=[EvidenceUpload("receipt", ProofFile("receipt.png", PNG))],
    )

    outcome = disputes.submit_evidence(
        transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
    )

    assert outcome.error is None
    dispute, payment = load(engine, dispute_id)
    assert dispute.status == "under_review"
    assert dispute.evidence_submitted_at is not None
    assert dispute.evidence["response"]["state"] == "done"
    remote = stripe_fake.disputes[dispute.provider_dispute_id]
    assert remote["status"] == "under_review"
    assert remote["evidence"]["product_description"] == "Tickets"
    assert remote["evidence"]["shipping_tracking_number"] == "99 123"
    assert len(stripe_fake.requests_to("/v1/files", "POST")) == 1
    (entry,) = disputes.evidence_files(dispute)
    file_id = entry["provider_file_id"]
    assert remote["evidence"]["receipt"] == file_id
    assert stripe_fake.files[file_id]["content"] == PNG
    assert stripe_fake.files[file_id]["filename"] == "receipt.png"
    assert remote["evidence"]["uncategorized_file"] is None
    sent = form_of(stripe_fake.requests[-1])
    assert sent["submit"] == "true"
    assert sent["evidence"]["receipt"] == file_id
    assert len(stripe_fake.requests_to(f"/v1/disputes/{remote['id']}", "POST")) == 1
    assert payment.disputed_minor == 4990
    assert audit_actions(engine, dispute_id)[-2:] == [
        "dispute.submit_started",
        "dispute.evidence_submitted",
    ]
    with Session(engine) as session:
        summaries = session.exec(
            select(PaymentEvent.summary).where(col(PaymentEvent.payment_id) == payment.id)
        ).all()
    assert any(
        "submitted to stripe" in s and "1 attached file" in s and "receipt=receipt.png" in s
        for s in summaries
    )
    assert not any("kept in Paydesk" in s for s in summaries)

    calls = len(stripe_fake.requests)
    with pytest.raises(disputes.DisputeError, match="submitted"):
        disputes.submit_evidence(
            transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
        )
    with pytest.raises(disputes.DisputeError, match="can no longer be changed"):
        save(tx, dispute_id, fields={"uncategorized_text": "late"})
    with pytest.raises(disputes.DisputeError):
        disputes.accept_dispute(
            transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
        )
    assert len(stripe_fake.requests) == calls  # refused before Stripe heard of it


def test_a_claimed_dispute_refuses_a_second_answer(
    engine: Engine, tx: Transaction, adapters: Adapters, stripe_fake: StripeFake
) -> None:
    dispute_id = stripe_dispute(tx, adapters, stripe_fake)
    save(tx, dispute_id, fields={"uncategorized_text": "Delivered"})
    # Another session claimed it a moment ago (its provider call is under way).
    with tx() as session:
        dispute = session.get(Dispute, dispute_id)
        assert dispute is not None
        started = {"action": "submit", "state": "in_progress", "by": "other@example.com"}
        dispute.evidence = {**dispute.evidence, "response": started | {"at": utcnow().isoformat()}}
        session.add(dispute)
    with pytest.raises(disputes.DisputeError, match="already answering"):
        disputes.submit_evidence(
            transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
        )
    assert stripe_fake.disputes[load(engine, dispute_id)[0].provider_dispute_id]["status"] == (
        "needs_response"
    )


def test_a_provider_failure_keeps_the_dispute_unsubmitted_with_the_error(
    engine: Engine, tx: Transaction, adapters: Adapters, stripe_fake: StripeFake
) -> None:
    dispute_id = stripe_dispute(tx, adapters, stripe_fake)
    save(tx, dispute_id, fields={"uncategorized_text": "Delivered"})
    stripe_fake.fail_next(
        "/v1/disputes/",
        400,
        body={"error": {"type": "invalid_request_error", "message": "Evidence is past due."}},
    )
    outcome = disputes.submit_evidence(
        transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
    )
    assert isinstance(outcome.error, ProviderDeclined)
    dispute, _ = load(engine, dispute_id)
    assert dispute.status == "needs_response"
    assert dispute.evidence_submitted_at is None
    assert dispute.evidence["response"]["state"] == "failed"
    assert "past due" in dispute.evidence["response"]["error"]
    assert "dispute.submit_failed" in audit_actions(engine, dispute_id)
    with Session(engine) as session:
        rows = disputes.list_disputes(session=session)
    assert rows[0].response_error and "past due" in rows[0].response_error
    # The failure released the claim: a retry goes through.
    retried = disputes.submit_evidence(
        transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
    )
    assert retried.error is None and retried.dispute.status == "under_review"


def test_providers_without_dispute_evidence_are_refused_clearly(
    engine: Engine, tx: Transaction, adapters: Adapters, stripe_fake: StripeFake
) -> None:
    dispute_id = add_dispute(tx, provider="paystack", provider_dispute_id="1234")
    for answer in (disputes.submit_evidence, disputes.accept_dispute):
        with pytest.raises(disputes.DisputeError, match="paystack dashboard"):
            answer(transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id)
    with pytest.raises(disputes.DisputeError, match="only Stripe"):
        save(tx, dispute_id, fields={"uncategorized_text": "x"})
    assert stripe_fake.requests == []
    assert load(engine, dispute_id)[0].evidence == {}


def test_accepting_closes_the_dispute_as_lost(
    engine: Engine, tx: Transaction, adapters: Adapters, stripe_fake: StripeFake
) -> None:
    dispute_id = stripe_dispute(tx, adapters, stripe_fake)
    outcome = disputes.accept_dispute(
        transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
    )
    assert outcome.error is None
    dispute, payment = load(engine, dispute_id)
    assert dispute.status == "lost" and dispute.closed_at is not None
    assert payment.disputed_minor == 4990  # a lost dispute still holds the money
    assert stripe_fake.disputes[dispute.provider_dispute_id]["status"] == "lost"
    assert "dispute.accepted" in audit_actions(engine, dispute_id)
    with pytest.raises(disputes.DisputeError, match="closed"):
        disputes.accept_dispute(
            transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
        )


def test_accepting_an_inquiry_closes_it_and_releases_the_amount(
    engine: Engine, tx: Transaction, adapters: Adapters, stripe_fake: StripeFake
) -> None:
    dispute_id = stripe_dispute(tx, adapters, stripe_fake, status="warning_needs_response")
    disputes.accept_dispute(transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id)
    dispute, payment = load(engine, dispute_id)
    assert dispute.status == "closed"
    assert payment.disputed_minor == 0


def test_analysts_cannot_work_on_disputes(
    engine: Engine, tx: Transaction, adapters: Adapters, stripe_fake: StripeFake
) -> None:
    dispute_id = add_dispute(tx, provider="stripe", provider_dispute_id="du_x")
    with pytest.raises(PermissionDenied):
        save(tx, dispute_id, actor=ANALYST, fields={"uncategorized_text": "x"})
    for answer in (disputes.submit_evidence, disputes.accept_dispute):
        with pytest.raises(PermissionDenied):
            answer(transaction=tx, adapters=adapters, actor=ANALYST, dispute_id=dispute_id)
    assert load(engine, dispute_id)[0].evidence == {}
    assert stripe_fake.requests == []


def uploads(fake: StripeFake) -> int:
    return len(fake.requests_to("/v1/files", "POST"))


def test_files_only_evidence_is_uploaded_and_submitted(
    engine: Engine, tx: Transaction, adapters: Adapters, stripe_fake: StripeFake
) -> None:
    dispute_id = stripe_dispute(tx, adapters, stripe_fake)
    save(
        tx,
        dispute_id,
        files=[
            ProofFile("notes.pdf", PDF),
            EvidenceUpload("shipping_documentation", ProofFile("label.jpg", JPEG)),
        ],
    )
    outcome = disputes.submit_evidence(
        transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
    )
    assert outcome.error is None and outcome.dispute.status == "under_review"
    dispute, _ = load(engine, dispute_id)
    ids = {disputes.file_field(f): f["provider_file_id"] for f in disputes.evidence_files(dispute)}
    evidence = stripe_fake.disputes[dispute.provider_dispute_id]["evidence"]
    assert evidence["uncategorized_file"] == ids["uncategorized_file"]
    assert evidence["shipping_documentation"] == ids["shipping_documentation"]
    assert stripe_fake.files[ids["shipping_documentation"]]["content"] == JPEG
    assert uploads(stripe_fake) == 2


def test_a_failed_submission_after_the_uploads_retries_without_uploading_again(
    engine: Engine, tx: Transaction, adapters: Adapters, stripe_fake: StripeFake
) -> None:
    dispute_id = stripe_dispute(tx, adapters, stripe_fake)
    save(
        tx,
        dispute_id,
        fields={"uncategorized_text": "Delivered"},
        files=[EvidenceUpload("receipt", ProofFile("r.png", PNG)), ProofFile("terms.pdf", PDF)],
    )
    stripe_fake.fail_next("/v1/disputes/", 503, method="POST")

    failed = disputes.submit_evidence(
        transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
    )

    assert isinstance(failed.error, ProviderUnavailable)
    dispute, _ = load(engine, dispute_id)
    assert dispute.status == "needs_response" and dispute.evidence["response"]["state"] == "failed"
    first_ids = [f["provider_file_id"] for f in disputes.evidence_files(dispute)]
    assert all(i and i.startswith("file_") for i in first_ids)  # kept although the submit failed
    assert uploads(stripe_fake) == 2

    retried = disputes.submit_evidence(
        transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
    )

    assert retried.error is None and retried.dispute.status == "under_review"
    assert uploads(stripe_fake) == 2  # nothing uploaded twice
    assert len(stripe_fake.files) == 2
    evidence = stripe_fake.disputes[dispute.provider_dispute_id]["evidence"]
    assert [evidence["receipt"], evidence["uncategorized_file"]] == first_ids


def test_a_failed_second_upload_keeps_the_first_file_id_for_the_retry(
    engine: Engine,
    tx: Transaction,
    adapters: Adapters,
    stripe_fake: StripeFake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dispute_id = stripe_dispute(tx, adapters, stripe_fake)
    save(
        tx,
        dispute_id,
        files=[EvidenceUpload("receipt", ProofFile("r.png", PNG)), ProofFile("terms.pdf", PDF)],
    )
    adapter = adapters.disputes("stripe")
    real_upload = adapter.upload_dispute_file
    calls: list[str] = []

    def second_upload_fails(name: str, content: bytes, content_type: str) -> str:
        calls.append(name)
        if len(calls) == 2:
            raise ProviderUnavailable("connection reset")
        return real_upload(name, content, content_type)

    monkeypatch.setattr(adapter, "upload_dispute_file", second_upload_fails)
    failed = disputes.submit_evidence(
        transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
    )
    assert isinstance(failed.error, ProviderUnavailable)
    receipt, terms = disputes.evidence_files(load(engine, dispute_id)[0])
    assert receipt["provider_file_id"] and "provider_file_id" not in terms
    assert stripe_fake.requests_to("/v1/disputes/", "POST") == []  # nothing submitted

    retried = disputes.submit_evidence(
        transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
    )
    assert retried.error is None
    assert calls == ["r.png", "terms.pdf", "terms.pdf"]  # r.png uploaded once
    assert uploads(stripe_fake) == 2
    evidence = stripe_fake.disputes[retried.dispute.provider_dispute_id]["evidence"]
    assert evidence["receipt"] == receipt["provider_file_id"]
    assert evidence["uncategorized_file"] in stripe_fake.files


def test_file_fields_are_checked_and_take_one_file_each(
    engine: Engine, tx: Transaction, adapters: Adapters, stripe_fake: StripeFake
) -> None:
    dispute_id = stripe_dispute(tx, adapters, stripe_fake)
    with pytest.raises(disputes.DisputeError, match="not a Stripe file evidence field") as bad:
        save(tx, dispute_id, files=[EvidenceUpload("favourite_colour", ProofFile("a.png", PNG))])
    assert bad.value.field == "favourite_colour"
    with pytest.raises(disputes.DisputeError, match="one file per evidence field") as both:
        save(tx, dispute_id, files=[ProofFile("a.png", PNG), ProofFile("b.pdf", PDF)])
    assert both.value.field == "uncategorized_file"
    assert disputes.evidence_files(load(engine, dispute_id)[0]) == []

    save(tx, dispute_id, files=[EvidenceUpload("receipt", ProofFile("a.png", PNG))])
    with pytest.raises(disputes.DisputeError, match=r"receipt already holds a\.png") as taken:
        save(tx, dispute_id, files=[EvidenceUpload("receipt", ProofFile("b.pdf", PDF))])
    assert taken.value.field == "receipt"
    # The same bytes again for another field move the file; the first field is free again.
    save(tx, dispute_id, files=[EvidenceUpload("customer_communication", ProofFile("a.png", PNG))])
    save(tx, dispute_id, files=[EvidenceUpload("receipt", ProofFile("b.pdf", PDF))])
    files = disputes.evidence_files(load(engine, dispute_id)[0])
    assert [(f["name"], f["field"]) for f in files] == [
        ("a.png", "customer_communication"),
        ("b.pdf", "receipt"),
    ]
    assert stripe_fake.requests_to("/v1/files") == []  # drafts send nothing


def test_drafts_from_before_file_fields_with_two_files_are_refused_at_submit(
    engine: Engine, tx: Transaction, adapters: Adapters, stripe_fake: StripeFake
) -> None:
    dispute_id = stripe_dispute(tx, adapters, stripe_fake)
    save(tx, dispute_id, files=[EvidenceUpload("receipt", ProofFile("a.png", PNG))])
    save(tx, dispute_id, files=[ProofFile("b.pdf", PDF)])
    with tx() as session:  # as saved before entries named their field
        dispute = session.get(Dispute, dispute_id)
        assert dispute is not None
        legacy = [{k: v for k, v in f.items() if k != "field"} for f in dispute.evidence["files"]]
        dispute.evidence = {**dispute.evidence, "files": legacy}
        session.add(dispute)
    calls = len(stripe_fake.requests)
    with pytest.raises(disputes.DisputeError, match="both attached as uncategorized_file"):
        disputes.submit_evidence(
            transaction=tx, adapters=adapters, actor=FINANCE, dispute_id=dispute_id
        )
    assert len(stripe_fake.requests) == calls
    assert "response" not in load(engine, dispute_id)[0].evidence  # not claimed
