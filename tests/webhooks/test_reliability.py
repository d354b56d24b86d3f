"""Reliability under a real server: concurrent redeliveries, a killed worker, a stopped database.

Bounded in count and time, loopback only.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from factories import make_payment
from fakes.tcp_proxy import TcpProxy
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col, select
from webhook_support import (
    DUMMY_SECRET,
    STRIPE_SECRET,
    inbox_rows,
    payment_intent,
    payment_state,
    process_until_quiet,
    refund,
    running_server,
    stripe_event,
    wait_until_quiet,
)

from payments_core.config import get_settings
from payments_core.db import dispose_engines, read_engine
from payments_core.models import Payment, PaymentEvent, WebhookEvent
from payments_core.providers import dummy
from payments_core.providers import stripe as stripe_provider
from payments_core.services.audit import verify_chain
from payments_core.status import PaymentStatus


@pytest.fixture
def fast_worker_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
    monkeypatch.setenv("DUMMY_WEBHOOK_SECRET", DUMMY_SECRET)
    monkeypatch.setenv("WORKER_POLL_SECONDS", "0.05")
    monkeypatch.setenv("WEBHOOK_RETRY_BASE_SECONDS", "0.1")
    monkeypatch.setenv("WEBHOOK_RETRY_MAX_SECONDS", "0.5")
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "100")
    monkeypatch.setenv("PAYDESK_IN_PROCESS_WORKER", "1")
    get_settings.cache_clear()
    yield db_url
    dispose_engines()


def signed_stripe(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    import json

    body = json.dumps(event).encode()
    header = stripe_provider.sign_payload(body, STRIPE_SECRET, int(time.time()))
    return body, {"Stripe-Signature": header, "Content-Type": "application/json"}


def applied_once(engine: Engine) -> collections.Counter[int]:
    with Session(engine) as session:
        events = session.exec(select(PaymentEvent).where(col(PaymentEvent.kind) == "webhook")).all()
        return collections.Counter(int(e.data["webhook_event_id"]) for e in events)


def test_thousand_events_delivered_three_times_concurrently_in_any_order(
    fast_worker_env: str, engine: Engine
) -> None:
    """200 Stripe payments x 5 events, each delivered 3 times from 12 threads in shuffled order,
    while two workers (the server's own and one more) process: each event applied exactly once."""
    events: list[dict[str, Any]] = []
    for n in range(200):
        pi = f"pi_rel_{n:04d}"
        events += [
            stripe_event(
                f"evt_{n}_1",
                "payment_intent.created",
                payment_intent(pi, "requires_payment_method"),
            ),
            stripe_event(
                f"evt_{n}_2", "payment_intent.processing", payment_intent(pi, "processing")
            ),
            stripe_event(f"evt_{n}_3", "payment_intent.succeeded", payment_intent(pi, "succeeded")),
            stripe_event(
                f"evt_{n}_4", "refund.created", refund(pi, f"re_{n}", "pending", amount=990)
            ),
            stripe_event(
                f"evt_{n}_5", "refund.updated", refund(pi, f"re_{n}", "succeeded", amount=990)
            ),
        ]
    deliveries = [signed_stripe(e) for e in events for _ in range(3)]
    random.Random(11).shuffle(deliveries)

    from webhook_server.worker import WorkerThread

    with running_server() as base, httpx.Client(base_url=base, timeout=30) as http:
        extra = WorkerThread()
        extra.start()
        try:
            with ThreadPoolExecutor(12) as pool:
                answers = list(
                    pool.map(
                        lambda d: http.post("/webhooks/stripe", content=d[0], headers=d[1]),
                        deliveries,
                    )
                )
            assert collections.Counter(a.status_code for a in answers) == {200: 3000}
            statuses = collections.Counter(a.json()["status"] for a in answers)
            assert statuses == {"accepted": 1000, "duplicate": 2000}
            wait_until_quiet(engine)
        finally:
            extra.stop()

    rows = list(inbox_rows(engine))
    assert len(rows) == 1000 and {r.status for r in rows} == {"processed"}
    counts = applied_once(engine)
    assert len(counts) == 1000 and set(counts.values()) == {1}
    for n in (0, 57, 199):
        state = payment_state(engine, "stripe", f"pi_rel_{n:04d}")
        assert (state.status, state.captured_minor, state.refunded_minor) == (
            "succeeded",
            4990,
            990,
        )
        assert state.refunds == frozenset({(f"re_{n}", 990, "succeeded")})
    with Session(engine) as session:
        statuses_by_payment = collections.Counter(p.status for p in session.exec(select(Payment)))
        assert statuses_by_payment == {PaymentStatus.SUCCEEDED.value: 200}
        assert verify_chain(session=session).ok


def test_a_worker_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
    db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    get_settings.cache_clear()
    import json

    from fastapi.testclient import TestClient

    monkeypatch.setenv("DUMMY_WEBHOOK_SECRET", DUMMY_SECRET)
    monkeypatch.delenv("PAYDESK_IN_PROCESS_WORKER", raising=False)
    get_settings.cache_clear()
    with Session(engine) as session, session.begin():
        ids = [
            make_payment(session, provider="dummy", provider_reference=None, amount_minor=700).id
            for _ in range(400)
        ]
    from webhook_server.app import app

    with TestClient(app) as client:
        for n, payment_id in enumerate(ids):
            body = json.dumps(
                {
                    "id": f"d{n}",
                    "type": "payment.succeeded",
                    "payment_id": payment_id,
                    "amount": 700,
                    "currency": "CHF",
                }
            ).encode()
            answer = client.post(
                "/webhooks/dummy",
                content=body,
                headers={"X-Dummy-Signature": dummy.sign_payload(body, DUMMY_SECRET)},
            )
            assert answer.status_code == 200

    def processed() -> int:
        # A reading transaction (deferred BEGIN on SQLite): it never waits for the worker's write
        # lock, so the kill comes while the worker is busy.
        with Session(read_engine(engine)) as session:
            return len(
                session.exec(
                    select(WebhookEvent.id).where(col(WebhookEvent.status) == "processed")
                ).all()
            )

    env = os.environ | {
        "DATABASE_URL": db_url,
        "WORKER_POLL_SECONDS": "0.05",
        "PAYDESK_ENV": "test",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "payments_core.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while processed() < 25:
            assert worker.poll() is None, "worker exited early"
            assert time.monotonic() < deadline, "worker processed nothing within 60 s"
            time.sleep(0.01)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    done_by_killed_worker = processed()
    assert done_by_killed_worker < 400, "the worker finished before it could be killed"

    process_until_quiet(engine)
    rows = list(inbox_rows(engine))
    assert len(rows) == 400 and {r.status for r in rows} == {"processed"}
    assert set(applied_once(engine).values()) == {1}
    with Session(engine) as session:
        assert {p.status for p in session.exec(select(Payment))} == {"succeeded"}
        assert verify_chain(session=session).ok


def test_database_stopped_answers_503_and_everything_acknowledged_is_processed_after(
    db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_url(db_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("a server database that can stop: PostgreSQL only (SQLite is a local file)")
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        monkeypatch.setenv("DATABASE_URL", proxied)
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
        monkeypatch.setenv("WORKER_POLL_SECONDS", "0.05")
        monkeypatch.setenv("WEBHOOK_RETRY_BASE_SECONDS", "0.1")
        monkeypatch.setenv("WEBHOOK_RETRY_MAX_SECONDS", "0.5")
        monkeypatch.setenv("PAYDESK_IN_PROCESS_WORKER", "1")
        get_settings.cache_clear()
        try:
            with running_server() as base, httpx.Client(base_url=base, timeout=30) as http:

                def deliver(n: int) -> int:
                    pi = payment_intent(f"pi_down_{n}", "succeeded")
                    body, headers = signed_stripe(
                        stripe_event(f"evt_down_{n}", "payment_intent.succeeded", pi)
                    )
                    return http.post("/webhooks/stripe", content=body, headers=headers).status_code

                assert [deliver(n) for n in range(20)] == [200] * 20
                proxy.down()
                assert http.get("/healthz").status_code == 503
                assert {deliver(n) for n in range(20, 40)} == {503}
                proxy.up()
                # The provider retries what got 503; those answers are now 2xx.
                assert [deliver(n) for n in range(20, 40)] == [200] * 20
                assert http.get("/healthz").status_code == 200
                wait_until_quiet(engine, timeout=60)
        finally:
            dispose_engines()
    rows = list(inbox_rows(engine))
    assert len(rows) == 40 and {r.status for r in rows} == {"processed"}
    with Session(engine) as session:
        assert (
            len(session.exec(select(Payment).where(col(Payment.status) == "succeeded")).all()) == 40
        )
