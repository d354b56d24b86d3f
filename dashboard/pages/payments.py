"""Payments: free-text search, provider and status filters, newest first, keyset pages."""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex.event import EventSpec
from reflex.vars import ObjectVar

from dashboard.components.nav import layout
from dashboard.state import LOGIN_ROUTE, AuthState
from payments_core.db import read_engine
from payments_core.services.permissions import PermissionDenied
from payments_core.services.search import PROVIDERS, STATUSES, SearchError, search_payments

ROUTE = "/payments"
ANY = "any"
PAGE_SIZE = 50


class PaymentsState(AuthState):
    text: str = ""
    provider: str = ANY
    status: str = ANY
    rows: rx.Field[list[dict[str, str]]] = rx.field([])
    # The cursor of each page shown so far: [""] is the first page.
    cursors: rx.Field[list[str]] = rx.field([""])
    next_cursor: str = ""
    error: str = ""

    def _load(self, cursor: str) -> EventSpec | None:
        from sqlmodel import Session

        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        try:
            with Session(read_engine()) as session:
                page = search_payments(
                    session=session,
                    actor=actor,
                    text=self.text or None,
                    provider=None if self.provider == ANY else self.provider,
                    status=None if self.status == ANY else self.status,
                    after=cursor or None,
                    limit=PAGE_SIZE,
                )
        except (SearchError, PermissionDenied) as exc:
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
    def next_page(self) -> EventSpec | None:
        if not self.next_cursor:
            return None
        self.cursors = [*self.cursors, self.next_cursor]
        return self._load(self.next_cursor)

    @rx.event
    def first_page(self) -> EventSpec | None:
        return self._first()


def _row(row: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.link(row["id"], href=f"/payments/{row['id']}", class_name="payment-link")),
        rx.table.cell(row["created_at"]),
        rx.table.cell(row["provider"]),
        rx.table.cell(row["reference"]),
        rx.table.cell(row["customer"]),
        rx.table.cell(row["status"]),
        rx.table.cell(row["amount"], text_align="right"),
        class_name="payment-row",
    )


def payments_page() -> rx.Component:
    return layout(
        rx.heading("Payments", size="6"),
        rx.hstack(
            rx.form(
                rx.hstack(
                    rx.input(
                        placeholder="Payment id, reference, email or phone",
                        name="text",
                        id="search-text",
                        width="24em",
                    ),
                    rx.button("Search", type="submit", id="search-button"),
                ),
                on_submit=PaymentsState.search,
                reset_on_submit=False,
            ),
            rx.select(
                [ANY, *PROVIDERS],
                value=PaymentsState.provider,
                on_change=PaymentsState.set_provider_filter,
                id="provider-filter",
            ),
            rx.select(
                [ANY, *STATUSES],
                value=PaymentsState.status,
                on_change=PaymentsState.set_status_filter,
                id="status-filter",
            ),
            spacing="3",
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
                            "Provider",
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
