"""Users and disputes in headless Chromium: an admin adds someone and changes their role, an
analyst is sent away from /users by the server, and finance keeps a dispute evidence draft,
attaches a file through the upload control, sees the answer running, and accepts a dispute only
after confirming the amount lost (the app's Stripe adapter talks to the session's fake Stripe)."""

from __future__ import annotations

from datetime import timedelta

from browser_support import HOME, Dashboard, holding_writes, screenshot, sign_in
from factories import make_payment
from playwright.sync_api import Page, expect
from pydantic import SecretStr
from sqlmodel import Session

from payments_core.config import Settings
from payments_core.db import make_engine
from payments_core.models import Dispute, new_id, utcnow
from payments_core.providers.base import CheckoutRequest
from payments_core.providers.registry import Adapters
from payments_core.services.disputes import evidence_files

DISPUTED_MINOR = 8_800  # 88.00 CHF
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def stripe_dispute(
    dashboard: Dashboard, *, provider_dispute_id: str | None = None, intent_id: str | None = None
) -> tuple[str, str]:
    """An open Stripe dispute, due soon, in the app's database; (dispute, payment). Without
    ``provider_dispute_id`` the fake Stripe does not know it."""
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session, session.begin():
            payment = make_payment(
                session,
                status="succeeded",
                amount_minor=DISPUTED_MINOR,
                captured_minor=DISPUTED_MINOR,
                **({"provider_reference": intent_id} if intent_id else {}),
            )
            dispute = Dispute(
                id=new_id("dp"),
                payment_id=payment.id,
                provider_dispute_id=provider_dispute_id or f"du_test_{payment.id[-8:]}",
                amount_minor=DISPUTED_MINOR,
                currency="CHF",
                status="needs_response",
                reason="fraudulent",
                evidence_due_at=utcnow() + timedelta(days=2),
            )
            session.add(dispute)
            session.flush()
            return dispute.id, payment.id
    finally:
        engine.dispose()


def stripe_dispute_at_the_fake(dashboard: Dashboard) -> tuple[str, str, str]:
    """A paid Stripe payment disputed at the fake Stripe, and its rows; (dispute, payment, the
    provider's dispute id)."""
    settings = Settings(
        stripe_api_key=SecretStr(dashboard.stripe.api_key),
        stripe_api_base=dashboard.stripe.base_url,
        stripe_test_mode=True,
        provider_max_retries=0,
    )
    reference = new_id("pay")
    checkout = (
        Adapters(settings)
        .checkout("stripe")
        .create_checkout(
            CheckoutRequest(
                payment_id=reference,
                amount_minor=DISPUTED_MINOR,
                currency="CHF",
                idempotency_key=f"paydesk-{reference}-checkout",
                description="Order",
                success_url="https://shop.example/ok",
                cancel_url="https://shop.example/cancel",
            )
        )
    )
    assert checkout.provider_reference
    intent = dashboard.stripe.complete_session(checkout.provider_reference)
    remote = dashboard.stripe.create_dispute(intent["id"])
    dispute_id, payment_id = stripe_dispute(
        dashboard, provider_dispute_id=remote["id"], intent_id=intent["id"]
    )
    return dispute_id, payment_id, remote["id"]


def _dispute(dashboard: Dashboard, dispute_id: str) -> Dispute:
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session:
            dispute = session.get(Dispute, dispute_id)
            assert dispute is not None
            return dispute
    finally:
        engine.dispose()


def _open_dispute(page: Page, dashboard: Dashboard, dispute_id: str, payment_id: str) -> None:
    sign_in(page, dashboard, "finance")
    page.wait_for_url(HOME)
    page.click("#nav-disputes")
    page.wait_for_url("**/disputes")
    page.locator(".dispute-row", has_text=payment_id).locator(".dispute-select").click()
    page.wait_for_selector(f"#evidence-title >> text={dispute_id}")


def test_an_admin_adds_a_user_and_changes_their_role(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "admin")
    page.wait_for_url(HOME)
    page.click("#nav-users")
    page.wait_for_url("**/users")
    page.locator(".user-row", has_text="analyst@example.com").wait_for()

    # A weak password is refused with the service's reason.
    page.fill("#new-user-email", "newcomer@example.com")
    page.select_option("#new-user-role", "analyst")
    page.fill("#new-user-password", "short")
    page.click("#new-user-add")
    error = page.wait_for_selector("#users-error")
    assert error is not None and "password too short" in error.inner_text()

    page.fill("#new-user-password", "newcomer-password-123")
    page.click("#new-user-add")
    row = page.locator(".user-row", has_text="newcomer@example.com")
    row.wait_for()
    assert row.locator(".user-role").inner_text() == "analyst"
    assert row.locator(".user-active").inner_text() == "yes"

    row.locator(".role-select").select_option("finance")
    row.locator(".role-change").click()
    page.wait_for_function(
        "() => document.querySelector('#users-notice')?.innerText"
        ".includes('newcomer@example.com is now finance')"
    )
    assert row.locator(".user-role").inner_text() == "finance"

    # Refusals are messages, not errors: an admin cannot disable themselves.
    page.locator(".user-row", has_text="admin@example.com").locator(".user-disable").click()
    page.wait_for_function(
        "() => document.querySelector('#users-error')?.innerText"
        ".includes('cannot disable your own account')"
    )
    screenshot(page, dashboard, "users")


