"""Payments page filters, sort and CSV export in headless Chromium (fixtures: conftest).

Expected rows come from the same services against the seeded database the app runs on, so the
tests do not depend on what the seed happens to generate. The export's download route is also
asked directly (httpx, on the app's backend port) with and without the right session.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import httpx
from browser_support import HOME, Dashboard, holding_writes, screenshot, sign_in
from playwright.sync_api import Browser, Page, expect
from sqlmodel import Session, col, select

from dashboard.state import SESSION_COOKIE
from payments_core.db import make_engine
from payments_core.models import AppUser, AuditEntry, Role
from payments_core.services.permissions import Actor
from payments_core.services.search import export_payments_csv, search_payments

ADMIN = Actor(name="admin@example.com", role=Role.ADMIN)


def _matching(dashboard: Dashboard, **filters: object) -> list[str]:
    """Ids of every payment matching ``filters``, in the filter's order (via the export)."""
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session:
            lines = export_payments_csv(session=session, actor=ADMIN, **filters)  # type: ignore[arg-type]
            return [row["payment_id"] for row in csv.DictReader(lines)]
    finally:
        engine.dispose()


def _first_page(dashboard: Dashboard, **filters: object) -> list[str]:
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session:
            page = search_payments(session=session, actor=ADMIN, limit=50, **filters)  # type: ignore[arg-type]
            return [row.id for row in page.rows]
    finally:
        engine.dispose()


def _shown_ids(page: Page) -> list[str]:
    return page.locator(".payment-link").all_inner_texts()


def _choose(page: Page, select_id: str, option: str) -> None:
    page.click(f"#{select_id}")
    page.get_by_role("option", name=option, exact=True).click()


def _wait_for_ids(page: Page, expected: list[str]) -> None:
    page.wait_for_function(
        "ids => JSON.stringify([...document.querySelectorAll('.payment-link')]"
        ".map(a => a.innerText)) === JSON.stringify(ids)",
        arg=expected,
    )


def test_a_filter_narrows_the_rows_and_bad_input_is_explained(
    page: Page, dashboard: Dashboard
) -> None:
    everything = _matching(dashboard)
    cards = _matching(dashboard, method="card")
    assert 0 < len(cards) < len(everything)
    _open_payments(page, dashboard, "admin")

    _choose(page, "method-filter", "card")
    _wait_for_ids(page, cards[:50])
    methods = page.locator(".payment-row td:nth-child(3) span").all_inner_texts()
    assert set(methods) == {"card"} and len(methods) == len(cards[:50])
    screenshot(page, dashboard, "payments-filter-method")

    page.fill("#amount-min", "10.00")
    page.click("#search-button")
    error = page.wait_for_selector("#payments-error")
    assert error is not None
    assert "choose a currency to filter by amount" in error.inner_text()
    assert page.locator(".payment-row").count() == 0
    screenshot(page, dashboard, "payments-filter-error")


def test_sort_by_amount_orders_the_rows(page: Page, dashboard: Dashboard) -> None:
    expected = _first_page(dashboard, sort="amount_desc")
    _open_payments(page, dashboard, "admin")

    page.click("#sort-select")
    page.click("#sort-amount_desc")
    _wait_for_ids(page, expected)
    minors = [
        int(value or 0)
        for value in page.locator(".payment-row").evaluate_all(
            "rows => rows.map(r => r.dataset.amountMinor)"
        )
    ]
    assert len(minors) == 50
    assert minors == sorted(minors, reverse=True)
    screenshot(page, dashboard, "payments-sorted-by-amount")


