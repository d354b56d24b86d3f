"""Realistic, deterministic demo data.

``seed_demo_data`` fills an empty database with payments across every provider, method and several
currencies (JPY without a minor unit, KWD with three), with the life around them: failures with the
providers' own reasons, full and partial refunds, disputes (some due within days), manual payments
with proofs awaiting review, webhook history (including failed and dead deliveries) and a timeline
for every payment.

Same ``(payments, days, seed, until)``, same rows, ids included: everything random comes from one
``random.Random(seed)``. It takes an Engine rather than a Session because speed matters (the
benchmarks seed a million payments): rows are plain dicts written with executemany, one
transaction per batch of payments, so memory stays flat. Demo rows are history, not actions, so
they get timeline events but no audit entries; the seeding itself is audited once.

Disputed amount rule: open and lost disputes count in ``payment.disputed_minor``; won and closed
ones do not.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
import string
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Table, inspect
from sqlalchemy.engine import Connection, Engine

from payments_core.db import transaction
from payments_core.models import (
    Dispute,
    ManualProof,
    Payment,
    PaymentEvent,
    Refund,
    UTCDateTime,
    WebhookEvent,
    new_id,
)
from payments_core.money import exponent, format_amount
from payments_core.services.audit import record_audit
from payments_core.status import PaymentStatus

PS = PaymentStatus
ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits

FINANCE_STAFF = (
    "finance@paydesk.local",
    "anna.keller@paydesk.local",
    "joseph.otieno@paydesk.local",
)
MANAGERS = ("manager@paydesk.local", "chioma.eze@paydesk.local")
HOST_APPS = {
    "learning-site": "course-{n}",
    "pos-zurich": "pos-{n}",
    "billing": "inv-2026-{n}",
    "chatshop-bot": "chat-{n}",
}


@dataclass(frozen=True)
class Region:
    currency: str
    phone_prefix: str
    phone_digits: int
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    median_major: int  # a typical order, in major units
    price_step_minor: int  # prices are multiples of this


REGIONS: dict[str, Region] = {
    r.currency: r
    for r in (
        Region(
            "USD",
            "+1415",
            7,
            ("Emily", "James", "Olivia", "Noah"),
            ("Smith", "Johnson", "Brown", "Garcia"),
            45,
            1,
        ),
        Region(
            "EUR",
            "+4915",
            9,
            ("Lena", "Lukas", "Camille", "Matteo"),
            ("Müller", "Schmidt", "Dubois", "Rossi"),
            40,
            1,
        ),
        Region(
            "GBP",
            "+447",
            9,
            ("Amelia", "Oliver", "Isla", "Harry"),
            ("Taylor", "Davies", "Evans", "Wilson"),
            35,
            1,
        ),
        Region(
            "CHF",
            "+4179",
            7,
            ("Laura", "Luca", "Mia", "Noah"),
            ("Meier", "Keller", "Weber", "Huber"),
            55,
            5,
        ),
        Region(
            "JPY",
            "+8190",
            8,
            ("Yui", "Haruto", "Sakura", "Ren"),
            ("Sato", "Suzuki", "Takahashi", "Tanaka"),
            5000,
            10,
        ),
        Region(
            "NGN",
            "+23480",
            8,
            ("Chioma", "Emeka", "Ngozi", "Tunde"),
            ("Okafor", "Adeyemi", "Eze", "Bello"),
            15000,
            5000,
        ),
        Region(
            "GHS",
            "+23324",
            7,
            ("Ama", "Kwame", "Efua", "Kofi"),
            ("Mensah", "Owusu", "Boateng", "Asante"),
            300,
            100,
        ),
        Region(
            "ZAR",
            "+2782",
            7,
            ("Thandi", "Sipho", "Lerato", "Pieter"),
            ("Nkosi", "Dlamini", "van Wyk", "Naidoo"),
            600,
            100,
        ),
        Region(
            "KES",
            "+2547",
            8,
            ("Wanjiru", "Otieno", "Akinyi", "Kamau"),
            ("Mwangi", "Odhiambo", "Kiptoo", "Njoroge"),
            2500,
            100,
        ),
        Region(
            "KWD",
            "+9655",
            7,
            ("Fatima", "Ahmad", "Noura", "Yousef"),
            ("Al-Sabah", "Al-Mutairi", "Al-Enezi", "Al-Rashidi"),
            15,
            250,
        ),
    )
}


@dataclass(frozen=True)
class ProviderProfile:
    name: str
    weight: int
    methods: tuple[tuple[str, int], ...]
    currencies: tuple[tuple[str, int], ...]
    success: float
    failures: tuple[tuple[str, str], ...]  # (failure_code, failure_reason)
    canceled_share: float = 0.03


PROFILES: tuple[ProviderProfile, ...] = (
    ProviderProfile(
        "stripe",
        40,
        (("card", 80), ("wallet", 15), ("bank_debit", 5)),
        (("USD", 35), ("EUR", 28), ("GBP", 12), ("CHF", 13), ("JPY", 12)),
        0.87,
        (
            ("card_declined", "Your card was declined."),
            ("insufficient_funds", "Your card has insufficient funds."),
            ("expired_card", "Your card has expired."),
            ("authentication_required", "3D Secure authentication failed."),
            ("incorrect_cvc", "Your card's security code is incorrect."),
        ),
    ),
    ProviderProfile(
        "postfinance",
        15,
        (("card", 60), ("twint", 40)),
        (("CHF", 80), ("EUR", 20)),
        0.85,
        (
            ("DECLINED_BY_ISSUER", "The payment was declined by the issuer."),
            ("CUSTOMER_CANCELLED", "The customer cancelled the payment."),
            ("TIMEOUT", "The transaction timed out before authorization."),
        ),
    ),
    ProviderProfile(
        "paystack",
        20,
        (("card", 55), ("bank_transfer", 20), ("ussd", 10), ("mobile_money", 15)),
        (("NGN", 60), ("GHS", 15), ("ZAR", 10), ("KES", 15)),
        0.80,
        (
            ("declined", "Declined"),
            ("insufficient_funds", "Insufficient Funds"),
            ("abandoned", "Transaction abandoned"),
            ("invalid_pin", "Incorrect PIN"),
        ),
    ),
    ProviderProfile(
        "mpesa",
        15,
        (("mobile_money", 1),),
        (("KES", 1),),
        0.78,
        (
            ("1032", "Request cancelled by user"),
            ("1037", "DS timeout user cannot be reached"),
            ("1", "The balance is insufficient for the transaction."),
            ("2001", "The initiator information is invalid."),
        ),
        canceled_share=0.0,
    ),
    ProviderProfile(
        "manual",
        9,
        (("bank_transfer", 60), ("cash_on_delivery", 30), ("mobile_money", 10)),
        (("EUR", 30), ("CHF", 20), ("KWD", 15), ("KES", 20), ("NGN", 15)),
        0.80,
        (("proof_rejected", "No matching transfer received"),),
    ),
    ProviderProfile(
        "dummy",
        1,
        (("card", 1),),
        (("USD", 1),),
        0.90,
        (("simulated_failure", "Simulated failure"),),
    ),
)

_HOURLY = (1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 10, 11, 10, 9, 9, 10, 11, 12, 12, 10, 7, 4, 2)
_MPESA_CODE = {"1032": PS.CANCELED, "1037": PS.EXPIRED}


@dataclass(frozen=True)
class SeedReport:
    payments: int
    refunds: int
    disputes: int
    proofs: int
    webhook_events: int
    timeline_events: int
    seconds: float


@dataclass
class _Batch:
    payments: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    disputes: list[dict[str, Any]] = field(default_factory=list)
    proofs: list[dict[str, Any]] = field(default_factory=list)


def _weighted(pairs: Sequence[tuple[Any, int]]) -> tuple[list[Any], list[int]]:
    return [p[0] for p in pairs], list(itertools.accumulate(p[1] for p in pairs))


class _Generator:
    """Builds one payment at a time, with everything around it, from one seeded Random."""

    def __init__(self, rng: random.Random, payments: int, days: int, until: date) -> None:
        self.rng = rng
        self.end = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
        self.start = self.end - timedelta(days=days)
        self.days = days
        day_weights = [
            (1 + 0.6 * d / days) * (0.7 if (self.start + timedelta(days=d)).weekday() >= 5 else 1)
            for d in range(days)
        ]
        self.day_cum = list(itertools.accumulate(day_weights))
        self.hour_cum = list(itertools.accumulate(_HOURLY))
        self.profiles, self.profile_cum = _weighted([(p, p.weight) for p in PROFILES])
        self.customers = {
            currency: [self._customer(region, i) for i in range(max(20, payments // 40))]
            for currency, region in REGIONS.items()
        }
        self.seq = itertools.count(1)
        self.last_host_ref: str | None = None

    def _pick(self, items: Sequence[Any], cum: Sequence[int | float]) -> Any:
        return items[bisect.bisect_right(cum, self.rng.random() * cum[-1])]

    def _token(self, n: int, alphabet: str = ALNUM) -> str:
        return "".join(self.rng.choices(alphabet, k=n))

    def _customer(self, region: Region, i: int) -> dict[str, str]:
        first = self.rng.choice(region.first_names)
        last = self.rng.choice(region.last_names)
        handle = f"{first}.{last}".lower().replace(" ", "").replace("ü", "ue").replace("-", "")
        phone = region.phone_prefix + "".join(
            self.rng.choices(string.digits, k=region.phone_digits)
        )
        return {"name": f"{first} {last}", "email": f"{handle}{i}@example.com", "phone": phone}

    def creation_offsets(self, payments: int) -> array[int]:
        """Every payment's creation time (microseconds after ``start``), oldest first.

        Writing payments in time order keeps index inserts near the end of each B-tree, which is
        what makes a million rows fast; 8 bytes a payment is all it costs to sort them up front.
        """
        offsets = array("q")
        for _ in range(payments):
            day = bisect.bisect_right(self.day_cum, self.rng.random() * self.day_cum[-1])
            hour = bisect.bisect_right(self.hour_cum, self.rng.random() * self.hour_cum[-1])
            offsets.append(
                ((day * 24 + hour) * 3600 + self.rng.randrange(3600)) * 1_000_000
                + self.rng.randrange(1_000_000)
            )
        return array("q", sorted(offsets))

    def _amount(self, currency: str, provider: str) -> int:
        region = REGIONS[currency]
        major = region.median_major * math.exp(self.rng.gauss(0, 0.8))
        scale = 10 ** exponent(currency)
        step = 100 if provider == "mpesa" else region.price_step_minor
        minor = max(step, round(major * scale / step) * step)
        if exponent(currency) == 2 and step == 1 and self.rng.random() < 0.6:
            minor = minor // 100 * 100 + self.rng.choice((0, 90, 95, 99, 50))
        return int(max(minor, step))

    def _host_reference(self, n: int) -> str:
        if self.last_host_ref and self.rng.random() < 0.01:
            return self.last_host_ref  # a host retried the same order
        app = self.rng.choice(list(HOST_APPS))
        self.last_host_ref = HOST_APPS[app].format(n=100000 + n)
        return self.last_host_ref

    def _provider_reference(self, provider: str, n: int, at: datetime) -> str:
        match provider:
            case "stripe":
                return "pi_3" + self._token(23)
            case "postfinance":
                return str(260_000_000 + n)
            case "paystack":
                return f"T{n:09d}{self._token(5, UPPER_ALNUM)}"
            case "mpesa":
                return f"ws_CO_{at:%d%m%Y%H%M%S}{n:09d}"
            case "manual":
                return f"PD-{self._token(4, UPPER_ALNUM)}-{n:06d}"
            case _:
                return f"dmy_{n:08d}"

    def _status(self, profile: ProviderProfile, age: timedelta) -> PaymentStatus:
        r = self.rng.random()
        if age < timedelta(hours=36) and r < 0.25:
            if profile.name == "manual":
                return PS.PENDING
            return self.rng.choice(
                (PS.PENDING, PS.PENDING, PS.PROCESSING, PS.AUTHORIZED)
                if profile.name in ("stripe", "postfinance")
                else (PS.PENDING, PS.PROCESSING)
            )
        if profile.name == "manual" and age < timedelta(days=10) and r < 0.35:
            return PS.PENDING  # awaiting proof or review
        r = self.rng.random()
        if r < profile.success:
            if profile.name == "postfinance" and self.rng.random() < 0.01:
                return PS.DECLINED
            return PS.SUCCEEDED
        if r < profile.success + profile.canceled_share:
            return PS.CANCELED if self.rng.random() < 0.6 else PS.EXPIRED
        return PS.FAILED

    # --- one payment ---------------------------------------------------------------------------

    def payment(self, n: int, created: datetime, batch: _Batch) -> None:
        rng = self.rng
        profile: ProviderProfile = self._pick(self.profiles, self.profile_cum)
        method = self._pick(*_weighted(profile.methods))
        currency = self._pick(*_weighted(profile.currencies))
        age = self.end - created
        customer = rng.choice(self.customers[currency])
        status = self._status(profile, age)
        failure: tuple[str, str] | None = None
        if status is PS.FAILED:
            failure = rng.choice(profile.failures)
            if profile.name == "mpesa" and failure[0] in _MPESA_CODE:
                status = _MPESA_CODE[failure[0]]
        if status in (PS.CANCELED, PS.EXPIRED) and failure is None and profile.name == "stripe":
            failure = ("abandoned", "Checkout session expired without payment")
        amount = self._amount(currency, profile.name)
        payment_id = new_id("pay", at=created, rng=rng)
        app = rng.choice(list(HOST_APPS))
        origin = "provider" if profile.name == "stripe" and rng.random() < 0.05 else "api"
        settled = created + timedelta(seconds=rng.randrange(5, 900))
        captured = amount if status in (PS.SUCCEEDED, PS.DECLINED) else 0
        row: dict[str, Any] = {
            "id": payment_id,
            "provider": profile.name,
            "provider_reference": self._provider_reference(profile.name, n, created),
            "host_reference": self._host_reference(n),
            "amount_minor": amount,
            "currency": currency,
            "method": method,
            "customer_email": customer["email"],
            "customer_phone": customer["phone"],
            "customer_name": customer["name"],
            "description": self._description(app, n),
            "livemode": rng.random() < 0.97,
            "status": status.value,
            "captured_minor": captured,
            "refunded_minor": 0,
            "refund_pending_minor": 0,
            "disputed_minor": 0,
            "host_metadata": {"app": app, "order": n},
            "origin": origin,
            "failure_code": failure[0] if failure else None,
            "failure_reason": failure[1] if failure else None,
            "review_reason": "captured but the provider declined delivery: do not fulfil"
            if status is PS.DECLINED
            else None,
            "risk_score": rng.choice((0, 0, 0, 5, 10, 20)) if rng.random() < 0.9 else 60,
            "created_at": created,
            "updated_at": settled,
            "status_changed_at": settled if status is not PS.PENDING else created,
            "paid_at": settled if captured else None,
        }
        actor = f"api:{app}" if origin == "api" else f"provider:{profile.name}"
        self._event(
            batch,
            row,
            created,
            "created",
            actor,
            f"Payment created ({profile.name}, {method})",
            None,
            "created",
        )
        if status is not PS.CREATED:
            summary = f"created -> {status.value}"
            if failure:
                summary += f": {failure[1]}"
            self._event(
                batch,
                row,
                settled,
                "status",
                f"provider:{profile.name}",
                summary,
                "created",
                status.value,
            )
        if profile.name == "manual":
            self._proofs(row, status, settled, batch)
        else:
            self._webhook(row, status, settled, batch, failure)
        if captured and age > timedelta(days=1):
            if profile.name in ("stripe", "paystack") and method == "card" and rng.random() < 0.006:
                self._dispute(row, settled, batch)
            elif rng.random() < 0.06:
                self._refunds(row, settled, batch)
        batch.payments.append(row)

    def _description(self, app: str, n: int) -> str:
        return {
            "learning-site": f"Course enrolment #{n}",
            "pos-zurich": f"In-store purchase #{n}",
            "billing": f"Invoice 2026-{n}",
            "chatshop-bot": f"Chat order #{n}",
        }[app]

    def _event(
        self,
        batch: _Batch,
        payment: dict[str, Any],
        at: datetime,
        kind: str,
        actor: str,
        summary: str,
        from_status: str | None,
        to_status: str | None,
        data: dict[str, Any] | None = None,
    ) -> None:
        batch.events.append(
            {
                "payment_id": payment["id"],
                "at": at,
                "kind": kind,
                "actor": actor,
                "summary": summary[:500],
                "from_status": from_status,
                "to_status": to_status,
                "data": data or {},
            }
        )

    # --- webhooks ------------------------------------------------------------------------------

    def _webhook(
        self,
        payment: dict[str, Any],
        status: PaymentStatus,
        at: datetime,
        batch: _Batch,
        failure: tuple[str, str] | None,
        event_type: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        provider = payment["provider"]
        if event_type is None:
            built = self._payment_webhook(payment, status, failure)
            if built is None:
                return
            event_type, body, event_id = built
        else:
            event_id = self._event_id(provider, event_type)
        received = at + timedelta(seconds=self.rng.randrange(1, 30))
        r = self.rng.random()
        state, attempts = "processed", 1
        error: str | None = None
        next_at: datetime | None = None
        processed: datetime | None = received
        if r < 0.004:
            state, attempts, processed = "dead", 8, None
            error = "OperationalError: could not obtain lock on payment row"
        elif r < 0.012:
            state, attempts, processed = "failed", self.rng.randrange(1, 5), None
            error = "ProviderUnavailable: status read timed out after 10 s"
            next_at = self.end + timedelta(minutes=self.rng.randrange(1, 120))
        batch.webhooks.append(
            {
                "provider": provider,
                "event_id": event_id,
                "event_type": event_type,
                "received_at": received,
                "payload": _json(body).encode(),
                "headers": {"content-type": "application/json"},
                "verification": "signed",
                "livemode": payment["livemode"],
                "status": state,
                "attempts": attempts,
                "next_attempt_at": next_at,
                "last_error": error,
                "processed_at": processed,
                "payment_id": payment["id"],
            }
        )
        self._event(
            batch,
            payment,
            received,
            "webhook",
            f"provider:{provider}",
            f"Webhook {event_type} received ({state})",
            None,
            None,
            {"event_id": event_id},
        )

    def _event_id(self, provider: str, event_type: str) -> str:
        n = next(self.seq)
        match provider:
            case "stripe":
                return "evt_1" + self._token(23)
            case "postfinance":
                return str(70_000_000 + n)
            case "mpesa":
                return "stk:" + self._token(10, UPPER_ALNUM)
            case "paystack":
                return f"{event_type}:{5_000_000 + n}"
            case _:
                return f"dmy_evt_{n}"

    def _payment_webhook(
        self, payment: dict[str, Any], status: PaymentStatus, failure: tuple[str, str] | None
    ) -> tuple[str, dict[str, Any], str] | None:
        provider, amount, currency = (
            payment["provider"],
            payment["amount_minor"],
            payment["currency"],
        )
        ref = payment["provider_reference"]
        if provider == "stripe":
            event_type = {
                PS.SUCCEEDED: "payment_intent.succeeded",
                PS.FAILED: "payment_intent.payment_failed",
                PS.CANCELED: "payment_intent.canceled",
                PS.EXPIRED: "checkout.session.expired",
                PS.PROCESSING: "payment_intent.processing",
                PS.AUTHORIZED: "payment_intent.amount_capturable_updated",
            }.get(status)
            if event_type is None:
                return None
            event_id = self._event_id(provider, event_type)
            obj = {
                "id": ref,
                "object": "payment_intent",
                "amount": amount,
                "currency": currency.lower(),
                "status": status.value,
                "metadata": {"paydesk_payment_id": payment["id"]},
            }
            if failure:
                obj["last_payment_error"] = {"code": failure[0], "message": failure[1]}
            return (
                event_type,
                {
                    "id": event_id,
                    "object": "event",
                    "type": event_type,
                    "livemode": payment["livemode"],
                    "data": {"object": obj},
                },
                event_id,
            )
        if provider == "postfinance":
            state = {
                PS.SUCCEEDED: "FULFILL",
                PS.DECLINED: "DECLINE",
                PS.FAILED: "FAILED",
                PS.CANCELED: "VOIDED",
                PS.EXPIRED: "FAILED",
                PS.PENDING: "PENDING",
                PS.PROCESSING: "PROCESSING",
                PS.AUTHORIZED: "AUTHORIZED",
            }.get(status)
            if state is None:
                return None
            event_id = self._event_id(provider, "Transaction")
            return (
                "Transaction",
                {
                    "entityId": int(ref),
                    "eventId": int(event_id),
                    "listenerEntityId": 1472041829003,
                    "listenerEntityTechnicalName": "Transaction",
                    "spaceId": 1234,
                    "state": state,
                    "webhookListenerId": 55,
                    "timestamp": f"{payment['updated_at']:%Y-%m-%dT%H:%M:%S}+0000",
                },
                event_id,
            )
        if provider == "paystack":
            if status is not PS.SUCCEEDED:
                return None  # Paystack sends no webhook for failed or abandoned charges
            event_id = self._event_id(provider, "charge.success")
            return (
                "charge.success",
                {
                    "event": "charge.success",
                    "data": {
                        "id": int(event_id.split(":")[1]),
                        "status": "success",
                        "reference": ref,
                        "amount": amount,
                        "currency": currency,
                        "channel": payment["method"],
                        "gateway_response": "Approved",
                        "customer": {"email": payment["customer_email"]},
                    },
                },
                event_id,
            )
        if provider == "mpesa":
            if status in (PS.PENDING, PS.PROCESSING):
                return None
            code = failure[0] if failure else "0"
            body: dict[str, Any] = {
                "Body": {
                    "stkCallback": {
                        "MerchantRequestID": (
                            f"{self.rng.randrange(10000, 99999)}-{next(self.seq)}-1"
                        ),
                        "CheckoutRequestID": ref,
                        "ResultCode": int(code),
                        "ResultDesc": failure[1]
                        if failure
                        else "The service request is processed successfully.",
                    }
                }
            }
            receipt = self._token(10, UPPER_ALNUM)
            if not failure:
                body["Body"]["stkCallback"]["CallbackMetadata"] = {
                    "Item": [
                        {"Name": "Amount", "Value": amount // 100},
                        {"Name": "MpesaReceiptNumber", "Value": receipt},
                        {
                            "Name": "PhoneNumber",
                            "Value": int(payment["customer_phone"].lstrip("+")),
                        },
                    ]
                }
            return "stk_callback", body, f"stk:{ref}:{code}"
        if status in (PS.SUCCEEDED, PS.FAILED):
            event_type = f"payment.{status.value}"
            event_id = self._event_id(provider, event_type)
            return (
                event_type,
                {
                    "id": event_id,
                    "type": event_type,
                    "payment_id": payment["id"],
                    "amount": amount,
                    "currency": currency,
                },
                event_id,
            )
        return None

    # --- refunds, disputes, proofs -------------------------------------------------------------

    def _refunds(self, payment: dict[str, Any], paid: datetime, batch: _Batch) -> None:
        rng = self.rng
        captured = payment["captured_minor"]
        if rng.random() < 0.6:
            amounts = [captured]
        else:
            first = self._partial(captured, payment["currency"])
            amounts = [first]
            if rng.random() < 0.2 and captured - first > 0:
                amounts.append(self._partial(captured - first, payment["currency"]))
        at = paid
        for amount in amounts:
            at = min(
                at + timedelta(days=rng.randrange(1, 20), seconds=rng.randrange(86400)),
                self.end - timedelta(minutes=5),
            )
            self._refund(payment, amount, at, batch)

    def _partial(self, available: int, currency: str) -> int:
        share = self.rng.choice((10, 20, 25, 30, 50, 70))
        step = 10 ** max(exponent(currency) - 1, 0)
        return max(1, min(available, available * share // 100 // step * step or available))

    def _refund(self, payment: dict[str, Any], amount: int, at: datetime, batch: _Batch) -> None:
        rng = self.rng
        r = rng.random()
        recent = self.end - at < timedelta(days=10)
        status = (
            "pending_approval"
            if recent and r < 0.15
            else "processing"
            if recent and r < 0.3
            else "failed"
            if r < 0.03
            else "rejected"
            if r < 0.05
            else "succeeded"
        )
        requested_by = rng.choice(FINANCE_STAFF)
        decided = status != "pending_approval" and (amount >= 20_000 or status == "rejected")
        refund_id = new_id("re", at=at, rng=rng)
        offline = payment["provider"] == "manual"
        provider_id = None
        if status in ("processing", "succeeded", "failed") and not offline:
            provider_id = {
                "stripe": "re_3" + self._token(23),
                "postfinance": str(90_000_000 + next(self.seq)),
                "paystack": str(3_000_000 + next(self.seq)),
                "mpesa": "R" + self._token(9, UPPER_ALNUM),
                "dummy": f"dmy_re_{next(self.seq)}",
            }[payment["provider"]]
        batch.refunds.append(
            {
                "id": refund_id,
                "payment_id": payment["id"],
                "amount_minor": amount,
                "currency": payment["currency"],
                "status": status,
                "reason": rng.choice(
                    ("requested_by_customer", "duplicate", "fraudulent", "product_not_delivered")
                ),
                "note": rng.choice(
                    (
                        None,
                        "Customer called support",
                        "Goodwill gesture",
                        "Order cancelled before shipping",
                    )
                ),
                "requested_by": f"user:{requested_by}",
                "decided_by": f"user:{rng.choice(MANAGERS)}" if decided else None,
                "decided_at": at + timedelta(hours=2) if decided else None,
                "rejection_reason": "Outside the refund policy" if status == "rejected" else None,
                "provider_refund_id": provider_id,
                "idempotency_key": f"refund:{refund_id}:1",
                "offline": offline,
                "offline_reference": f"BANK-{self._token(8, UPPER_ALNUM)}" if offline else None,
                "failure_reason": "Card expired or cancelled" if status == "failed" else None,
                "created_at": at,
                "updated_at": at + timedelta(hours=3),
                "succeeded_at": at + timedelta(hours=3) if status == "succeeded" else None,
            }
        )
        if status == "succeeded":
            payment["refunded_minor"] += amount
        elif status in ("pending_approval", "processing"):
            payment["refund_pending_minor"] += amount
        self._event(
            batch,
            payment,
            at,
            "refund",
            f"user:{requested_by}",
            f"Refund {refund_id} of {format_amount(amount, payment['currency'])}: {status}",
            None,
            None,
            {"refund_id": refund_id},
        )
        if not offline and status in ("succeeded", "failed"):
            event_type = {
                "stripe": "charge.refunded",
                "paystack": f"refund.{'processed' if status == 'succeeded' else 'failed'}",
                "postfinance": "Refund",
                "mpesa": "reversal",
                "dummy": "refund.updated",
            }[payment["provider"]]
            self._webhook(
                payment,
                PS.SUCCEEDED,
                at + timedelta(hours=3),
                batch,
                None,
                event_type,
                {"refund": provider_id, "amount": amount, "status": status},
            )

    def _dispute(self, payment: dict[str, Any], paid: datetime, batch: _Batch) -> None:
        rng = self.rng
        opened = min(paid + timedelta(days=rng.randrange(2, 40)), self.end - timedelta(hours=6))
        age = self.end - opened
        if age < timedelta(days=7):
            status = "needs_response"
        elif age < timedelta(days=21):
            status = rng.choice(("needs_response", "under_review"))
        else:
            status = rng.choice(("won", "lost", "lost", "closed", "under_review"))
        due = (
            opened + timedelta(days=rng.randrange(3, 10))
            if status == "needs_response"
            else (opened + timedelta(days=7))
        )
        if status == "needs_response" and due < self.end:
            due = self.end + timedelta(hours=rng.randrange(6, 240))
        amount = payment["captured_minor"]
        dispute_id = new_id("dp", at=opened, rng=rng)
        provider_dispute_id = (
            "du_" + self._token(24)
            if payment["provider"] == "stripe"
            else str(358_000 + next(self.seq))
        )
        batch.disputes.append(
            {
                "id": dispute_id,
                "payment_id": payment["id"],
                "provider_dispute_id": provider_dispute_id,
                "amount_minor": amount,
                "currency": payment["currency"],
                "status": status,
                "reason": rng.choice(
                    (
                        "fraudulent",
                        "product_not_received",
                        "duplicate",
                        "unrecognized",
                        "product_unacceptable",
                    )
                ),
                "evidence_due_at": due,
                "evidence": {},
                "evidence_submitted_at": opened + timedelta(days=2)
                if status != "needs_response"
                else None,
                "closed_at": opened + timedelta(days=20)
                if status in ("won", "lost", "closed")
                else None,
                "created_at": opened,
                "updated_at": opened,
            }
        )
        if status in ("needs_response", "under_review", "lost"):
            payment["disputed_minor"] = amount
        self._event(
            batch,
            payment,
            opened,
            "dispute",
            f"provider:{payment['provider']}",
            f"Dispute {provider_dispute_id} opened: {status}",
            None,
            None,
            {"dispute_id": dispute_id},
        )
        event_type = (
            "charge.dispute.created" if payment["provider"] == "stripe" else "charge.dispute.create"
        )
        self._webhook(
            payment,
            PS.SUCCEEDED,
            opened,
            batch,
            None,
            event_type,
            {"dispute": provider_dispute_id, "amount": amount, "status": status},
        )

    def _proofs(
        self, payment: dict[str, Any], status: PaymentStatus, at: datetime, batch: _Batch
    ) -> None:
        rng = self.rng
        proof_status: str | None
        if status is PS.SUCCEEDED:
            proof_status = "approved"
        elif status is PS.PENDING:
            proof_status = rng.choice(("pending_review", "pending_review", "pending_review", None))
        elif status is PS.FAILED:
            proof_status = "rejected"
        else:
            proof_status = None
        if proof_status is None:
            return
        recorded_by = rng.choice(FINANCE_STAFF)
        reviewed = proof_status != "pending_review"
        recorded_at = at - timedelta(minutes=rng.randrange(1, 600)) if reviewed else at
        proof_id = new_id("pf", at=recorded_at, rng=rng)
        kind = payment["method"]
        batch.proofs.append(
            {
                "id": proof_id,
                "payment_id": payment["id"],
                "kind": kind,
                "reference": payment["provider_reference"],
                "amount_minor": payment["amount_minor"],
                "currency": payment["currency"],
                "paid_on": recorded_at.date(),
                "file_sha256": None,
                "file_name": None,
                "content_type": None,
                "file_size": None,
                "notes": rng.choice((None, "Customer sent a screenshot", "Paid at the counter")),
                "status": proof_status,
                "recorded_by": f"user:{recorded_by}",
                "reviewed_by": f"user:{rng.choice(MANAGERS)}" if reviewed else None,
                "reviewed_at": at if reviewed else None,
                "review_reason": "No matching transfer on the statement"
                if proof_status == "rejected"
                else None,
                "duplicate_of_payment_id": None,
                "created_at": recorded_at,
            }
        )
        self._event(
            batch,
            payment,
            recorded_at,
            "proof",
            f"user:{recorded_by}",
            f"Proof {proof_id} recorded ({kind}): {proof_status}",
            None,
            None,
            {"proof_id": proof_id},
        )


_json = json.JSONEncoder(separators=(",", ":")).encode


def _sqlite_datetime(value: datetime | None) -> str | None:
    # SQLAlchemy's SQLite DATETIME storage format (always 6 fraction digits), in UTC.
    return None if value is None else value.astimezone(UTC).isoformat(" ", "microseconds")[:26]


def _converter(column_type: Any, dialect: str) -> Callable[[Any], Any] | None:
    """What the column type would do to a value on the way in, without SQLAlchemy per row."""
    if isinstance(column_type, UTCDateTime):
        return _sqlite_datetime if dialect == "sqlite" else None
    if isinstance(column_type, JSON):
        return _json
    if dialect == "sqlite" and isinstance(column_type, Boolean):
        return lambda v: None if v is None else int(v)
    if dialect == "sqlite" and isinstance(column_type, Date):
        return lambda v: None if v is None else v.isoformat()
    return None


def _bulk_insert(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """executemany on SQLite, COPY on PostgreSQL: the fastest each driver offers."""
    dialect = connection.dialect.name
    names = list(rows[0])
    columns_values = []
    for name in names:
        values = [row[name] for row in rows]
        convert = _converter(table.c[name].type, dialect)
        columns_values.append(values if convert is None else list(map(convert, values)))
    records = list(zip(*columns_values, strict=True))
    columns = ", ".join(names)
    if dialect == "postgresql":
        driver = connection.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()
        with cursor, cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
            for record in records:
                copy.write_row(record)
        return
    placeholders = ", ".join("?" for _ in names)
    connection.exec_driver_sql(
        f"INSERT INTO {table.name} ({columns}) VALUES ({placeholders})",  # noqa: S608
        records,
    )


def _write(connection: Connection, batch: _Batch) -> None:
    tables: list[tuple[Any, list[dict[str, Any]]]] = [
        (Payment, batch.payments),
        (PaymentEvent, batch.events),
        (WebhookEvent, batch.webhooks),
        (Refund, batch.refunds),
        (Dispute, batch.disputes),
        (ManualProof, batch.proofs),
    ]
    for model, rows in tables:
        if rows:
            _bulk_insert(connection, model.__table__, rows)


def _refresh_statistics(engine: Engine) -> None:
    """Fresh planner statistics for the data just written (PostgreSQL's autovacuum would get
    there later; SQLite only ever learns them from ANALYZE). On PostgreSQL, also rewrite
    ``payment_day_stat`` (VACUUM FULL): its trigger updated each group row once per payment, which
    left a table of a few thousand rows spread over as many pages as payments."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            if inspect(connection).has_table("payment_day_stat"):  # absent before migration 0006
                connection.exec_driver_sql("VACUUM FULL ANALYZE payment_day_stat")
            connection.exec_driver_sql("ANALYZE")
    else:
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")