def test_an_analyst_cannot_open_users(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "analyst")
    page.wait_for_url(HOME)
    assert page.locator("#nav-users").count() == 0
    assert page.locator("#nav-disputes").count() == 0
    page.goto(f"{dashboard.url}/users")
    page.wait_for_url(HOME)
    assert page.locator(".user-row").count() == 0
    page.goto(f"{dashboard.url}/disputes")
    page.wait_for_url(HOME)
    screenshot(page, dashboard, "users-analyst")


def test_finance_keeps_an_evidence_draft_and_sees_the_provider_refusal(
    page: Page, dashboard: Dashboard
) -> None:
    dispute_id, payment_id = stripe_dispute(dashboard)

    sign_in(page, dashboard, "finance")
    page.wait_for_url(HOME)
    page.click("#nav-disputes")
    page.wait_for_url("**/disputes")
    row = page.locator(".dispute-row", has_text=payment_id)
    row.wait_for()
    assert "fraudulent" in row.inner_text() and "needs_response" in row.inner_text()
    row.locator(".dispute-select").click()
    page.wait_for_selector(f"#evidence-title >> text={dispute_id}")

    text = "Order shipped with tracking; customer confirmed delivery by email."
    page.fill("#evidence-product_description", text)
    page.click("#evidence-save")
    page.wait_for_function(
        "() => document.querySelector('#disputes-notice')?.innerText.includes('draft saved')"
    )

    page.reload()
    page.locator(".dispute-row", has_text=payment_id).locator(".dispute-select").click()
    page.wait_for_selector(f"#evidence-title >> text={dispute_id}")
    page.wait_for_function(
        "(t) => document.querySelector('#evidence-product_description')?.value === t", arg=text
    )
    screenshot(page, dashboard, "disputes")

    # While the answer is on its way both answers wait: the app's writes are held back here, so
    # the handler is still running when the page is looked at.
    with holding_writes(dashboard):
        page.click("#evidence-submit")
        expect(page.locator("#evidence-submit")).to_be_disabled()
        expect(page.locator("#evidence-submit")).to_contain_text("Submitting evidence…")
        expect(page.locator("#dispute-accept")).to_be_disabled()
        screenshot(page, dashboard, "disputes-submitting")
    # The fake Stripe knows no such dispute: the refusal is shown and the draft stays.
    page.wait_for_function(
        "() => document.querySelector('#disputes-error')?.innerText"
        ".includes('The provider refused')"
    )
    expect(page.locator("#evidence-submit")).to_be_enabled()
    expect(page.locator("#evidence-submit")).to_have_text("Submit evidence")
    assert page.input_value("#evidence-product_description") == text
    assert _dispute(dashboard, dispute_id).evidence_submitted_at is None
    screenshot(page, dashboard, "disputes-refused")


def test_finance_attaches_an_evidence_file_through_the_upload_control(
    page: Page, dashboard: Dashboard
) -> None:
    dispute_id, payment_id = stripe_dispute(dashboard)
    _open_dispute(page, dashboard, dispute_id, payment_id)

    page.select_option("#evidence-file-field", "receipt")
    page.locator("#evidence-upload input[type=file]").set_input_files(
        files=[{"name": "receipt-4711.png", "mimeType": "image/png", "buffer": PNG}]
    )
    expect(page.locator("#evidence-upload")).to_contain_text("receipt-4711.png")
    page.click("#evidence-attach")
    page.wait_for_function(
        "() => document.querySelector('#disputes-notice')?.innerText.includes('file attached')"
    )
    row = page.locator(".evidence-file-row", has_text="receipt-4711.png")
    expect(row).to_have_count(1)
    cells = row.locator("td").all_inner_texts()
    assert cells == ["receipt", "receipt-4711.png", "image/png", f"{len(PNG)} bytes", "in draft"]
    screenshot(page, dashboard, "disputes-file-attached")
    [stored] = evidence_files(_dispute(dashboard, dispute_id))
    assert (stored["name"], stored["field"], stored["size"]) == ("receipt-4711.png", "receipt", 72)


def test_accepting_a_dispute_asks_first_and_states_the_amount_lost(
    page: Page, dashboard: Dashboard
) -> None:
    dispute_id, payment_id, remote_id = stripe_dispute_at_the_fake(dashboard)
    _open_dispute(page, dashboard, dispute_id, payment_id)

    page.click("#dispute-accept")
    dialog = page.locator("#dispute-accept-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#accept-amount")).to_have_text("88.00 CHF")
    expect(dialog).to_contain_text("cannot be undone")
    screenshot(page, dashboard, "disputes-accept-confirm")

    # Cancel: nothing is sent and nothing changes.
    page.click("#dispute-accept-cancel")
    expect(dialog).to_have_count(0)
    assert dashboard.stripe.forms(f"/v1/disputes/{remote_id}/close") == []
    assert dashboard.stripe.disputes[remote_id]["status"] == "needs_response"
    assert _dispute(dashboard, dispute_id).status == "needs_response"
    expect(page.locator(".dispute-row", has_text=payment_id)).to_have_count(1)

    page.click("#dispute-accept")
    expect(dialog).to_be_visible()
    page.click("#dispute-accept-confirm")
    page.wait_for_function(
        "(id) => document.querySelector('#disputes-notice')?.innerText"
        ".includes(`Dispute ${id} accepted: now lost`)",
        arg=dispute_id,
    )
    assert len(dashboard.stripe.forms(f"/v1/disputes/{remote_id}/close")) == 1
    dispute = _dispute(dashboard, dispute_id)
    assert (dispute.status, dispute.closed_at is not None) == ("lost", True)
    # A lost dispute is no longer open: it leaves the list.
    expect(page.locator(".dispute-row", has_text=payment_id)).to_have_count(0)
    screenshot(page, dashboard, "disputes-accepted")
