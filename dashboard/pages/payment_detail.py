"""One payment: amounts in its currency, customer, status, and its timeline."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import reflex as rx
from reflex.event import EventSpec
from reflex.vars import ObjectVar
from sqlmodel import Session

from dashboard.components.nav import layout
from dashboard.state import LOGIN_ROUTE, AuthState
from payments_core.db import read_engine
from payments_core.services.payments import PaymentNotFoundError
from payments_core.services.permissions import PermissionDenied
from payments_core.services.search import get_payment_view

ROUTE = "/payments/[payment_id]"
_DETAIL_FIELDS = (
    ("Status", "status"),
    ("Amount", "amount"),
    ("Captured", "captured"),
    ("Refunded", "refunded"),
    ("Refund in flight", "refund_pending"),
    ("Disputed", "disputed"),
    ("Refundable", "refundable"),
    ("Provider", "provider"),
    ("Provider reference", "provider_reference"),
    ("Host reference", "host_reference"),
    ("Method", "method"),
    ("Customer", "customer_name"),
    ("Email", "customer_email"),
    ("Phone", "customer_phone"),
    ("Description", "description"),
    ("Failure", "failure_reason"),
    ("Needs review", "review_reason"),
    ("Created (UTC)", "created_at"),
    ("Paid (UTC)", "paid_at"),
)


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else ""


def _change(from_status: str | None, to_status: str | None) -> str:
    if not to_status:
        return ""
    return f"{from_status} → {to_status}" if from_status else to_status


class PaymentDetailState(AuthState):
    payment: rx.Field[dict[str, str]] = rx.field({})
    timeline: rx.Field[list[dict[str, str]]] = rx.field([])
    error: str = ""

    @rx.event
    def load(self) -> EventSpec | None:
        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        payment_id = str(self.router.url.path).rstrip("/").rsplit("/", 1)[-1]
        self.payment, self.timeline = {}, []
        try:
            with Session(read_engine()) as session:
                view = get_payment_view(session=session, actor=actor, payment_id=payment_id)
        except (PaymentNotFoundError, PermissionDenied) as exc:
            self.error = str(exc)
            return None
        self.error = ""
        self.payment = {
            key: (
                _when(getattr(view, key)) if key.endswith("_at") else str(getattr(view, key) or "")
            )
            for _, key in _DETAIL_FIELDS
        } | {"id": view.id}
        self.timeline = [
            {
                "at": _when(e.at),
                "kind": e.kind,
                "actor": e.actor,
                "summary": e.summary,
                "change": _change(e.from_status, e.to_status),
            }
            for e in view.timeline
        ]
        return None


def _payment() -> ObjectVar[dict[str, str]]:
    # Reflex's type stubs see a dict field as an array; it is an object var at run time.
    return cast(ObjectVar[dict[str, str]], PaymentDetailState.payment)


def _event(event: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(event["at"]),
        rx.table.cell(event["kind"]),
        rx.table.cell(event["summary"]),
        rx.table.cell(event["change"]),
        rx.table.cell(event["actor"]),
        class_name="timeline-row",
    )


def payment_detail_page() -> rx.Component:
    return layout(
        rx.link("← Payments", href="/payments"),
        rx.cond(
            PaymentDetailState.error != "",
            rx.callout(PaymentDetailState.error, color_scheme="red", id="detail-error"),
        ),
        rx.cond(
            PaymentDetailState.payment.contains("id"),
            rx.vstack(
                rx.heading("Payment ", _payment()["id"], size="6", id="payment-id"),
                rx.data_list.root(
                    *(
                        rx.data_list.item(
                            rx.data_list.label(label),
                            rx.data_list.value(_payment()[key]),
                        )
                        for label, key in _DETAIL_FIELDS
                    ),
                    id="payment-fields",
                ),
                rx.heading("Timeline", size="4"),
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            *(
                                rx.table.column_header_cell(h)
                                for h in ("When (UTC)", "Kind", "What", "Status", "By")
                            )
                        )
                    ),
                    rx.table.body(rx.foreach(PaymentDetailState.timeline, _event)),
                    width="100%",
                    id="timeline",
                ),
                spacing="4",
                width="100%",
            ),
        ),
    )
