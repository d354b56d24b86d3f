"""Webhook intake through the real ASGI app: verified, stored once, answered only after commit."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from factories import make_payment
from fakes.postfinance import PostFinanceFake
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from webhook_support import DUMMY_SECRET, PAYSTACK_SECRET, STRIPE_SECRET

from payments_core.config import get_settings
from payments_core.db import dispose_engines
from payments_core.models import AuditEntry, WebhookEvent, WebhookRejection
from payments_core.providers import dummy, mpesa
from payments_core.providers import stripe as stripe_provider

STRIPE_OLD_SECRET = "whsec_test_previous"


def stripe_event(event_id: str = "evt_1", kind: str = "payment_intent.succeeded") -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": kind,
            "livemode": False,
            "created": 1767225600,
            "data": {
                "object": {
                    "id": "pi_3Qexample",
                    "object": "payment_intent",
                    "status": "succeeded",
                    "amount": 4990,
                    "currency": "chf",
                }
            },
        }
    ).encode()


def post_stripe(client: TestClient, body: bytes, secret: str = STRIPE_SECRET, **kw: Any) -> Any:
    # Offsets, not absolute times: parametrize values are computed at collection time.
    timestamp = int(time.time()) + kw.pop("age_offset", 0)
    header = stripe_provider.sign_payload(body, secret, timestamp)
    return client.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


def inbox(engine: Engine) -> list[WebhookEvent]:
    with Session(engine) as session:
        return list(session.exec(select(WebhookEvent).order_by(col(WebhookEvent.id))))


def rejections(engine: Engine) -> list[WebhookRejection]:
    with Session(engine) as session:
        return list(session.exec(select(WebhookRejection)))


def test_verified_stripe_event_is_stored_byte_for_byte(client: TestClient, engine: Engine) -> None:
    body = stripe_event()
    response = post_stripe(client, body)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "event_id": "evt_1"}
    [event] = inbox(engine)
    assert (event.provider, event.event_id, event.event_type) == (
        "stripe",
        "evt_1",
        "payment_intent.succeeded",
    )
    assert event.payload == body and event.status == "pending" and event.verification == "signed"
    assert "stripe-signature" in event.headers


def test_redelivery_is_acknowledged_without_a_second_row(
    client: TestClient, engine: Engine
) -> None:
    body = stripe_event()
    first, second = post_stripe(client, body), post_stripe(client, body)
    assert first.json()["status"] == "accepted"
    assert second.status_code == 200 and second.json()["status"] == "duplicate"
    assert len(inbox(engine)) == 1


def test_previous_secret_still_accepted_during_rotation(client: TestClient, engine: Engine) -> None:
    assert post_stripe(client, stripe_event(), secret=STRIPE_OLD_SECRET).status_code == 200
    assert len(inbox(engine)) == 1


@pytest.mark.parametrize(
    ("tweak", "reason"),
    [
        ({"secret": "whsec_wrong"}, "bad_signature"),
        ({"age_offset": -310}, "stale_timestamp"),
        ({"age_offset": 310}, "future_timestamp"),
    ],
)
def test_untrusted_stripe_deliveries_change_nothing(
    client: TestClient, engine: Engine, tweak: dict[str, Any], reason: str
) -> None:
    response = post_stripe(client, stripe_event(), **tweak)
    assert response.status_code == 400 and response.json()["error"] == reason
    assert inbox(engine) == []
    [counter] = rejections(engine)
    assert (counter.provider, counter.reason, counter.count) == ("stripe", reason, 1)


def test_tampered_body_is_refused(client: TestClient, engine: Engine) -> None:
    body = stripe_event()
    header = stripe_provider.sign_payload(body, STRIPE_SECRET, int(time.time()))
    response = client.post(
        "/webhooks/stripe",
        content=body.replace(b"4990", b"4999"),
        headers={"Stripe-Signature": header},
    )
    assert response.status_code == 400 and response.json()["error"] == "bad_signature"
    assert inbox(engine) == []


def test_missing_signature(client: TestClient, engine: Engine) -> None:
    response = client.post("/webhooks/stripe", content=stripe_event())
    assert response.status_code == 400 and response.json()["error"] == "missing_signature"


def test_a_flood_of_forgeries_grows_a_counter_not_the_database(
    client: TestClient, engine: Engine
) -> None:
    for n in range(40):
        post_stripe(client, stripe_event(f"evt_forged_{n}"), secret="whsec_attacker")
    [counter] = rejections(engine)
    assert counter.count == 40
    with Session(engine) as session:
        audits = session.exec(select(AuditEntry)).all()
    assert [a.action for a in audits] == ["webhook.rejected"]
    assert inbox(engine) == []


def test_oversized_body_is_413(client: TestClient, engine: Engine) -> None:
    body = b'{"id": "evt_big", "pad": "' + b"x" * (256 * 1024) + b'"}'
    response = post_stripe(client, body)
    assert response.status_code == 413 and response.json()["error"] == "too_large"
    assert inbox(engine) == []


def _receive_script(*messages: dict[str, Any]) -> Any:
    """An ASGI ``receive`` that hands out these messages, in order."""
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


def _chunks(data: bytes, size: int) -> list[dict[str, Any]]:
    pieces = [data[start : start + size] for start in range(0, len(data), size)]
    return [
        {"type": "http.request", "body": piece, "more_body": n < len(pieces) - 1}
        for n, piece in enumerate(pieces)
    ]


def test_a_body_in_several_messages_is_read_whole_and_refused_once_over_the_limit() -> None:
    """A body without a Content-Length (chunked) arrives in several ASGI messages: it is joined
    when it fits, refused as soon as it grows over the limit, and a client that goes away
    mid-body is noticed."""
    import asyncio

    from webhook_server.intake import BodyTooLarge, ClientDisconnect, read_body

    body = stripe_event("evt_chunked")
    assert asyncio.run(read_body(_receive_script(*_chunks(body, 50)), len(body))) == body
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_body(_receive_script(*_chunks(body, 50)), len(body) - 1))
    with pytest.raises(BodyTooLarge):  # announced too large: refused before reading
        asyncio.run(read_body(_receive_script(), 100, declared="101"))
    cut = [*_chunks(body, 50)[:2], {"type": "http.disconnect"}]
    with pytest.raises(ClientDisconnect):
        asyncio.run(read_body(_receive_script(*cut), len(body)))


@pytest.mark.parametrize("valid_first", [True, False])
def test_a_repeated_signature_header_is_read_from_its_first_occurrence(
    client: TestClient, engine: Engine, valid_first: bool
) -> None:
    body = stripe_event("evt_twice")
    valid = stripe_provider.sign_payload(body, STRIPE_SECRET, int(time.time()))
    forged = stripe_provider.sign_payload(body, "whsec_attacker", int(time.time()))
    pair = [("Stripe-Signature", valid), ("Stripe-Signature", forged)]
    response = client.post(
        "/webhooks/stripe", content=body, headers=pair if valid_first else pair[::-1]
    )
    assert response.status_code == (200 if valid_first else 400), response.text
    assert len(inbox(engine)) == (1 if valid_first else 0)


def test_unknown_provider_is_404_and_does_not_become_a_label(
    client: TestClient, engine: Engine
) -> None:
    response = client.post("/webhooks/acme-pay", content=b"{}")
    assert response.status_code == 404
    [counter] = rejections(engine)
    assert (counter.provider, counter.reason) == ("unknown", "unknown_provider")
    assert "acme-pay" not in client.get("/metrics").text


def test_not_json_after_a_valid_signature_is_malformed(client: TestClient, engine: Engine) -> None:
    response = post_stripe(client, b"not json at all")
    assert response.status_code == 400 and response.json()["error"] == "malformed"


def paystack_body(reference: str = "ord-42-a1", charge_id: int = 302961) -> bytes:
    return json.dumps(
        {
            "event": "charge.success",
            "data": {
                "id": charge_id,
                "domain": "test",
                "status": "success",
                "reference": reference,
                "amount": 250000,
                "currency": "NGN",
            },
        }
    ).encode()


def paystack_signature(body: bytes, secret: str = PAYSTACK_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()


def test_paystack_signed_event_gets_a_derived_stable_id(client: TestClient, engine: Engine) -> None:
    body = paystack_body()
    for _ in range(2):
        response = client.post(
            "/webhooks/paystack",
            content=body,
            headers={"x-paystack-signature": paystack_signature(body)},
        )
        assert response.status_code == 200
    [event] = inbox(engine)
    assert event.event_id == "charge.success:302961" and event.event_type == "charge.success"


def test_paystack_wrong_key_refused(client: TestClient, engine: Engine) -> None:
    body = paystack_body()
    response = client.post(
        "/webhooks/paystack",
        content=body,
        headers={"x-paystack-signature": paystack_signature(body, "sk_test_other")},
    )
    assert response.status_code == 400 and inbox(engine) == []


def test_paystack_source_allowlist(
    client: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYSTACK_WEBHOOK_ALLOWED_IPS", "52.31.139.75,52.49.173.169")
    get_settings.cache_clear()
    body = paystack_body()
    response = client.post(
        "/webhooks/paystack",
        content=body,
        headers={"x-paystack-signature": paystack_signature(body)},
    )
    assert response.status_code == 403 and response.json()["error"] == "source_not_allowed"
    monkeypatch.setenv("PAYSTACK_WEBHOOK_ALLOWED_IPS", "52.31.139.75,testclient")
    get_settings.cache_clear()
    response = client.post(
        "/webhooks/paystack",
        content=body,
        headers={"x-paystack-signature": paystack_signature(body)},
    )
    assert response.status_code == 200


def test_dummy_event(client: TestClient, engine: Engine) -> None:
    body = json.dumps(
        {
            "id": "dmy_evt_1",
            "type": "payment.succeeded",
            "payment_id": "pay_x",
            "amount": 1000,
            "currency": "CHF",
            "livemode": False,
        }
    ).encode()
    response = client.post(
        "/webhooks/dummy",
        content=body,
        headers={"X-Dummy-Signature": dummy.sign_payload(body, DUMMY_SECRET)},
    )
    assert response.status_code == 200
    [event] = inbox(engine)
    assert (event.provider, event.event_id) == ("dummy", "dmy_evt_1")


def stk_callback(checkout_request_id: str, result_code: int = 0) -> bytes:
    callback: dict[str, Any] = {
        "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": checkout_request_id,
        "ResultCode": result_code,
        "ResultDesc": "The service request is processed successfully.",
    }
    if result_code == 0:
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": 1.00},
                {"Name": "MpesaReceiptNumber", "Value": "QKH94M1Z11"},
                {"Name": "Balance"},
                {"Name": "PhoneNumber", "Value": 254708374149},
            ]
        }
    return json.dumps({"Body": {"stkCallback": callback}}).encode()


def test_mpesa_callback_needs_the_payments_secret_url(client: TestClient, engine: Engine) -> None:
    token = mpesa.new_callback_token()
    with Session(engine) as session, session.begin():
        payment = make_payment(
            session,
            provider="mpesa",
            provider_reference="ws_CO_05012026131500123456",
            currency="KES",
            amount_minor=100,
            method="mobile_money",
            callback_token_hash=mpesa.hash_callback_token(token),
        )
        payment_id = payment.id
    body = stk_callback("ws_CO_05012026131500123456")
    assert client.post(f"/webhooks/mpesa/{token}x", content=body).status_code == 404
    assert client.post("/webhooks/mpesa", content=body).status_code == 404
    assert inbox(engine) == []
    for _ in range(2):
        assert client.post(f"/webhooks/mpesa/{token}", content=body).status_code == 200
    [event] = inbox(engine)
    assert event.payment_id == payment_id and event.verification == "token"
    assert event.event_id == "ws_CO_05012026131500123456:0"


def test_database_down_answers_503_never_2xx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
    get_settings.cache_clear()
    from webhook_server.app import app

    try:
        with TestClient(app) as test_client:
            response = post_stripe(test_client, stripe_event())
    finally:
        dispose_engines()
    assert response.status_code == 503 and response.json()["error"] == "database_unavailable"


def test_metrics_count_per_provider_and_read_the_inbox(client: TestClient, engine: Engine) -> None:
    post_stripe(client, stripe_event("evt_a"))
    post_stripe(client, stripe_event("evt_a"))
    post_stripe(client, stripe_event("evt_b"), secret="whsec_wrong")
    text = client.get("/metrics").text
    assert 'paydesk_webhooks_accepted_total{provider="stripe"}' in text
    assert 'paydesk_webhooks_duplicate_total{provider="stripe"}' in text
    assert 'paydesk_webhooks_rejected_total{provider="stripe",reason="bad_signature"}' in text
    assert "paydesk_webhook_inbox_backlog 1.0" in text
    assert "paydesk_webhook_inbox_dead 0.0" in text
    assert "paydesk_database_up 1.0" in text


# --- PostFinance: ECDSA signatures, public key read through the SDK from the fake's key service ---


@pytest.fixture
def pf_client(
    client: TestClient, postfinance_fake: PostFinanceFake, monkeypatch: pytest.MonkeyPatch
) -> TestClient:
    monkeypatch.setenv("POSTFINANCE_API_BASE", postfinance_fake.base_url)
    monkeypatch.setenv("POSTFINANCE_USER_ID", str(postfinance_fake.user_id))
    monkeypatch.setenv("POSTFINANCE_AUTHENTICATION_KEY", postfinance_fake.authentication_key)
    get_settings.cache_clear()
    return client


def test_postfinance_signed_delivery_fetches_the_key_once(
    pf_client: TestClient, postfinance_fake: PostFinanceFake, engine: Engine
) -> None:
    for event_id in (1, 2, 2):
        body, headers = postfinance_fake.signed_webhook(100_001, "AUTHORIZED", event_id=event_id)
        assert (
            pf_client.post("/webhooks/postfinance", content=body, headers=headers).status_code
            == 200
        )
    events = inbox(engine)
    assert [(e.event_id, e.event_type, e.verification) for e in events] == [
        ("1", "Transaction", "signed"),
        ("2", "Transaction", "signed"),
    ]
    key_requests = postfinance_fake.requests_to("/webhooks/encryption-keys")
    assert len(key_requests) == 1  # cached by key id
    assert key_requests[0].headers["authorization"].startswith("Bearer ")  # the SDK's JWT


def test_postfinance_forged_and_unknown_key_refused(
    pf_client: TestClient, postfinance_fake: PostFinanceFake, engine: Engine
) -> None:
    body, headers = postfinance_fake.signed_webhook(100_001, "FULFILL", event_id=7)
    tampered = body.replace(b"FULFILL", b"DECLINE")
    response = pf_client.post("/webhooks/postfinance", content=tampered, headers=headers)
    assert response.status_code == 400 and response.json()["error"] == "bad_signature"
    # A key id PostFinance does not serve (signed, then withdrawn before we could fetch it).
    withdrawn = postfinance_fake.rotate_key()
    body, headers = postfinance_fake.signed_webhook(100_001, "FULFILL", event_id=7)
    postfinance_fake.remove_key(withdrawn)
    response = pf_client.post("/webhooks/postfinance", content=body, headers=headers)
    assert response.status_code == 400 and response.json()["detail"] == "unknown signing key"
    assert inbox(engine) == []


def test_postfinance_key_service_down_is_503_so_it_is_redelivered(
    pf_client: TestClient, postfinance_fake: PostFinanceFake, engine: Engine
) -> None:
    postfinance_fake.fail_next("/webhooks/encryption-keys", status=500)
    body, headers = postfinance_fake.signed_webhook(100_001, "FULFILL", event_id=8)
    assert pf_client.post("/webhooks/postfinance", content=body, headers=headers).status_code == 503
    assert inbox(engine) == []
    assert pf_client.post("/webhooks/postfinance", content=body, headers=headers).status_code == 200


def test_postfinance_unsigned_refused_unless_allowed_then_only_a_hint(
    pf_client: TestClient,
    postfinance_fake: PostFinanceFake,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = postfinance_fake.webhook_body(100_001, "FULFILL", event_id=9)
    response = pf_client.post("/webhooks/postfinance", content=body)
    assert response.status_code == 400 and response.json()["error"] == "unsigned"
    monkeypatch.setenv("POSTFINANCE_ALLOW_UNSIGNED_WEBHOOKS", "true")
    get_settings.cache_clear()
    assert pf_client.post("/webhooks/postfinance", content=body).status_code == 200
    [event] = inbox(engine)
    assert event.verification == "hint"


# --- group commit ---------------------------------------------------------------------------------


def _verified(event_id: str) -> Any:
    from payments_core.providers.base import ProviderName, Verification, VerifiedWebhook

    return VerifiedWebhook(
        ProviderName.STRIPE, event_id, "payment_intent.succeeded", Verification.SIGNED, False
    )


def _inbox_lock_waiters(engine: Engine) -> int:
    """PostgreSQL: statements waiting for a lock on the inbox table (another holds it)."""
    from sqlalchemy import text

    with engine.connect() as probe:
        return int(
            probe.execute(
                text(
                    "SELECT count(*) FROM pg_locks "
                    "WHERE relation = 'webhook_event'::regclass AND NOT granted"
                )
            ).scalar_one()
        )


@pytest.fixture
def writer(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A group-commit inbox writer on this test's database."""
    from webhook_server.inbox_writer import InboxWriter

    monkeypatch.setenv("DATABASE_URL", db_url)
    get_settings.cache_clear()
    return InboxWriter()


