"""Analytics in headless Chromium: every chart drawn, a range switch redraws, a CSV downloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from browser_support import HOME, Dashboard, screenshot, sign_in
from playwright.sync_api import Page

CHARTS = (
    "success-rate",
    "volume",
    "count",
    "method-mix",
    "currency-mix",
    "failure-reasons",
    "rates",
)
# The x values of the first bar trace of "Payments per day": one per day of the range.
COUNT_DAYS = "document.querySelector('#chart-count .js-plotly-plot')?.data?.[0]?.x?.length ?? 0"


def test_analyst_sees_every_chart_switches_range_and_downloads_csv(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    sign_in(page, dashboard, "analyst")
    page.wait_for_url(HOME)
    page.click("#nav-analytics")
    page.wait_for_url("**/analytics")

    for chart in CHARTS:
        # Drawn: plotly has rendered its SVG with at least one trace into the card.
        page.wait_for_selector(f"#chart-{chart} .js-plotly-plot .main-svg")
        page.wait_for_function(
            f"(document.querySelector('#chart-{chart} .js-plotly-plot')?.data ?? []).length > 0"
        )
    page.wait_for_function(f"{COUNT_DAYS} === 30")
    assert "Payments created" in page.inner_text("#range-label")
    assert page.locator("#rates-table tbody tr").count() >= 1
    screenshot(page, dashboard, "analytics-30-days")

    page.click("#range-90")
    page.wait_for_function(f"{COUNT_DAYS} === 90")
    first_day = (datetime.now(UTC).date() - timedelta(days=89)).isoformat()
    page.wait_for_selector(f"#range-label:has-text('{first_day}')")
    page.wait_for_selector("#chart-volume .js-plotly-plot .main-svg")
    screenshot(page, dashboard, "analytics-90-days")

    with page.expect_download() as download_info:
        page.click("#download-count")
    download = download_info.value
    assert download.suggested_filename.startswith("paydesk-count-")
    assert download.suggested_filename.endswith(".csv")
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    lines = target.read_text().splitlines()
    assert lines[0] == "day,currency,count,succeeded,volume_minor,volume_major,volume"
    # 90 days for each currency seen, and every payment of the range counted once.
    assert len(lines) > 90
    assert 250 <= sum(int(line.split(",")[2]) for line in lines[1:]) <= 300
