"""Payments page filters, sort and CSV export in headless Chromium (fixtures: conftest).

Expected rows come from the same services against the seeded database the app runs on, so the
tests do not depend on what the seed happens to generate.
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

from browser_support import ROOT, Dashboard, screenshot, sign_in
from playwright.sync_api import Page
from sqlmodel import Session

from payments_core.db import make_engine
from payments_core.models import Role
from payments_core.services.permissions import Actor
from payments_core.services.search import export_payments_csv, search_payments

ADMIN = Actor(name="admin@example.com", role=Role.ADMIN)
# Where the app (run from the repository) writes exports: Reflex's upload directory.
UPLOADS = ROOT / "uploaded_files"


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
    sign_in(page, dashboard, "admin")
    page.wait_for_url("**/payments")
    page.wait_for_selector(".payment-row")

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
    sign_in(page, dashboard, "admin")
    page.wait_for_url("**/payments")
    page.wait_for_selector(".payment-row")

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


def test_export_downloads_the_csv_of_the_current_filter(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    existed = UPLOADS.exists()
    before = set((UPLOADS / "exports").glob("*.csv"))
    try:
        _export_and_check(page, dashboard, tmp_path)
    finally:  # the app deletes its export two minutes later; do not leave it in the checkout
        for made in set((UPLOADS / "exports").glob("*.csv")) - before:
            made.unlink(missing_ok=True)
        if not existed:
            for folder in (UPLOADS / "exports", UPLOADS):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty


def _export_and_check(page: Page, dashboard: Dashboard, tmp_path: Path) -> None:
    expected = _matching(dashboard, method="card", sort="amount_asc")
    sign_in(page, dashboard, "admin")
    page.wait_for_url("**/payments")
    page.wait_for_selector(".payment-row")
    _choose(page, "method-filter", "card")
    page.click("#sort-select")
    page.click("#sort-amount_asc")
    _wait_for_ids(page, expected[:50])

    with page.expect_download() as download_info:
        page.click("#export-csv")
    target = tmp_path / "export.csv"
    download_info.value.save_as(target)
    with target.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(expected)
    assert [row["payment_id"] for row in rows] == expected
    assert {row["method"] for row in rows} == {"card"}
    assert all(row["amount_minor"].isdigit() and row["currency"] for row in rows)
    page.wait_for_selector(f"text=Exported {len(expected)} payments.")
    screenshot(page, dashboard, "payments-export")
