"""Fake Paystack API (transactions, refunds, webhooks).

``base_url`` is the origin (``http://127.0.0.1:PORT``), standing in for
``https://api.paystack.co``. Every endpoint needs ``Authorization: Bearer <secret key>``
(401 ``{"status": false, "message": "Invalid key"}`` otherwise) and answers with the envelope
``{"status": bool, "message": str, "data": ...}``. Amounts are integer subunits.

* ``POST /transaction/initialize`` -> ``authorization_url``/``access_code``/``reference``;
  a reused reference -> 400 ``Duplicate Transaction Reference``.
* ``GET /transaction/verify/{reference}`` -> status ``abandoned`` until
  :meth:`PaystackFake.set_status`; unknown reference -> 400 ``Transaction reference not found``.
* ``POST /refund`` (``transaction`` = reference or numeric id, optional ``amount`` <= what is
  left) -> ``pending`` refund. No idempotency: every call creates a refund (all recorded).
* ``GET /refund?transaction=<id or reference>&perPage=&page=`` lists refunds (newest first, with
  ``meta`` ``total``/``skipped``/``perPage``/``page``/``pageCount``); without ``transaction``, all
  of them. ``ignore_refund_filter = True`` makes the fake ignore the filter (some Paystack docs
  list no such filter), so clients must filter themselves.
* ``GET /refund/{id}``; :meth:`PaystackFake.set_refund_status` moves it
  (``pending``/``processing``/``processed``/``failed``/``needs-attention``). When processed
  refunds cover the whole amount the transaction becomes ``reversed``.

Webhooks: :meth:`PaystackFake.sign` (lowercase hex HMAC-SHA512 of the raw body with the secret
key, the ``x-paystack-signature`` value), :meth:`PaystackFake.webhook_body` for
``charge.success`` and ``refund.*`` (keeping Paystack's quirk: refund ``amount`` is a string in
pending/processing/processed and an integer in failed/needs-attention), and
:meth:`PaystackFake.deliver_webhook`.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from fakes.base import FakeServer, HttpError, Request, Response

CURRENCIES = frozenset({"NGN", "GHS", "ZAR", "USD", "KES", "XOF"})
TRANSACTION_STATUSES = frozenset(
    {"success", "failed", "abandoned", "reversed", "ongoing", "pending", "processing", "queued"}
)
REFUND_STATUSES = frozenset({"pending", "processing", "processed", "failed", "needs-attention"})
WEBHOOK_EVENTS = frozenset({"charge.success"} | {f"refund.{s}" for s in REFUND_STATUSES})
DEFAULT_SECRET_KEY = "sk_test_fake0123456789abcdef0123456789abcdef"
_REFERENCE = re.compile(r"^[A-Za-z0-9.=-]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DEFAULT_GATEWAY_RESPONSES = {
    "success": "Successful",
    "failed": "Declined",
    "abandoned": "The transaction was not completed",
    "reversed": "Successful",
}


def _iso(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PaystackFake(FakeServer):
    """Fake Paystack server.

    Args:
        secret_key: the ``sk_test_...`` key clients send as bearer and webhooks are signed with.
        default_currency: currency used when ``initialize`` omits it.
        integration_id: the ``integration`` number in payloads.
    """

    def __init__(
        self,
        secret_key: str = DEFAULT_SECRET_KEY,
        default_currency: str = "NGN",
        integration_id: int = 412829,
    ) -> None:
        self.secret_key = secret_key
        self.default_currency = default_currency
        self.integration_id = integration_id
        self.transactions: dict[str, dict[str, Any]] = {}
        self.refunds: dict[int, dict[str, Any]] = {}
        self.deliveries: list[httpx.Response] = []
        self.ignore_refund_filter = False
        self._tx_ids = itertools.count(4_099_260_001)
        self._refund_ids = itertools.count(13_000_001)
        self._customer_ids = itertools.count(68_001)
        self._customers: dict[str, dict[str, Any]] = {}
        super().__init__()

    # -- routes ----------------------------------------------------------------------------------

    def _register_routes(self) -> None:
        self.route("POST", r"/transaction/initialize", self._initialize)
        self.route("GET", r"/transaction/verify/(?P<reference>[^/]+)", self._verify)
        self.route("POST", r"/refund", self._create_refund)
        self.route("GET", r"/refund", self._list_refunds)
        self.route("GET", r"/refund/(?P<id>\d+)", self._get_refund)

    def error_response(self, status: int, message: str) -> Response:
        return Response.of_json(status, {"status": False, "message": message})

    def _fail(self, status: int, message: str) -> HttpError:
        return HttpError(self.error_response(status, message))

    @staticmethod
    def _ok(message: str, data: Any) -> Response:
        return Response.of_json(200, {"status": True, "message": message, "data": data})

    def _authenticate(self, request: Request) -> None:
        scheme, _, key = (request.header("Authorization") or "").partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(key.encode(), self.secret_key.encode()):
            raise self._fail(401, "Invalid key")

    def _body(self, request: Request) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise self._fail(400, "Invalid request body")
        return body

    @staticmethod
    def _int_amount(value: Any) -> int | None:
        if isinstance(value, str) and value.isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return None

    # -- transactions ----------------------------------------------------------------------------

    def _initialize(self, request: Request) -> Response:
        self._authenticate(request)
        body = self._body(request)
        email = body.get("email")
        if not isinstance(email, str) or not _EMAIL.match(email):
            raise self._fail(400, "Invalid Email Address Passed")
        amount = self._int_amount(body.get("amount"))
        if amount is None or amount <= 0:
            raise self._fail(400, "Invalid Amount Sent")
        currency = body.get("currency") or self.default_currency
        if currency not in CURRENCIES:
            raise self._fail(400, "Currency not supported by merchant")
        reference = body.get("reference") or f"T{secrets.randbelow(10**15):015d}"
        if not isinstance(reference, str) or not _REFERENCE.match(reference):
            raise self._fail(400, "Invalid transaction reference")
        if reference in self.transactions:
            raise self._fail(400, "Duplicate Transaction Reference")
        access_code = secrets.token_hex(8)
        self.transactions[reference] = {
            "id": next(self._tx_ids),
            "domain": "test",
            "status": "abandoned",
            "reference": reference,
            "amount": amount,
            "requested_amount": amount,
            "currency": currency,
            "gateway_response": DEFAULT_GATEWAY_RESPONSES["abandoned"],
            "message": None,
            "paid_at": None,
            "created_at": _iso(),
            "channel": "card",
            "ip_address": None,
            "metadata": body.get("metadata", ""),
            "callback_url": body.get("callback_url"),
            "fees": None,
            "customer": self._customer(email),
            "authorization": {},
            "access_code": access_code,
        }
        return self._ok(
            "Authorization URL created",
            {
                "authorization_url": f"https://checkout.paystack.com/{access_code}",
                "access_code": access_code,
                "reference": reference,
            },
        )

    def _customer(self, email: str) -> dict[str, Any]:
        if email not in self._customers:
            cid = next(self._customer_ids)
            self._customers[email] = {
                "id": cid,
                "first_name": None,
                "last_name": None,
                "email": email,
                "customer_code": f"CUS_{secrets.token_hex(7)}",
                "phone": None,
                "metadata": None,
                "risk_action": "default",
            }
        return copy.deepcopy(self._customers[email])

    def _verify(self, request: Request) -> Response:
        self._authenticate(request)
        tx = self.transactions.get(request.params["reference"])
        if tx is None:
            raise self._fail(400, "Transaction reference not found")
        return self._ok("Verification successful", self._tx_json(tx))

    @staticmethod
    def _tx_json(tx: dict[str, Any]) -> dict[str, Any]:
        data = {
            k: copy.deepcopy(v) for k, v in tx.items() if k not in {"callback_url", "access_code"}
        }
        data["paidAt"] = data["paid_at"]
        data["createdAt"] = data["created_at"]
        data["transaction_date"] = data["created_at"]
        data["log"] = None
        data["plan"] = None
        data["split"] = {}
        return data

    # -- refunds ---------------------------------------------------------------------------------

    def _find_transaction(self, key: Any) -> dict[str, Any] | None:
        if isinstance(key, str) and key in self.transactions:
            return self.transactions[key]
        tx_id = self._int_amount(key)
        if tx_id is not None:
            for tx in self.transactions.values():
                if tx["id"] == tx_id:
                    return tx
        return None

    def _refunded(self, reference: str) -> int:
        return sum(
            r["amount"]
            for r in self.refunds.values()
            if r["transaction_reference"] == reference and r["status"] != "failed"
        )

    def _create_refund(self, request: Request) -> Response:
        self._authenticate(request)
        body = self._body(request)
        if body.get("transaction") in (None, ""):
            raise self._fail(400, "Transaction reference or id is required")
        tx = self._find_transaction(body["transaction"])
        if tx is None:
            raise self._fail(404, "Transaction not found")
        if tx["status"] != "success":
            raise self._fail(400, "Cannot refund a transaction that was not successful")
        remaining = tx["amount"] - self._refunded(tx["reference"])
        if remaining <= 0:
            raise self._fail(400, "Transaction has been fully reversed")
        if body.get("amount") in (None, ""):
            amount = remaining
        else:
            amount = self._int_amount(body["amount"])
            if amount is None or amount <= 0:
                raise self._fail(400, "Invalid Amount Sent")
            if amount > remaining:
                raise self._fail(
                    400,
                    f"Refund amount cannot be greater than the remaining transaction amount "
                    f"({remaining})",
                )
        currency = body.get("currency") or tx["currency"]
        if currency != tx["currency"]:
            raise self._fail(400, "Refund currency must match the transaction currency")
        now = datetime.now(UTC)
        refund = {
            "id": next(self._refund_ids),
            "integration": self.integration_id,
            "transaction": tx["id"],
            "transaction_reference": tx["reference"],
            "dispute": None,
            "settlement": None,
            "domain": "test",
            "amount": amount,
            "deducted_amount": 0,
            "fully_deducted": False,
            "currency": currency,
            "channel": tx["channel"],
            "status": "pending",
            "refund_reference": None,
            "refunded_by": tx["customer"]["email"],
            "refunded_at": None,
            "expected_at": _iso(now + timedelta(days=10)),
            "customer_note": body.get("customer_note")
            or f"Refund for transaction {tx['reference']}",
            "merchant_note": body.get("merchant_note")
            or f"Refund for transaction {tx['reference']} by {tx['customer']['email']}",
            "createdAt": _iso(now),
            "updatedAt": _iso(now),
        }
        self.refunds[refund["id"]] = refund
        data = {k: v for k, v in refund.items() if k not in {"transaction_reference"}}
        data["transaction"] = {
            "id": tx["id"],
            "domain": tx["domain"],
            "reference": tx["reference"],
            "amount": tx["amount"],
            "paid_at": tx["paid_at"],
            "channel": tx["channel"],
            "currency": tx["currency"],
            "status": tx["status"],
        }
        return self._ok("Refund has been queued for processing", copy.deepcopy(data))

    def _get_refund(self, request: Request) -> Response:
        self._authenticate(request)
        refund = self.refunds.get(int(request.params["id"]))
        if refund is None:
            raise self._fail(404, "Refund not found")
        data = {k: copy.deepcopy(v) for k, v in refund.items() if k != "transaction_reference"}
        return self._ok("Refund retrieved", data)

    def _list_refunds(self, request: Request) -> Response:
        self._authenticate(request)
        per_page = self._int_amount(request.query.get("perPage", "50"))
        page = self._int_amount(request.query.get("page", "1"))
        if not per_page or not page:
            raise self._fail(400, "Invalid pagination parameters")
        refunds = sorted(self.refunds.values(), key=lambda r: r["id"], reverse=True)
        wanted = request.query.get("transaction")
        if wanted and not self.ignore_refund_filter:
            tx = self._find_transaction(wanted)
            refunds = [r for r in refunds if tx is not None and r["transaction"] == tx["id"]]
        skipped = (page - 1) * per_page
        chunk = refunds[skipped : skipped + per_page]
        data = [
            {k: copy.deepcopy(v) for k, v in r.items() if k != "transaction_reference"}
            for r in chunk
        ]
        meta = {
            "total": len(refunds),
            "skipped": skipped,
            "perPage": per_page,
            "page": page,
            "pageCount": max(1, -(-len(refunds) // per_page)),
        }
        return Response.of_json(
            200, {"status": True, "message": "Refunds retrieved", "data": data, "meta": meta}
        )

    # -- test controls ---------------------------------------------------------------------------

    def set_status(
        self,
        reference: str,
        status: str,
        gateway_response: str | None = None,
        channel: str | None = None,
    ) -> dict[str, Any]:
        """Set a transaction's status (``success``, ``failed``, ``abandoned``, ``reversed``, ...).

        ``success`` stamps ``paid_at``, fees and a card authorization. Returns the verify data.
        """
        if status not in TRANSACTION_STATUSES:
            raise ValueError(f"invalid Paystack transaction status {status!r}")
        with self._lock:
            tx = self.transactions[reference]
            tx["status"] = status
            tx["gateway_response"] = gateway_response or DEFAULT_GATEWAY_RESPONSES.get(
                status, status.capitalize()
            )
            if channel is not None:
                tx["channel"] = channel
            if status == "success":
                tx["paid_at"] = _iso()
                tx["fees"] = min(tx["amount"] * 15 // 1000 + 10000, 200000)
                tx["authorization"] = {
                    "authorization_code": f"AUTH_{secrets.token_hex(5)}",
                    "bin": "408408",
                    "last4": "4081",
                    "exp_month": "12",
                    "exp_year": "2030",
                    "channel": tx["channel"],
                    "card_type": "visa ",
                    "bank": "TEST BANK",
                    "country_code": "NG",
                    "brand": "visa",
                    "reusable": True,
                    "signature": f"SIG_{secrets.token_hex(10)}",
                }
            return self._tx_json(tx)

    def set_refund_status(self, refund_id: int, status: str) -> dict[str, Any]:
        """Move a refund (``processed`` stamps ``refunded_at``/``refund_reference``)."""
        if status not in REFUND_STATUSES:
            raise ValueError(f"invalid Paystack refund status {status!r}")
        with self._lock:
            refund = self.refunds[refund_id]
            refund["status"] = status
            refund["updatedAt"] = _iso()
            if status == "processed":
                refund["refunded_at"] = refund["updatedAt"]
                refund["refund_reference"] = f"RF{secrets.token_hex(6).upper()}"
                refund["deducted_amount"] = refund["amount"]
                refund["fully_deducted"] = True
                tx = self.transactions[refund["transaction_reference"]]
                processed = sum(
                    r["amount"]
                    for r in self.refunds.values()
                    if r["transaction_reference"] == tx["reference"] and r["status"] == "processed"
                )
                if processed >= tx["amount"]:
                    tx["status"] = "reversed"
            return copy.deepcopy(refund)

    def get_transaction(self, reference: str) -> dict[str, Any]:
        """The verify ``data`` of a transaction (a copy)."""
        with self._lock:
            return self._tx_json(self.transactions[reference])

    def refunds_for(self, reference: str) -> list[dict[str, Any]]:
        """Every refund created for a transaction reference (copies, oldest first)."""
        with self._lock:
            return [
                copy.deepcopy(r)
                for r in self.refunds.values()
                if r["transaction_reference"] == reference
            ]

    # -- webhooks --------------------------------------------------------------------------------

    def sign(self, body: bytes) -> str:
        """``x-paystack-signature``: lowercase hex HMAC-SHA512 of the raw body, secret key."""
        return hmac.new(self.secret_key.encode("utf-8"), body, hashlib.sha512).hexdigest()

    def webhook_body(self, event: str, reference: str, refund_id: int | None = None) -> bytes:
        """A webhook payload for ``charge.success`` or ``refund.<status>``.

        ``charge.success`` always reports ``status: success`` (whatever the stored status: use it
        to simulate a webhook racing ahead of verify). Refund events describe ``refund_id`` or,
        by default, the newest refund of the transaction.
        """
        if event not in WEBHOOK_EVENTS:
            raise ValueError(f"unsupported webhook event {event!r}")
        with self._lock:
            tx = self.transactions[reference]
            if event == "charge.success":
                data = self._tx_json(tx)
                for key in ("paidAt", "createdAt", "transaction_date"):
                    data.pop(key, None)
                data["status"] = "success"
                data["paid_at"] = data["paid_at"] or _iso()
                data["gateway_response"] = (
                    data["gateway_response"]
                    if tx["status"] == "success"
                    else DEFAULT_GATEWAY_RESPONSES["success"]
                )
            else:
                status = event.split(".", 1)[1]
                refunds = [
                    r for r in self.refunds.values() if r["transaction_reference"] == reference
                ]
                if refund_id is not None:
                    refunds = [r for r in refunds if r["id"] == refund_id]
                if not refunds:
                    raise ValueError(f"no refund for {reference!r}")
                refund = refunds[-1]
                amount: int | str = refund["amount"]
                if status in {"pending", "processing", "processed"}:
                    amount = str(amount)
                customer = tx["customer"]
                data = {
                    "status": status,
                    "transaction_reference": reference,
                    "refund_reference": refund["refund_reference"]
                    if status == "processed"
                    else None,
                    "amount": amount,
                    "currency": refund["currency"],
                    "processor": "mpgs_zen",
                    "customer": {
                        "first_name": customer["first_name"],
                        "last_name": customer["last_name"],
                        "email": customer["email"],
                    },
                    "integration": self.integration_id,
                    "domain": "test",
                }
        return json.dumps({"event": event, "data": data}, separators=(",", ":")).encode()

    def signed_webhook(
        self, event: str, reference: str, refund_id: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """``(body, headers)`` of a signed webhook delivery."""
        body = self.webhook_body(event, reference, refund_id)
        return body, {"Content-Type": "application/json", "x-paystack-signature": self.sign(body)}

    def deliver_webhook(
        self,
        url: str,
        event: str,
        reference: str,
        refund_id: int | None = None,
        *,
        timeout: float = 5.0,
    ) -> httpx.Response:
        """POST a signed webhook to ``url``; the response is also kept in ``deliveries``."""
        body, headers = self.signed_webhook(event, reference, refund_id)
        response = httpx.post(url, content=body, headers=headers, timeout=timeout)
        with self._lock:
            self.deliveries.append(response)
        return response