def test_concurrent_deliveries_share_one_commit_and_get_their_own_answers(
    db_url: str, engine: Engine, writer: Any
) -> None:
    import asyncio

    from payments_core.services.inbox import InboxItem

    names = ["evt_a", "evt_b", "evt_a", "evt_c"]  # evt_a twice in the same batch

    async def deliver() -> list[Any]:
        try:
            return await asyncio.gather(
                *(writer.store(InboxItem(_verified(n), b"{}", {})) for n in names)
            )
        finally:
            await writer.close()

    results = asyncio.run(deliver())
    dispose_engines()
    assert [r.duplicate for r in results] == [False, False, True, False]
    assert writer.batches == 1
    assert sorted(e.event_id for e in inbox(engine)) == ["evt_a", "evt_b", "evt_c"]


def test_one_bad_delivery_does_not_fail_the_others_in_its_batch(
    db_url: str, engine: Engine, writer: Any
) -> None:
    import asyncio

    from payments_core.services.inbox import InboxItem
    from webhook_server.inbox_writer import InboxUnavailable

    if not db_url.startswith("postgresql"):
        pytest.skip("needs a database that enforces column lengths")
    items = [
        InboxItem(_verified("evt_ok_1"), b"{}", {}),
        InboxItem(_verified("evt_bad"), b"{}", {}, payment_id="p" * 60),  # column is 40 long
        InboxItem(_verified("evt_ok_2"), b"{}", {}),
    ]

    async def deliver() -> list[Any]:
        try:
            return await asyncio.gather(
                *(writer.store(item) for item in items), return_exceptions=True
            )
        finally:
            await writer.close()

    ok_1, bad, ok_2 = asyncio.run(deliver())
    dispose_engines()
    assert isinstance(bad, InboxUnavailable)
    assert not ok_1.duplicate and not ok_2.duplicate
    assert sorted(e.event_id for e in inbox(engine)) == ["evt_ok_1", "evt_ok_2"]


