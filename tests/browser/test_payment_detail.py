"""One payment in headless Chromium (fixtures: conftest): finance records a proof of an open manual
payment and sees it in the timeline with the way to review; finance replays a dead delivery; an
admin sees the customer, the review flag, the provider link and the audit entries in the timeline;
an analyst sees none of the actions, and crafted ones (a replay event, a proof upload) are refused
on the server.

The payments and deliveries are made here, in the app's database: the seed's open manual payments
already carry proofs, and its dead deliveries are few and shared with other tests.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from browser_support import (
    HOME,
    Dashboard,
    EventRelay,
    post_upload,
    screenshot,
    sign_in,
    small_png,
)
from factories import make_payment
from playwright.sync_api import FilePayload, Page, expect
from sqlmodel import Session, col, select

from dashboard.pages.payment_detail import PaymentDetailState
from payments_core.db import make_engine
from payments_core.models import InboxStatus, ManualProof, Role, WebhookEvent
from payments_core.services.payments import apply_status
from payments_core.services.permissions import Actor
from payments_core.services.processing import replay_as
from payments_core.status import MappedStatus, PaymentStatus

FINANCE = Actor("finance@example.com", Role.FINANCE)
DEAD_ERROR = "OperationalError: could not obtain lock on payment row"


def _manual_payment(dashboard: Dashboard, amount_minor: int = 12_500) -> str:
    """An open manual bank transfer in CHF, in the app's database."""
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session, session.begin():
            return make_payment(
                session,
                provider="manual",
                provider_reference=None,
                method="bank_transfer",
                amount_minor=amount_minor,
                currency="CHF",
                customer_name="Anna Muster",
                customer_phone="+41791234567",
            ).id
    finally:
        engine.dispose()


def _stripe_payment_with_dead_delivery(
    dashboard: Dashboard, *, replayed_by: Actor | None = None, **overrides: object
) -> tuple[str, str, int]:
    """A Stripe payment (test mode, a pi_ reference) made succeeded by a webhook that then died
    on a later delivery; (payment id, provider reference, dead event id). With ``replayed_by``,
    that person has already replayed it once (an audit entry) and it died again."""
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session, session.begin():
            payment = make_payment(
                session,
                provider="stripe",
                provider_reference=f"pi_{uuid.uuid4().hex[:24]}",
                amount_minor=4_990,
                currency="CHF",
                **overrides,
            )
            apply_status(
                session=session,
                payment=payment,
                mapped=MappedStatus(PaymentStatus.SUCCEEDED, "succeeded"),
                actor="provider:stripe",
                source="stripe webhook evt_seeded",
            )
            event = WebhookEvent(
                provider="stripe",
                event_id=f"evt_{uuid.uuid4().hex[:24]}",
                event_type="charge.refund.updated",
                payload=b"{}",
                status=InboxStatus.DEAD.value,
                attempts=8,
                next_attempt_at=None,
                last_error=f"{DEAD_ERROR}\nTraceback (most recent call last): ...",
                payment_id=payment.id,
            )
            session.add(event)
            session.flush()
            assert event.id is not None and payment.provider_reference is not None
            if replayed_by is not None:
                replay_as(session=session, actor=replayed_by, event_ids=[event.id])
                event.status, event.attempts = InboxStatus.DEAD.value, 8
                session.add(event)
            return payment.id, payment.provider_reference, event.id
    finally:
        engine.dispose()


def _proofs_of(dashboard: Dashboard, payment_id: str) -> list[ManualProof]:
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session:
            return list(
                session.exec(
                    select(ManualProof)
                    .where(col(ManualProof.payment_id) == payment_id)
                    .order_by(col(ManualProof.created_at))
                )
            )
    finally:
        engine.dispose()


def _delivery_status(dashboard: Dashboard, event_id: int) -> tuple[str, int]:
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session:
            event = session.get(WebhookEvent, event_id)
            assert event is not None
            return event.status, event.attempts
    finally:
        engine.dispose()


def _signed_in(page: Page, dashboard: Dashboard, name: str) -> None:
    sign_in(page, dashboard, name)
    page.wait_for_url(HOME)
    expect(page.locator("#signed-in-as")).to_contain_text(f"{name}@example.com")


def _open(page: Page, dashboard: Dashboard, payment_id: str) -> None:
    page.goto(f"{dashboard.url}/payments/{payment_id}")
    expect(page.locator("#payment-id")).to_contain_text(payment_id)


def _choose_proof_file(page: Page, name: str, content: bytes) -> None:
    page.set_input_files(
        "#proof-section input[type=file]",
        files=[FilePayload(name=name, mimeType="image/png", buffer=content)],
    )
    page.wait_for_selector(f"#proof-chosen >> text={name}")


def _fill_proof(page: Page, amount: str, reference: str, paid_on: str = "", note: str = "") -> None:
    page.fill("#proof-amount", amount)
    page.fill("#proof-reference", reference)
    page.fill("#proof-paid-on", paid_on)
    page.fill("#proof-note", note)
    page.click("#proof-submit")


