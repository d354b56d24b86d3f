"""The audit log page in headless Chromium: filters and the chain status; refused to analysts."""

from __future__ import annotations

from browser_support import HOME, Dashboard, screenshot, sign_in
from playwright.sync_api import Page


def test_finance_filters_the_audit_log_and_sees_the_chain_intact(
    page: Page, dashboard: Dashboard
) -> None:
    sign_in(page, dashboard, "finance")
    page.wait_for_url(HOME)
    page.click("#nav-audit")
    page.wait_for_url("**/audit")
    page.wait_for_selector(".audit-row")
    assert "Chain intact" in page.inner_text("#chain-status")
    screenshot(page, dashboard, "audit")

    action = page.locator(".audit-row").first.locator("td").nth(3).inner_text()
    page.fill("#audit-action", action)
    page.click("#audit-filter")
    page.wait_for_function(
        "(action) => [...document.querySelectorAll('.audit-row')].every("
        "r => r.querySelectorAll('td')[3].innerText === action)",
        arg=action,
    )
    assert page.locator(".audit-row").count() >= 1

    page.fill("#audit-action", "no.such-action")
    page.click("#audit-filter")
    page.wait_for_selector("#audit-empty")
    screenshot(page, dashboard, "audit-filtered")


def test_an_analyst_has_no_audit_page(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "analyst")
    page.wait_for_url(HOME)
    page.wait_for_selector(".provider-row")
    assert page.locator("#nav-audit").count() == 0
    page.goto(f"{dashboard.url}/audit")
    page.wait_for_url(HOME)