def test_a_commit_that_hangs_answers_503_and_the_next_batch_stores(
    db_url: str, engine: Engine, writer: Any
) -> None:
    """The wait for a commit is bounded per batch: a table lock held elsewhere makes the batch
    time out (InboxUnavailable, so the request answers 503); once the lock is gone the next
    delivery is stored on a fresh connection."""
    import asyncio

    from sqlalchemy import text

    from payments_core.services.inbox import InboxItem
    from webhook_server.inbox_writer import InboxUnavailable

    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite waits for its lock synchronously (busy timeout), not on the loop")
    writer.timeout = 0.5

    async def deliver(name: str) -> Any:
        return (
            await asyncio.gather(
                writer.store(InboxItem(_verified(name), b"{}", {})), return_exceptions=True
            )
        )[0]

    async def scenario() -> tuple[Any, Any]:
        try:
            with engine.connect() as locker:
                locker.execute(text("LOCK TABLE webhook_event IN ACCESS EXCLUSIVE MODE"))
                blocked = await deliver("evt_blocked")
                locker.rollback()
            return blocked, await deliver("evt_after")
        finally:
            await writer.close()

    blocked, after = asyncio.run(scenario())
    dispose_engines()
    assert isinstance(blocked, InboxUnavailable)
    assert not after.duplicate
    assert [e.event_id for e in inbox(engine)] == ["evt_after"]


