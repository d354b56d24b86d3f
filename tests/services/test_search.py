"""Searching payments: free text (exact or prefix), filters, newest first, keyset pages."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import make_payment
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from payments_core.models import AuditEntry, Payment, Role, WebhookEvent
from payments_core.services.audit import record_audit
from payments_core.services.payments import PaymentNotFoundError, add_timeline_event
from payments_core.services.permissions import Actor
from payments_core.services.search import (
    SPARSE_TEXT_MATCHES,
    SearchError,
    export_payments_csv,
    get_payment_view,
    provider_url,
    record_payments_export,
    search_payments,
)

ANALYST = Actor(name="analyst@example.com", role=Role.ANALYST)
ADMIN = Actor(name="admin@example.com", role=Role.ADMIN)
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def payments(engine: Engine) -> list[str]:
    """Ten payments, one minute apart, plus two that share the newest timestamp."""
    ids = []
    with Session(engine) as session, session.begin():
        for i in range(10):
            payment = make_payment(
                session,
                id=f"pay_{i:04d}",
                provider="stripe" if i % 2 else "paystack",
                status="succeeded" if i % 3 else "failed",
                currency="CHF" if i < 5 else "JPY",
                amount_minor=123456 + i,
                provider_reference=f"ref_{i:04d}",
                host_reference=f"order-{i:04d}",
                customer_email=f"Person{i}@example.com".lower(),
                customer_phone=f"+4179000{i:04d}",
                created_at=T0 + timedelta(minutes=i),
            )
            ids.append(payment.id)
        for suffix in ("a", "b"):
            tie = make_payment(
                session,
                id=f"pay_tie_{suffix}",
                provider="manual",
                provider_reference=None,
                host_reference=None,
                created_at=T0 + timedelta(hours=1),
            )
            ids.append(tie.id)
    return ids


def _search(engine: Engine, **kwargs: object) -> list[str]:
    with Session(engine) as session:
        page = search_payments(session=session, actor=ANALYST, **kwargs)  # type: ignore[arg-type]
        return [row.id for row in page.rows]


def test_newest_first_with_formatted_amounts(engine: Engine, payments: list[str]) -> None:
    with Session(engine) as session:
        page = search_payments(session=session, actor=ANALYST, limit=50)
    assert [r.id for r in page.rows] == ["pay_tie_b", "pay_tie_a", *reversed(payments[:10])]
    assert page.next_cursor is None
    by_id = {r.id: r for r in page.rows}
    assert by_id["pay_0001"].amount == "1,234.57 CHF"
    assert by_id["pay_0009"].amount == "123,465 JPY"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pay_0003", ["pay_0003"]),  # payment id, exact
        ("ref_0004", ["pay_0004"]),  # provider reference
        ("order-0005", ["pay_0005"]),  # host reference
        ("person6@example.com", ["pay_0006"]),  # email
        ("PERSON6@example.com", ["pay_0006"]),  # emails are stored lowercase
        ("+41 79 000 0007", ["pay_0007"]),  # phone, spaces ignored
        ("order-000", [f"pay_{i:04d}" for i in reversed(range(10))]),  # prefix
        ("ref_000", [f"pay_{i:04d}" for i in reversed(range(10))]),
        ("  pay_000 ", [f"pay_{i:04d}" for i in reversed(range(10))]),
        ("nothing-like-this", []),
    ],
)
def test_free_text_matches_exactly_or_by_prefix(
    engine: Engine, payments: list[str], text: str, expected: list[str]
) -> None:
    assert _search(engine, text=text) == expected


def test_prefix_does_not_match_inside(engine: Engine, payments: list[str]) -> None:
    assert _search(engine, text="0003") == []
    assert _search(engine, text="example.com") == []


def test_filters_combine(engine: Engine, payments: list[str]) -> None:
    assert _search(engine, provider="stripe", status="failed") == ["pay_0009", "pay_0003"]
    assert _search(engine, currency="jpy", text="pay_000") == [
        f"pay_{i:04d}" for i in reversed(range(5, 10))
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"provider": "paypal"}, "unknown provider"),
        ({"status": "done"}, "unknown status"),
        ({"currency": "XXZ"}, "XXZ"),
        ({"after": "not-a-cursor"}, "not valid"),
        ({"limit": 0}, "page size"),
    ],
)
def test_bad_input_is_a_readable_error(
    engine: Engine, payments: list[str], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(SearchError, match=message):
        _search(engine, **kwargs)


def test_keyset_pages_cover_everything_once_across_equal_timestamps(
    engine: Engine, payments: list[str]
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    with Session(engine) as session:
        while True:
            page = search_payments(session=session, actor=ANALYST, after=cursor, limit=1)
            seen += [r.id for r in page.rows]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
    assert pages == 12
    assert seen == ["pay_tie_b", "pay_tie_a", *reversed(payments[:10])]


def test_cursor_keeps_the_filters_of_the_caller(engine: Engine, payments: list[str]) -> None:
    with Session(engine) as session:
        first = search_payments(session=session, actor=ANALYST, provider="stripe", limit=2)
        second = search_payments(
            session=session, actor=ANALYST, provider="stripe", limit=2, after=first.next_cursor
        )
    assert [r.id for r in first.rows] == ["pay_0009", "pay_0007"]
    assert [r.id for r in second.rows] == ["pay_0005", "pay_0003"]


def test_payment_view_has_formatted_amounts_and_timeline(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        payment = make_payment(session, amount_minor=1500, currency="KWD", captured_minor=1500)
        add_timeline_event(
            session=session, payment=payment, kind="created", actor="api", summary="created",
            at=T0,
        )  # fmt: skip
        add_timeline_event(
            session=session, payment=payment, kind="status", actor="provider:stripe",
            summary="paid", from_status="pending", to_status="succeeded", at=T0 + timedelta(1),
        )  # fmt: skip
        payment_id = payment.id
    with Session(engine) as session:
        view = get_payment_view(session=session, actor=ANALYST, payment_id=payment_id)
        assert view.amount == "1.500 KWD" and view.refundable == "1.500 KWD"
        assert [e.summary for e in view.timeline] == ["created", "paid"]
        assert view.timeline[1].to_status == "succeeded"
        with pytest.raises(PaymentNotFoundError):
            get_payment_view(session=session, actor=ANALYST, payment_id="pay_missing")


def test_payment_view_lists_deliveries_and_shows_audit_entries_to_auditors(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        payment = make_payment(session, provider_reference="pi_view_1", livemode=True)
        other = make_payment(session)
        for n, (target, status) in enumerate([(payment, "processed"), (payment, "dead"),
                                              (other, "processed")]):  # fmt: skip
            session.add(
                WebhookEvent(
                    provider="stripe", event_id=f"evt_view_{n}", event_type="charge.updated",
                    payload=b"{}", status=status, attempts=n, payment_id=target.id,
                    last_error="boom" if status == "dead" else None,
                )
            )  # fmt: skip
        add_timeline_event(
            session=session, payment=payment, kind="created", actor="api", summary="created", at=T0
        )
        record_audit(
            session=session, actor="anna@example.com", action="payment.flagged",
            entity_type="payment", entity_id=payment.id, at=T0 + timedelta(minutes=5),
        )  # fmt: skip
        record_audit(
            session=session, actor="x@example.com", action="payment.flagged",
            entity_type="payment", entity_id=other.id, at=T0,
        )  # fmt: skip
        payment_id = payment.id
    with Session(engine) as session:
        analyst = get_payment_view(session=session, actor=ANALYST, payment_id=payment_id)
        admin = get_payment_view(session=session, actor=ADMIN, payment_id=payment_id)
    assert [(w.status, w.attempts, w.last_error) for w in analyst.webhooks] == [
        ("dead", 1, "boom"),
        ("processed", 0, None),
    ]
    assert [e.kind for e in analyst.timeline] == ["created"]  # no audit log for analysts
    assert [(e.kind, e.actor) for e in admin.timeline] == [
        ("created", "api"),
        ("audit", "anna@example.com"),
    ]
    assert "payment.flagged" in admin.timeline[1].summary
    assert analyst.provider_url == "https://dashboard.stripe.com/payments/pi_view_1"


def test_provider_links_where_the_provider_has_an_address() -> None:
    stripe_test = Payment(provider="stripe", provider_reference="pi_1", livemode=False,
                          amount_minor=1, currency="CHF", method="card")  # fmt: skip
    assert provider_url(stripe_test) == "https://dashboard.stripe.com/test/payments/pi_1"
    postfinance = Payment(provider="postfinance", provider_reference="4242", amount_minor=1,
                          currency="CHF", method="card")  # fmt: skip
    assert provider_url(postfinance) is None  # no space configured: no address to give
    assert provider_url(postfinance, 7) == (
        "https://checkout.postfinance.ch/s/7/payment/transaction/view/4242"
    )
    paystack = Payment(provider="paystack", provider_reference="ref_1", amount_minor=1,
                       currency="NGN", method="card")  # fmt: skip
    assert provider_url(paystack) is None


# --- Filters, sort orders and the CSV export -----------------------------------------------------


@pytest.fixture
def varied(engine: Engine) -> None:
    """Six payments, each standing out in one way; amounts repeat so the sort needs the id."""
    rows = [
        # id, method, currency, amount, refunded, disputed, flagged, risk, minutes after T0
        ("pay_v1", "card", "CHF", 5000, 0, 0, False, 0, 0),
        ("pay_v2", "twint", "CHF", 1000, 500, 0, False, 0, 10),
        ("pay_v3", "card", "CHF", 5000, 0, 5000, False, 0, 20),
        ("pay_v4", "bank_transfer", "EUR", 2500, 0, 0, True, 80, 30),
        ("pay_v5", "card", "EUR", 9000, 0, 0, False, 40, 40),
        ("pay_v6", "card", "CHF", 250, 0, 0, False, 0, 50),
    ]
    with Session(engine) as session, session.begin():
        for pid, method, currency, amount, refunded, disputed, flagged, risk, minutes in rows:
            make_payment(
                session,
                id=pid,
                method=method,
                currency=currency,
                amount_minor=amount,
                captured_minor=amount,
                refunded_minor=refunded,
                disputed_minor=disputed,
                review_reason="amount mismatch" if flagged else None,
                risk_score=risk,
                status="succeeded",
                customer_email=f"{pid}@example.com" if pid != "pay_v6" else "=cmd@example.com",
                created_at=T0 + timedelta(minutes=minutes),
            )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"method": "card"}, ["pay_v6", "pay_v5", "pay_v3", "pay_v1"]),
        (
            {"created_from": T0 + timedelta(minutes=10)},
            ["pay_v6", "pay_v5", "pay_v4", "pay_v3", "pay_v2"],
        ),
        ({"created_to": T0 + timedelta(minutes=20)}, ["pay_v2", "pay_v1"]),  # exclusive
        (
            {"created_from": T0 + timedelta(minutes=10), "created_to": T0 + timedelta(minutes=30)},
            ["pay_v3", "pay_v2"],
        ),
        ({"currency": "CHF", "amount_min": 1000}, ["pay_v3", "pay_v2", "pay_v1"]),
        ({"currency": "CHF", "amount_max": 1000}, ["pay_v6", "pay_v2"]),  # inclusive
        ({"currency": "chf", "amount_min": 1000, "amount_max": 1000}, ["pay_v2"]),
        ({"refunded": True}, ["pay_v2"]),
        ({"disputed": True}, ["pay_v3"]),
        ({"flagged": True}, ["pay_v4"]),
        ({"min_risk_score": 40}, ["pay_v5", "pay_v4"]),
        ({"min_risk_score": 81}, []),
        ({"refunded": False, "method": "twint"}, ["pay_v2"]),  # False means "don't filter"
    ],
)
def test_each_filter_narrows_the_rows(
    engine: Engine, varied: None, kwargs: dict[str, object], expected: list[str]
) -> None:
    assert _search(engine, **kwargs) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "cheque"}, "unknown method"),
        ({"amount_min": 100}, "choose a currency"),
        ({"currency": "CHF", "amount_min": 200, "amount_max": 100}, "above the maximum"),
        ({"currency": "CHF", "amount_min": -1}, "negative"),
        ({"created_from": T0, "created_to": T0}, "before"),
        ({"created_from": datetime(2025, 1, 1)}, "time zone"),
        ({"min_risk_score": -1}, "negative"),
        ({"sort": "random"}, "unknown sort"),
    ],
)
def test_bad_filters_are_readable_errors(
    engine: Engine, varied: None, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(SearchError, match=message):
        _search(engine, **kwargs)


def _all_pages(engine: Engine, limit: int, **kwargs: object) -> tuple[list[str], int]:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    with Session(engine) as session:
        while True:
            page = search_payments(
                session=session,
                actor=ANALYST,
                after=cursor,
                limit=limit,
                **kwargs,  # type: ignore[arg-type]
            )
            seen += [r.id for r in page.rows]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                return seen, pages


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("newest", ["pay_v6", "pay_v5", "pay_v4", "pay_v3", "pay_v2", "pay_v1"]),
        ("oldest", ["pay_v1", "pay_v2", "pay_v3", "pay_v4", "pay_v5", "pay_v6"]),
        # pay_v1 and pay_v3 share 5000: the id breaks the tie, in the sort's direction.
        ("amount_asc", ["pay_v6", "pay_v2", "pay_v4", "pay_v1", "pay_v3", "pay_v5"]),
        ("amount_desc", ["pay_v5", "pay_v3", "pay_v1", "pay_v4", "pay_v2", "pay_v6"]),
    ],
)
@pytest.mark.parametrize("limit", [1, 2, 4, 50])
def test_sorted_keyset_pages_cover_everything_once(
    engine: Engine, varied: None, sort: str, expected: list[str], limit: int
) -> None:
    seen, pages = _all_pages(engine, limit, sort=sort)
    assert seen == expected
    assert pages == -(-len(expected) // limit)


def test_sorted_pages_keep_their_filters(engine: Engine, varied: None) -> None:
    seen, _ = _all_pages(engine, 1, sort="amount_desc", currency="CHF", amount_min=1000)
    assert seen == ["pay_v3", "pay_v1", "pay_v2"]


def test_a_cursor_of_another_sort_is_refused(engine: Engine, varied: None) -> None:
    with Session(engine) as session:
        first = search_payments(session=session, actor=ANALYST, sort="amount_asc", limit=1)
        assert first.next_cursor is not None
        with pytest.raises(SearchError, match="not valid"):
            search_payments(session=session, actor=ANALYST, after=first.next_cursor, limit=1)


def test_export_streams_csv_in_batches_matching_the_search(engine: Engine, varied: None) -> None:
    limits: list[Any] = []  # the LIMIT of every query the export sends, as the driver saw it

    def record(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "LIMIT" in statement:
            values = parameters.values() if isinstance(parameters, dict) else parameters
            limits.append(list(values)[-2 if engine.dialect.name == "sqlite" else -1])

    event.listen(engine, "before_cursor_execute", record)
    try:
        with Session(engine) as session:
            lines = export_payments_csv(
                session=session, actor=ANALYST, batch_size=2, sort="amount_desc", currency="CHF"
            )
            assert isinstance(lines, Iterator) and not isinstance(lines, list | tuple)
            assert limits == []  # nothing is read before the first line is asked for
            header = next(lines)
            rest = list(lines)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # Keyset batches of batch_size (each asks one row more, to know whether another follows).
    assert limits == [3, 3]
    expected = _search(engine, sort="amount_desc", currency="CHF")
    rows = list(csv.DictReader(io.StringIO(header + "".join(rest))))
    assert [r["payment_id"] for r in rows] == expected == ["pay_v3", "pay_v1", "pay_v2", "pay_v6"]
    first = rows[0]
    assert (first["amount"], first["amount_minor"], first["currency"]) == ("50.00", "5000", "CHF")
    assert first["disputed_minor"] == "5000"
    assert rows[3]["customer_email"] == "'=cmd@example.com"  # never a spreadsheet formula


def test_export_checks_its_filters_when_called_not_when_iterated(
    engine: Engine, varied: None
) -> None:
    with Session(engine) as session, pytest.raises(SearchError, match="choose a currency"):
        export_payments_csv(session=session, actor=ANALYST, amount_min=1)


@pytest.fixture
def many(engine: Engine) -> None:
    """More payments sharing a prefix than the sparse-text threshold, and a few that do not."""
    with Session(engine) as session, session.begin():
        start = datetime(2026, 2, 1, tzinfo=UTC)
        for n in range(SPARSE_TEXT_MATCHES + 20):
            make_payment(
                session,
                created_at=start + timedelta(minutes=n),
                customer_email=f"bulk{n:05d}@example.com" if n % 500 else f"rare{n}@example.com",
            )
        session.execute(text("ANALYZE"))


def _every_page(engine: Engine, **filters: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    with Session(engine) as session:
        while True:
            page = search_payments(
                session=session, actor=ANALYST, after=cursor, limit=200, **filters
            )
            seen += [r.id for r in page.rows]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor


@pytest.mark.parametrize("prefix", ["bulk", "rare", "rare1", "nothing", "BULK"])
def test_common_and_rare_prefixes_give_the_same_rows_as_filtering_everything(
    engine: Engine, many: None, prefix: str
) -> None:
    with Session(engine) as session:
        everything = sorted(
            session.exec(select(Payment)).all(), key=lambda p: (p.created_at, p.id), reverse=True
        )
    expected = [p.id for p in everything if (p.customer_email or "").startswith(prefix.lower())]
    assert _every_page(engine, text=prefix) == expected


def test_rare_prefix_reads_the_column_indexes_on_sqlite(engine: Engine, many: None) -> None:
    """SQLite, left alone, walks the date index and tests every payment for a rare prefix."""
    if engine.dialect.name != "sqlite":
        pytest.skip("the planner hint is for SQLite; PostgreSQL plans from its statistics")
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "ORDER BY" in statement and not statement.startswith("EXPLAIN"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with Session(engine) as session:
            search_payments(session=session, actor=ANALYST, text="rare")
            search_payments(session=session, actor=ANALYST, text="bulk")
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    (rare, rare_parameters), (common, _) = statements
    assert "likelihood(" in rare
    assert "likelihood(" not in common  # many matches: the date index finds a page at once
    with engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {rare}", rare_parameters).all()
    assert "MULTI-INDEX OR" in " | ".join(str(r[-1]) for r in plan)


def test_an_export_is_audited_with_its_filter_and_row_count(engine: Engine) -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        record_payments_export(
            session=session, actor=ANALYST, rows=42, name="abc.csv", currency="CHF",
            created_from=since, text="", refunded=True,
        )  # fmt: skip
    with Session(engine) as session:
        entry = session.exec(
            select(AuditEntry).where(AuditEntry.action == "payments.exported")
        ).one()
    assert (entry.actor, entry.entity_type, entry.entity_id) == (
        "analyst@example.com",
        "payment_export",
        "abc.csv",
    )
    assert entry.after == {
        "rows": 42,
        "filters": {"currency": "CHF", "created_from": since.isoformat(), "refunded": True},
    }
