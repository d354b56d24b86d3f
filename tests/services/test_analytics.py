"""Analytics: known payments in, known numbers out, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from factories import make_payment
from sqlalchemy.engine import Engine
from sqlmodel import Session

from payments_core.models import Dispute, Role
from payments_core.services.analytics import AnalyticsError, AnalyticsReport, analytics_report
from payments_core.services.permissions import Actor

ANALYST = Actor(name="analyst@example.com", role=Role.ANALYST)
DAY1 = datetime(2025, 3, 1, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
START, END = DAY1, DAY1 + timedelta(days=3)  # 1, 2 and 3 March


@pytest.fixture
def seeded(engine: Engine) -> None:
    def pay(at: datetime, **values: object) -> str:
        return make_payment(session, created_at=at, **values).id

    with Session(engine) as session, session.begin():
        # 1 March, stripe, CHF: two captures (one partly refunded) and a late-evening failure.
        pay(DAY1 + timedelta(hours=9), status="succeeded", amount_minor=1000, captured_minor=1000,
            refunded_minor=250)  # fmt: skip
        pay(DAY1 + timedelta(hours=10), status="succeeded", amount_minor=2000, captured_minor=2000)
        pay(DAY1 + timedelta(hours=23, minutes=30), status="failed", amount_minor=500,
            failure_reason="Insufficient funds")  # fmt: skip
        # 2 March: paystack in JPY (one disputed capture, an expiry, a cancel); stripe pending.
        disputed = pay(DAY2 + timedelta(hours=1), provider="paystack", method="mobile_money",
                       currency="JPY", status="succeeded", amount_minor=1500,
                       captured_minor=1500)  # fmt: skip
        pay(DAY2 + timedelta(hours=2), provider="paystack", method="mobile_money", currency="JPY",
            status="expired", amount_minor=700)  # fmt: skip
        pay(DAY2 + timedelta(hours=3), provider="paystack", currency="JPY", status="canceled",
            amount_minor=300, failure_reason="Customer canceled")  # fmt: skip
        pay(DAY2 + timedelta(hours=4), status="pending", amount_minor=900)
        # Outside the range (end is exclusive).
        pay(END, status="succeeded", amount_minor=99900, captured_minor=99900)
        session.add(
            Dispute(
                id="dp_1",
                payment_id=disputed,
                provider_dispute_id="du_1",
                amount_minor=1500,
                currency="JPY",
                status="needs_response",
            )
        )


def _report(engine: Engine, currency: str | None = None) -> AnalyticsReport:
    with Session(engine) as session:
        return analytics_report(
            session=session, actor=ANALYST, start=START, end=END, currency=currency
        )


def test_success_rate_per_provider_per_day(engine: Engine, seeded: None) -> None:
    assert list(_report(engine).success_rate.rows) == [
        {"day": "2025-03-02", "provider": "paystack", "succeeded": 1, "unsuccessful": 2,
         "success_rate": 33.33},
        {"day": "2025-03-01", "provider": "stripe", "succeeded": 2, "unsuccessful": 1,
         "success_rate": 66.67},
    ]  # fmt: skip


def test_volume_and_count_per_day_per_currency_with_quiet_days(
    engine: Engine, seeded: None
) -> None:
    daily = _report(engine).daily
    rows = [(r["currency"], r["day"], r["count"], r["succeeded"], r["volume_minor"],
             r["volume_major"], r["volume"]) for r in daily.rows]  # fmt: skip
    assert rows == [
        ("CHF", "2025-03-01", 3, 2, 3000, "30.00", "30.00 CHF"),
        ("CHF", "2025-03-02", 1, 0, 0, "0.00", "0.00 CHF"),
        ("CHF", "2025-03-03", 0, 0, 0, "0.00", "0.00 CHF"),
        ("JPY", "2025-03-01", 0, 0, 0, "0", "0 JPY"),
        ("JPY", "2025-03-02", 3, 1, 1500, "1500", "1,500 JPY"),
        ("JPY", "2025-03-03", 0, 0, 0, "0", "0 JPY"),
    ]


def test_mixes_and_top_failure_reasons(engine: Engine, seeded: None) -> None:
    report = _report(engine)
    assert list(report.method_mix.rows) == [
        {"method": "card", "count": 5},
        {"method": "mobile_money", "count": 2},
    ]
    assert list(report.currency_mix.rows) == [
        {"currency": "CHF", "count": 4},
        {"currency": "JPY", "count": 3},
    ]
    assert report.failure_reasons.to_csv() == (
        "failure_reason,count\nCustomer canceled,1\nInsufficient funds,1\n"
    )


def test_refund_and_dispute_rates_per_currency(engine: Engine, seeded: None) -> None:
    assert list(_report(engine).refund_dispute.rows) == [
        {"currency": "CHF", "captured_payments": 2, "captured": "30.00 CHF",
         "refunded": "2.50 CHF", "refund_rate_amount": 8.33, "refunded_payments": 1,
         "refund_rate_payments": 50.0, "disputed_payments": 0, "dispute_rate": 0.0},
        {"currency": "JPY", "captured_payments": 1, "captured": "1,500 JPY",
         "refunded": "0 JPY", "refund_rate_amount": 0.0, "refunded_payments": 0,
         "refund_rate_payments": 0.0, "disputed_payments": 1, "dispute_rate": 100.0},
    ]  # fmt: skip


def test_one_currency_filters_every_table(engine: Engine, seeded: None) -> None:
    report = _report(engine, currency=" chf ")
    assert report.currency == "CHF"
    assert {r["currency"] for r in report.daily.rows} == {"CHF"}
    assert [r["provider"] for r in report.success_rate.rows] == ["stripe"]
    assert list(report.currency_mix.rows) == [{"currency": "CHF", "count": 4}]
    assert report.daily.to_csv().splitlines()[:2] == [
        "day,currency,count,succeeded,volume_minor,volume_major,volume",
        "2025-03-01,CHF,3,2,3000,30.00,30.00 CHF",
    ]


def test_an_empty_range_gives_empty_tables_with_headers(engine: Engine) -> None:
    report = _report(engine)
    assert all(table.rows == () for table in report.tables)
    assert report.success_rate.to_csv() == "day,provider,succeeded,unsuccessful,success_rate\n"


@pytest.mark.parametrize(
    ("start", "end", "currency", "message"),
    [
        (END, START, None, "must be after its start"),
        (START.replace(tzinfo=None), END, None, "timezone-aware"),
        (START, START + timedelta(days=400), None, "at most 366 days"),
        (START, END, "XXX", "XXX"),
    ],
)
def test_wrong_requests_say_why(
    engine: Engine, start: datetime, end: datetime, currency: str | None, message: str
) -> None:
    with Session(engine) as session, pytest.raises(AnalyticsError, match=message):
        analytics_report(session=session, actor=ANALYST, start=start, end=end, currency=currency)