def test_postgresql_keeps_two_batches_in_flight_and_the_next_waits_for_a_connection(
    db_url: str, engine: Engine, writer: Any
) -> None:
    """While a batch commits the next one is already sent on a second connection; a third waits
    for one of them (and takes everything that arrived meanwhile) instead of opening more."""
    import asyncio

    from sqlalchemy import text

    from payments_core.services.inbox import InboxItem
    from webhook_server.inbox_writer import PG_IN_FLIGHT

    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite is written one batch at a time, synchronously")
    assert PG_IN_FLIGHT == 2

    async def until_waiting(count: int) -> None:
        for _ in range(200):
            if _inbox_lock_waiters(engine) >= count:
                return
            await asyncio.sleep(0.025)
        raise AssertionError(f"expected {count} batches waiting, saw {_inbox_lock_waiters(engine)}")

    async def scenario() -> list[Any]:
        try:
            with engine.connect() as locker:
                locker.execute(text("LOCK TABLE webhook_event IN ACCESS EXCLUSIVE MODE"))
                deliveries = []
                for name in ("evt_first", "evt_second", "evt_third", "evt_fourth"):
                    item = InboxItem(_verified(name), b"{}", {})
                    deliveries.append(asyncio.ensure_future(writer.store(item)))
                    if name in ("evt_first", "evt_second"):
                        await until_waiting(len(deliveries))  # sent, blocked by the lock
                    else:
                        await asyncio.sleep(0.2)
                assert _inbox_lock_waiters(engine) == 2  # the third and fourth wait for a slot
                assert not any(d.done() for d in deliveries)
                locker.rollback()
                return await asyncio.gather(*deliveries)
        finally:
            await writer.close()

    results = asyncio.run(scenario())
    dispose_engines()
    assert [r.duplicate for r in results] == [False] * 4
    assert writer.batches == 3  # the third batch took both waiting deliveries
    assert sorted(e.event_id for e in inbox(engine)) == sorted(
        ["evt_first", "evt_second", "evt_third", "evt_fourth"]
    )


