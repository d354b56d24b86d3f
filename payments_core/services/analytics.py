"""Analytics: success rates, volume, method and currency mix, failure reasons, refunds, disputes.

Every figure is aggregated in SQL over payments *created* in ``[start, end)`` (optionally one
currency), grouped by UTC day where it is a series. The whole UTC days of the range are read from
``payment_day_stat`` (counts and sums per day and group, kept current by database triggers, see
``payments_core/models/analytics.py``), so 90 days of a million payments sum a few ten thousand
rows instead of scanning every payment; the partial days at either end, if any, are grouped from
``payment`` itself into the same columns (``date(created_at)`` on SQLite, which stores naive UTC
text, ``date(timezone('UTC', created_at))`` on PostgreSQL: both bucket the same way whatever the
session time zone). Each chart is one query over the union of the two. pandas only shapes the few
grouped rows (pivoting, filling days without payments) into ``AnalyticsTable``: plain rows of
str/int/float that a chart can read and ``to_csv()`` can export.

Definitions (all counts are payments):

* success rate = succeeded / (succeeded + failed + canceled + expired), per provider per day;
  days where none of those outcomes happened have no point (not 0%).
* volume = sum of ``amount_minor`` of succeeded payments, per currency, never across currencies;
  each row carries the exact major-unit text (for chart heights) and the formatted amount.
  count = every payment created that day.
* refund rate = refunded / captured amount (per currency) and payments with a refund / captured
  payments; dispute rate = captured payments with a dispute (any outcome) / captured payments.

``overview_summary`` gives the Overview page the same volume and success rate for today, the last
7 and the last 30 UTC days, one small grouped query each (no series, no pandas).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
from sqlalchemy import BigInteger, Integer, Select, and_, case, exists, func, select, union_all
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Subquery
from sqlmodel import Session, col

from payments_core.models import Dispute, Payment, PaymentDayStat
from payments_core.money import MoneyError, format_amount, normalize_currency, to_major_decimal
from payments_core.services.permissions import Actor, Permission, guarded
from payments_core.status import PaymentStatus

MAX_DAYS = 366
TOP_FAILURE_REASONS = 10
OUTCOME_STATUSES = (
    PaymentStatus.SUCCEEDED,
    PaymentStatus.FAILED,
    PaymentStatus.CANCELED,
    PaymentStatus.EXPIRED,
)

ONE_DAY = timedelta(days=1)
STAT_COLUMNS = (
    "day",
    "provider",
    "method",
    "currency",
    "status",
    "failure_reason",
    "payments",
    "amount_minor",
    "captured_payments",
    "captured_minor",
    "refunded_payments",
    "refunded_minor",
    "disputed_payments",
)

Cell = str | int | float | None


class AnalyticsError(ValueError):
    """An analytics request the caller asked for wrongly; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class AnalyticsTable:
    """One chart's numbers: named columns and rows of plain values."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[Mapping[str, Cell], ...]

    def column(self, name: str) -> list[Cell]:
        return [row[name] for row in self.rows]

    def to_csv(self) -> str:
        buffer = io.StringIO()
        frame = pd.DataFrame(list(self.rows), columns=list(self.columns))
        frame.to_csv(buffer, index=False, lineterminator="\n")
        return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class AnalyticsReport:
    start: datetime
    end: datetime
    currency: str | None
    success_rate: AnalyticsTable  # day, provider, succeeded, unsuccessful, success_rate
    daily: AnalyticsTable  # day, currency, count, succeeded, volume_minor, volume_major, volume
    method_mix: AnalyticsTable  # method, count
    currency_mix: AnalyticsTable  # currency, count
    failure_reasons: AnalyticsTable  # failure_reason, count
    refund_dispute: AnalyticsTable  # currency, captured ..., refund and dispute rates

    @property
    def tables(self) -> tuple[AnalyticsTable, ...]:
        return (
            self.success_rate,
            self.daily,
            self.method_mix,
            self.currency_mix,
            self.failure_reasons,
            self.refund_dispute,
        )

    def table(self, name: str) -> AnalyticsTable:
        for table in self.tables:
            if table.name == name:
                return table
        raise AnalyticsError(f"no analytics table {name!r}")


def _day(session: Session) -> ColumnElement[Any]:
    """The UTC calendar day of ``created_at`` as a SQL expression for this database."""
    created = col(Payment.created_at)
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", created))
    return func.date(created)


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0), type_=Integer)


def _sum_where(condition: ColumnElement[bool], column: Any) -> ColumnElement[Any]:
    return func.sum(case((condition, column), else_=0), type_=BigInteger)


def _total(column: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column), 0)


def _outcomes(grouped: Subquery, *by: Any) -> Select[Any]:
    """Succeeded and unsuccessful payments per ``by`` (columns of the grouped rows)."""
    g = grouped.c
    unsuccessful = [s.value for s in OUTCOME_STATUSES if s != PaymentStatus.SUCCEEDED]
    return (
        select(
            *by,
            _sum_where(g.status == PaymentStatus.SUCCEEDED, g.payments).label("succeeded"),
            _sum_where(g.status.in_(unsuccessful), g.payments).label("unsuccessful"),
        )
        .where(g.status.in_([s.value for s in OUTCOME_STATUSES]))
        .group_by(*by)
        .having(func.sum(g.payments) > 0)
    )


def _volumes(grouped: Subquery, *by: Any) -> Select[Any]:
    """Payments, succeeded payments and their summed amount per ``by`` (``by`` must include
    the currency: amounts of different currencies are never added)."""
    g = grouped.c
    succeeded = g.status == PaymentStatus.SUCCEEDED
    return (
        select(
            *by,
            func.sum(g.payments).label("payments"),
            _sum_where(succeeded, g.payments).label("succeeded"),
            _sum_where(succeeded, g.amount_minor).label("volume_minor"),
        )
        .group_by(*by)
        .having(func.sum(g.payments) > 0)
    )


def _midnight(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _stat_rows(first: date, last: date | None, code: str | None) -> Select[Any]:
    """``payment_day_stat`` rows of the whole UTC days ``[first, last)`` (no end if None)."""
    day = col(PaymentDayStat.day)
    conditions: list[ColumnElement[bool]] = [day >= first]
    if last is not None:
        conditions.append(day < last)
    if code:
        conditions.append(col(PaymentDayStat.currency) == code)
    columns = [getattr(PaymentDayStat, name) for name in STAT_COLUMNS]
    return select(*columns).where(*conditions)


def _payment_rows(
    session: Session, low: datetime, high: datetime | None, code: str | None
) -> Select[Any]:
    """Payments created in ``[low, high)`` grouped into ``payment_day_stat``'s columns."""
    captured = col(Payment.captured_minor) > 0
    has_dispute = exists().where(col(Dispute.payment_id) == col(Payment.id))
    day = _day(session)
    reason = func.coalesce(col(Payment.failure_reason), "")
    group = (day, col(Payment.provider), col(Payment.method), col(Payment.currency))
    conditions: list[ColumnElement[bool]] = [col(Payment.created_at) >= low]
    if high is not None:
        conditions.append(col(Payment.created_at) < high)
    if code:
        conditions.append(col(Payment.currency) == code)
    return (
        select(
            day.label("day"),
            col(Payment.provider).label("provider"),
            col(Payment.method).label("method"),
            col(Payment.currency).label("currency"),
            col(Payment.status).label("status"),
            reason.label("failure_reason"),
            func.count().label("payments"),
            func.sum(col(Payment.amount_minor)).label("amount_minor"),
            _count_where(captured).label("captured_payments"),
            func.sum(col(Payment.captured_minor)).label("captured_minor"),
            _count_where(col(Payment.refunded_minor) > 0).label("refunded_payments"),
            func.sum(col(Payment.refunded_minor)).label("refunded_minor"),
            _count_where(and_(captured, has_dispute)).label("disputed_payments"),
        )
        .where(*conditions)
        .group_by(*group, col(Payment.status), reason)
    )


