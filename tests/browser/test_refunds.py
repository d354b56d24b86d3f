"""Refunds in headless Chromium: finance requests one above the approval threshold, another manager
approves or rejects it, the requester cannot decide their own, and an analyst is refused on the
server even when the refund event is crafted by hand (fixtures: conftest). While a request runs,
its button is disabled and says so, and a second submission is ignored.

Each test makes its own captured CHF payment through the dummy provider, which refunds at once
and needs no account: the seeded CHF payments belong to providers the test app has no credentials
for (their refunds would end in needs_attention), and seeded dummy payments are in USD.
"""

from __future__ import annotations

import re
import uuid

from browser_support import (
    HOME,
    Dashboard,
    EventRelay,
    holding_writes,
    screenshot,
    sign_in,
    wait_for_log,
)
from factories import make_payment
from playwright.sync_api import Page, expect
from sqlmodel import Session, col, select

from dashboard.pages.payment_detail import PaymentDetailState
from payments_core.db import make_engine
from payments_core.models import Refund, utcnow

CAPTURED_MINOR = 120_000  # 1,200.00 CHF; the approval threshold is 500.00 CHF


def _captured_chf_payment(dashboard: Dashboard) -> str:
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session, session.begin():
            now = utcnow()
            payment = make_payment(
                session,
                provider="dummy",
                provider_reference=f"dmy_{uuid.uuid4().hex[:16]}",
                amount_minor=CAPTURED_MINOR,
                currency="CHF",
                status="succeeded",
                captured_minor=CAPTURED_MINOR,
                paid_at=now,
                status_changed_at=now,
            )
            return payment.id
    finally:
        engine.dispose()


def _refunds_of(dashboard: Dashboard, payment_id: str) -> list[Refund]:
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session:
            return list(
                session.exec(
                    select(Refund)
                    .where(col(Refund.payment_id) == payment_id)
                    .order_by(col(Refund.created_at))
                )
            )
    finally:
        engine.dispose()


def _switch_user(page: Page, dashboard: Dashboard, name: str) -> None:
    if page.locator("#sign-out").count():
        page.click("#sign-out")
        page.wait_for_url("**/login")
    sign_in(page, dashboard, name)
    page.wait_for_url(HOME)
    # The navigation follows the role once the session is checked on the server.
    expect(page.locator("#signed-in-as")).to_contain_text(f"{name}@example.com")


def _request_refund(page: Page, amount: str, reason: str) -> None:
    page.fill("#refund-amount", amount)
    page.fill("#refund-reason", reason)
    page.click("#refund-submit")


def test_finance_requests_above_the_threshold_and_a_manager_approves(
    page: Page, dashboard: Dashboard
) -> None:
    payment_id = _captured_chf_payment(dashboard)
    _switch_user(page, dashboard, "finance")
    expect(page.locator("#nav-refunds")).to_be_visible()
    page.goto(f"{dashboard.url}/payments/{payment_id}")
    page.wait_for_selector("#refund-form")

    # More than was captured: refused with the service's reason, nothing written.
    _request_refund(page, "2000.00", "customer returned the goods")
    error = page.wait_for_selector("#refund-error")
    assert error is not None
    assert "2,000.00 CHF is more than the 1,200.00 CHF left to refund" in error.inner_text()
    assert _refunds_of(dashboard, payment_id) == []
    screenshot(page, dashboard, "refund-refused")

    # The request is held in the app (its writes wait here) to look at the page meanwhile: the
    # button says it is working and cannot be pressed, and a second submission of the form
    # (which the disabled button no longer offers) is ignored by the server.
    with holding_writes(dashboard):
        _request_refund(page, "600.00", "customer returned the goods")
        submit = page.locator("#refund-submit")
        expect(submit).to_be_disabled()
        expect(submit).to_contain_text("Requesting refund…")
        screenshot(page, dashboard, "refund-requesting")
        page.eval_on_selector("#refund-form", "form => form.requestSubmit()")
        wait_for_log(dashboard, f"refund request on payment {payment_id} ignored")
        expect(submit).to_be_disabled()
    page.wait_for_selector("#refund-result-status")
    assert page.inner_text("#refund-result-status") == "pending_approval"
    expect(page.locator("#refund-submit")).to_be_enabled()
    expect(page.locator("#refund-submit")).to_have_text("Request refund")
    page.wait_for_selector(".refund-row")
    assert page.locator(".refund-row").count() == 1
    screenshot(page, dashboard, "refund-requested")
    [refund] = _refunds_of(dashboard, payment_id)
    assert (refund.status, refund.amount_minor, refund.requested_by) == (
        "pending_approval",
        60_000,
        "finance@example.com",
    )

    # Finance sees the queue but has no approval buttons.
    page.goto(f"{dashboard.url}/refunds")
    row = page.locator(".queue-row", has_text=refund.id)
    row.wait_for()
    assert row.locator(".approve-button").count() == 0

    _switch_user(page, dashboard, "manager")
    page.goto(f"{dashboard.url}/refunds")
    row = page.locator(".queue-row", has_text=refund.id)
    row.wait_for()
    assert "600.00 CHF" in row.inner_text() and "finance@example.com" in row.inner_text()
    screenshot(page, dashboard, "refunds-queue")
    row.locator(".approve-button").click()
    notice = page.wait_for_selector("#refunds-notice")
    assert notice is not None
    assert re.search(rf"Refund {refund.id} approved: (succeeded|processing)", notice.inner_text())
    assert page.locator(".queue-row", has_text=refund.id).count() == 0
    [refund] = _refunds_of(dashboard, payment_id)
    assert refund.status in {"succeeded", "processing"}
    assert refund.decided_by == "manager@example.com"

    # The history, filtered by status, lists it.
    page.click("#refund-status-filter")
    page.get_by_role("option", name=refund.status, exact=True).click()
    page.locator(".history-row", has_text=refund.id).wait_for()
    statuses = page.locator(".history-status").all_inner_texts()
    assert statuses and set(statuses) == {refund.status}
    screenshot(page, dashboard, "refunds-history")


