"""Refunds: the approval queue (managers approve, or reject saying why) and the recent history
with a status filter. Finance may look; the buttons are for roles that may approve, and every
handler checks again on the server before calling the refunds service."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import reflex as rx
from reflex.event import EventSpec
from reflex.vars import ObjectVar
from sqlmodel import Session

from dashboard.components.nav import layout
from dashboard.pages.payment_detail import ADAPTERS, refund_row
from dashboard.state import HOME_ROUTE, LOGIN_ROUTE, AuthState
from payments_core.db import read_engine, transaction
from payments_core.models import utcnow
from payments_core.services.permissions import Actor, Permission, PermissionDenied, require
from payments_core.services.refunds import (
    RefundError,
    RefundNotFoundError,
    approve_and_execute,
    recent_refunds,
    refunds_awaiting_approval,
    reject_refund,
)
from payments_core.status import RefundStatus

ROUTE = "/refunds"
ANY = "any"
STATUSES = [s.value for s in RefundStatus]

log = logging.getLogger(__name__)


def _age(since: datetime, now: datetime) -> str:
    minutes = max(0, int((now - since).total_seconds() // 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"


class RefundsState(AuthState):
    queue: rx.Field[list[dict[str, str]]] = rx.field([])
    history: rx.Field[list[dict[str, str]]] = rx.field([])
    status: str = ANY
    error: str = ""
    notice: str = ""

    def _fill(self, actor: Actor) -> None:
        now = utcnow()
        try:
            with Session(read_engine()) as session:
                history = recent_refunds(
                    session=session, actor=actor, status=None if self.status == ANY else self.status
                )
                # Reading the queue needs no more than the history did; the page is for those
                # who may request refunds (checked in load and in every handler).
                queue = refunds_awaiting_approval(session=session)
        except (RefundError, PermissionDenied) as exc:
            self.error, self.queue, self.history = str(exc), [], []
            return
        self.queue = [refund_row(r) | {"age": _age(r.created_at, now)} for r in queue]
        self.history = [refund_row(r) for r in history]

    def _signed_in(self) -> Actor | EventSpec:
        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        if not actor.can(Permission.REQUEST_REFUND):
            return rx.redirect(HOME_ROUTE)
        return actor

    @rx.event
    def load(self) -> EventSpec | None:
        actor = self._signed_in()
        if not isinstance(actor, Actor):
            return actor
        self.error = self.notice = ""
        self._fill(actor)
        return None

    @rx.event
    def set_status_filter(self, value: str) -> EventSpec | None:
        actor = self._signed_in()
        if not isinstance(actor, Actor):
            return actor
        self.status = value if value in STATUSES else ANY
        self.error = ""
        self._fill(actor)
        return None

    def _refused(self, actor: Actor, refund_id: str, exc: Exception) -> None:
        log.warning("refund %s: %s refused: %s", refund_id, actor.name, exc)
        self.notice = ""
        self.error = f"Refused: {exc}"

    @rx.event
    def approve(self, form: dict[str, Any]) -> EventSpec | None:
        actor = self._signed_in()
        if not isinstance(actor, Actor):
            return actor
        refund_id = str(form.get("refund_id", ""))
        try:
            require(actor, Permission.APPROVE_REFUND)
            refund = approve_and_execute(
                transaction=transaction, adapters=ADAPTERS, actor=actor, refund_id=refund_id
            )
        except (PermissionDenied, RefundError, RefundNotFoundError) as exc:
            self._refused(actor, refund_id, exc)
        else:
            self.error = ""
            self.notice = f"Refund {refund.id} approved: {refund.status}"
        self._fill(actor)
        return None

    @rx.event
    def reject(self, form: dict[str, Any]) -> EventSpec | None:
        actor = self._signed_in()
        if not isinstance(actor, Actor):
            return actor
        refund_id = str(form.get("refund_id", ""))
        try:
            require(actor, Permission.APPROVE_REFUND)
            with transaction() as session:
                refund = reject_refund(
                    session=session,
                    actor=actor,
                    refund_id=refund_id,
                    reason=str(form.get("reason", "")),
                )
        except (PermissionDenied, RefundError, RefundNotFoundError) as exc:
            self._refused(actor, refund_id, exc)
        else:
            self.error = ""
            self.notice = f"Refund {refund.id} rejected: {refund.status}"
        self._fill(actor)
        return None


def _payment_link(row: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.link(row["payment_id"], href=f"/payments/{row['payment_id']}")


def _decision(row: ObjectVar[dict[str, str]]) -> rx.Component:
    # Both decisions are forms naming the refund in a hidden field (the handlers take the form).
    return rx.hstack(
        rx.form(
            rx.el.input(type="hidden", name="refund_id", value=row["id"]),
            rx.button("Approve", type="submit", color_scheme="green", class_name="approve-button"),
            on_submit=RefundsState.approve,
            reset_on_submit=False,
        ),
        rx.form(
            rx.hstack(
                rx.el.input(type="hidden", name="refund_id", value=row["id"]),
                rx.input(placeholder="Why reject?", name="reason", class_name="reject-reason"),
                rx.button("Reject", type="submit", color_scheme="red", class_name="reject-button"),
            ),
            on_submit=RefundsState.reject,
            reset_on_submit=True,
        ),
        spacing="2",
    )


def _queued(row: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["id"]),
        rx.table.cell(row["amount"], text_align="right"),
        rx.table.cell(_payment_link(row)),
        rx.table.cell(row["requested_by"]),
        rx.table.cell(row["reason"]),
        rx.table.cell(row["age"]),
        rx.cond(
            AuthState.permissions.contains(Permission.APPROVE_REFUND.value),
            rx.table.cell(_decision(row)),
        ),
        class_name="queue-row",
    )


def _past(row: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["requested_at"]),
        rx.table.cell(row["id"]),
        rx.table.cell(_payment_link(row)),
        rx.table.cell(row["amount"], text_align="right"),
        rx.table.cell(row["status"], class_name="history-status"),
        rx.table.cell(row["requested_by"]),
        rx.table.cell(row["decided_by"]),
        rx.table.cell(row["why"]),
        class_name="history-row",
    )


def _header(*labels: str) -> rx.Component:
    return rx.table.header(rx.table.row(*(rx.table.column_header_cell(x) for x in labels)))


def refunds_page() -> rx.Component:
    return layout(
        rx.heading("Refunds", size="6"),
        rx.cond(
            RefundsState.error != "",
            rx.callout(RefundsState.error, color_scheme="red", id="refunds-error"),
        ),
        rx.cond(
            RefundsState.notice != "",
            rx.callout(RefundsState.notice, color_scheme="green", id="refunds-notice"),
        ),
        rx.heading("Waiting for approval", size="4", padding_top="1em"),
        rx.table.root(
            _header("Refund", "Amount", "Payment", "Requested by", "Reason", "Age", ""),
            rx.table.body(rx.foreach(RefundsState.queue, _queued)),
            width="100%",
            id="approval-queue",
        ),
        rx.cond(RefundsState.queue.length() == 0, rx.text("Nothing waits.", padding="1em")),
        rx.hstack(
            rx.heading("History", size="4"),
            rx.select(
                [ANY, *STATUSES],
                value=RefundsState.status,
                on_change=RefundsState.set_status_filter,
                id="refund-status-filter",
            ),
            align="center",
            spacing="3",
            padding_top="1em",
        ),
        rx.table.root(
            _header(
                "Requested (UTC)",
                "Refund",
                "Payment",
                "Amount",
                "Status",
                "Requested by",
                "Decided by",
                "Why",
            ),
            rx.table.body(rx.foreach(RefundsState.history, _past)),
            width="100%",
            id="refund-history",
        ),
    )
