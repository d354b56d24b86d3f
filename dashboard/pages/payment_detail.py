"""One payment: amounts in its currency, customer, status, its refunds and its timeline; the
"Request refund" form for roles that may request one (the handler and the service both check).

A refund request may call the provider, so it runs as a background event: the button is disabled
and says so while it runs, and a second request from the same page is ignored until it ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import reflex as rx
from reflex.event import EventSpec
from reflex.vars import ObjectVar
from sqlmodel import Session

from dashboard.components.nav import layout
from dashboard.state import LOGIN_ROUTE, AuthState, actor_for_session
from payments_core.db import read_engine, transaction
from payments_core.models import Refund
from payments_core.money import MoneyError, format_amount, parse_amount
from payments_core.providers.registry import Adapters
from payments_core.services.payments import PaymentNotFoundError
from payments_core.services.permissions import Actor, Permission, PermissionDenied, require
from payments_core.services.refunds import RefundError, refunds_for_payment, request_and_execute
from payments_core.services.search import get_payment_view

log = logging.getLogger(__name__)
# One set of provider adapters per server process, built from the settings on first use.
ADAPTERS = Adapters()

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


def refund_row(refund: Refund) -> dict[str, str]:
    """A refund as the dashboard's tables show it (also used by the refunds page)."""
    return {
        "id": refund.id,
        "payment_id": refund.payment_id,
        "requested_at": _when(refund.created_at),
        "amount": format_amount(refund.amount_minor, refund.currency),
        "status": refund.status,
        "reason": refund.reason,
        "note": refund.note or "",
        "requested_by": refund.requested_by,
        "decided_by": refund.decided_by or "",
        "why": refund.rejection_reason or refund.failure_reason or "",
    }


def _change(from_status: str | None, to_status: str | None) -> str:
    if not to_status:
        return ""
    return f"{from_status} → {to_status}" if from_status else to_status


@dataclass(frozen=True, slots=True)
class _RefundOutcome:
    actor: Actor | None  # None: the session has ended
    refund: Refund | None = None
    error: str = ""


def _request_refund(
    token: str, payment_id: str, currency: str, form: dict[str, Any]
) -> _RefundOutcome:
    """Check the session and the permission, then request (and, when due, execute) the refund."""
    actor = actor_for_session(token)
    if actor is None:
        return _RefundOutcome(None)
    try:
        require(actor, Permission.REQUEST_REFUND)
        if not currency:
            raise RefundError("payment", f"payment {payment_id} is not loaded")
        try:
            amount_minor = parse_amount(str(form.get("amount", "")), currency)
        except MoneyError as exc:
            raise RefundError("amount", str(exc)) from None
        refund = request_and_execute(
            transaction=transaction,
            adapters=ADAPTERS,
            actor=actor,
            payment_id=payment_id,
            amount_minor=amount_minor,
            currency=currency,
            reason=str(form.get("reason", "")),
            note=str(form.get("note", "")) or None,
        )
    except PermissionDenied as exc:
        log.warning("refund request refused on payment %s: %s", payment_id, exc)
        return _RefundOutcome(actor, error=f"Refused: {exc}")
    except RefundError as exc:
        return _RefundOutcome(actor, error=f"Refund refused ({exc.field}): {exc.message}")
    return _RefundOutcome(actor, refund)