def test_postgresql_sends_a_full_batch_within_the_turn_that_formed_it(
    db_url: str, engine: Engine, writer: Any
) -> None:
    """EAGER_BATCH deliveries handled in one loop turn are sent by the request that completed
    the batch, before the turn ends (the server then verifies the rest of a burst while the batch
    commits); fewer wait for the writer's next turn. A batch sent that way is bounded by the same
    timeout: blocked by a table lock it answers 503, its connection is dropped, and the next
    delivery is stored."""
    import asyncio
    import time

    from sqlalchemy import text

    from payments_core.services.inbox import InboxItem
    from webhook_server.inbox_writer import EAGER_BATCH, InboxUnavailable

    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite is written synchronously by the writer's own turn")
    writer.timeout = 1.0

    def waiting_inserts(seconds: float) -> int:
        """Inserts blocked by the lock, polled until one shows up or ``seconds`` pass, while the
        event loop stays blocked: nothing but what was already sent can reach the database."""
        deadline = time.monotonic() + seconds
        while True:
            count = _inbox_lock_waiters(engine)
            if count or time.monotonic() > deadline:
                return count
            time.sleep(0.02)

    def deliveries(prefix: str, count: int) -> list[asyncio.Future[Any]]:
        return [
            asyncio.ensure_future(writer.store(InboxItem(_verified(f"{prefix}_{i}"), b"{}", {})))
            for i in range(count)
        ]

    async def scenario() -> tuple[int, int, list[Any], Any]:
        try:
            await writer.store(InboxItem(_verified("evt_warm"), b"{}", {}))  # a connection
            with engine.connect() as locker:
                locker.execute(text("LOCK TABLE webhook_event IN ACCESS EXCLUSIVE MODE"))
                full = deliveries("evt_full", EAGER_BATCH)
                await asyncio.sleep(0)  # the deliveries' turn; the writer's own comes after
                sent_full = waiting_inserts(3.0)
                results = await asyncio.gather(*full, return_exceptions=True)
                # Its connection was closed on the timeout: PostgreSQL ends the blocked insert.
                for _ in range(150):
                    if waiting_inserts(0.0) == 0:
                        break
                    await asyncio.sleep(0.02)
                short = deliveries("evt_short", EAGER_BATCH - 1)
                await asyncio.sleep(0)
                sent_short = waiting_inserts(0.3)
                results += await asyncio.gather(*short, return_exceptions=True)
                locker.rollback()
            return (
                sent_short,
                sent_full,
                results,
                await writer.store(InboxItem(_verified("evt_after"), b"{}", {})),
            )
        finally:
            await writer.close()

    sent_short, sent_full, results, after = asyncio.run(scenario())
    dispose_engines()
    assert sent_short == 0  # one short of a batch: left for the writer's turn
    assert sent_full == 1  # a full batch: already on its way to the database
    assert all(isinstance(r, InboxUnavailable) for r in results)  # both timed out on the lock
    assert not after.duplicate
    assert sorted(e.event_id for e in inbox(engine)) == ["evt_after", "evt_warm"]


