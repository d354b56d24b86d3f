"""Searching payments for people (the dashboard), and one payment with its timeline.

``search_payments`` matches free text against the payment id, provider reference, host reference,
customer email and customer phone, each *exactly or by prefix*. A prefix is a half-open range
(``col >= "abc" AND col < "abd"``), not ``LIKE``: a range uses the plain b-tree index every one of
those columns has, on SQLite (BINARY collation) and on PostgreSQL alike. It is exactly "starts
with" under a bytewise collation (SQLite always; PostgreSQL with ``C``/``C.UTF-8``).

Results are newest first, ordered by ``(created_at, id)``, or by ``(amount_minor, id)`` when asked,
and paged by keyset: the cursor is the sort name plus the last row's key, base64url-encoded JSON,
opaque to callers (a cursor of another sort is refused). A page never costs more than ``limit+1``
rows however deep it is. Rows carry display strings (formatted amounts), so the UI does no money
arithmetic. ``export_payments_csv`` walks the same keyset in batches, so an export of any size
runs in constant memory.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy import BigInteger, and_, func, literal, literal_column, or_, tuple_
from sqlalchemy.orm import defer
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from payments_core.models import (
    AuditEntry,
    Dispute,
    ManualProof,
    Payment,
    PaymentEvent,
    Refund,
    WebhookEvent,
)
from payments_core.models._types import UTCDateTime
from payments_core.money import MoneyError, format_amount, normalize_currency
from payments_core.providers.base import PaymentMethod, ProviderName
from payments_core.services.audit import record_audit
from payments_core.services.payments import PaymentNotFoundError
from payments_core.services.permissions import Actor, Permission, guarded
from payments_core.status import PaymentStatus

MAX_LIMIT = 200
# Up to this many free-text matches, SQLite is told to read the column indexes (``_text_where``).
SPARSE_TEXT_MATCHES = 2000
EXPORT_BATCH = 500
PROVIDERS: tuple[str, ...] = tuple(p.value for p in ProviderName)
STATUSES: tuple[str, ...] = tuple(s.value for s in PaymentStatus)
METHODS: tuple[str, ...] = tuple(m.value for m in PaymentMethod)
# Sort name -> (key column, descending). The key column is paired with ``id`` for the keyset.
SORTS: dict[str, tuple[str, bool]] = {
    "newest": ("created_at", True),
    "oldest": ("created_at", False),
    "amount_desc": ("amount_minor", True),
    "amount_asc": ("amount_minor", False),
}
_BAD_CURSOR = "this page link is not valid any more; start the search again"


class SearchError(ValueError):
    """A search the caller asked for wrongly; the message is safe to show."""


class PaymentFilters(TypedDict, total=False):
    """What ``search_payments`` and ``export_payments_csv`` filter and sort by; all optional.

    ``created_from`` is inclusive and ``created_to`` exclusive (both timezone-aware).
    ``amount_min``/``amount_max`` are inclusive minor units and need ``currency``: minor units
    of different currencies are not comparable.
    """

    text: str | None
    provider: str | None
    status: str | None
    method: str | None
    currency: str | None
    created_from: datetime | None
    created_to: datetime | None
    amount_min: int | None
    amount_max: int | None
    refunded: bool
    disputed: bool
    flagged: bool
    min_risk_score: int | None
    sort: str


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
    amount_minor: int
    refunded: str
    refunded_minor: int
    disputed: str
    disputed_minor: int
    risk_score: int
    review_reason: str | None


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[PaymentRow]
    next_cursor: str | None  # None on the last page


def encode_cursor(sort: str, key: datetime | int, payment_id: str) -> str:
    """The opaque cursor after a row: the sort it belongs to, its sort key and its id."""
    value = key.isoformat() if isinstance(key, datetime) else key
    raw = json.dumps([sort, value, payment_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[datetime | int, str]:
    """The (sort key, id) in ``cursor``; a cursor of another sort order is refused."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, value, payment_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise SearchError(_BAD_CURSOR) from exc
    if cursor_sort != sort or not isinstance(payment_id, str):
        raise SearchError(_BAD_CURSOR)
    if SORTS[sort][0] == "amount_minor":
        if isinstance(value, bool) or not isinstance(value, int):
            raise SearchError(_BAD_CURSOR)
        return value, payment_id
    try:
        created_at = datetime.fromisoformat(value)
    except (ValueError, TypeError) as exc:
        raise SearchError(_BAD_CURSOR) from exc
    if created_at.tzinfo is None:
        raise SearchError(_BAD_CURSOR)
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


