"""Payments: free-text search, filters, sort orders, keyset pages and a streamed CSV export.

Filters are parsed here only as far as turning text into values (dates, ``parse_amount`` for
amounts); what they mean is ``search_payments``'s business. The export runs as a background
event: it walks ``export_payments_csv`` (keyset batches) and writes each batch to the user's own
export file under ``var/exports`` (``dashboard.exports``), updating a progress counter, then has
the browser download it from the backend's signed-in ``/exports`` route and deletes it two
minutes later, so the server never holds more than one batch whatever the size of the export.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import reflex as rx
from reflex.event import EventSpec
from reflex.vars import ObjectVar

from dashboard.components.nav import layout
from dashboard.exports import ExportRefused, download_url, new_export_path
from dashboard.state import LOGIN_ROUTE, AuthState, actor_for_session
from payments_core.db import read_engine, transaction
from payments_core.money import CURRENCY_EXPONENTS, MoneyError, parse_amount
from payments_core.services.permissions import Actor, PermissionDenied
from payments_core.services.search import (
    METHODS,
    PROVIDERS,
    STATUSES,
    PaymentFilters,
    SearchError,
    export_payments_csv,
    record_payments_export,
    search_payments,
)

ROUTE = "/payments"
ANY = "any"
PAGE_SIZE = 50
EXPORT_BATCH = 500
EXPORT_LINK_SECONDS = 120  # a file left behind by a restart is swept by the next export
SORT_LABELS = {
    "newest": "Newest first",
    "oldest": "Oldest first",
    "amount_desc": "Amount, largest first",
    "amount_asc": "Amount, smallest first",
}
CURRENCIES = sorted(CURRENCY_EXPONENTS)


class FilterInputError(ValueError):
    """Something typed into a filter that is not a date or an amount; safe to show."""


def _day(text: str, what: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise FilterInputError(f"the {what} date {text!r} is not a date like 2025-03-01") from exc


def _amount(text: str, currency: str | None, what: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if currency is None:
        raise FilterInputError("choose a currency to filter by amount")
    try:
        return parse_amount(text, currency, allow_zero=True)
    except MoneyError as exc:
        raise FilterInputError(f"{what} amount: {exc}") from exc


class PaymentsState(AuthState):
    text: str = ""
    provider: str = ANY
    status: str = ANY
    method: str = ANY
    currency: str = ANY
    date_from: str = ""
    date_to: str = ""
    amount_min: str = ""
    amount_max: str = ""
    min_risk: str = ""
    refunded: bool = False
    disputed: bool = False
    flagged: bool = False
    sort: str = "newest"
    rows: rx.Field[list[dict[str, str]]] = rx.field([])
    # The cursor of each page shown so far: [""] is the first page.
    cursors: rx.Field[list[str]] = rx.field([""])
    next_cursor: str = ""
    error: str = ""
    exporting: bool = False
    export_rows: int = 0
    export_message: str = ""

    def _filters(self) -> PaymentFilters:
        """The filters as ``search_payments`` takes them; raises ``FilterInputError``."""
        currency = None if self.currency == ANY else self.currency
        day_from, day_to = _day(self.date_from, "from"), _day(self.date_to, "to")
        risk = self.min_risk.strip()
        if risk and not risk.isdigit():
            raise FilterInputError(f"the minimum risk score {risk!r} is not a whole number")
        return PaymentFilters(
            text=self.text or None,
            provider=None if self.provider == ANY else self.provider,
            status=None if self.status == ANY else self.status,
            method=None if self.method == ANY else self.method,
            currency=currency,
            created_from=datetime.combine(day_from, datetime.min.time(), UTC) if day_from else None,
            # The "to" day is included: the search's upper bound is exclusive.
            created_to=(
                datetime.combine(day_to + timedelta(days=1), datetime.min.time(), UTC)
                if day_to
                else None
            ),
            amount_min=_amount(self.amount_min, currency, "minimum"),
            amount_max=_amount(self.amount_max, currency, "maximum"),
            refunded=self.refunded,
            disputed=self.disputed,
            flagged=self.flagged,
            min_risk_score=int(risk) if risk else None,
            sort=self.sort,
        )

    def _load(self, cursor: str) -> EventSpec | None:
        from sqlmodel import Session

        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        try:
            filters = self._filters()
            with Session(read_engine()) as session:
                page = search_payments(
                    session=session,
                    actor=actor,
                    after=cursor or None,
                    limit=PAGE_SIZE,
                    **filters,
                )
        except (FilterInputError, SearchError, PermissionDenied) as exc:
            self.error, self.rows, self.next_cursor = str(exc), [], ""
            return None
        self.error = ""
        self.rows = [
            {
                "id": r.id,
                "created_at": r.created_at.strftime("%Y-%m-%d %H:%M"),
                "provider": r.provider,
                "reference": r.provider_reference or r.host_reference or "",
                "customer": r.customer_email or r.customer_phone or "",
                "method": r.method,
                "status": r.status,
                "amount": r.amount,
                "amount_minor": str(r.amount_minor),
                "flags": " ".join(
                    flag
                    for flag, on in (
                        ("refunded", r.refunded_minor > 0),
                        ("disputed", r.disputed_minor > 0),
                        ("flagged", r.review_reason is not None),
                    )
                    if on
                ),
            }
            for r in page.rows
        ]
        self.next_cursor = page.next_cursor or ""
        return None

    def _first(self) -> EventSpec | None:
        self.cursors = [""]
        return self._load("")

    @rx.event
    def load(self) -> EventSpec | None:
        return self._first()

    @rx.event
    def search(self, form: dict[str, Any]) -> EventSpec | None:
        self.text = str(form.get("text", "")).strip()
        self.date_from = str(form.get("date_from", ""))
        self.date_to = str(form.get("date_to", ""))
        self.amount_min = str(form.get("amount_min", ""))
        self.amount_max = str(form.get("amount_max", ""))
        self.min_risk = str(form.get("min_risk", ""))
        return self._first()

    @rx.event
    def set_provider_filter(self, value: str) -> EventSpec | None:
        self.provider = value
        return self._first()

    @rx.event
    def set_status_filter(self, value: str) -> EventSpec | None:
        self.status = value
        return self._first()

    @rx.event
    def set_method_filter(self, value: str) -> EventSpec | None:
        self.method = value
        return self._first()

    @rx.event
    def set_currency_filter(self, value: str) -> EventSpec | None:
        self.currency = value
        return self._first()

    @rx.event
    def set_sort(self, value: str) -> EventSpec | None:
        self.sort = value
        return self._first()

    @rx.event
    def set_refunded_filter(self, value: bool) -> EventSpec | None:
        self.refunded = bool(value)
        return self._first()

    @rx.event
    def set_disputed_filter(self, value: bool) -> EventSpec | None:
        self.disputed = bool(value)
        return self._first()

    @rx.event
    def set_flagged_filter(self, value: bool) -> EventSpec | None:
        self.flagged = bool(value)
        return self._first()

    @rx.event
    def next_page(self) -> EventSpec | None:
        if not self.next_cursor:
            return None
        self.cursors = [*self.cursors, self.next_cursor]
        return self._load(self.next_cursor)

    @rx.event
    def first_page(self) -> EventSpec | None:
        return self._first()

    @rx.event(background=True)
    async def export_csv(self) -> AsyncIterator[EventSpec | None]:
        """Write the current filter's CSV batch by batch, showing progress, then download it."""
        from sqlmodel import Session

        async with self:
            if self.exporting:
                return
            try:
                filters = self._filters()
            except FilterInputError as exc:
                self.export_message = str(exc)
                return
            self.exporting, self.export_rows = True, 0
            self.export_message = "Exporting…"
            token, page_url = self.session_token, str(self.router.url)
        # From here the button shows the export running. The session is read off the event loop:
        # a busy database must not stall every browser's connection.
        path: Path | None = None
        count, failure, signed_out, written = 0, "", False, False
        try:
            actor = await asyncio.to_thread(actor_for_session, token)
            if actor is None:
                signed_out = True
            else:
                path = new_export_path(actor)
                with (
                    Session(read_engine()) as session,
                    path.open("w", encoding="utf-8", newline="") as out,
                ):
                    lines = export_payments_csv(
                        session=session, actor=actor, batch_size=EXPORT_BATCH, **filters
                    )
                    out.write(next(lines))  # the header
                    for line in lines:
                        out.write(line)
                        count += 1
                        if count % EXPORT_BATCH == 0:
                            async with self:
                                self.export_rows = count
                            await asyncio.sleep(0)  # let the progress reach the browser
                await asyncio.to_thread(_audit_export, actor, path.name, count, filters)
                written = True
        except (SearchError, PermissionDenied, ExportRefused) as exc:
            failure = str(exc)
        finally:
            if not written:  # also on an unexpected error: never leave the button disabled
                if path is not None:
                    path.unlink(missing_ok=True)
                async with self:
                    self.exporting = False
                    self.export_message = failure or (
                        "" if signed_out else "The export failed; please try again."
                    )
        if signed_out:
            yield rx.redirect(LOGIN_ROUTE)
        if path is None or not written:
            return
        async with self:
            self.exporting, self.export_rows = False, count
            self.export_message = f"Exported {count} payments."
        # The backend's /exports route hands the file only to this user (dashboard/exports.py).
        yield rx.download(
            url=rx.Var.create(download_url(path.name, page_url)),
            filename=f"paydesk-payments-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv",
        )
        # The file only has to live until the browser has fetched it.
        await asyncio.sleep(EXPORT_LINK_SECONDS)
        path.unlink(missing_ok=True)


