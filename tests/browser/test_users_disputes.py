"""Users and disputes in headless Chromium: an admin adds someone and changes their role, an
analyst is sent away from /users by the server, and finance keeps a dispute evidence draft."""

from __future__ import annotations

from datetime import timedelta

from browser_support import Dashboard, screenshot, sign_in
from factories import make_payment
from playwright.sync_api import Page
from sqlmodel import Session

from payments_core.db import make_engine
from payments_core.models import Dispute, new_id, utcnow


def stripe_dispute(dashboard: Dashboard) -> tuple[str, str]:
    """An open Stripe dispute, due soon, in the app's database; (dispute, payment)."""
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session, session.begin():
            payment = make_payment(session, status="succeeded", amount_minor=8_800)
            dispute = Dispute(
                id=new_id("dp"),
                payment_id=payment.id,
                provider_dispute_id=f"du_test_{payment.id[-8:]}",
                amount_minor=8_800,
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


def test_an_admin_adds_a_user_and_changes_their_role(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "admin")
    page.wait_for_url("**/payments")
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
    page.wait_for_url("**/payments")
    assert page.locator("#nav-users").count() == 0
    assert page.locator("#nav-disputes").count() == 0
    page.goto(f"{dashboard.url}/users")
    page.wait_for_url("**/payments")
    assert page.locator(".user-row").count() == 0
    page.goto(f"{dashboard.url}/disputes")
    page.wait_for_url("**/payments")
    screenshot(page, dashboard, "users-analyst")


def test_finance_keeps_an_evidence_draft_and_sees_the_provider_refusal(
    page: Page, dashboard: Dashboard
) -> None:
    dispute_id, payment_id = stripe_dispute(dashboard)

    sign_in(page, dashboard, "finance")
    page.wait_for_url("**/payments")
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

    # Stripe is not configured in the test app: submitting says so and the draft stays.
    page.click("#evidence-submit")
    error = page.wait_for_selector("#disputes-error")
    assert error is not None and error.inner_text().strip() != ""
    assert page.input_value("#evidence-product_description") == text
    screenshot(page, dashboard, "disputes-refused")