class PaymentDetailState(AuthState):
    payment: rx.Field[dict[str, str]] = rx.field({})
    timeline: rx.Field[list[dict[str, str]]] = rx.field([])
    refunds: rx.Field[list[dict[str, str]]] = rx.field([])
    error: str = ""
    # The outcome of the last refund request: a refusal, or the new refund's status.
    refund_error: str = ""
    refund_notice: str = ""
    refund_status: str = ""
    refunding: bool = False  # a request is with the service (and maybe the provider) right now
    _currency: str = ""

    def _payment_id(self) -> str:
        return str(self.router.url.path).rstrip("/").rsplit("/", 1)[-1]

    def _fill(self, actor: Actor) -> None:
        payment_id = self._payment_id()
        self.payment, self.timeline, self.refunds, self._currency = {}, [], [], ""
        try:
            with Session(read_engine()) as session:
                view = get_payment_view(session=session, actor=actor, payment_id=payment_id)
                refunds = refunds_for_payment(session=session, payment_id=view.id)
        except (PaymentNotFoundError, PermissionDenied) as exc:
            self.error = str(exc)
            return
        self.error = ""
        self._currency = view.currency
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
        self.refunds = [refund_row(r) for r in refunds]

    @rx.event
    def load(self) -> EventSpec | None:
        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        self.refund_error = self.refund_notice = self.refund_status = ""
        self._fill(actor)
        return None

    @rx.event(background=True)
    async def request_refund(self, form: dict[str, Any]) -> AsyncIterator[EventSpec | None]:
        async with self:
            if self.refunding:  # one request at a time, whatever the browser sends
                log.warning(
                    "refund request on payment %s ignored: one is already running",
                    self._payment_id(),
                )
                return
            self.refunding = True
            self.refund_error = self.refund_notice = self.refund_status = ""
            token, payment_id, currency = self.session_token, self._payment_id(), self._currency
        # The form shows the request running from here on; the session check and the provider
        # call run off the event loop, so a slow provider stalls no one else's page.
        outcome: _RefundOutcome | None = None
        try:
            outcome = await asyncio.to_thread(_request_refund, token, payment_id, currency, form)
        finally:
            async with self:
                self.refunding = False
                if outcome is None:  # an unexpected error (logged by Reflex): the outcome is open
                    self.refund_error = (
                        "The refund request did not finish; check this payment's refunds "
                        "before trying again."
                    )
                elif outcome.actor is not None:
                    self.refund_error = outcome.error
                    if outcome.refund is not None:
                        refund = outcome.refund
                        self.refund_status = refund.status
                        self.refund_notice = (
                            f"Refund {refund.id} of "
                            f"{format_amount(refund.amount_minor, refund.currency)}"
                        )
                        self._fill(outcome.actor)
        if outcome is not None and outcome.actor is None:
            yield rx.redirect(LOGIN_ROUTE)


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


def _refund(refund: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(refund["requested_at"]),
        rx.table.cell(refund["id"]),
        rx.table.cell(refund["amount"], text_align="right"),
        rx.table.cell(refund["status"], class_name="refund-status"),
        rx.table.cell(refund["reason"]),
        rx.table.cell(refund["requested_by"]),
        rx.table.cell(refund["decided_by"]),
        rx.table.cell(refund["why"]),
        class_name="refund-row",
    )


def _refunds_table() -> rx.Component:
    return rx.table.root(
        rx.table.header(
            rx.table.row(
                *(
                    rx.table.column_header_cell(h)
                    for h in (
                        "Requested (UTC)",
                        "Refund",
                        "Amount",
                        "Status",
                        "Reason",
                        "Requested by",
                        "Decided by",
                        "Why",
                    )
                )
            )
        ),
        rx.table.body(rx.foreach(PaymentDetailState.refunds, _refund)),
        width="100%",
        id="refunds",
    )


def _refund_form() -> rx.Component:
    return rx.form(
        rx.hstack(
            rx.input(placeholder="Amount, e.g. 12.50", name="amount", id="refund-amount"),
            rx.input(placeholder="Reason", name="reason", id="refund-reason", width="16em"),
            rx.input(placeholder="Note (optional)", name="note", id="refund-note", width="20em"),
            rx.button(
                rx.cond(
                    PaymentDetailState.refunding,
                    rx.fragment(rx.spinner(size="1"), "Requesting refund…"),
                    "Request refund",
                ),
                type="submit",
                disabled=PaymentDetailState.refunding,
                id="refund-submit",
            ),
            spacing="3",
        ),
        on_submit=PaymentDetailState.request_refund,
        reset_on_submit=False,
        id="refund-form",
    )


def _refund_outcome() -> rx.Component:
    # Outside the permission cond: a refusal is shown whoever triggered it.
    return rx.fragment(
        rx.cond(
            PaymentDetailState.refund_error != "",
            rx.callout(PaymentDetailState.refund_error, color_scheme="red", id="refund-error"),
        ),
        rx.cond(
            PaymentDetailState.refund_status != "",
            rx.callout.root(
                rx.callout.text(
                    PaymentDetailState.refund_notice,
                    ": ",
                    rx.el.span(PaymentDetailState.refund_status, id="refund-result-status"),
                ),
                color_scheme="green",
                id="refund-notice",
            ),
        ),
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
                rx.heading("Refunds", size="4"),
                rx.cond(
                    AuthState.permissions.contains(Permission.REQUEST_REFUND.value),
                    _refund_form(),
                ),
                _refund_outcome(),
                _refunds_table(),
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
