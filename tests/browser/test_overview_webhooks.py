"""The Overview and Webhooks pages in headless Chromium: figures, the attention queue, the inbox,
and replay (finance yes, analyst no button)."""

from __future__ import annotations

import uuid

from browser_support import HOME, Dashboard, screenshot, sign_in
from playwright.sync_api import Page
from sqlmodel import Session

from payments_core.db import make_engine
from payments_core.models import InboxStatus, WebhookEvent


def _add_event(dashboard: Dashboard, status: InboxStatus, error: str) -> int:
    """One inbox row straight through the models: the newest, so it tops the list."""
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session, session.begin():
            event = WebhookEvent(
                provider="stripe",
                event_id=f"evt_test_{uuid.uuid4().hex[:12]}",
                event_type="payment_intent.succeeded",
                payload=b"{}",
                status=status.value,
                attempts=5,
                last_error=error,
            )
            session.add(event)
            session.flush()
            assert event.id is not None
            return event.id
    finally:
        engine.dispose()


def _status_of(dashboard: Dashboard, event_id: int) -> tuple[str, int]:
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session:
            event = session.get(WebhookEvent, event_id)
            assert event is not None
            return event.status, event.attempts
    finally:
        engine.dispose()


def test_an_analyst_sees_provider_rates_and_the_attention_queue(
    page: Page, dashboard: Dashboard
) -> None:
    dead = _add_event(dashboard, InboxStatus.DEAD, "RuntimeError: provider API timed out")
    sign_in(page, dashboard, "analyst")
    page.wait_for_url(HOME)  # the overview is where signing in lands
    page.wait_for_selector(".provider-row")
    assert page.locator(".provider-row").count() >= 1
    assert page.locator(".volume-row").count() >= 1
    assert "%" in page.inner_text("#providers-table")
    page.wait_for_selector(".attention-row")
    link = page.locator(".attention-link", has_text="Webhook stripe payment_intent.succeeded")
    dead_link = link.filter(has_text="dead").first
    assert dead_link.get_attribute("href") == "/webhooks"
    assert page.locator(".attention-row").count() >= 1
    screenshot(page, dashboard, "overview")
    dead_link.click()
    page.wait_for_url("**/webhooks")
    page.wait_for_selector(f"#webhook-{dead}")


def test_an_analyst_lists_the_inbox_without_replay(page: Page, dashboard: Dashboard) -> None:
    failed = _add_event(dashboard, InboxStatus.FAILED, "ValueError: unknown charge")
    sign_in(page, dashboard, "analyst")
    page.wait_for_url(HOME)
    page.click("#nav-webhooks")
    page.wait_for_url("**/webhooks")
    page.wait_for_selector(f"#webhook-{failed}")
    assert page.locator(".webhook-row").count() > 1
    # Newest first: the row just added is the top one.
    assert page.locator(".webhook-row").first.get_attribute("id") == f"webhook-{failed}"
    assert "unknown charge" in page.inner_text(f"#webhook-{failed}")
    assert page.locator(".replay-button").count() == 0
    screenshot(page, dashboard, "webhooks-analyst")

    page.click("#status-filter")
    page.get_by_role("option", name="failed", exact=True).click()
    page.click("#provider-filter")
    page.get_by_role("option", name="stripe", exact=True).click()
    page.wait_for_function(
        "() => { const rows = [...document.querySelectorAll('.webhook-row')];"
        " return rows.length > 0 && rows.every(r => r.querySelector('.webhook-status')"
        ".innerText.trim() === 'failed' && r.querySelectorAll('td')[1].innerText === 'stripe'); }"
    )
    assert page.locator(f"#webhook-{failed}").count() == 1
    screenshot(page, dashboard, "webhooks-filtered")


def test_finance_replays_a_failed_event_and_it_becomes_pending(
    page: Page, dashboard: Dashboard
) -> None:
    failed = _add_event(dashboard, InboxStatus.FAILED, "ValueError: unknown charge")
    sign_in(page, dashboard, "finance")
    page.wait_for_url(HOME)
    page.goto(f"{dashboard.url}/webhooks")
    page.wait_for_selector(f"#replay-{failed}")
    screenshot(page, dashboard, "webhooks")
    page.click(f"#replay-{failed}")
    page.wait_for_selector("#webhooks-message")
    page.wait_for_function(
        "(id) => document.querySelector(`#webhook-${id} .webhook-status`)"
        "?.innerText.trim() === 'pending'",
        arg=failed,
    )
    assert page.locator(f"#replay-{failed}").count() == 0
    assert _status_of(dashboard, failed) == (InboxStatus.PENDING.value, 0)
    screenshot(page, dashboard, "webhooks-replayed")