def _grouped(session: Session, start: datetime, end: datetime | None, code: str | None) -> Subquery:
    """Payments created in ``[start, end)`` (no end if None) as rows of ``payment_day_stat``'s
    columns: whole UTC days from the stat table, partial days at the edges from ``payment``."""
    start = start.astimezone(UTC)
    first_whole = _midnight(start) if start == _midnight(start) else _midnight(start) + ONE_DAY
    last_whole = None if end is None else _midnight(end)
    parts: list[Select[Any]] = []
    if last_whole is None or first_whole < last_whole:
        parts.append(_stat_rows(first_whole.date(), last_whole and last_whole.date(), code))
        if start < first_whole:
            parts.append(_payment_rows(session, start, first_whole, code))
        if end is not None and last_whole is not None and last_whole < end:
            parts.append(_payment_rows(session, last_whole, end, code))
    else:
        parts.append(_payment_rows(session, start, end, code))
    if len(parts) == 1:
        return parts[0].subquery("grouped")
    return union_all(*parts).subquery("grouped")


def _iso_day(value: object) -> str:
    # SQLite returns 'YYYY-MM-DD' text, PostgreSQL a date.
    return value.isoformat() if isinstance(value, date) else str(value)


def _percent(part: int, whole: int) -> float | None:
    """``part / whole`` as a percentage with two decimals (a ratio, not money)."""
    return round(100 * part / whole, 2) if whole else None