def test_finance_records_a_proof_and_sees_it_waiting_for_review(
    page: Page, dashboard: Dashboard
) -> None:
    payment_id = _manual_payment(dashboard)
    _signed_in(page, dashboard, "finance")
    _open(page, dashboard, payment_id)
    page.wait_for_selector("#proof-form")
    customer = page.inner_text("#customer")
    assert "Anna Muster" in customer and "+41791234567" in customer
    assert page.locator("#provider-link").count() == 0  # offline: no provider dashboard

    # An amount CHF cannot hold is refused with the money parser's reason; nothing is written.
    _fill_proof(page, "125.005", "bank transfer BR-9001")
    error = page.wait_for_selector("#proof-error")
    assert error is not None
    assert "Proof not recorded (amount)" in error.inner_text()
    assert "CHF" in error.inner_text()
    assert _proofs_of(dashboard, payment_id) == []
    # A file of another type does not even leave the browser.
    page.set_input_files(
        "#proof-section input[type=file]",
        files=[FilePayload(name="notes.txt", mimeType="text/plain", buffer=b"paid, promise")],
    )
    expect(page.locator("#proof-error")).to_contain_text("only PNG, JPEG or PDF")

    paid_on = (date.today() - timedelta(days=1)).isoformat()
    _choose_proof_file(page, "receipt.png", small_png(width=37))
    _fill_proof(page, "125.00", "bank transfer BR-9001", paid_on, "seen in the bank portal")
    notice = page.wait_for_selector("#proof-notice")
    assert notice is not None
    [proof] = _proofs_of(dashboard, payment_id)
    assert f"Proof {proof.id} of 125.00 CHF recorded" in notice.inner_text()
    assert "A manager must review it on /review" in notice.inner_text()
    assert page.get_attribute("#proof-review-link", "href") == "/review"
    assert page.locator("#proof-warning").count() == 0
    assert page.locator("#proof-error").count() == 0
    # The proof's timeline event, and (finance reads the audit log) its audit entry.
    proof_row = page.locator(".timeline-row[data-kind=proof]", has_text=proof.id)
    expect(proof_row).to_contain_text("bank transfer BR-9001")
    expect(
        page.locator(".timeline-audit", has_text=f"proof.recorded (manual_proof {proof.id})")
    ).to_contain_text("finance@example.com")
    assert (
        proof.amount_minor,
        proof.currency,
        proof.recorded_by,
        proof.file_name,
        proof.content_type,
        proof.paid_on,
        proof.notes,
        proof.status,
    ) == (
        12_500,
        "CHF",
        "finance@example.com",
        "receipt.png",
        "image/png",
        date.fromisoformat(paid_on),
        "seen in the bank portal",
        "pending_review",
    )
    # The form is ready for the next one.
    expect(page.locator("#proof-amount")).to_have_value("")
    expect(page.locator("#proof-chosen")).not_to_contain_text("receipt.png")
    screenshot(page, dashboard, "payment-detail-proof-recorded")

    # The same file on another payment, with another amount: recorded, flagged for the reviewer.
    other_id = _manual_payment(dashboard, amount_minor=20_000)
    _open(page, dashboard, other_id)
    page.wait_for_selector("#proof-form")
    _choose_proof_file(page, "same-receipt.png", small_png(width=37))
    _fill_proof(page, "125.00", "bank transfer BR-9002")
    warning = page.wait_for_selector("#proof-warning")
    assert warning is not None
    assert f"already used on {payment_id}" in warning.inner_text()
    assert "differs from the payment's 200.00 CHF" in warning.inner_text()
    [flagged] = _proofs_of(dashboard, other_id)
    assert flagged.duplicate_of_payment_id == payment_id
    expect(page.locator(".timeline-row[data-kind=proof]", has_text=flagged.id)).to_contain_text(
        "amount 125.00 CHF differs from the payment's 200.00 CHF"
    )
    screenshot(page, dashboard, "payment-detail-proof-flagged")