def _text_where(session: Session, text: str) -> ColumnElement[bool]:
    """The free-text condition, with a planner hint on SQLite when few payments match.

    Newest-first with a LIMIT, SQLite's planner (no histograms for ranges, even after ANALYZE)
    walks the date index and tests every payment until the page is full: instant when the prefix
    is common, a scan of the whole table when it matches nothing. A bounded probe (the five
    indexed ranges, at most ``SPARSE_TEXT_MATCHES + 1`` rows) tells which case this is; when few
    match, ``likelihood(.., 0.001)`` makes SQLite read the five indexes and sort what they give.
    PostgreSQL decides from its column statistics and gets no hint.
    """
    condition = _text_condition(text)
    if session.get_bind().dialect.name != "sqlite":
        return condition
    probe = select(literal(1)).where(condition).limit(SPARSE_TEXT_MATCHES + 1).subquery()
    matches = session.execute(select(func.count()).select_from(probe)).scalar_one()
    if matches > SPARSE_TEXT_MATCHES:
        return condition
    hinted: ColumnElement[bool] = func.likelihood(condition, literal_column("0.001"))
    return hinted


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
        amount_minor=payment.amount_minor,
        refunded=format_amount(payment.refunded_minor, payment.currency),
        refunded_minor=payment.refunded_minor,
        disputed=format_amount(payment.disputed_minor, payment.currency),
        disputed_minor=payment.disputed_minor,
        risk_score=payment.risk_score,
        review_reason=payment.review_reason,
    )


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise SearchError(f"unknown {what} {value!r}; one of: {', '.join(allowed)}")
    return value


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise SearchError(f"the {what} date needs a time zone")
    return value


def _conditions(session: Session, filters: PaymentFilters) -> list[ColumnElement[bool]]:
    """The WHERE conditions of ``filters``; a wrong filter raises ``SearchError``."""
    where: list[ColumnElement[bool]] = []
    text = (filters.get("text") or "").strip()
    if text:
        where.append(_text_where(session, text))
    if provider := filters.get("provider"):
        where.append(col(Payment.provider) == _one_of(provider, PROVIDERS, "provider"))
    if status := filters.get("status"):
        where.append(col(Payment.status) == _one_of(status, STATUSES, "status"))
    if method := filters.get("method"):
        where.append(col(Payment.method) == _one_of(method, METHODS, "method"))
    if currency := filters.get("currency"):
        try:
            where.append(col(Payment.currency) == normalize_currency(currency))
        except MoneyError as exc:
            raise SearchError(str(exc)) from exc
    created_from, created_to = filters.get("created_from"), filters.get("created_to")
    if created_from is not None:
        where.append(col(Payment.created_at) >= _aware(created_from, "from"))
    if created_to is not None:
        where.append(col(Payment.created_at) < _aware(created_to, "to"))
    if created_from is not None and created_to is not None and created_from >= created_to:
        raise SearchError("the 'from' date must be before the 'to' date")
    amount_min, amount_max = filters.get("amount_min"), filters.get("amount_max")
    if (amount_min is not None or amount_max is not None) and not currency:
        raise SearchError("choose a currency to filter by amount")
    for bound in (amount_min, amount_max):
        if bound is not None and bound < 0:
            raise SearchError("amounts in a filter must not be negative")
    if amount_min is not None and amount_max is not None and amount_min > amount_max:
        raise SearchError("the minimum amount is above the maximum amount")
    if amount_min is not None:
        where.append(col(Payment.amount_minor) >= amount_min)
    if amount_max is not None:
        where.append(col(Payment.amount_minor) <= amount_max)
    if filters.get("refunded"):
        where.append(col(Payment.refunded_minor) > 0)
    if filters.get("disputed"):
        where.append(col(Payment.disputed_minor) > 0)
    if filters.get("flagged"):
        where.append(col(Payment.review_reason).is_not(None))
    min_risk = filters.get("min_risk_score")
    if min_risk is not None:
        if min_risk < 0:
            raise SearchError("the minimum risk score must not be negative")
        where.append(col(Payment.risk_score) >= min_risk)
    return where


def _sort(filters: PaymentFilters) -> str:
    sort = filters.get("sort") or "newest"
    if sort not in SORTS:
        raise SearchError(f"unknown sort {sort!r}; one of: {', '.join(SORTS)}")
    return sort


