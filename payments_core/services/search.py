"""Searching payments for people (the dashboard), and one payment with its timeline.

``search_payments`` matches free text against the payment id, provider reference, host reference,
customer email and customer phone, each *exactly or by prefix*. A prefix is a half-open range
(``col >= "abc" AND col < "abd"``), not ``LIKE``: a range uses the plain b-tree index every one of
those columns has, on SQLite (BINARY collation) and on PostgreSQL alike. It is exactly "starts
with" under a bytewise collation (SQLite always; PostgreSQL with ``C``/``C.UTF-8``).

Results are newest first, ordered by ``(created_at, id)``, and paged by keyset: the cursor is the
last row's key, base64url-encoded JSON, opaque to callers. A page never costs more than ``limit+1``
rows however deep it is. Rows carry display strings (formatted amounts), so the UI does no money
arithmetic.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, literal, or_, tuple_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from payments_core.models import Payment, PaymentEvent
from payments_core.models._types import UTCDateTime
from payments_core.money import MoneyError, format_amount, normalize_currency
from payments_core.providers.base import ProviderName
from payments_core.services.payments import PaymentNotFoundError
from payments_core.services.permissions import Actor, Permission, guarded
from payments_core.status import PaymentStatus

MAX_LIMIT = 200
PROVIDERS: tuple[str, ...] = tuple(p.value for p in ProviderName)
STATUSES: tuple[str, ...] = tuple(s.value for s in PaymentStatus)


class SearchError(ValueError):
    """A search the caller asked for wrongly; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class PaymentRow:
    id: str
    created_at: datetime
    provider: str
    provider_reference: str | None
    host_reference: str | None
    customer_email: str | None
    customer_phone: str | None
    method: str
    status: str
    currency: str
    amount: str  # formatted, e.g. "1,234.56 CHF"


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[PaymentRow]
    next_cursor: str | None  # None on the last page


def encode_cursor(created_at: datetime, payment_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), payment_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, payment_id = json.loads(raw)
        created_at = datetime.fromisoformat(at)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise SearchError("this page link is not valid any more; start the search again") from exc
    if created_at.tzinfo is None or not isinstance(payment_id, str):
        raise SearchError("this page link is not valid any more; start the search again")
    return created_at, payment_id


def _starts_with(column: Any, prefix: str) -> ColumnElement[bool]:
    """``column`` equals ``prefix`` or starts with it, as an index-friendly range."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return and_(column >= prefix, column < upper)


def _text_condition(text: str) -> ColumnElement[bool]:
    phone = "".join(text.split())
    conditions = [
        _starts_with(col(Payment.id), text),
        _starts_with(col(Payment.provider_reference), text),
        _starts_with(col(Payment.host_reference), text),
        _starts_with(col(Payment.customer_email), text.lower()),
        _starts_with(col(Payment.customer_phone), phone),
    ]
    return or_(*conditions)


def _row(payment: Payment) -> PaymentRow:
    return PaymentRow(
        id=payment.id,
        created_at=payment.created_at,
        provider=payment.provider,
        provider_reference=payment.provider_reference,
        host_reference=payment.host_reference,
        customer_email=payment.customer_email,
        customer_phone=payment.customer_phone,
        method=payment.method,
        status=payment.status,
        currency=payment.currency,
        amount=format_amount(payment.amount_minor, payment.currency),
    )


@guarded(Permission.VIEW_PAYMENTS)
def search_payments(
    *,
    session: Session,
    actor: Actor,
    text: str | None = None,
    provider: str | None = None,
    status: str | None = None,
    currency: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> Page:
    """One page of payments matching ``text`` and the filters, newest first.

    ``after`` is the ``next_cursor`` of the previous page. Unknown filter values raise
    ``SearchError`` rather than silently matching nothing.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"page size must be between 1 and {MAX_LIMIT}")
    statement = select(Payment)
    text = (text or "").strip()
    if text:
        statement = statement.where(_text_condition(text))
    if provider:
        if provider not in PROVIDERS:
            raise SearchError(f"unknown provider {provider!r}; one of: {', '.join(PROVIDERS)}")
        statement = statement.where(col(Payment.provider) == provider)
    if status:
        if status not in STATUSES:
            raise SearchError(f"unknown status {status!r}; one of: {', '.join(STATUSES)}")
        statement = statement.where(col(Payment.status) == status)
    if currency:
        try:
            code = normalize_currency(currency)
        except MoneyError as exc:
            raise SearchError(str(exc)) from exc
        statement = statement.where(col(Payment.currency) == code)
    if after:
        created_at, payment_id = decode_cursor(after)
        statement = statement.where(
            tuple_(col(Payment.created_at), col(Payment.id))
            < tuple_(literal(created_at, UTCDateTime()), literal(payment_id))
        )
    statement = statement.order_by(col(Payment.created_at).desc(), col(Payment.id).desc()).limit(
        limit + 1
    )
    payments = list(session.exec(statement))
    more = len(payments) > limit
    payments = payments[:limit]
    next_cursor = (
        encode_cursor(payments[-1].created_at, payments[-1].id) if more and payments else None
    )
    return Page(rows=[_row(p) for p in payments], next_cursor=next_cursor)


