"""Webhook intake: verify on the raw bytes, store durably, then answer.

The order matters and is the whole point:

1. unknown provider -> 404; body over the size limit -> 413; source not in the provider's
   allowlist -> 403: nothing is stored but a counter;
2. the provider's verifier checks the signature (or M-Pesa's per-payment URL token) on the exact
   bytes received; anything untrustworthy -> 4xx, counted, and aggregated in the audit log;
3. the verified delivery is inserted in the inbox with a unique (provider, event id) and committed
   (by the group-commit writer, ``webhook_server.inbox_writer``, shared with concurrent requests);
   only then is the answer 2xx. A duplicate is acknowledged with 2xx and no new row. If the database
   cannot be reached the answer is 503, so the provider retries.

Processing (applying the event to the payment) happens later, in the worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from payments_core.config import Settings, get_settings
from payments_core.db import read_engine, transaction
from payments_core.providers import dummy, mpesa, paystack, postfinance, stripe
from payments_core.providers.base import (
    ProviderName,
    RejectionReason,
    VerifiedWebhook,
    WebhookRejected,
)
from payments_core.services.inbox import (
    InboxItem,
    StoredWebhook,
    payment_for_callback_token,
    record_rejection,
)
from webhook_server.inbox_writer import InboxUnavailable, InboxWriter
from webhook_server.metrics import IntakeMetrics


@dataclass(frozen=True, slots=True)
class Delivery:
    provider: str
    raw: bytes
    headers: Mapping[str, str]
    source_ip: str | None
    token: str | None = None


@dataclass(frozen=True, slots=True)
class IntakeAnswer:
    status_code: int
    body: dict[str, Any]


Verifier = Callable[[Delivery, Settings], VerifiedWebhook]


# Each provider's verify_webhook refuses with NOT_CONFIGURED (503) when its secret is empty.
def _verify_stripe(delivery: Delivery, settings: Settings) -> VerifiedWebhook:
    return stripe.verify_webhook(
        delivery.raw,
        delivery.headers.get("stripe-signature"),
        settings.stripe_webhook_secrets,
        now=time.time(),
        tolerance=settings.stripe_webhook_tolerance_seconds,
    )


_postfinance_keys: postfinance.PublicKeyCache | None = None
_postfinance_lock = threading.Lock()


def postfinance_keys(settings: Settings) -> postfinance.PublicKeyCache:
    """One key cache per process: public keys are immutable per key id."""
    global _postfinance_keys
    with _postfinance_lock:
        if _postfinance_keys is None:
            from postfinancecheckout.configuration import Configuration

            configuration = Configuration(
                host=settings.postfinance_api_base,
                user_id=settings.postfinance_user_id,
                authentication_key=settings.postfinance_authentication_key.get_secret_value(),
            )
            _postfinance_keys = postfinance.PublicKeyCache(
                postfinance.sdk_key_fetcher(configuration)
            )
        return _postfinance_keys


def reset_postfinance_keys() -> None:
    global _postfinance_keys
    with _postfinance_lock:
        _postfinance_keys = None


def _verify_postfinance(delivery: Delivery, settings: Settings) -> VerifiedWebhook:
    return postfinance.verify_webhook(
        delivery.raw,
        delivery.headers.get("x-signature"),
        keys=postfinance_keys(settings),
        allow_unsigned=settings.postfinance_allow_unsigned_webhooks,
    )


def _verify_paystack(delivery: Delivery, settings: Settings) -> VerifiedWebhook:
    _check_source(delivery, settings.ip_list(settings.paystack_webhook_allowed_ips))
    return paystack.verify_webhook(
        delivery.raw,
        delivery.headers.get("x-paystack-signature"),
        settings.paystack_secret_key.get_secret_value(),
    )


def _verify_mpesa(delivery: Delivery, settings: Settings) -> VerifiedWebhook:
    _check_source(delivery, settings.ip_list(settings.mpesa_callback_allowed_ips))
    return mpesa.parse_stk_callback(delivery.raw)


def _verify_dummy(delivery: Delivery, settings: Settings) -> VerifiedWebhook:
    return dummy.verify_webhook(
        delivery.raw,
        delivery.headers.get("x-dummy-signature"),
        settings.dummy_webhook_secret.get_secret_value(),
    )


def _check_source(delivery: Delivery, allowed: frozenset[str]) -> None:
    if allowed and delivery.source_ip not in allowed:
        raise WebhookRejected(
            RejectionReason.SOURCE_NOT_ALLOWED,
            f"source {delivery.source_ip} is not in the allowlist",
            403,
        )


VERIFIERS: dict[str, Verifier] = {
    ProviderName.STRIPE.value: _verify_stripe,
    ProviderName.POSTFINANCE.value: _verify_postfinance,
    ProviderName.PAYSTACK.value: _verify_paystack,
    ProviderName.MPESA.value: _verify_mpesa,
    ProviderName.DUMMY.value: _verify_dummy,
}


class BodyTooLarge(Exception):
    pass


def request_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """An HTTP request's headers as a plain dict, decoded as Starlette decodes them: names as the
    ASGI server gives them (lowercase), and the first of a repeated header wins, as in
    ``Headers.get``. A dict because verifiers and the inbox read a few of them for every delivery.
    """
    pairs = reversed(scope["headers"])
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in pairs}


async def read_body(receive: Receive, limit: int, declared: str | None = None) -> bytes:
    """The raw body, refusing early when it is (or announces itself, in ``declared``: its
    Content-Length) over ``limit`` bytes.

    Reads the ASGI messages itself, as ``Request.stream`` does, without its async generator:
    this runs for every delivery."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Intake:
    """The intake pipeline with its counters; one per application."""

    def __init__(self, metrics: IntakeMetrics, writer: InboxWriter | None = None) -> None:
        self.metrics = metrics
        self.writer = writer or InboxWriter(on_commit=lambda _: metrics.inbox_commits.inc())

    def reject(self, delivery: Delivery, rejected: WebhookRejected) -> IntakeAnswer:
        # Provider names come from the URL: only known ones become labels and counter rows.
        if delivery.provider not in VERIFIERS:
            delivery = Delivery("unknown", b"", {}, delivery.source_ip)
        self.metrics.rejected(delivery.provider, rejected.reason.value)
        try:
            with transaction() as session:
                record_rejection(
                    session=session,
                    provider=delivery.provider,
                    reason=rejected.reason,
                    detail=rejected.detail,
                    source_ip=delivery.source_ip,
                )
        except SQLAlchemyError:
            pass  # the counter above still saw it; a refusal never needs the database
        return IntakeAnswer(
            rejected.status_code, {"error": rejected.reason.value, "detail": rejected.detail}
        )

    def _payment_for_token(self, delivery: Delivery) -> str | None:
        """M-Pesa callbacks are unsigned: the secret token in the URL must name our payment."""
        if delivery.provider != ProviderName.MPESA.value:
            return None
        with Session(read_engine()) as session:
            payment = payment_for_callback_token(
                session=session, token_hash=mpesa.hash_callback_token(delivery.token or "")
            )
            if payment is None:
                raise WebhookRejected(RejectionReason.UNKNOWN_TOKEN, "unknown callback URL", 404)
            return payment.id

    def _verify(self, delivery: Delivery) -> tuple[VerifiedWebhook, str | None]:
        """The verified event and, for M-Pesa, the payment its URL token names (may block)."""
        verifier = VERIFIERS[delivery.provider]
        payment_id = self._payment_for_token(delivery)
        return verifier(delivery, get_settings()), payment_id

    def _stored(self, verified: VerifiedWebhook, stored: StoredWebhook) -> IntakeAnswer:
        if stored.duplicate:
            self.metrics.duplicate(verified.provider.value)
            return IntakeAnswer(200, {"status": "duplicate", "event_id": verified.event_id})
        self.metrics.accepted(verified.provider.value)
        return IntakeAnswer(200, {"status": "accepted", "event_id": verified.event_id})

    def _unavailable(self, delivery: Delivery) -> IntakeAnswer:
        self.metrics.unavailable(delivery.provider)
        return IntakeAnswer(503, {"error": "database_unavailable", "detail": "try again later"})

    async def areceive(self, delivery: Delivery) -> IntakeAnswer:
        """Verify and store one delivery. Signature checks are CPU-only and run inline on the
        event loop; whatever may block (PostFinance key fetch, M-Pesa token lookup, recording a
        refusal) runs in a thread, and the request awaits its group commit without holding one."""
        if delivery.provider not in VERIFIERS:
            return await run_in_threadpool(self.reject, delivery, UNKNOWN_PROVIDER)
        self.metrics.received(delivery.provider)
        try:
            if delivery.provider in INLINE_VERIFIERS:  # no URL token: M-Pesa is not inline
                verified, payment_id = VERIFIERS[delivery.provider](delivery, get_settings()), None
            else:
                verified, payment_id = await run_in_threadpool(self._verify, delivery)
        except WebhookRejected as rejected:
            return await run_in_threadpool(self.reject, delivery, rejected)
        except SQLAlchemyError:
            return self._unavailable(delivery)
        try:
            stored = await self.writer.store(
                InboxItem(verified, delivery.raw, delivery.headers, payment_id)
            )
        except InboxUnavailable:  # not stored (or not known to be): the provider retries later
            return self._unavailable(delivery)
        return self._stored(verified, stored)


UNKNOWN_PROVIDER = WebhookRejected(RejectionReason.UNKNOWN_PROVIDER, "no such provider", 404)
# Providers whose verification never blocks (HMAC over the body): checked on the event loop.
INLINE_VERIFIERS = frozenset(
    {ProviderName.STRIPE.value, ProviderName.PAYSTACK.value, ProviderName.DUMMY.value}
)


__all__ = [
    "BodyTooLarge",
    "ClientDisconnect",
    "Delivery",
    "Intake",
    "IntakeAnswer",
    "read_body",
    "request_headers",
]
