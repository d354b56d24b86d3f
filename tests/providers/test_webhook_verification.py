"""Webhook verification: Stripe, PostFinance, Paystack, M-Pesa callbacks and the dummy provider.

Per provider: a valid delivery is accepted with the expected ``VerifiedWebhook`` fields; a tampered
body, a wrong secret/key, a missing or malformed header are rejected with the right reason; a body
that verifies but is not the expected JSON is MALFORMED. Stripe is cross-checked against the
official SDK in both directions, PostFinance against the vendor's test vector (reference
section 2.8). Hypothesis: sign -> verify succeeds and any single flipped byte -> BAD_SIGNATURE.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe as stripe_sdk
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments_core.providers import dummy, mpesa, paystack, postfinance
from payments_core.providers import stripe as stripe_webhooks
from payments_core.providers.base import (
    ProviderName,
    RejectionReason,
    UnknownProviderState,
    Verification,
    VerifiedWebhook,
    WebhookRejected,
)
from payments_core.status import MappedStatus, PaymentStatus


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _rejected(call: Callable[[], object], reason: RejectionReason) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        call()
    assert info.value.reason is reason, info.value
    return info.value


def _flip(raw: bytes, index: int, mask: int = 0x01) -> bytes:
    return raw[:index] + bytes([raw[index] ^ mask]) + raw[index + 1 :]


# ================================================================================================
# Stripe
# ================================================================================================

NOW = 1_767_225_600.0
T = int(NOW)
WHSEC = "whsec_test_0123456789abcdef"
WHSEC_OLD = "whsec_old_fedcba9876543210"


def stripe_event(
    event_type: str = "payment_intent.succeeded",
    obj: dict[str, Any] | None = None,
    **extra: Any,
) -> bytes:
    if obj is None:
        obj = {"id": "pi_3Qexample", "object": "payment_intent", "status": "succeeded"}
    body = {
        "id": "evt_1Qexample",
        "object": "event",
        "type": event_type,
        "created": T,
        "livemode": False,
        "api_version": "2026-10-28.endive",
        "pending_webhooks": 1,
        "data": {"object": obj},
        **extra,
    }
    return json.dumps(body, indent=2).encode()


def verify_stripe(
    raw: bytes,
    header: str | None,
    secrets: tuple[str, ...] = (WHSEC,),
    now: float = NOW,
) -> VerifiedWebhook:
    return stripe_webhooks.verify_webhook(raw, header, secrets, now=now)


def test_stripe_valid_signature_accepted() -> None:
    raw = stripe_event()
    result = verify_stripe(raw, stripe_webhooks.sign_payload(raw, WHSEC, T))
    assert result == VerifiedWebhook(
        provider=ProviderName.STRIPE,
        event_id="evt_1Qexample",
        event_type="payment_intent.succeeded",
        verification=Verification.SIGNED,
        livemode=False,
        reference="pi_3Qexample",
    )


def test_stripe_livemode_true() -> None:
    raw = stripe_event(livemode=True)
    assert verify_stripe(raw, stripe_webhooks.sign_payload(raw, WHSEC, T)).livemode is True


@pytest.mark.parametrize(
    ("event_type", "obj", "reference"),
    [
        ("payment_intent.payment_failed", {"id": "pi_1", "object": "payment_intent"}, "pi_1"),
        ("charge.succeeded", {"id": "ch_1", "object": "charge", "payment_intent": "pi_2"}, "pi_2"),
        ("charge.refunded", {"id": "ch_1", "payment_intent": None}, None),  # legacy charge
        (
            "charge.refund.updated",
            {"id": "re_1", "object": "refund", "payment_intent": "pi_3"},
            "pi_3",
        ),
        ("refund.created", {"id": "re_1", "object": "refund", "payment_intent": "pi_4"}, "pi_4"),
        (
            "charge.dispute.created",
            {"id": "dp_1", "object": "dispute", "payment_intent": "pi_5"},
            "pi_5",
        ),
        ("charge.dispute.closed", {"id": "dp_1", "payment_intent": {"id": "pi_6"}}, "pi_6"),
        ("checkout.session.completed", {"id": "cs_1", "payment_intent": "pi_7"}, "pi_7"),
        ("checkout.session.expired", {"id": "cs_2", "payment_intent": None}, "cs_2"),
        ("checkout.session.async_payment_failed", {"id": "cs_3"}, "cs_3"),
        ("customer.created", {"id": "cus_1", "object": "customer"}, None),
    ],
)
def test_stripe_reference_per_event_type(
    event_type: str, obj: dict[str, Any], reference: str | None
) -> None:
    raw = stripe_event(event_type, obj)
    result = verify_stripe(raw, stripe_webhooks.sign_payload(raw, WHSEC, T))
    assert result.event_type == event_type
    assert result.reference == reference


def test_stripe_tampered_body_rejected() -> None:
    raw = stripe_event()
    header = stripe_webhooks.sign_payload(raw, WHSEC, T)
    tampered = raw.replace(b"succeeded", b"succeedee", 1)
    _rejected(lambda: verify_stripe(tampered, header), RejectionReason.BAD_SIGNATURE)


def test_stripe_wrong_secret_rejected() -> None:
    raw = stripe_event()
    header = stripe_webhooks.sign_payload(raw, "whsec_someone_else", T)
    exc = _rejected(lambda: verify_stripe(raw, header), RejectionReason.BAD_SIGNATURE)
    assert exc.status_code == 400
    assert WHSEC not in str(exc) and WHSEC not in exc.detail


@pytest.mark.parametrize("header", [None, "", "   "])
def test_stripe_missing_header(header: str | None) -> None:
    exc = _rejected(
        lambda: verify_stripe(stripe_event(), header), RejectionReason.MISSING_SIGNATURE
    )
    assert exc.status_code == 400


@pytest.mark.parametrize("secrets", [(), ("",)])
def test_stripe_not_configured_is_503(secrets: tuple[str, ...]) -> None:
    raw = stripe_event()
    header = stripe_webhooks.sign_payload(raw, WHSEC, T)
    exc = _rejected(lambda: verify_stripe(raw, header, secrets), RejectionReason.NOT_CONFIGURED)
    assert exc.status_code == 503


def test_stripe_malformed_headers() -> None:
    raw = stripe_event()
    good = stripe_webhooks.sign_payload(raw, WHSEC, T)
    v1 = good.split("v1=")[1]
    for header in [
        "garbage",
        f"v1={v1}",  # no t
        f"t=,v1={v1}",
        f"t=abc,v1={v1}",
        f"t=-{T},v1={v1}",
        f"t={T},t={T},v1={v1}",  # duplicate t
        f"t={T}",  # no v1
        f"t={T},v0={v1}",  # only the ignored scheme
        f"t={T},v1=ünicode",  # non-ASCII must not raise TypeError in compare_digest
        f"t={T}.5,v1={v1}",
    ]:
        _rejected(partial(verify_stripe, raw, header), RejectionReason.BAD_SIGNATURE)


def test_stripe_rotation_any_secret_any_v1() -> None:
    raw = stripe_event()
    sig_new = stripe_webhooks.sign_payload(raw, WHSEC, T).split("v1=")[1]
    sig_old = stripe_webhooks.sign_payload(raw, WHSEC_OLD, T).split("v1=")[1]
    junk = "0" * 64
    header = f"t={T},v1={junk},v1={sig_old},v0={junk},foo=bar"
    # The header carries the old secret's signature; either configured secret may match.
    assert verify_stripe(raw, header, (WHSEC, WHSEC_OLD)).event_id == "evt_1Qexample"
    assert verify_stripe(raw, header, (WHSEC_OLD,)).event_id == "evt_1Qexample"
    _rejected(lambda: verify_stripe(raw, header, (WHSEC,)), RejectionReason.BAD_SIGNATURE)
    # Both signatures present (Stripe during a roll), only the new secret configured.
    both = f"t={T},v1={sig_old},v1={sig_new}"
    assert verify_stripe(raw, both, (WHSEC,)).event_id == "evt_1Qexample"


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (-300, None),
        (-301, RejectionReason.STALE_TIMESTAMP),
        (300, None),
        (301, RejectionReason.FUTURE_TIMESTAMP),
        (0, None),
        (-100_000, RejectionReason.STALE_TIMESTAMP),
    ],
)
def test_stripe_timestamp_tolerance_boundary(offset: int, reason: RejectionReason | None) -> None:
    raw = stripe_event()
    header = stripe_webhooks.sign_payload(raw, WHSEC, T + offset)
    if reason is None:
        assert verify_stripe(raw, header).event_id == "evt_1Qexample"
    else:
        _rejected(lambda: verify_stripe(raw, header), reason)


def test_stripe_signature_checked_before_timestamp() -> None:
    raw = stripe_event()
    stale_forged = stripe_webhooks.sign_payload(raw, "whsec_wrong", T - 10_000)
    _rejected(lambda: verify_stripe(raw, stale_forged), RejectionReason.BAD_SIGNATURE)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'"evt_1"',
        _json({"id": "evt_1", "object": "v2.core.event", "type": "x", "livemode": False}),
        _json({"object": "event", "type": "x", "livemode": False, "data": {"object": {}}}),
        _json({"id": "evt_1", "object": "event", "livemode": False, "data": {"object": {}}}),
        _json({"id": "evt_1", "object": "event", "type": "x", "data": {"object": {}}}),
        _json({"id": "evt_1", "object": "event", "type": "x", "livemode": "no", "data": {}}),
        _json({"id": "evt_1", "object": "event", "type": "x", "livemode": False}),
        _json({"id": "evt_1", "object": "event", "type": "x", "livemode": False, "data": {}}),
        b"[" * 100_000,
    ],
)
def test_stripe_verified_but_malformed(raw: bytes) -> None:
    header = stripe_webhooks.sign_payload(raw, WHSEC, T)
    _rejected(lambda: verify_stripe(raw, header), RejectionReason.MALFORMED)


def test_stripe_sign_payload_matches_sdk() -> None:
    raw = stripe_event()
    ours = stripe_webhooks.sign_payload(raw, WHSEC, T)
    sdk = stripe_sdk.WebhookSignature.generate_signature_header(raw.decode(), WHSEC, timestamp=T)
    assert ours == sdk


def test_stripe_sdk_and_ours_agree_on_valid_and_invalid() -> None:
    raw = stripe_event()
    now = time.time()
    t = int(now)
    sdk_header = stripe_sdk.WebhookSignature.generate_signature_header(raw.decode(), WHSEC, t)
    assert verify_stripe(raw, sdk_header, now=now).event_id == "evt_1Qexample"
    event = stripe_sdk.Webhook.construct_event(
        raw, stripe_webhooks.sign_payload(raw, WHSEC, t), WHSEC
    )
    assert event.id == "evt_1Qexample"
    # Both refuse a header signed with another secret.
    wrong = stripe_webhooks.sign_payload(raw, WHSEC_OLD, t)
    with pytest.raises(stripe_sdk.SignatureVerificationError):
        stripe_sdk.Webhook.construct_event(raw, wrong, WHSEC)
    _rejected(lambda: verify_stripe(raw, wrong, now=now), RejectionReason.BAD_SIGNATURE)


def test_stripe_future_timestamp_sdk_accepts_we_refuse() -> None:
    raw = stripe_event()
    now = time.time()
    header = stripe_webhooks.sign_payload(raw, WHSEC, int(now) + 10_000)
    assert stripe_sdk.Webhook.construct_event(raw, header, WHSEC).id == "evt_1Qexample"
    _rejected(lambda: verify_stripe(raw, header, now=now), RejectionReason.FUTURE_TIMESTAMP)


# ================================================================================================
# PostFinance
# ================================================================================================

# Vendor SDK test vector (reference section 2.8).
PF_VECTOR_BODY = (
    b'{"entityId":11,"eventId":35,"listenerEntityId":1472041829003,'
    b'"listenerEntityTechnicalName":"Transaction","spaceId":1,"state":"PROCESSING",'
    b'"timestamp":"2023-12-19T13:43:35+0000","webhookListenerId":2}'
)
PF_VECTOR_KEY_ID = "ab3b774e-770e-4644-9b51-885d71f973e5"
PF_VECTOR_HEADER = (
    "algorithm=SHA256withECDSA, keyId=ab3b774e-770e-4644-9b51-885d71f973e5, "
    "signature=MEYCIQCTzbMrMsOAC6T57T9kQTb1iGZVg2R7n6pY9A4ML4P31gIhAIOoav8cG8x0jpRWQztqSJIC8gXWKq+4DuENEySvmMYf"
)
PF_VECTOR_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEdWq7ZBGsjUzhBO3e6mzUBLpjpV3TQw1bL1rk3ocjn5C5qne7TY0OBBhi"
    "WgaPtWlvUcqASz903vtfeSTQma+SBA=="
)

KEY_A = "11111111-aaaa-4bbb-8ccc-000000000001"
KEY_B = "22222222-aaaa-4bbb-8ccc-000000000002"


def _public_b64(private: ec.EllipticCurvePrivateKey) -> str:
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def pf_sign(raw: bytes, private: ec.EllipticCurvePrivateKey, key_id: str) -> str:
    signature = base64.b64encode(private.sign(raw, ec.ECDSA(hashes.SHA256()))).decode()
    return f"algorithm=SHA256withECDSA, keyId={key_id}, signature={signature}"


class CountingFetcher:
    """A key fetcher over a dict, counting calls per key id; unknown ids raise KeyError."""

    def __init__(self, keys: dict[str, str], delay: float = 0.0) -> None:
        self.keys = keys
        self.delay = delay
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, key_id: str) -> str:
        with self._lock:
            self.calls[key_id] = self.calls.get(key_id, 0) + 1
        if self.delay:
            time.sleep(self.delay)
        return self.keys[key_id]


@pytest.fixture(scope="module")
def pf_key_a() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def pf_key_b() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def pf_fetcher(
    pf_key_a: ec.EllipticCurvePrivateKey, pf_key_b: ec.EllipticCurvePrivateKey
) -> CountingFetcher:
    return CountingFetcher(
        {
            PF_VECTOR_KEY_ID: PF_VECTOR_PUBLIC_KEY,
            KEY_A: _public_b64(pf_key_a),
            KEY_B: _public_b64(pf_key_b),
        }
    )


def pf_body(entity: str = "Transaction", **fields: Any) -> bytes:
    body: dict[str, Any] = {
        "entityId": 4711,
        "eventId": 90210,
        "listenerEntityId": 1472041829003,
        "listenerEntityTechnicalName": entity,
        "spaceId": 1234,
        "state": "FULFILL",
        "timestamp": "2026-01-05T10:15:00+0000",
        "webhookListenerId": 55,
    }
    body.update(fields)
    return _json({k: v for k, v in body.items() if v is not None})


def verify_pf(
    raw: bytes, header: str | None, fetcher: CountingFetcher, *, allow_unsigned: bool = False
) -> VerifiedWebhook:
    keys = postfinance.PublicKeyCache(fetcher)
    return postfinance.verify_webhook(raw, header, keys=keys, allow_unsigned=allow_unsigned)


def test_pf_vendor_test_vector_verifies(pf_fetcher: CountingFetcher) -> None:
    result = verify_pf(PF_VECTOR_BODY, PF_VECTOR_HEADER, pf_fetcher)
    assert result == VerifiedWebhook(
        provider=ProviderName.POSTFINANCE,
        event_id="35",
        event_type="Transaction",
        verification=Verification.SIGNED,
        livemode=None,
        reference="11",
    )


def test_pf_vendor_test_vector_tampered(pf_fetcher: CountingFetcher) -> None:
    tampered = PF_VECTOR_BODY.replace(b"PROCESSING", b"FULFILL")
    _rejected(
        lambda: verify_pf(tampered, PF_VECTOR_HEADER, pf_fetcher), RejectionReason.BAD_SIGNATURE
    )


def test_pf_local_key_valid_and_refund_reference(
    pf_fetcher: CountingFetcher, pf_key_a: ec.EllipticCurvePrivateKey
) -> None:
    raw = pf_body("Refund", entityId=99, state="SUCCESSFUL")
    result = verify_pf(raw, pf_sign(raw, pf_key_a, KEY_A), pf_fetcher)
    assert result.event_id == "90210"
    assert result.event_type == "Refund"
    assert result.reference is None
    assert result.verification is Verification.SIGNED


def test_pf_tampered_body(
    pf_fetcher: CountingFetcher, pf_key_a: ec.EllipticCurvePrivateKey
) -> None:
    raw = pf_body()
    header = pf_sign(raw, pf_key_a, KEY_A)
    tampered = raw.replace(b"FULFILL", b"DECLINE")
    _rejected(lambda: verify_pf(tampered, header, pf_fetcher), RejectionReason.BAD_SIGNATURE)


def test_pf_wrong_key(pf_fetcher: CountingFetcher, pf_key_a: ec.EllipticCurvePrivateKey) -> None:
    raw = pf_body()
    header = pf_sign(raw, pf_key_a, KEY_B)  # signed with A, claims B
    _rejected(lambda: verify_pf(raw, header, pf_fetcher), RejectionReason.BAD_SIGNATURE)
    other = ec.generate_private_key(ec.SECP256R1())
    header = pf_sign(raw, other, KEY_A)
    _rejected(lambda: verify_pf(raw, header, pf_fetcher), RejectionReason.BAD_SIGNATURE)


def test_pf_bad_header_format(
    pf_fetcher: CountingFetcher, pf_key_a: ec.EllipticCurvePrivateKey
) -> None:
    raw = pf_body()
    good = pf_sign(raw, pf_key_a, KEY_A)
    signature = good.split("signature=")[1]
    for header in [
        good.replace(", ", ","),  # the SDK requires one whitespace after each comma
        good.replace(", ", ",  "),
        good.replace("keyId=", "keyid="),
        good.replace(KEY_A, KEY_A.upper()),
        good + "\n",
        good + " ",
        f"algorithm=SHA256withRSA, keyId={KEY_A}, signature={signature}",
        f"algorithm=SHA256withECDSA, keyId={KEY_A}, signature=%%%",
        f"algorithm=SHA256withECDSA, keyId={KEY_A}, signature=abc",  # not valid base64
        f"algorithm=SHA256withECDSA, keyId={KEY_A}, signature=AAAA",  # not a DER signature
        "garbage",
    ]:
        _rejected(partial(verify_pf, raw, header, pf_fetcher), RejectionReason.BAD_SIGNATURE)
    assert set(pf_fetcher.calls) <= {KEY_A}


def test_pf_key_rotation_two_key_ids(
    pf_fetcher: CountingFetcher,
    pf_key_a: ec.EllipticCurvePrivateKey,
    pf_key_b: ec.EllipticCurvePrivateKey,
) -> None:
    keys = postfinance.PublicKeyCache(pf_fetcher)
    raw_a = pf_body(eventId=1)
    raw_b = pf_body(eventId=2)
    for _ in range(3):
        a = postfinance.verify_webhook(
            raw_a, pf_sign(raw_a, pf_key_a, KEY_A), keys=keys, allow_unsigned=False
        )
        b = postfinance.verify_webhook(
            raw_b, pf_sign(raw_b, pf_key_b, KEY_B), keys=keys, allow_unsigned=False
        )
        assert (a.event_id, b.event_id) == ("1", "2")
    assert pf_fetcher.calls == {KEY_A: 1, KEY_B: 1}


def test_pf_unknown_key_rejected_and_not_cached(pf_key_a: ec.EllipticCurvePrivateKey) -> None:
    fetcher = CountingFetcher({})
    keys = postfinance.PublicKeyCache(fetcher)
    raw = pf_body()
    header = pf_sign(raw, pf_key_a, KEY_A)
    for _ in range(2):
        exc = _rejected(
            lambda: postfinance.verify_webhook(raw, header, keys=keys, allow_unsigned=False),
            RejectionReason.BAD_SIGNATURE,
        )
        assert exc.detail == "unknown signing key"
        assert exc.status_code == 400
    assert fetcher.calls == {KEY_A: 2}
    # The key becomes known (a newly rotated key): the next delivery verifies.
    fetcher.keys[KEY_A] = _public_b64(pf_key_a)
    assert postfinance.verify_webhook(raw, header, keys=keys, allow_unsigned=False).event_id
    assert fetcher.calls == {KEY_A: 3}


def test_pf_overlong_key_id_not_fetched(pf_key_a: ec.EllipticCurvePrivateKey) -> None:
    fetcher = CountingFetcher({})
    raw = pf_body()
    header = pf_sign(raw, pf_key_a, "a" * 65)
    _rejected(lambda: verify_pf(raw, header, fetcher), RejectionReason.BAD_SIGNATURE)
    assert fetcher.calls == {}


def test_pf_fetch_failure_is_503_and_not_cached(pf_key_a: ec.EllipticCurvePrivateKey) -> None:
    calls = 0

    def failing(key_id: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("PostFinance unreachable")
        return _public_b64(pf_key_a)

    keys = postfinance.PublicKeyCache(failing)
    raw = pf_body()
    header = pf_sign(raw, pf_key_a, KEY_A)
    exc = _rejected(
        lambda: postfinance.verify_webhook(raw, header, keys=keys, allow_unsigned=False),
        RejectionReason.NOT_CONFIGURED,
    )
    assert exc.status_code == 503
    assert postfinance.verify_webhook(raw, header, keys=keys, allow_unsigned=False).event_id
    assert calls == 2


@pytest.mark.parametrize(
    "public_key",
    [
        "not base64!",
        base64.b64encode(b"not DER").decode(),
        base64.b64encode(
            ed25519.Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).decode(),
    ],
)
def test_pf_unusable_key_rejected(public_key: str, pf_key_a: ec.EllipticCurvePrivateKey) -> None:
    raw = pf_body()
    fetcher = CountingFetcher({KEY_A: public_key})
    exc = _rejected(
        lambda: verify_pf(raw, pf_sign(raw, pf_key_a, KEY_A), fetcher),
        RejectionReason.BAD_SIGNATURE,
    )
    assert exc.detail == "unusable signing key"


def test_pf_cache_fetches_once_from_many_threads(pf_key_a: ec.EllipticCurvePrivateKey) -> None:
    fetcher = CountingFetcher({KEY_A: _public_b64(pf_key_a), KEY_B: _public_b64(pf_key_a)}, 0.05)
    keys = postfinance.PublicKeyCache(fetcher)
    raw = pf_body()
    headers = [pf_sign(raw, pf_key_a, KEY_A), pf_sign(raw, pf_key_a, KEY_B)]
    barrier = threading.Barrier(16)
    results: list[VerifiedWebhook] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait()
            result = postfinance.verify_webhook(
                raw, headers[n % 2], keys=keys, allow_unsigned=False
            )
            results.append(result)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 16
    assert fetcher.calls == {KEY_A: 1, KEY_B: 1}


def test_pf_missing_header_unsigned_or_hint(pf_fetcher: CountingFetcher) -> None:
    raw = pf_body(state=None)  # unsigned listeners do not send state
    for header in [None, ""]:
        exc = _rejected(partial(verify_pf, raw, header, pf_fetcher), RejectionReason.UNSIGNED)
        assert exc.status_code == 400
        result = verify_pf(raw, header, pf_fetcher, allow_unsigned=True)
        assert result.verification is Verification.HINT
        assert (result.event_id, result.event_type, result.reference) == (
            "90210",
            "Transaction",
            "4711",
        )
    assert pf_fetcher.calls == {}
    _rejected(
        lambda: verify_pf(b"nope", None, pf_fetcher, allow_unsigned=True), RejectionReason.MALFORMED
    )


@pytest.mark.parametrize(
    "raw",
    [
        pf_body(state=None),  # signed payloads carry state
        pf_body(eventId=None),
        pf_body(entityId=None),
        pf_body(eventId=True),
        pf_body(listenerEntityTechnicalName=None),
        b"not json",
        b"[]",
    ],
)
def test_pf_verified_but_malformed(
    raw: bytes, pf_fetcher: CountingFetcher, pf_key_a: ec.EllipticCurvePrivateKey
) -> None:
    _rejected(
        lambda: verify_pf(raw, pf_sign(raw, pf_key_a, KEY_A), pf_fetcher), RejectionReason.MALFORMED
    )


class _KeyHandler(BaseHTTPRequestHandler):
    keys: dict[str, str] = {}

    def do_GET(self) -> None:
        prefix = "/api/v2.0/webhooks/encryption-keys/"
        key_id = self.path.removeprefix(prefix)
        if not self.path.startswith(prefix) or key_id not in self.keys:
            self._send(404, _json({"id": "x", "message": "not found"}))
        elif self.keys[key_id] == "BOOM":
            self._send(500, _json({"message": "internal"}))
        else:
            self._send(200, json.dumps(self.keys[key_id]).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def pf_key_server(pf_key_a: ec.EllipticCurvePrivateKey) -> Iterator[str]:
    _KeyHandler.keys = {KEY_A: _public_b64(pf_key_a), KEY_B: "", "33333333-0000": "BOOM"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeyHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v2.0"
    server.shutdown()
    server.server_close()


def test_pf_sdk_key_fetcher_against_fake_server(
    pf_key_server: str, pf_key_a: ec.EllipticCurvePrivateKey
) -> None:
    from postfinancecheckout.configuration import Configuration

    configuration = Configuration(
        host=pf_key_server,
        user_id=512,
        authentication_key=base64.b64encode(b"k" * 32).decode(),
        request_timeout=5,
    )
    fetch = postfinance.sdk_key_fetcher(configuration)
    assert fetch(KEY_A) == _public_b64(pf_key_a)
    with pytest.raises(postfinance.UnknownSigningKey):
        fetch("44444444-0000")  # 404
    with pytest.raises(postfinance.UnknownSigningKey):
        fetch(KEY_B)  # empty answer

    keys = postfinance.PublicKeyCache(fetch)
    raw = pf_body()
    result = postfinance.verify_webhook(
        raw, pf_sign(raw, pf_key_a, KEY_A), keys=keys, allow_unsigned=False
    )
    assert result.reference == "4711"
    exc = _rejected(
        lambda: postfinance.verify_webhook(
            raw, pf_sign(raw, pf_key_a, "33333333-0000"), keys=keys, allow_unsigned=False
        ),
        RejectionReason.NOT_CONFIGURED,
    )
    assert exc.status_code == 503


# ================================================================================================
# Paystack
# ================================================================================================

PAYSTACK_SECRET = "sk_test_0123456789abcdef"

PAYSTACK_CHARGE: dict[str, Any] = {
    "event": "charge.success",
    "data": {
        "id": 302961,
        "domain": "live",
        "status": "success",
        "reference": "ord-42-a1",
        "amount": 250000,
        "currency": "NGN",
        "metadata": {"order_id": "42"},
    },
}
PAYSTACK_REFUND: dict[str, Any] = {
    "event": "refund.processed",
    "data": {
        "status": "processed",
        "transaction_reference": "ord-42-a1",
        "refund_reference": "RF123",
        "amount": "5000",
        "currency": "NGN",
        "domain": "test",
    },
}
PAYSTACK_DISPUTE: dict[str, Any] = {
    "event": "charge.dispute.create",
    "data": {
        "id": 358950,
        "status": "awaiting-merchant-feedback",
        "resolution": None,
        "domain": "live",
        "transaction": {"id": 896467688, "reference": "ord-42-a1"},
    },
}


def verify_paystack(raw: bytes, header: str | None = "sign") -> VerifiedWebhook:
    if header == "sign":
        header = paystack.sign_payload(raw, PAYSTACK_SECRET)
    return paystack.verify_webhook(raw, header, PAYSTACK_SECRET)


def test_paystack_charge_accepted() -> None:
    raw = _json(PAYSTACK_CHARGE)
    expected_header = hmac.new(PAYSTACK_SECRET.encode(), raw, hashlib.sha512).hexdigest()
    assert paystack.sign_payload(raw, PAYSTACK_SECRET) == expected_header
    result = paystack.verify_webhook(raw, f"  {expected_header.upper()} ", PAYSTACK_SECRET)
    assert result == VerifiedWebhook(
        provider=ProviderName.PAYSTACK,
        event_id="charge.success:302961",
        event_type="charge.success",
        verification=Verification.SIGNED,
        livemode=True,
        reference="ord-42-a1",
    )


def test_paystack_refund_and_dispute_fields() -> None:
    refund = verify_paystack(_json(PAYSTACK_REFUND))
    assert refund.event_id == "refund:ord-42-a1:RF123:processed"
    assert (refund.event_type, refund.livemode, refund.reference) == (
        "refund.processed",
        False,
        "ord-42-a1",
    )
    dispute = verify_paystack(_json(PAYSTACK_DISPUTE))
    assert dispute.event_id == "charge.dispute.create:358950:awaiting-merchant-feedback"
    assert (dispute.livemode, dispute.reference) == (True, "ord-42-a1")


def test_paystack_refund_keys_while_pending() -> None:
    pending: dict[str, Any] = {
        "event": "refund.pending",
        "data": {"status": "pending", "transaction_reference": "ord-1", "refund_reference": None},
    }
    assert verify_paystack(_json(pending)).event_id == "refund:ord-1::pending"
    with_id = {**pending, "data": {**pending["data"], "id": 77}}
    assert verify_paystack(_json(with_id)).event_id == "refund:ord-1:77:pending"


def test_paystack_dedupe_keys_stable_and_distinct() -> None:
    charge = _json(PAYSTACK_CHARGE)
    # Same content, different serialisation (a redelivery) -> same key.
    reserialised = json.dumps(PAYSTACK_CHARGE, indent=4, sort_keys=True).encode()
    assert verify_paystack(charge).event_id == verify_paystack(reserialised).event_id
    # String and integer ids give the same key.
    as_string = {**PAYSTACK_CHARGE, "data": {**PAYSTACK_CHARGE["data"], "id": "302961"}}
    assert verify_paystack(_json(as_string)).event_id == "charge.success:302961"

    keys = {
        verify_paystack(_json(PAYSTACK_CHARGE)).event_id,
        verify_paystack(
            _json({**PAYSTACK_CHARGE, "data": {**PAYSTACK_CHARGE["data"], "id": 302962}})
        ).event_id,
        verify_paystack(_json(PAYSTACK_REFUND)).event_id,
        verify_paystack(
            _json(
                {
                    "event": "refund.failed",
                    "data": {**PAYSTACK_REFUND["data"], "status": "failed", "amount": 5000},
                }
            )
        ).event_id,
        verify_paystack(_json(PAYSTACK_DISPUTE)).event_id,
        verify_paystack(_json({**PAYSTACK_DISPUTE, "event": "charge.dispute.remind"})).event_id,
        verify_paystack(
            _json(
                {
                    "event": "charge.dispute.resolve",
                    "data": {**PAYSTACK_DISPUTE["data"], "status": "resolved"},
                }
            )
        ).event_id,
    }
    assert len(keys) == 7


def test_paystack_other_events_keyed_by_content_hash() -> None:
    transfer = _json({"event": "transfer.success", "data": {"reference": "tr_1", "amount": 1}})
    result = verify_paystack(transfer)
    assert result.event_id == f"transfer.success:{hashlib.sha256(transfer).hexdigest()}"
    assert verify_paystack(transfer).event_id == result.event_id
    assert result.reference is None
    assert result.livemode is None
    other = _json({"event": "transfer.success", "data": {"reference": "tr_2", "amount": 1}})
    assert verify_paystack(other).event_id != result.event_id


def test_paystack_tampered_wrong_secret_missing() -> None:
    raw = _json(PAYSTACK_CHARGE)
    header = paystack.sign_payload(raw, PAYSTACK_SECRET)
    tampered = raw.replace(b"250000", b"250001")
    _rejected(lambda: verify_paystack(tampered, header), RejectionReason.BAD_SIGNATURE)
    wrong = paystack.sign_payload(raw, "sk_test_other")
    _rejected(lambda: verify_paystack(raw, wrong), RejectionReason.BAD_SIGNATURE)
    for missing in [None, "", "  "]:
        _rejected(partial(verify_paystack, raw, missing), RejectionReason.MISSING_SIGNATURE)
    exc = _rejected(
        lambda: paystack.verify_webhook(raw, header, ""), RejectionReason.NOT_CONFIGURED
    )
    assert exc.status_code == 503


@pytest.mark.parametrize("header", ["garbage", "ü" * 128, "sha512=abc", "0" * 128])
def test_paystack_malformed_header(header: str) -> None:
    _rejected(
        lambda: verify_paystack(_json(PAYSTACK_CHARGE), header), RejectionReason.BAD_SIGNATURE
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        _json({"data": {}}),
        _json({"event": "charge.success"}),
        _json({"event": "charge.success", "data": []}),
        _json({"event": "charge.success", "data": {"reference": "x"}}),  # no id
        _json({"event": "charge.success", "data": {"id": True}}),
        _json({"event": "refund.processed", "data": {"status": "processed"}}),
        _json({"event": "refund.processed", "data": {"transaction_reference": "x"}}),
        _json({"event": "charge.dispute.create", "data": {"id": 1}}),
    ],
)
def test_paystack_verified_but_malformed(raw: bytes) -> None:
    _rejected(lambda: verify_paystack(raw), RejectionReason.MALFORMED)


# ================================================================================================
# M-Pesa
# ================================================================================================

MPESA_SUCCESS: dict[str, Any] = {
    "Body": {
        "stkCallback": {
            "MerchantRequestID": "29115-34620561-1",
            "CheckoutRequestID": "ws_CO_05012026131500123456",
            "ResultCode": 0,
            "ResultDesc": "The service request is processed successfully.",
            "CallbackMetadata": {
                "Item": [
                    {"Name": "Amount", "Value": 1.00},
                    {"Name": "MpesaReceiptNumber", "Value": "QKH94M1Z11"},
                    {"Name": "Balance"},
                    {"Name": "TransactionDate", "Value": 20260105131512},
                    {"Name": "PhoneNumber", "Value": 254708374149},
                ]
            },
        }
    }
}


def _mpesa(code: object, request_id: object = "ws_CO_1") -> bytes:
    return _json({"Body": {"stkCallback": {"CheckoutRequestID": request_id, "ResultCode": code}}})


def test_mpesa_success_callback() -> None:
    result = mpesa.parse_stk_callback(_json(MPESA_SUCCESS))
    assert result == VerifiedWebhook(
        provider=ProviderName.MPESA,
        event_id="ws_CO_05012026131500123456:0",
        event_type="stk_callback",
        verification=Verification.TOKEN,
        livemode=None,
        reference="ws_CO_05012026131500123456",
    )


def test_mpesa_result_code_string_and_number_same_event() -> None:
    assert mpesa.parse_stk_callback(_mpesa(1032)).event_id == "ws_CO_1:1032"
    assert mpesa.parse_stk_callback(_mpesa("1032")).event_id == "ws_CO_1:1032"
    assert mpesa.parse_stk_callback(_mpesa(" 1032 ")).event_id == "ws_CO_1:1032"
    # Success and failure for one request are two events.
    assert (
        mpesa.parse_stk_callback(_mpesa(0)).event_id != mpesa.parse_stk_callback(_mpesa(1)).event_id
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff",
        b"[]",
        _json({"Body": {}}),
        _json({"Body": []}),
        _json({"stkCallback": {"CheckoutRequestID": "x", "ResultCode": 0}}),
        _json({"Body": {"stkCallback": {"ResultCode": 0}}}),
        _json({"Body": {"stkCallback": {"CheckoutRequestID": "x"}}}),
        _mpesa(0, request_id=""),
        _mpesa(0, request_id=123),
        _mpesa(None),
        _mpesa(True),
        _mpesa(0.5),
        _mpesa("abc"),
        _mpesa(""),
    ],
)
def test_mpesa_malformed(raw: bytes) -> None:
    _rejected(lambda: mpesa.parse_stk_callback(raw), RejectionReason.MALFORMED)


def test_mpesa_callback_token() -> None:
    token = mpesa.new_callback_token()
    assert len(token) >= 43
    assert token != mpesa.new_callback_token()
    assert all(c.isalnum() or c in "-_" for c in token)
    digest = mpesa.hash_callback_token(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert digest == mpesa.hash_callback_token(token)
    assert digest != mpesa.hash_callback_token(token + "x")


# ================================================================================================
# Dummy
# ================================================================================================

DUMMY_SECRET = "dummy-secret"
DUMMY_EVENT: dict[str, Any] = {
    "id": "dmy_evt_1",
    "type": "payment.succeeded",
    "payment_id": "pay_1",
    "amount": 4990,
    "currency": "CHF",
    "livemode": False,
}


def test_dummy_valid() -> None:
    raw = _json(DUMMY_EVENT)
    header = dummy.sign_payload(raw, DUMMY_SECRET)
    assert header == hmac.new(DUMMY_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert dummy.verify_webhook(raw, header, DUMMY_SECRET) == VerifiedWebhook(
        provider=ProviderName.DUMMY,
        event_id="dmy_evt_1",
        event_type="payment.succeeded",
        verification=Verification.SIGNED,
        livemode=False,
        reference="pay_1",
    )


def test_dummy_rejections() -> None:
    raw = _json(DUMMY_EVENT)
    header = dummy.sign_payload(raw, DUMMY_SECRET)
    tampered = raw.replace(b"4990", b"4999")
    _rejected(
        lambda: dummy.verify_webhook(tampered, header, DUMMY_SECRET), RejectionReason.BAD_SIGNATURE
    )
    _rejected(
        lambda: dummy.verify_webhook(raw, dummy.sign_payload(raw, "other"), DUMMY_SECRET),
        RejectionReason.BAD_SIGNATURE,
    )
    _rejected(lambda: dummy.verify_webhook(raw, "zz", DUMMY_SECRET), RejectionReason.BAD_SIGNATURE)
    _rejected(
        lambda: dummy.verify_webhook(raw, None, DUMMY_SECRET), RejectionReason.MISSING_SIGNATURE
    )
    exc = _rejected(lambda: dummy.verify_webhook(raw, header, ""), RejectionReason.NOT_CONFIGURED)
    assert exc.status_code == 503


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{}",
        _json({**DUMMY_EVENT, "id": ""}),
        _json({**DUMMY_EVENT, "type": 3}),
        _json({**DUMMY_EVENT, "payment_id": 5}),
        _json({**DUMMY_EVENT, "livemode": "false"}),
    ],
)
def test_dummy_verified_but_malformed(raw: bytes) -> None:
    header = dummy.sign_payload(raw, DUMMY_SECRET)
    _rejected(lambda: dummy.verify_webhook(raw, header, DUMMY_SECRET), RejectionReason.MALFORMED)


def test_dummy_event_type_mapping() -> None:
    expected = {
        "payment.succeeded": PaymentStatus.SUCCEEDED,
        "payment.failed": PaymentStatus.FAILED,
        "payment.pending": PaymentStatus.PENDING,
        "payment.canceled": PaymentStatus.CANCELED,
    }
    assert set(expected) == set(dummy._EVENT_TYPES)
    for event_type, status in expected.items():
        assert dummy.map_event_type(event_type) == MappedStatus(status, event_type)
    for unknown in ["refund.succeeded", "payment.cancelled", ""]:
        with pytest.raises(UnknownProviderState) as info:
            dummy.map_event_type(unknown)
        assert info.value.provider is ProviderName.DUMMY


# ================================================================================================
# Properties: sign -> verify succeeds; one flipped byte -> BAD_SIGNATURE
# ================================================================================================

_secrets = st.text(min_size=1, max_size=40)
_notes = st.text(max_size=60)
_masks = st.integers(min_value=1, max_value=255)
_fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _each_flip_rejected(raw: bytes, mask: int, verify: Callable[[bytes], object]) -> None:
    for index in range(len(raw)):
        _rejected(partial(verify, _flip(raw, index, mask)), RejectionReason.BAD_SIGNATURE)


@_fast
@given(secret=_secrets, note=_notes, mask=_masks, offset=st.integers(-300, 300))
def test_property_stripe(secret: str, note: str, mask: int, offset: int) -> None:
    raw = stripe_event(metadata_note=note)
    t = T + offset
    header = stripe_webhooks.sign_payload(raw, secret, t)
    assert header == stripe_sdk.WebhookSignature.generate_signature_header(raw.decode(), secret, t)
    assert verify_stripe(raw, header, (secret,)).event_id == "evt_1Qexample"
    _each_flip_rejected(raw, mask, lambda body: verify_stripe(body, header, (secret,)))


@_fast
@given(secret=_secrets, note=_notes, mask=_masks)
def test_property_paystack(secret: str, note: str, mask: int) -> None:
    raw = _json({**PAYSTACK_CHARGE, "note": note})
    header = paystack.sign_payload(raw, secret)
    assert paystack.verify_webhook(raw, header, secret).event_id == "charge.success:302961"
    _each_flip_rejected(raw, mask, lambda body: paystack.verify_webhook(body, header, secret))


@_fast
@given(secret=_secrets, note=_notes, mask=_masks)
def test_property_dummy(secret: str, note: str, mask: int) -> None:
    raw = _json({**DUMMY_EVENT, "note": note})
    header = dummy.sign_payload(raw, secret)
    assert dummy.verify_webhook(raw, header, secret).event_id == "dmy_evt_1"
    _each_flip_rejected(raw, mask, lambda body: dummy.verify_webhook(body, header, secret))


@_fast
@given(secret=_secrets, raw=st.binary(max_size=200), mask=_masks)
def test_property_arbitrary_bytes_signature_before_parsing(
    secret: str, raw: bytes, mask: int
) -> None:
    """Any body signed correctly gets past the signature (then succeeds or is MALFORMED)."""
    checks: list[Callable[[bytes], object]] = [
        lambda body: verify_stripe(body, stripe_webhooks.sign_payload(raw, secret, T), (secret,)),
        lambda body: paystack.verify_webhook(body, paystack.sign_payload(raw, secret), secret),
        lambda body: dummy.verify_webhook(body, dummy.sign_payload(raw, secret), secret),
    ]
    for check in checks:
        try:
            check(raw)
        except WebhookRejected as exc:
            reason: RejectionReason | None = exc.reason
        else:
            reason = None
        assert reason in (None, RejectionReason.MALFORMED)
        if raw:
            _rejected(
                partial(check, _flip(raw, len(raw) // 2, mask)), RejectionReason.BAD_SIGNATURE
            )