# --- One payment -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    kind: str
    actor: str
    summary: str
    from_status: str | None
    to_status: str | None


@dataclass(frozen=True, slots=True)
class PaymentView:
    """A payment as people read it: every amount formatted in its currency."""

    id: str
    status: str
    provider: str
    provider_reference: str | None
    host_reference: str | None
    method: str
    currency: str
    amount: str
    captured: str
    refunded: str
    refund_pending: str
    disputed: str
    refundable: str
    customer_name: str | None
    customer_email: str | None
    customer_phone: str | None
    description: str | None
    failure_reason: str | None
    review_reason: str | None
    livemode: bool
    created_at: datetime
    paid_at: datetime | None
    timeline: list[TimelineEntry]


@guarded(Permission.VIEW_PAYMENTS)
def get_payment_view(*, session: Session, actor: Actor, payment_id: str) -> PaymentView:
    """The payment ``payment_id`` and its timeline, oldest event first."""
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise PaymentNotFoundError(payment_id)
    events = session.exec(
        select(PaymentEvent)
        .where(col(PaymentEvent.payment_id) == payment.id)
        .order_by(col(PaymentEvent.at), col(PaymentEvent.id))
    ).all()

    def money(minor: int) -> str:
        return format_amount(minor, payment.currency)

    return PaymentView(
        id=payment.id,
        status=payment.status,
        provider=payment.provider,
        provider_reference=payment.provider_reference,
        host_reference=payment.host_reference,
        method=payment.method,
        currency=payment.currency,
        amount=money(payment.amount_minor),
        captured=money(payment.captured_minor),
        refunded=money(payment.refunded_minor),
        refund_pending=money(payment.refund_pending_minor),
        disputed=money(payment.disputed_minor),
        refundable=money(payment.refundable_minor),
        customer_name=payment.customer_name,
        customer_email=payment.customer_email,
        customer_phone=payment.customer_phone,
        description=payment.description,
        failure_reason=payment.failure_reason,
        review_reason=payment.review_reason,
        livemode=payment.livemode,
        created_at=payment.created_at,
        paid_at=payment.paid_at,
        timeline=[
            TimelineEntry(
                at=e.at,
                kind=e.kind,
                actor=e.actor,
                summary=e.summary,
                from_status=e.from_status,
                to_status=e.to_status,
            )
            for e in events
        ],
    )


__all__ = [
    "PROVIDERS",
    "STATUSES",
    "Page",
    "PaymentRow",
    "PaymentView",
    "SearchError",
    "TimelineEntry",
    "get_payment_view",
    "search_payments",
]