def test_export_downloads_the_csv_of_the_current_filter_for_its_author_only(
    page: Page, browser: Browser, dashboard: Dashboard, tmp_path: Path
) -> None:
    expected = _matching(dashboard, method="card", sort="amount_asc")
    _open_payments(page, dashboard, "admin")
    _choose(page, "method-filter", "card")
    page.click("#sort-select")
    page.click("#sort-amount_asc")
    _wait_for_ids(page, expected[:50])

    # The export is held in the app (its session check waits for the database here) to look at
    # the page meanwhile: the button says it is working and cannot be pressed again.
    button = page.locator("#export-csv")
    with page.expect_download() as download_info, holding_writes(dashboard):
        button.click()
        expect(button).to_be_disabled()
        expect(button).to_contain_text("Exporting…")
        screenshot(page, dashboard, "payments-exporting")
    download = download_info.value
    target = tmp_path / "export.csv"
    download.save_as(target)
    with target.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(expected)
    assert [row["payment_id"] for row in rows] == expected
    assert {row["method"] for row in rows} == {"card"}
    assert all(row["amount_minor"].isdigit() and row["currency"] for row in rows)
    page.wait_for_selector(f"text=Exported {len(expected)} payments.")
    expect(button).to_be_enabled()
    screenshot(page, dashboard, "payments-export")

    # It came from the backend's signed-in route, out of the admin's own folder under VAR_DIR.
    url = download.url
    prefix = f"{dashboard.backend_url}/exports/"
    assert url.startswith(prefix)
    assert re.fullmatch(r"paydesk-payments-\d{8}-\d{6}\.csv", download.suggested_filename)
    name = url.removeprefix(prefix)
    [stored] = (dashboard.var_dir / "exports").glob(f"*/{name}")
    assert stored.parent.name == str(_user_id(dashboard, "admin"))
    # Customer data left the system: the audit log says who, which filter and how many rows.
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session:
            audit = session.exec(
                select(AuditEntry).where(
                    col(AuditEntry.action) == "payments.exported", col(AuditEntry.entity_id) == name
                )
            ).one()
    finally:
        engine.dispose()
    assert audit.actor == "admin@example.com"
    assert audit.after is not None and audit.after["rows"] == len(expected)
    assert audit.after["filters"]["method"] == "card"

    admin = _session_cookie(page)
    answer = httpx.get(url, cookies=admin)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith("attachment;")
    assert answer.text == target.read_text(encoding="utf-8")

    # Anyone else gets no content: no session, a made-up one, another user's, or a name that is
    # not one of the admin's exports.
    _refused(httpx.get(url), 401)
    _refused(httpx.get(url, cookies={SESSION_COOKIE: "not-a-session"}), 401)
    context = browser.new_context()
    try:
        other = context.new_page()
        sign_in(other, dashboard, "finance")
        other.wait_for_url(HOME)
        finance = _session_cookie(other)
    finally:
        context.close()
    _refused(httpx.get(url, cookies=finance), 404)
    admin_id = _user_id(dashboard, "admin")
    for bad in (
        "..%2F..%2Fpaydesk.sqlite3",
        "..%2Fpaydesk.sqlite3",
        "%2E%2E",
        f"..%2F{admin_id}%2F{name}",
        f"{admin_id}%2F{name}",
        f"%2E%2E%2F{admin_id}%2F{name}",
        f"{name[:-4]}.txt",
        f"{name}%00",
        "A" * 32 + ".csv",
    ):
        _refused(httpx.get(f"{prefix}{bad}", cookies=admin), 404)


def _open_payments(page: Page, dashboard: Dashboard, name: str) -> None:
    sign_in(page, dashboard, name)
    page.wait_for_url(HOME)
    page.click("#nav-payments")
    page.wait_for_url("**/payments")
    page.wait_for_selector(".payment-row")


def _session_cookie(page: Page) -> dict[str, str]:
    [value] = [c["value"] for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    return {SESSION_COOKIE: value}


def _user_id(dashboard: Dashboard, name: str) -> int:
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session:
            user = session.exec(
                select(AppUser).where(col(AppUser.email) == f"{name}@example.com")
            ).one()
            assert user.id is not None
            return user.id
    finally:
        engine.dispose()


def _refused(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, (answer.request.url, answer.status_code)
    assert "payment_id" not in answer.text  # the CSV header: no export content