def _audit_export(actor: Actor, name: str, rows: int, filters: PaymentFilters) -> None:
    with transaction() as session:
        record_payments_export(session=session, actor=actor, rows=rows, name=name, **filters)


def _row(row: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.link(row["id"], href=f"/payments/{row['id']}", class_name="payment-link")),
        rx.table.cell(row["created_at"]),
        rx.table.cell(row["provider"], rx.el.br(), rx.text(row["method"], as_="span", size="1")),
        rx.table.cell(row["reference"]),
        rx.table.cell(row["customer"]),
        rx.table.cell(row["status"], " ", rx.text(row["flags"], as_="span", color_scheme="orange")),
        rx.table.cell(row["amount"], text_align="right", class_name="payment-amount"),
        class_name="payment-row",
        custom_attrs={"data-amount-minor": row["amount_minor"]},
    )


def _select(options: list[str], value: Any, on_change: Any, id_: str, label: str) -> rx.Component:
    return rx.vstack(
        rx.text(label, size="1", color_scheme="gray"),
        rx.select(options, value=value, on_change=on_change, id=id_),
        spacing="1",
    )


def _field(name: str, label: str, placeholder: str = "", type_: str = "text") -> rx.Component:
    return rx.vstack(
        rx.text(label, size="1", color_scheme="gray"),
        rx.input(name=name, id=name.replace("_", "-"), placeholder=placeholder, type=type_),
        spacing="1",
    )