def seed_demo_data(
    *,
    engine: Engine,
    payments: int,
    days: int,
    seed: int,
    until: date | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 5000,
) -> SeedReport:
    """Write ``payments`` demo payments over ``days`` days ending ``until`` (default today, UTC)."""
    if payments < 0:
        raise ValueError(f"payments must be 0 or more, got {payments}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    started = time.perf_counter()
    until = until or datetime.now(UTC).date()
    generator = _Generator(random.Random(seed), payments, days, until)
    offsets = generator.creation_offsets(payments)
    totals = dict.fromkeys(("refunds", "disputes", "proofs", "webhooks", "events"), 0)

    def write(batch: _Batch, count: int) -> None:
        with engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA cache_size = -262144")  # 256 MiB while seeding
            _write(connection, batch)
        totals["refunds"] += len(batch.refunds)
        totals["disputes"] += len(batch.disputes)
        totals["proofs"] += len(batch.proofs)
        totals["webhooks"] += len(batch.webhooks)
        totals["events"] += len(batch.events)

    for batch_start in range(0, payments, batch_size):
        batch = _Batch()
        count = min(batch_size, payments - batch_start)
        for n in range(batch_start, batch_start + count):
            generator.payment(n, generator.start + timedelta(microseconds=offsets[n]), batch)
        write(batch, count)
        if progress:
            progress(count)
    _refresh_statistics(engine)
    report = SeedReport(
        payments=payments,
        refunds=totals["refunds"],
        disputes=totals["disputes"],
        proofs=totals["proofs"],
        webhook_events=totals["webhooks"],
        timeline_events=totals["events"],
        seconds=time.perf_counter() - started,
    )
    with transaction(engine) as session:
        record_audit(
            session=session,
            actor="system:seed",
            action="demo.seeded",
            entity_type="database",
            entity_id="demo",
            after={
                "payments": payments,
                "days": days,
                "seed": seed,
                "until": until,
                "refunds": report.refunds,
                "disputes": report.disputes,
                "proofs": report.proofs,
                "webhook_events": report.webhook_events,
            },
        )
    return report