def test_a_manager_cannot_decide_their_own_request_and_a_rejection_needs_a_reason(
    page: Page, dashboard: Dashboard
) -> None:
    payment_id = _captured_chf_payment(dashboard)
    _switch_user(page, dashboard, "manager")
    page.goto(f"{dashboard.url}/payments/{payment_id}")
    page.wait_for_selector("#refund-form")
    _request_refund(page, "550.00", "duplicate charge")
    page.wait_for_selector("#refund-result-status")
    assert page.inner_text("#refund-result-status") == "pending_approval"
    [refund] = _refunds_of(dashboard, payment_id)

    page.goto(f"{dashboard.url}/refunds")
    row = page.locator(".queue-row", has_text=refund.id)
    row.wait_for()
    row.locator(".approve-button").click()
    error = page.wait_for_selector("#refunds-error")
    assert error is not None
    assert "manager@example.com requested refund" in error.inner_text()
    assert "cannot approve it" in error.inner_text()
    screenshot(page, dashboard, "refunds-own-request-refused")
    assert _refunds_of(dashboard, payment_id)[0].status == "pending_approval"

    _switch_user(page, dashboard, "manager2")
    page.goto(f"{dashboard.url}/refunds")
    row = page.locator(".queue-row", has_text=refund.id)
    row.wait_for()
    row.locator(".reject-button").click()
    page.wait_for_function(
        "document.querySelector('#refunds-error')?.innerText.includes('say why')"
    )
    row.locator("input[name=reason]").fill("the charge was not a duplicate")
    row.locator(".reject-button").click()
    page.wait_for_selector("#refunds-notice")
    assert f"Refund {refund.id} rejected" in page.inner_text("#refunds-notice")
    [refund] = _refunds_of(dashboard, payment_id)
    assert (refund.status, refund.decided_by, refund.rejection_reason) == (
        "rejected",
        "manager2@example.com",
        "the charge was not a duplicate",
    )


def test_an_analyst_sees_no_refund_action_and_a_crafted_request_is_refused_on_the_server(
    page: Page, dashboard: Dashboard
) -> None:
    payment_id = _captured_chf_payment(dashboard)
    relay = EventRelay(page)  # between the page and the app's event socket

    _switch_user(page, dashboard, "analyst")
    assert page.locator("#nav-refunds").count() == 0
    page.goto(f"{dashboard.url}/payments/{payment_id}")
    page.wait_for_selector("#payment-fields")
    assert page.locator("#refund-form").count() == 0
    assert page.locator("#refund-amount").count() == 0
    screenshot(page, dashboard, "payment-detail-analyst")
    # The page offers no link either, and typing the address sends the analyst back.
    page.goto(f"{dashboard.url}/refunds")
    page.wait_for_url(HOME)

    page.goto(f"{dashboard.url}/payments/{payment_id}")
    page.wait_for_selector("#payment-fields")
    # Send what the page never offers, as the page itself.
    relay.send(
        f"{PaymentDetailState.get_full_name()}.request_refund",
        {"form": {"amount": "10.00", "reason": "crafted", "note": ""}},
    )

    error = page.wait_for_selector("#refund-error")
    assert error is not None
    assert "analyst@example.com (analyst) may not request refunds" in error.inner_text()
    screenshot(page, dashboard, "refund-crafted-refused")
    assert _refunds_of(dashboard, payment_id) == []
    assert "refund request refused" in dashboard.log.read_text()