def _keyset(
    session: Session,
    where: list[ColumnElement[bool]],
    sort: str,
    after: str | None,
    limit: int,
) -> tuple[list[Payment], str | None]:
    """One keyset page of payments after the cursor ``after`` in ``sort`` order, at most
    ``limit``, and the cursor after the last one (None on the last page)."""
    key_name, descending = SORTS[sort]
    key_column = col(Payment.created_at) if key_name == "created_at" else col(Payment.amount_minor)
    statement = select(Payment).where(*where)
    if after:
        key, payment_id = decode_cursor(after, sort)
        key_type = UTCDateTime() if isinstance(key, datetime) else BigInteger()
        row_key = tuple_(key_column, col(Payment.id))
        cursor_key = tuple_(literal(key, key_type), literal(payment_id))
        statement = statement.where(row_key < cursor_key if descending else row_key > cursor_key)
    if descending:
        statement = statement.order_by(key_column.desc(), col(Payment.id).desc())
    else:
        statement = statement.order_by(key_column.asc(), col(Payment.id).asc())
    payments = list(session.exec(statement.limit(limit + 1)))
    more = len(payments) > limit
    payments = payments[:limit]
    next_cursor = None
    if more and payments:
        last = payments[-1]
        key_value = last.created_at if key_name == "created_at" else last.amount_minor
        next_cursor = encode_cursor(sort, key_value, last.id)
    return payments, next_cursor


def _page(
    session: Session,
    where: list[ColumnElement[bool]],
    sort: str,
    after: str | None,
    limit: int,
) -> Page:
    """One keyset page: rows after the cursor ``after`` in ``sort`` order, at most ``limit``."""
    payments, next_cursor = _keyset(session, where, sort, after, limit)
    return Page(rows=[_row(p) for p in payments], next_cursor=next_cursor)


@guarded(Permission.VIEW_PAYMENTS)
def search_payments(
    *,
    session: Session,
    actor: Actor,
    after: str | None = None,
    limit: int = 50,
    **filters: Unpack[PaymentFilters],
) -> Page:
    """One page of payments matching the filters (see ``PaymentFilters``), newest first unless
    ``sort`` says otherwise.

    ``after`` is the ``next_cursor`` of the previous page with the same filters and sort.
    Unknown filter values raise ``SearchError`` rather than silently matching nothing.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"page size must be between 1 and {MAX_LIMIT}")
    return _page(session, _conditions(session, filters), _sort(filters), after, limit)


EXPORT_COLUMNS = (
    "payment_id",
    "created_at",
    "provider",
    "method",
    "status",
    "provider_reference",
    "host_reference",
    "customer_email",
    "customer_phone",
    "amount",
    "amount_minor",
    "currency",
    "refunded_minor",
    "disputed_minor",
    "risk_score",
    "review_reason",
)


def _cell(value: str | None) -> str:
    """Text as a spreadsheet shows it, never as a formula (customer data is untrusted)."""
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_line(values: list[str | int]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


@guarded(Permission.VIEW_PAYMENTS)
def export_payments_csv(
    *,
    session: Session,
    actor: Actor,
    batch_size: int = EXPORT_BATCH,
    **filters: Unpack[PaymentFilters],
) -> Iterator[str]:
    """CSV lines (header first) of every payment matching ``filters``, in their sort order.

    The permission and the filters are checked when called, before the first line; rows are read
    in keyset batches of ``batch_size``, so memory stays constant however many rows match. The
    caller keeps ``session`` open while iterating.
    """
    if not 1 <= batch_size <= 10_000:
        raise SearchError("export batch size must be between 1 and 10000")
    where, sort = _conditions(session, filters), _sort(filters)
    return _export_lines(session, where, sort, batch_size)


def _export_lines(
    session: Session, where: list[ColumnElement[bool]], sort: str, batch_size: int
) -> Iterator[str]:
    yield _csv_line(list(EXPORT_COLUMNS))
    cursor: str | None = None
    while True:
        payments, next_cursor = _keyset(session, where, sort, cursor, batch_size)
        for r in payments:  # read as they are: no display formatting the CSV would not use
            yield _csv_line(
                [
                    r.id,
                    r.created_at.isoformat(),
                    r.provider,
                    r.method,
                    r.status,
                    _cell(r.provider_reference),
                    _cell(r.host_reference),
                    _cell(r.customer_email),
                    _cell(r.customer_phone),
                    format_amount(r.amount_minor, r.currency, with_code=False),
                    r.amount_minor,
                    r.currency,
                    r.refunded_minor,
                    r.disputed_minor,
                    r.risk_score,
                    _cell(r.review_reason),
                ]
            )
        if next_cursor is None:
            return
        session.expunge_all()  # the identity map would otherwise hold every row read so far
        cursor = next_cursor


@guarded(Permission.VIEW_PAYMENTS)
def record_payments_export(
    *, session: Session, actor: Actor, rows: int, name: str, **filters: Unpack[PaymentFilters]
) -> None:
    """Audit an export of payments (customer data leaving the system): who, which filter, how
    many rows, and the file's name. Called by whoever wrote the file, once it is complete."""
    record_audit(
        session=session,
        actor=actor.name,
        action="payments.exported",
        entity_type="payment_export",
        entity_id=name,
        after={"rows": rows, "filters": {k: v for k, v in filters.items() if v not in (None, "")}},
    )


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
class WebhookSummary:
    """One delivery about the payment, as the inbox holds it (replayable by finance and up)."""

    id: int
    provider: str
    event_type: str
    event_id: str
    received_at: datetime
    verification: str
    status: str
    attempts: int
    last_error: str | None


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
    provider_url: str | None  # the payment in the provider's own dashboard, where known
    timeline: list[TimelineEntry]  # with audit entries when the actor may read the audit log
    webhooks: list[WebhookSummary]  # newest first


