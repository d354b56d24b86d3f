"""Searching payments: free text (exact or prefix), filters, newest first, keyset pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from factories import make_payment
from sqlalchemy.engine import Engine
from sqlmodel import Session

from payments_core.models import Role
from payments_core.services.payments import PaymentNotFoundError, add_timeline_event
from payments_core.services.permissions import Actor
from payments_core.services.search import SearchError, get_payment_view, search_payments

ANALYST = Actor(name="analyst@example.com", role=Role.ANALYST)
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
