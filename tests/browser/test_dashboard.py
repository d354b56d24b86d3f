"""Sign-in, payments search and the payment timeline in headless Chromium (fixtures: conftest)."""

from __future__ import annotations

from browser_support import HOME, Dashboard, screenshot, sign_in
from playwright.sync_api import Page


def test_a_visitor_without_a_session_is_sent_to_sign_in(page: Page, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/payments")
    page.wait_for_url("**/login")
    screenshot(page, dashboard, "login")


def test_a_wrong_password_shows_a_readable_error(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "admin", password="not-the-password")
    error = page.wait_for_selector("#login-error")
    assert error is not None
    assert "wrong email or password" in error.inner_text()
    assert page.url.endswith("/login")
    screenshot(page, dashboard, "login-error")


def test_signing_in_lands_on_the_overview_and_a_signed_in_visit_to_login_goes_there(
    page: Page, dashboard: Dashboard
) -> None:
    sign_in(page, dashboard, "finance")
    page.wait_for_url(HOME)
    assert page.url == f"{dashboard.url}/overview"
    page.wait_for_selector(".provider-row")
    assert "finance@example.com" in page.inner_text("#signed-in-as")
    page.goto(f"{dashboard.url}/login")
    page.wait_for_url(HOME)
    page.goto(f"{dashboard.url}/")
    page.wait_for_url(HOME)


def test_admin_searches_and_opens_a_payment_timeline(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "admin")
    page.wait_for_url(HOME)
    page.click("#nav-payments")
    page.wait_for_url("**/payments")
    page.wait_for_selector(".payment-row")
    assert page.locator(".payment-row").count() == 50
    assert page.locator("#nav-users").is_visible()
    screenshot(page, dashboard, "payments")

    page.click("#next-page")
    page.wait_for_selector("text=Page 2")
    assert page.locator(".payment-row").count() == 50

    wanted = page.locator(".payment-link").nth(3).inner_text()
    page.fill("#search-text", wanted)
    page.click("#search-button")
    page.wait_for_function("document.querySelectorAll('.payment-row').length === 1")
    assert page.locator(".payment-link").inner_text() == wanted
    screenshot(page, dashboard, "payments-search")

    page.click(".payment-link")
    page.wait_for_url(f"**/payments/{wanted}")
    page.wait_for_selector(".timeline-row")
    assert wanted in page.inner_text("#payment-id")
    fields = page.inner_text("#payment-fields")
    assert "Amount" in fields and "Refundable" in fields
    assert page.locator(".timeline-row").count() >= 1
    screenshot(page, dashboard, "payment-detail")


def test_analyst_sees_no_admin_navigation_and_is_refused_on_the_server(
    page: Page, dashboard: Dashboard
) -> None:
    sign_in(page, dashboard, "analyst")
    page.wait_for_url(HOME)
    page.wait_for_selector(".provider-row")
    assert page.locator("#nav-payments").is_visible()
    assert page.locator("#nav-users").count() == 0
    assert "(analyst)" in page.inner_text("#signed-in-as")
    screenshot(page, dashboard, "payments-analyst")
    # Typing the address does not help: the page's on_load checks the role on the server.
    page.goto(f"{dashboard.url}/users")
    page.wait_for_url(HOME)
    page.click("#sign-out")
    page.wait_for_url("**/login")
