"""The worker applies stored events: idempotent, order-independent, retried, and explained."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from factories import make_payment
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner
from webhook_support import (
    charge,
    dispute,
    inbox_rows,
    payment_intent,
    payment_state,
    post_dummy,
    post_paystack,
    post_stripe,
    process_until_quiet,
    refund,
    stripe_event,
)

from payments_core.cli import app as cli
from payments_core.config import get_settings
from payments_core.models import AuditEntry, Payment, PaymentEvent, WebhookEvent, utcnow
from payments_core.providers.registry import WebhookFacts
from payments_core.services.audit import verify_chain
from payments_core.services.processing import process_due, retry_delay


def dummy_event(event_id: str, kind: str, payment_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": kind,
        "payment_id": payment_id,
        "amount": 2500,
        "currency": "CHF",
        "livemode": False,
    } | extra


def new_dummy_payment(engine: Engine, **overrides: Any) -> str:
    with Session(engine) as session, session.begin():
        payment = make_payment(
            session,
            provider="dummy",
            provider_reference=None,
            amount_minor=2500,
            currency="CHF",
            status="pending",
            **overrides,
        )
        payment.provider_reference = payment.id
        return payment.id


def get_payment(engine: Engine, payment_id: str) -> Payment:
    with Session(engine) as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        session.expunge(payment)
        return payment


def timeline(engine: Engine, payment_id: str) -> list[PaymentEvent]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(PaymentEvent)
                .where(col(PaymentEvent.payment_id) == payment_id)
                .order_by(col(PaymentEvent.id))
            )
        )


def audit_actions(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return [a.action for a in session.exec(select(AuditEntry).order_by(col(AuditEntry.seq)))]


# --- one event, end to end -----------------------------------------------------------------------


def test_dummy_success_is_applied_once_with_timeline_and_audit(
    client: TestClient, engine: Engine
) -> None:
    payment_id = new_dummy_payment(engine)
    event = dummy_event("dmy_evt_1", "payment.succeeded", payment_id)
    assert post_dummy(client, event).json()["status"] == "accepted"
    assert post_dummy(client, event).json()["status"] == "duplicate"
    outcomes = process_until_quiet(engine)
    assert [o.status for o in outcomes] == ["processed"]
    payment = get_payment(engine, payment_id)
    assert (payment.status, payment.captured_minor, payment.paid_at is not None) == (
        "succeeded",
        2500,
        True,
    )
    kinds = [e.kind for e in timeline(engine, payment_id)]
    assert kinds == ["status", "webhook"]
    assert "payment.status_changed" in audit_actions(engine)
    [row] = inbox_rows(engine)
    assert (row.status, row.attempts, row.payment_id, row.last_error) == (
        "processed",
        1,
        payment_id,
        None,
    )
    with Session(engine) as session:
        assert verify_chain(session=session).ok


def make_user(engine: Engine, email: str, role: str) -> None:
    from payments_core.services.users import create_user

    with Session(engine) as session, session.begin():
        create_user(
            session=session, email=email, role=role, password="long-enough-pass", actor="test"
        )


def test_replaying_a_processed_event_changes_nothing(client: TestClient, engine: Engine) -> None:
    payment_id = new_dummy_payment(engine)
    post_dummy(client, dummy_event("dmy_evt_1", "payment.succeeded", payment_id))
    process_until_quiet(engine)
    before = payment_state(engine, "dummy", payment_id)
    [row] = inbox_rows(engine)
    make_user(engine, "analyst@example.com", "analyst")
    refused = CliRunner().invoke(
        cli, ["webhooks", "replay", "--id", str(row.id), "--actor", "analyst@example.com"]
    )
    assert refused.exit_code == 2
    assert "may not replay webhooks" in refused.output
    make_user(engine, "ops@example.com", "finance")
    result = CliRunner().invoke(
        cli, ["webhooks", "replay", "--id", str(row.id), "--actor", "ops@example.com"]
    )
    assert result.exit_code == 0, result.output
    assert "replaying 1 event" in result.output
    process_until_quiet(engine)
    assert payment_state(engine, "dummy", payment_id) == before
    status_changes = [e for e in timeline(engine, payment_id) if e.kind == "status"]
    assert len(status_changes) == 1
    assert "webhook.replayed" in audit_actions(engine)


def test_amount_mismatch_flags_and_never_marks_paid(client: TestClient, engine: Engine) -> None:
    payment_id = new_dummy_payment(engine)
    post_dummy(client, dummy_event("dmy_evt_1", "payment.succeeded", payment_id, amount=250))
    process_until_quiet(engine)
    payment = get_payment(engine, payment_id)
    assert payment.status == "pending" and payment.captured_minor == 0
    assert payment.review_reason is not None
    assert "amount 2.50 CHF, expected 25.00 CHF" in payment.review_reason
    # The flag, the risk score it raises, and the webhook that brought it.
    assert [e.kind for e in timeline(engine, payment_id)] == ["flag", "note", "webhook"]
    assert "payment.flagged" in audit_actions(engine)


def test_currency_mismatch_flags(client: TestClient, engine: Engine) -> None:
    payment_id = new_dummy_payment(engine)
    post_dummy(client, dummy_event("dmy_evt_1", "payment.succeeded", payment_id, currency="EUR"))
    process_until_quiet(engine)
    payment = get_payment(engine, payment_id)
    assert payment.status == "pending"
    assert payment.review_reason and "currency EUR, expected CHF" in payment.review_reason


def test_dummy_event_for_an_unknown_payment_is_unmatched(
    client: TestClient, engine: Engine
) -> None:
    post_dummy(client, dummy_event("dmy_evt_1", "payment.succeeded", "pay_nope"))
    [outcome] = process_until_quiet(engine)
    assert outcome.status == "unmatched" and "pay_nope" in outcome.detail
    with Session(engine) as session:
        assert session.exec(select(Payment)).all() == []


def test_event_types_we_do_not_act_on_are_ignored(client: TestClient, engine: Engine) -> None:
    post_stripe(
        client, stripe_event("evt_c", "customer.created", {"id": "cus_1", "object": "customer"})
    )
    [outcome] = process_until_quiet(engine)
    assert outcome.status == "ignored"


# --- payments created directly with the provider -------------------------------------------------


def test_signed_stripe_event_creates_a_payment_paydesk_never_saw(
    client: TestClient, engine: Engine
) -> None:
    pi = payment_intent("pi_new", "succeeded", amount=1500, currency="jpy")
    post_stripe(client, stripe_event("evt_1", "payment_intent.succeeded", pi))
    process_until_quiet(engine)
    with Session(engine) as session:
        payment = session.exec(select(Payment)).one()
        assert (payment.provider_reference, payment.origin, payment.status) == (
            "pi_new",
            "provider",
            "succeeded",
        )
        assert (payment.amount_minor, payment.currency, payment.captured_minor) == (
            1500,
            "JPY",
            1500,
        )
        assert payment.customer_email == "buyer@example.com"
    assert "payment.created_from_provider" in audit_actions(engine)


def test_stripe_amount_mismatch_on_a_paydesk_payment(client: TestClient, engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        make_payment(session, provider_reference="pi_ours", amount_minor=4990, currency="CHF")
    post_stripe(
        client,
        stripe_event(
            "evt_1", "payment_intent.succeeded", payment_intent("pi_ours", "succeeded", amount=499)
        ),
    )
    process_until_quiet(engine)
    state = payment_state(engine, "stripe", "pi_ours")
    assert state.status == "pending" and state.captured_minor == 0 and state.review_reason


# --- order independence --------------------------------------------------------------------------


def stripe_lifecycle(pi: str) -> list[dict[str, Any]]:
    """A realistic Stripe sequence: failed attempt, success, two partial refunds, a lost dispute."""
    refund_a_pending = refund(pi, "re_a", "pending", amount=1000)
    refund_a_done = refund(pi, "re_a", "succeeded", amount=1000)
    refund_b_done = refund(pi, "re_b", "succeeded", amount=490)
    return [
        stripe_event(
            "evt_01", "payment_intent.created", payment_intent(pi, "requires_payment_method")
        ),
        stripe_event(
            "evt_02",
            "payment_intent.payment_failed",
            payment_intent(pi, "requires_payment_method", error="Your card was declined."),
        ),
        stripe_event("evt_03", "payment_intent.processing", payment_intent(pi, "processing")),
        stripe_event("evt_04", "payment_intent.succeeded", payment_intent(pi, "succeeded")),
        stripe_event("evt_05", "charge.succeeded", charge(pi, "ch_1")),
        stripe_event("evt_06", "refund.created", refund_a_pending),
        stripe_event("evt_07", "refund.updated", refund_a_done),
        stripe_event(
            "evt_08",
            "charge.refunded",
            charge(pi, "ch_1", refunded=1490, refunds=[refund_a_done, refund_b_done]),
        ),
        stripe_event("evt_09", "refund.created", refund_b_done),
        stripe_event(
            "evt_10", "charge.dispute.created", dispute(pi, "dp_1", "needs_response", amount=3500)
        ),
        stripe_event(
            "evt_11", "charge.dispute.updated", dispute(pi, "dp_1", "under_review", amount=3500)
        ),
        stripe_event("evt_12", "charge.dispute.closed", dispute(pi, "dp_1", "lost", amount=3500)),
    ]


EXPECTED_STRIPE = {
    "status": "succeeded",
    "captured_minor": 4990,
    "refunded_minor": 1490,
    "refund_pending_minor": 0,
    "disputed_minor": 3500,
    "refunds": frozenset({("re_a", 1000, "succeeded"), ("re_b", 490, "succeeded")}),
    "disputes": frozenset({("dp_1", 3500, "lost")}),
}


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_stripe_events_in_any_order_and_repeated_end_the_same(
    client: TestClient, engine: Engine, seed: int | None
) -> None:
    """``None`` is the real order; the others are shuffled, with every event delivered 1-3 times,
    so refunds and disputes regularly arrive before payment_intent.succeeded."""
    events = stripe_lifecycle("pi_order")
    if seed is not None:
        rng = random.Random(seed)
        events = [e for e in events for _ in range(rng.randint(1, 3))]
        rng.shuffle(events)
    for event in events:
        assert post_stripe(client, event).status_code == 200
    process_until_quiet(engine)
    state = payment_state(engine, "stripe", "pi_order")
    assert {k: getattr(state, k) for k in EXPECTED_STRIPE} == EXPECTED_STRIPE
    assert state.failure_reason is None and state.review_reason is None
    rows = list(inbox_rows(engine))
    assert len(rows) == 12 and {r.status for r in rows} == {"processed"}


def test_refund_before_the_payment_exists_waits_instead_of_failing(
    client: TestClient, engine: Engine
) -> None:
    pi = "pi_wait"
    post_stripe(client, stripe_event("evt_r", "refund.created", refund(pi, "re_1", "succeeded")))
    now = utcnow()
    result = process_due(engine=engine, read_facts=WebhookFacts(), now=now)
    [outcome] = result.outcomes
    assert outcome.status == "pending" and "not known yet" in outcome.detail
    [row] = inbox_rows(engine)
    assert row.next_attempt_at is not None and row.next_attempt_at > now
    post_stripe(
        client, stripe_event("evt_p", "payment_intent.succeeded", payment_intent(pi, "succeeded"))
    )
    process_until_quiet(engine, start=now + timedelta(hours=1))
    state = payment_state(engine, "stripe", pi)
    assert (state.status, state.refunded_minor) == ("succeeded", 1000)


# --- failures, backoff, dead, replay -------------------------------------------------------------


def test_backoff_is_exponential_capped_and_jittered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_RETRY_BASE_SECONDS", "10")
    monkeypatch.setenv("WEBHOOK_RETRY_MAX_SECONDS", "100")
    get_settings.cache_clear()
    settings = get_settings()
    rng = random.Random(7)
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (12, 100)]:
        delays = {retry_delay(attempt, settings, rng).total_seconds() for _ in range(50)}
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


def test_a_failing_event_keeps_its_error_retries_and_goes_dead_then_replays(
    client: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "3")
    get_settings.cache_clear()
    # A signed event whose body the handler cannot read (a PaymentIntent without a status).
    broken = payment_intent("pi_broken", "succeeded")
    del broken["status"]
    post_stripe(client, stripe_event("evt_bad", "payment_intent.succeeded", broken))
    now = utcnow()
    first = process_due(engine=engine, read_facts=WebhookFacts(), now=now).outcomes
    assert [o.status for o in first] == ["failed"]
    [row] = inbox_rows(engine)
    assert row.attempts == 1 and row.last_error and row.next_attempt_at is not None
    assert timedelta(seconds=7) <= row.next_attempt_at - now <= timedelta(seconds=15)
    # Not due yet: nothing happens.
    assert process_due(engine=engine, read_facts=WebhookFacts(), now=now).outcomes == []
    outcomes = process_until_quiet(engine, start=now + timedelta(hours=1))
    assert [o.status for o in outcomes] == ["failed", "dead"]
    [row] = inbox_rows(engine)
    assert (row.status, row.attempts, row.next_attempt_at) == ("dead", 3, None)
    assert "webhook.dead" in audit_actions(engine)

    make_user(engine, "ops@example.com", "finance")
    result = CliRunner().invoke(
        cli, ["webhooks", "replay", "--failed", "--actor", "ops@example.com"]
    )
    assert result.exit_code == 0 and "replaying 1 event" in result.output
    [row] = inbox_rows(engine)
    assert (row.status, row.attempts) == ("pending", 0)


def test_replay_needs_an_id_or_failed_and_names_unknown_ids(engine: Engine, db_url: str) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": db_url}
    assert runner.invoke(cli, ["webhooks", "replay"], env=env).exit_code == 2
    result = runner.invoke(cli, ["webhooks", "replay", "--id", "999"], env=env)
    assert result.exit_code == 2 and "no webhook event with id 999" in result.output


def test_events_are_never_applied_twice_by_racing_workers(
    client: TestClient, engine: Engine
) -> None:
    """Several worker loops on the same due events: each event is applied by exactly one."""
    import threading

    ids = [new_dummy_payment(engine) for _ in range(20)]
    for n, payment_id in enumerate(ids):
        post_dummy(client, dummy_event(f"dmy_{n}", "payment.succeeded", payment_id))
    now = utcnow()
    reader = WebhookFacts()
    results: list[Any] = []

    def work() -> None:
        results.extend(process_due(engine=engine, read_facts=reader, now=now).outcomes)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.event_id for o in results) == sorted(r.id for r in inbox_rows(engine))
    with Session(engine) as session:
        applied = session.exec(
            select(PaymentEvent).where(col(PaymentEvent.kind) == "webhook")
        ).all()
        assert len(applied) == 20
        assert {e.status for e in session.exec(select(WebhookEvent))} == {"processed"}


# --- Paystack: no event ids, refund ids that change, disputes -------------------------------------


def paystack_lifecycle(reference: str) -> list[dict[str, Any]]:
    customer = {"id": 68324, "email": "buyer@example.ng", "first_name": "Ada", "last_name": "Obi"}
    transaction = {"id": 896467688, "reference": reference, "status": "success", "amount": 250000}

    def refund_event(status: str, *, refund_reference: str | None, amount: Any) -> dict[str, Any]:
        return {
            "event": f"refund.{status}",
            "data": {
                "id": 3018284,
                "status": status,
                "transaction_reference": reference,
                "refund_reference": refund_reference,
                "amount": amount,
                "currency": "NGN",
                "processor": "mpgs_zen",
                "customer": {"email": "buyer@example.ng"},
                "integration": 412829,
                "domain": "test",
            },
        }

    def dispute_event(event: str, status: str, resolution: str | None) -> dict[str, Any]:
        return {
            "event": event,
            "data": {
                "id": 358950,
                "refund_amount": 50000,
                "currency": "NGN",
                "status": status,
                "resolution": resolution,
                "domain": "test",
                "category": "chargeback",
                "dueAt": "2026-01-06T18:00:00.000Z",
                "transaction": transaction,
            },
        }

    return [
        {
            "event": "charge.success",
            "data": {
                "id": 302961,
                "domain": "test",
                "status": "success",
                "reference": reference,
                "amount": 250000,
                "currency": "NGN",
                "channel": "card",
                "gateway_response": "Approved",
                "paid_at": "2026-01-05T10:15:00.000Z",
                "created_at": "2026-01-05T10:14:00.000Z",
                "metadata": {"order_id": "42"},
                "customer": customer,
            },
        },
        refund_event("pending", refund_reference=None, amount="50000"),
        refund_event("processing", refund_reference=None, amount="50000"),
        refund_event("processed", refund_reference="RF123", amount="50000"),
        dispute_event("charge.dispute.create", "awaiting-merchant-feedback", None),
        dispute_event("charge.dispute.resolve", "resolved", "merchant-accepted"),
    ]


@pytest.mark.parametrize("seed", [None, 4, 5, 6])
def test_paystack_events_in_any_order_end_the_same(
    client: TestClient, engine: Engine, seed: int | None
) -> None:
    events = paystack_lifecycle("ord-42-a1")
    if seed is not None:
        rng = random.Random(seed)
        events = [e for e in events for _ in range(rng.randint(1, 3))]
        rng.shuffle(events)
    for event in events:
        assert post_paystack(client, event).status_code == 200
    process_until_quiet(engine)
    state = payment_state(engine, "paystack", "ord-42-a1")
    assert (state.status, state.amount_minor, state.currency, state.captured_minor) == (
        "succeeded",
        250000,
        "NGN",
        250000,
    )
    assert (state.refunded_minor, state.refund_pending_minor) == (50000, 0)
    assert state.refunds == frozenset({("RF123", 50000, "succeeded")})
    [(dispute_id, _, dispute_status)] = state.disputes
    assert dispute_id == "358950" and dispute_status == "lost"


def test_webhooks_list_shows_unmatched_and_filters(
    client: TestClient, engine: Engine, db_url: str
) -> None:
    import json as jsonlib

    post_dummy(client, dummy_event("dmy_lost", "payment.succeeded", "pay_unknown"))
    process_until_quiet(engine)
    runner = CliRunner()
    result = runner.invoke(cli, ["webhooks", "list", "--status", "unmatched", "--json"])
    assert result.exit_code == 0, result.output
    [row] = jsonlib.loads(result.output)
    assert (row["event_id"], row["status"]) == ("dmy_lost", "unmatched")
    assert "pay_unknown" in row["last_error"]
    result = runner.invoke(cli, ["webhooks", "list", "--status", "dead", "--json"])
    assert jsonlib.loads(result.output) == []
    result = runner.invoke(cli, ["webhooks", "list", "--status", "nonsense"])
    assert result.exit_code == 2 and "unknown status" in result.output


def test_an_amount_changed_at_the_provider_flags_a_provider_made_payment_but_applies(
    client: TestClient, engine: Engine
) -> None:
    """A PaymentIntent created directly at Stripe whose amount was updated before payment."""
    created = payment_intent("pi_changed", "requires_payment_method", amount=4990)
    post_stripe(client, stripe_event("evt_c1", "payment_intent.created", created))
    process_until_quiet(engine)
    paid = payment_intent("pi_changed", "succeeded", amount=5990)
    post_stripe(client, stripe_event("evt_c2", "payment_intent.succeeded", paid))
    process_until_quiet(engine)
    state = payment_state(engine, "stripe", "pi_changed")
    assert (state.status, state.captured_minor) == ("succeeded", 5990)
    assert state.review_reason and "applied, check the amount" in state.review_reason