def _check(label: str, checked: Any, on_change: Any, id_: str) -> rx.Component:
    return rx.checkbox(label, checked=checked, on_change=on_change, id=id_)


def payments_page() -> rx.Component:
    return layout(
        rx.heading("Payments", size="6"),
        rx.form(
            rx.hstack(
                rx.vstack(
                    rx.text("Search", size="1", color_scheme="gray"),
                    rx.input(
                        placeholder="Payment id, reference, email or phone",
                        name="text",
                        id="search-text",
                        width="22em",
                    ),
                    spacing="1",
                ),
                _field("date_from", "Created from", type_="date"),
                _field("date_to", "Created to", type_="date"),
                _field("amount_min", "Amount from", "e.g. 10.00"),
                _field("amount_max", "Amount to", "e.g. 1,000.00"),
                _field("min_risk", "Risk score at least", "0-100"),
                rx.button("Search", type="submit", id="search-button"),
                spacing="3",
                align="end",
                wrap="wrap",
            ),
            on_submit=PaymentsState.search,
            reset_on_submit=False,
        ),
        rx.hstack(
            _select(
                [ANY, *PROVIDERS],
                PaymentsState.provider,
                PaymentsState.set_provider_filter,
                "provider-filter",
                "Provider",
            ),
            _select(
                [ANY, *STATUSES],
                PaymentsState.status,
                PaymentsState.set_status_filter,
                "status-filter",
                "Status",
            ),
            _select(
                [ANY, *METHODS],
                PaymentsState.method,
                PaymentsState.set_method_filter,
                "method-filter",
                "Method",
            ),
            _select(
                [ANY, *CURRENCIES],
                PaymentsState.currency,
                PaymentsState.set_currency_filter,
                "currency-filter",
                "Currency",
            ),
            rx.vstack(
                rx.text("Sort", size="1", color_scheme="gray"),
                rx.select.root(
                    rx.select.trigger(id="sort-select"),
                    rx.select.content(
                        *(
                            rx.select.item(label, value=key, id=f"sort-{key}")
                            for key, label in SORT_LABELS.items()
                        )
                    ),
                    value=PaymentsState.sort,
                    on_change=PaymentsState.set_sort,
                ),
                spacing="1",
            ),
            _check(
                "Refunded",
                PaymentsState.refunded,
                PaymentsState.set_refunded_filter,
                "refunded-filter",
            ),
            _check(
                "Disputed",
                PaymentsState.disputed,
                PaymentsState.set_disputed_filter,
                "disputed-filter",
            ),
            _check(
                "Flagged", PaymentsState.flagged, PaymentsState.set_flagged_filter, "flagged-filter"
            ),
            rx.button(
                rx.cond(
                    PaymentsState.exporting,
                    rx.fragment(
                        rx.spinner(size="1"),
                        rx.text("Exporting… ", PaymentsState.export_rows, " rows", as_="span"),
                    ),
                    rx.text("Export CSV", as_="span"),
                ),
                on_click=PaymentsState.export_csv,
                disabled=PaymentsState.exporting,
                variant="soft",
                id="export-csv",
            ),
            rx.text(PaymentsState.export_message, size="2", id="export-message"),
            spacing="3",
            align="end",
            wrap="wrap",
            padding_y="1em",
        ),
        rx.cond(
            PaymentsState.error != "",
            rx.callout(PaymentsState.error, color_scheme="red", id="payments-error"),
        ),
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    *(
                        rx.table.column_header_cell(label)
                        for label in (
                            "Payment",
                            "Created (UTC)",
                            "Provider / method",
                            "Reference",
                            "Customer",
                            "Status",
                            "Amount",
                        )
                    )
                )
            ),
            rx.table.body(rx.foreach(PaymentsState.rows, _row)),
            width="100%",
            id="payments-table",
        ),
        rx.cond(PaymentsState.rows.length() == 0, rx.text("No payments match.", padding="1em")),
        rx.hstack(
            rx.button(
                "First page",
                on_click=PaymentsState.first_page,
                disabled=PaymentsState.cursors.length() <= 1,
                variant="soft",
                id="first-page",
            ),
            rx.button(
                "Next page",
                on_click=PaymentsState.next_page,
                disabled=PaymentsState.next_cursor == "",
                id="next-page",
            ),
            rx.text("Page ", PaymentsState.cursors.length()),
            align="center",
            padding_y="1em",
        ),
    )