def test_a_batch_stores_any_body_bytes_and_headers_exactly(
    db_url: str, engine: Engine, writer: Any
) -> None:
    """Bodies are kept byte for byte whatever they hold (empty, NUL, not UTF-8, the size limit),
    headers and ids with any Unicode; on PostgreSQL this batch is also larger than a socket
    buffer, so it is sent in several writes."""
    import asyncio

    from payments_core.services.inbox import InboxItem

    limit = get_settings().webhook_max_body_bytes
    bodies = [b"", b"\x00\xff\xfe\x80 not utf-8 \x00", "ünïcødé ✓ 😀".encode(), b"{}"]
    bodies += [bytes([i % 256]) * limit for i in range(40)]  # 10 MiB in one batch
    items = [
        InboxItem(
            _verified(f"evt_bytes_{i}_ü😀"),
            body,
            {"Stripe-Signature": f"t=1,v1=ab{i}", "User-Agent": "Strïpe/1.0 😀", "X-Other": "x"},
        )
        for i, body in enumerate(bodies)
    ]

    async def deliver() -> list[Any]:
        try:
            return await asyncio.gather(*(writer.store(item) for item in items))
        finally:
            await writer.close()

    results = asyncio.run(deliver())
    dispose_engines()
    assert [r.duplicate for r in results] == [False] * len(bodies)
    stored = {e.event_id: e for e in inbox(engine)}
    for i, body in enumerate(bodies):
        event = stored[f"evt_bytes_{i}_ü😀"]
        assert event.payload == body
        assert event.headers == {"stripe-signature": f"t=1,v1=ab{i}", "user-agent": "Strïpe/1.0 😀"}
        assert event.id == results[i].id