def provider_url(payment: Payment, postfinance_space_id: int = 0) -> str | None:
    """The payment in the provider's dashboard: Stripe payment intents, PostFinance transactions
    (with the configured space); other providers have no stable per-payment address."""
    reference = payment.provider_reference
    if not reference:
        return None
    if payment.provider == ProviderName.STRIPE and reference.startswith("pi_"):
        mode = "" if payment.livemode else "test/"
        return f"https://dashboard.stripe.com/{mode}payments/{reference}"
    if (
        payment.provider == ProviderName.POSTFINANCE
        and postfinance_space_id
        and reference.isdigit()
    ):
        return (
            f"https://checkout.postfinance.ch/s/{postfinance_space_id}"
            f"/payment/transaction/view/{reference}"
        )
    return None


def _audit_timeline(
    session: Session, payment_id: str, delivery_ids: list[str]
) -> list[TimelineEntry]:
    """Audit entries about the payment and about its refunds, proofs, disputes and deliveries
    (one query: the related ids are subqueries; the deliveries' ids the caller already has)."""

    def about(kind: str, ids: Any) -> ColumnElement[bool]:
        return and_(col(AuditEntry.entity_type) == kind, col(AuditEntry.entity_id).in_(ids))

    conditions = [
        about("payment", [payment_id]),
        about("refund", select(Refund.id).where(Refund.payment_id == payment_id)),
        about("manual_proof", select(ManualProof.id).where(ManualProof.payment_id == payment_id)),
        about("dispute", select(Dispute.id).where(Dispute.payment_id == payment_id)),
    ]
    if delivery_ids:
        conditions.append(about("webhook_event", delivery_ids))
    entries = session.exec(select(AuditEntry).where(or_(*conditions)).order_by(col(AuditEntry.seq)))
    return [
        TimelineEntry(
            at=e.at,
            kind="audit",
            actor=e.actor,
            summary=f"{e.action} ({e.entity_type} {e.entity_id})",
            from_status=None,
            to_status=None,
        )
        for e in entries
    ]


@guarded(Permission.VIEW_PAYMENTS)
def get_payment_view(
    *, session: Session, actor: Actor, payment_id: str, postfinance_space_id: int = 0
) -> PaymentView:
    """The payment ``payment_id``, its deliveries and one timeline, oldest first: status changes,
    webhooks, refunds, disputes and proofs, and, for those who may read the audit log, the audit
    entries about it."""
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise PaymentNotFoundError(payment_id)
    events = session.exec(
        select(PaymentEvent)
        .where(col(PaymentEvent.payment_id) == payment.id)
        .order_by(col(PaymentEvent.at), col(PaymentEvent.id))
    ).all()
    timeline = [
        TimelineEntry(
            at=e.at,
            kind=e.kind,
            actor=e.actor,
            summary=e.summary,
            from_status=e.from_status,
            to_status=e.to_status,
        )
        for e in events
    ]
    # Everything but the stored body (up to 256 KiB each), which the view does not show.
    deliveries = session.exec(
        select(WebhookEvent)
        .options(defer(WebhookEvent.payload))  # type: ignore[arg-type]
        .where(col(WebhookEvent.payment_id) == payment.id)
        .order_by(col(WebhookEvent.id).desc())
    ).all()
    if actor.can(Permission.VIEW_AUDIT):
        audit = _audit_timeline(session, payment.id, [str(w.id) for w in deliveries])
        # sorted() is stable: at equal times, the payment's own events stay before the audit's.
        timeline = sorted(timeline + audit, key=lambda t: t.at)

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
        provider_url=provider_url(payment, postfinance_space_id),
        timeline=timeline,
        webhooks=[
            WebhookSummary(
                id=w.id or 0,
                provider=w.provider,
                event_type=w.event_type,
                event_id=w.event_id,
                received_at=w.received_at,
                verification=w.verification,
                status=w.status,
                attempts=w.attempts,
                last_error=w.last_error,
            )
            for w in deliveries
        ],
    )


__all__ = [
    "EXPORT_COLUMNS",
    "METHODS",
    "PROVIDERS",
    "SORTS",
    "STATUSES",
    "Page",
    "PaymentFilters",
    "PaymentRow",
    "PaymentView",
    "SearchError",
    "TimelineEntry",
    "WebhookSummary",
    "export_payments_csv",
    "get_payment_view",
    "provider_url",
    "record_payments_export",
    "search_payments",
]