def _table(name: str, columns: Sequence[str], frame: pd.DataFrame) -> AnalyticsTable:
    rows = tuple(
        {c: _plain(record[c]) for c in columns} for record in frame.to_dict(orient="records")
    )
    return AnalyticsTable(name=name, columns=tuple(columns), rows=rows)


def _plain(value: object) -> Cell:
    """numpy/pandas scalars as plain Python values (missing values become None)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str | int | float):
        return value
    if hasattr(value, "item"):
        item = value.item()
        if isinstance(item, str | int | float):
            return None if isinstance(item, float) and item != item else item
    return str(value)


def _check_range(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise AnalyticsError("the date range needs timezone-aware datetimes (UTC)")
    if end <= start:
        raise AnalyticsError("the end of the date range must be after its start")
    if end - start > timedelta(days=MAX_DAYS):
        raise AnalyticsError(f"the date range may span at most {MAX_DAYS} days")


@guarded(Permission.VIEW_ANALYTICS)
def analytics_report(
    *,
    session: Session,
    actor: Actor,
    start: datetime,
    end: datetime,
    currency: str | None = None,
) -> AnalyticsReport:
    """Every analytics table for payments created in ``[start, end)``, optionally one currency."""
    _check_range(start, end)
    code: str | None = None
    if currency:
        try:
            code = normalize_currency(currency)
        except MoneyError as exc:
            raise AnalyticsError(str(exc)) from exc

    grouped = _grouped(session, start, end, code)
    first = start.astimezone(UTC).date()
    days = [
        (first + timedelta(days=n)).isoformat() for n in range((_last_day(end) - first).days + 1)
    ]

    return AnalyticsReport(
        start=start,
        end=end,
        currency=code,
        success_rate=_success_rate(session, grouped),
        daily=_daily(session, grouped, days),
        method_mix=_mix(session, "method_mix", grouped.c.method, "method"),
        currency_mix=_mix(session, "currency_mix", grouped.c.currency, "currency"),
        failure_reasons=_failure_reasons(session, grouped),
        refund_dispute=_refund_dispute(session, grouped),
    )


def _last_day(end: datetime) -> date:
    """The last UTC day that ``[.., end)`` touches."""
    utc_end, midnight = end.astimezone(UTC), _midnight(end)
    return (utc_end - timedelta(days=1)).date() if utc_end == midnight else utc_end.date()


def _success_rate(session: Session, grouped: Subquery) -> AnalyticsTable:
    statement = _outcomes(grouped, grouped.c.day, grouped.c.provider)
    columns = ["day", "provider", "succeeded", "unsuccessful", "success_rate"]
    frame = pd.DataFrame(
        [
            (_iso_day(r.day), r.provider, int(r.succeeded), int(r.unsuccessful))
            for r in session.execute(statement)
        ],
        columns=columns[:4],
    )
    frame["success_rate"] = [
        _percent(s, s + u) for s, u in zip(frame["succeeded"], frame["unsuccessful"], strict=True)
    ]
    frame = frame.sort_values(["provider", "day"], kind="stable")
    return _table("success_rate", columns, frame)


def _daily(session: Session, grouped: Subquery, days: list[str]) -> AnalyticsTable:
    statement = _volumes(grouped, grouped.c.day, grouped.c.currency)
    found = pd.DataFrame(
        [
            (_iso_day(r.day), r.currency, int(r.payments), int(r.succeeded), int(r.volume_minor))
            for r in session.execute(statement)
        ],
        columns=["day", "currency", "count", "succeeded", "volume_minor"],
    )
    # Every day of the range for every currency seen, so quiet days show as zero.
    currencies = sorted(found["currency"].unique()) if len(found) else []
    grid = pd.MultiIndex.from_product([currencies, days], names=["currency", "day"])
    frame = (
        found.set_index(["currency", "day"])
        .reindex(grid, fill_value=0)
        .reset_index()
        .astype({"count": "int64", "succeeded": "int64", "volume_minor": "int64"})
    )
    frame["volume_major"] = [
        str(to_major_decimal(int(m), c))
        for m, c in zip(frame["volume_minor"], frame["currency"], strict=True)
    ]
    frame["volume"] = [
        format_amount(int(m), c)
        for m, c in zip(frame["volume_minor"], frame["currency"], strict=True)
    ]
    columns = ["day", "currency", "count", "succeeded", "volume_minor", "volume_major", "volume"]
    return _table("daily", columns, frame)


def _mix(session: Session, name: str, column: Any, label: str) -> AnalyticsTable:
    """Payments per value of ``column`` (a column of the grouped rows)."""
    payments = func.sum(column.table.c.payments)
    statement = (
        select(column.label(label), payments.label("payments"))
        .group_by(column)
        .having(payments > 0)
    )
    frame = pd.DataFrame(
        [(getattr(r, label), int(r.payments)) for r in session.execute(statement)],
        columns=[label, "count"],
    ).sort_values(["count", label], ascending=[False, True], kind="stable")
    return _table(name, [label, "count"], frame)


def _failure_reasons(session: Session, grouped: Subquery) -> AnalyticsTable:
    g = grouped.c
    payments = func.sum(g.payments).label("payments")
    statement = (
        select(g.failure_reason, payments)
        .where(g.failure_reason != "")
        .group_by(g.failure_reason)
        .having(func.sum(g.payments) > 0)
        .order_by(payments.desc(), g.failure_reason)
        .limit(TOP_FAILURE_REASONS)
    )
    frame = pd.DataFrame(
        [(r.failure_reason, int(r.payments)) for r in session.execute(statement)],
        columns=["failure_reason", "count"],
    )
    return _table("failure_reasons", ["failure_reason", "count"], frame)


def _refund_dispute(session: Session, grouped: Subquery) -> AnalyticsTable:
    g = grouped.c
    statement = (
        select(
            g.currency,
            _total(g.captured_payments).label("captured_payments"),
            _total(g.captured_minor).label("captured_minor"),
            _total(g.refunded_minor).label("refunded_minor"),
            _total(g.refunded_payments).label("refunded_payments"),
            _total(g.disputed_payments).label("disputed_payments"),
        )
        .group_by(g.currency)
        .having(func.sum(g.captured_payments) > 0)
        .order_by(g.currency)
    )
    records = []
    for r in session.execute(statement):
        captured, refunded = int(r.captured_minor), int(r.refunded_minor)
        payments, refunds, disputes = (
            int(r.captured_payments),
            int(r.refunded_payments),
            int(r.disputed_payments),
        )
        records.append(
            {
                "currency": r.currency,
                "captured_payments": payments,
                "captured": format_amount(captured, r.currency),
                "refunded": format_amount(refunded, r.currency),
                "refund_rate_amount": _percent(refunded, captured),
                "refunded_payments": refunds,
                "refund_rate_payments": _percent(refunds, payments),
                "disputed_payments": disputes,
                "dispute_rate": _percent(disputes, payments),
            }
        )
    columns = [
        "currency",
        "captured_payments",
        "captured",
        "refunded",
        "refund_rate_amount",
        "refunded_payments",
        "refund_rate_payments",
        "disputed_payments",
        "dispute_rate",
    ]
    return _table("refund_dispute", columns, pd.DataFrame(records, columns=columns))


__all__ = ["AnalyticsError", "AnalyticsReport", "AnalyticsTable", "analytics_report"]


# --- Overview: today, 7 days, 30 days ------------------------------------------------------------

# (label, UTC days back from today's midnight): "7 days" is today and the six days before it.
OVERVIEW_PERIODS: tuple[tuple[str, int], ...] = (("today", 0), ("7 days", 6), ("30 days", 29))


@dataclass(frozen=True, slots=True)
class PeriodSummary:
    """Payments created since ``start``: volume per currency and success rate per provider."""

    label: str
    start: datetime
    volume: AnalyticsTable  # currency, count, succeeded, volume_minor, volume
    providers: AnalyticsTable  # provider, succeeded, unsuccessful, success_rate


def _period_volume(session: Session, grouped: Subquery) -> AnalyticsTable:
    statement = _volumes(grouped, grouped.c.currency).order_by(grouped.c.currency)
    rows = tuple(
        {
            "currency": r.currency,
            "count": int(r.payments),
            "succeeded": int(r.succeeded),
            "volume_minor": int(r.volume_minor),
            "volume": format_amount(int(r.volume_minor), r.currency),
        }
        for r in session.execute(statement)
    )
    columns = ("currency", "count", "succeeded", "volume_minor", "volume")
    return AnalyticsTable(name="volume", columns=columns, rows=rows)


def _period_providers(session: Session, grouped: Subquery) -> AnalyticsTable:
    statement = _outcomes(grouped, grouped.c.provider).order_by(grouped.c.provider)
    rows = tuple(
        {
            "provider": r.provider,
            "succeeded": int(r.succeeded),
            "unsuccessful": int(r.unsuccessful),
            "success_rate": _percent(int(r.succeeded), int(r.succeeded) + int(r.unsuccessful)),
        }
        for r in session.execute(statement)
    )
    columns = ("provider", "succeeded", "unsuccessful", "success_rate")
    return AnalyticsTable(name="providers", columns=columns, rows=rows)


@guarded(Permission.VIEW_ANALYTICS)
def overview_summary(
    *, session: Session, actor: Actor, now: datetime | None = None
) -> list[PeriodSummary]:
    """Today, the last 7 and the last 30 UTC days (each up to now), same definitions as above."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    summaries: list[PeriodSummary] = []
    for label, days_back in OVERVIEW_PERIODS:
        start = midnight - timedelta(days=days_back)
        grouped = _grouped(session, start, None, None)
        summaries.append(
            PeriodSummary(
                label=label,
                start=start,
                volume=_period_volume(session, grouped),
                providers=_period_providers(session, grouped),
            )
        )
    return summaries