def test_postgresql_a_connection_lost_while_idle_is_replaced(
    db_url: str, engine: Engine, writer: Any
) -> None:
    """PostgreSQL ends one of the writer's idle connections (a restart, an administrator): the
    writer notices it closed and stores the next delivery on a new connection."""
    import asyncio

    from sqlalchemy import text

    from payments_core.services.inbox import InboxItem

    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no server connection to lose")

    def terminate_writer_connections() -> int:
        with engine.connect() as admin:
            ended = admin.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                    "AND query LIKE '%paydesk_inbox_insert%'"
                )
            ).scalar_one()
            admin.commit()
        return int(ended)

    async def scenario() -> tuple[int, Any]:
        try:
            await writer.store(InboxItem(_verified("evt_before"), b"{}", {}))
            ended = terminate_writer_connections()
            await asyncio.sleep(0.5)  # the loop reads the connection's end
            return ended, await writer.store(InboxItem(_verified("evt_after"), b"{}", {}))
        finally:
            await writer.close()

    ended, after = asyncio.run(scenario())
    dispose_engines()
    assert ended == 1
    assert not after.duplicate
    assert [e.event_id for e in inbox(engine)] == ["evt_before", "evt_after"]


def test_a_started_server_keeps_start_up_objects_and_live_requests_out_of_young_collections(
    client: TestClient,
) -> None:
    """The lifespan freezes what start-up created and collects the youngest generation in
    larger steps (live requests are not walked every 700 allocations)."""
    import gc

    from webhook_server.app import YOUNG_COLLECTION_THRESHOLD

    assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD > 700