def test_finance_replays_a_dead_delivery(page: Page, dashboard: Dashboard) -> None:
    payment_id, _, event_id = _stripe_payment_with_dead_delivery(dashboard)
    _signed_in(page, dashboard, "finance")
    _open(page, dashboard, payment_id)
    row = page.locator(f"#delivery-{event_id}")
    row.wait_for()
    assert row.locator(".delivery-status").inner_text() == "dead"
    assert row.locator(".delivery-attempts").inner_text() == "8"
    assert row.locator(".delivery-verification").inner_text() == "signed"
    assert row.locator(".delivery-error").inner_text() == DEAD_ERROR  # the first line only
    # A Stripe payment takes no proofs: no form, and a crafted upload is refused with the reason.
    assert page.locator("#proof-form").count() == 0
    response = post_upload(
        page,
        dashboard,
        f"{PaymentDetailState.get_full_name()}.record_proof",
        [("receipt.png", small_png(width=38), "image/png")],
        {"form": {"amount": "49.90", "reference": "crafted", "paid_on": "", "note": ""}},
    )
    assert response.is_success, response.text
    assert "is a stripe payment, not a manual one" in response.text
    assert _proofs_of(dashboard, payment_id) == []
    screenshot(page, dashboard, "payment-detail-deliveries")

    row.locator(".replay-button").click()
    notice = page.wait_for_selector("#delivery-notice")
    assert notice is not None
    assert "will be processed again: it was dead, it is now pending" in notice.inner_text()
    expect(row.locator(".delivery-status")).to_have_text("pending")
    expect(row.locator(".delivery-attempts")).to_have_text("0")
    assert row.locator(".replay-button").count() == 0  # on its way: nothing to replay
    assert _delivery_status(dashboard, event_id) == ("pending", 0)
    expect(
        page.locator(".timeline-audit", has_text=f"webhook.replayed (webhook_event {event_id})")
    ).to_contain_text("finance@example.com")
    screenshot(page, dashboard, "payment-detail-replayed")


def test_admin_sees_customer_flag_provider_link_and_audit_entries(
    page: Page, dashboard: Dashboard
) -> None:
    payment_id, reference, event_id = _stripe_payment_with_dead_delivery(
        dashboard,
        replayed_by=FINANCE,
        customer_name="Bruno Beispiel",
        customer_email="bruno@example.com",
        description="Annual plan, 2 seats",
        review_reason="amount differs from the order",
    )
    _signed_in(page, dashboard, "admin")
    _open(page, dashboard, payment_id)

    link = page.locator("#provider-link")
    expect(link).to_have_attribute(
        "href", f"https://dashboard.stripe.com/test/payments/{reference}"
    )
    expect(link).to_have_attribute("target", "_blank")
    assert "noopener" in (link.get_attribute("rel") or "")
    expect(page.locator("#review-flag")).to_contain_text("amount differs from the order")
    expect(page.locator("#payment-description")).to_have_text("Annual plan, 2 seats")
    customer = page.inner_text("#customer")
    assert "Bruno Beispiel" in customer and "bruno@example.com" in customer

    # Audit entries stand apart (their own badge) from the payment's own events.
    audit = page.locator(".timeline-audit")
    expect(audit.first).to_be_visible()
    assert audit.filter(has_text=f"webhook.replayed (webhook_event {event_id})").count() == 1
    assert audit.filter(has_text=f"(payment {payment_id})").count() >= 1
    assert set(audit.locator(".kind-badge").all_inner_texts()) == {"audit"}
    status_rows = page.locator(".timeline-row[data-kind=status]")
    expect(status_rows.first).to_contain_text("succeeded")
    assert status_rows.locator(".kind-badge").first.inner_text() == "status"
    screenshot(page, dashboard, "payment-detail-admin")


def test_an_analyst_sees_no_actions_and_crafted_ones_are_refused(
    page: Page, dashboard: Dashboard
) -> None:
    manual_id = _manual_payment(dashboard)
    payment_id, _, event_id = _stripe_payment_with_dead_delivery(dashboard, replayed_by=FINANCE)
    relay = EventRelay(page)  # between the page and the app's event socket

    _signed_in(page, dashboard, "analyst")
    _open(page, dashboard, manual_id)
    page.wait_for_selector("#payment-fields")
    assert page.locator("#proof-form").count() == 0
    assert page.locator("input[type=file]").count() == 0
    screenshot(page, dashboard, "payment-detail-analyst-manual")
    # A proof posted as this browser's own upload is refused by the server.
    response = post_upload(
        page,
        dashboard,
        f"{PaymentDetailState.get_full_name()}.record_proof",
        [("crafted.png", small_png(width=39), "image/png")],
        {"form": {"amount": "125.00", "reference": "crafted", "paid_on": "", "note": ""}},
    )
    assert response.is_success, response.text
    assert "analyst@example.com (analyst) may not record payment proofs" in response.text
    assert _proofs_of(dashboard, manual_id) == []

    _open(page, dashboard, payment_id)
    row = page.locator(f"#delivery-{event_id}")
    row.wait_for()
    assert row.locator(".delivery-status").inner_text() == "dead"
    assert page.locator(".replay-button").count() == 0
    # The analyst does not read the audit log, so the timeline has none of it.
    expect(page.locator(".timeline-row").first).to_be_visible()
    assert page.locator(".timeline-audit").count() == 0
    screenshot(page, dashboard, "payment-detail-analyst")

    relay.send(f"{PaymentDetailState.get_full_name()}.replay_delivery", {"event_id": str(event_id)})
    error = page.wait_for_selector("#delivery-error")
    assert error is not None
    assert "analyst@example.com (analyst) may not replay webhooks" in error.inner_text()
    assert _delivery_status(dashboard, event_id) == ("dead", 8)
    assert "replay of event" in dashboard.log.read_text()
    screenshot(page, dashboard, "payment-detail-replay-refused")