def test_a_delivery_that_cannot_be_written_fails_alone_and_the_writer_goes_on(
    db_url: str, engine: Engine, writer: Any
) -> None:
    """A delivery the inbox cannot encode (here a header that is not text) is answered 503 on
    its own; the others of its batch are stored, and so is what comes after."""
    import asyncio

    from payments_core.services.inbox import InboxItem
    from webhook_server.inbox_writer import PG_IN_FLIGHT, InboxUnavailable

    bad: Any = {"content-type": object()}
    batch = [
        InboxItem(_verified("evt_ok_1"), b"{}", {}),
        InboxItem(_verified("evt_unwritable"), b"{}", bad),
        InboxItem(_verified("evt_ok_2"), b"{}", {}),
    ]

    async def deliver() -> tuple[list[Any], list[Any], Any]:
        try:
            first = await asyncio.gather(*(writer.store(i) for i in batch), return_exceptions=True)
            # Alone, more often than there are PostgreSQL batches in flight: none keeps a slot.
            unwritable = InboxItem(_verified("evt_unwritable_alone"), b"{}", bad)
            alone = [
                (await asyncio.gather(writer.store(unwritable), return_exceptions=True))[0]
                for _ in range(PG_IN_FLIGHT + 1)
            ]
            later = await writer.store(InboxItem(_verified("evt_later"), b"{}", {}))
            return first, alone, later
        finally:
            await writer.close()

    first, alone, later = asyncio.run(asyncio.wait_for(deliver(), 60))
    dispose_engines()
    ok_1, unwritable, ok_2 = first
    assert isinstance(unwritable, InboxUnavailable)
    assert not ok_1.duplicate and not ok_2.duplicate
    assert all(isinstance(r, InboxUnavailable) for r in alone)
    assert not later.duplicate
    assert sorted(e.event_id for e in inbox(engine)) == ["evt_later", "evt_ok_1", "evt_ok_2"]
