"""Fake Safaricom Daraja API (M-Pesa Express: OAuth, STK push, STK query, STK callback).

``base_url`` is the origin (``http://127.0.0.1:PORT``), standing in for
``https://sandbox.safaricom.co.ke``. Served endpoints:

* ``GET /oauth/v1/generate?grant_type=client_credentials`` with
  ``Authorization: Basic base64(consumer_key:consumer_secret)`` ->
  ``{"access_token": ..., "expires_in": "3599"}`` (counted in :attr:`DarajaFake.token_issues`).
  Wrong credentials -> 400 ``400.008.01``, wrong grant type -> 400 ``400.008.02``.
* ``POST /mpesa/stkpush/v1/processrequest`` (bearer) -> ``MerchantRequestID``,
  ``CheckoutRequestID``, ``ResponseCode "0"``. ``Password`` is recomputed as
  ``base64(shortcode + passkey + Timestamp)``; a mismatch answers HTTP 500
  ``500.001.1001 "Wrong credentials"`` (the code Daraja overloads, see below). Field problems
  answer 400 ``400.002.02 "Bad Request - Invalid <Field>"``.
* ``POST /mpesa/stkpushquery/v1/query`` (bearer) -> HTTP 500
  ``{"errorCode": "500.001.1001", "errorMessage": "The transaction is being processed"}`` until
  :meth:`DarajaFake.answer` is called, then the completed result with ``ResultCode`` as a *string*.

Expired/unknown bearer tokens -> 401 ``404.001.03 "Invalid Access Token"``.

``DarajaFake(max_timestamp_skew=seconds)`` also refuses a ``Timestamp`` further than that from the
fake's own Kenyan time (400 ``Invalid Timestamp``): a client sending UTC is three hours off. Off
by default, so clients with a frozen clock work. Pushes and queries are recorded in
:attr:`DarajaFake.pushes` and :attr:`FakeServer.requests`.

Error codes and HTTP statuses other than the pending-query error and ``404.001.03`` are taken
from community integrations (Safaricom's portal is not citable as text) -- treat them as
plausible, not authoritative. Timestamps use Kenyan time (UTC+3, no DST).

The STK callback is built by :meth:`DarajaFake.callback_body` (``ResultCode`` a number,
``CallbackMetadata`` only on success, ``Balance`` without ``Value``) and POSTed to the push's
``CallBackURL`` by :meth:`DarajaFake.deliver_callback`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import itertools
import json
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from fakes.base import FakeServer, HttpError, Request, Response

NAIROBI = timezone(timedelta(hours=3), "EAT")

RESULT_DESCRIPTIONS: dict[int, str] = {
    0: "The service request is processed successfully.",
    1: "The balance is insufficient for the transaction.",
    17: "System internal error.",
    1001: "Unable to lock subscriber, a transaction is already in process for the current "
    "subscriber",
    1019: "Transaction has expired",
    1025: "An error occurred while sending a push request",
    1032: "Request cancelled by user",
    1037: "DS timeout user cannot be reached",
    2001: "The initiator information is invalid.",
    9999: "An error occurred while sending a push request",
}
TRANSACTION_TYPES = frozenset({"CustomerPayBillOnline", "CustomerBuyGoodsOnline"})
PENDING_MESSAGE = "The transaction is being processed"
DEFAULT_CONSUMER_KEY = "fake-consumer-key"
DEFAULT_CONSUMER_SECRET = "fake-consumer-secret"
DEFAULT_PASSKEY = "fake-passkey-0123456789abcdef"


@dataclass
class StkPush:
    """One accepted STK push and, once answered, its outcome."""

    merchant_request_id: str
    checkout_request_id: str
    request: dict[str, Any]
    amount: int
    phone_number: str
    callback_url: str
    account_reference: str
    result_code: int | None = None
    result_desc: str | None = None
    receipt: str | None = None
    paid_amount: int | float | None = None
    transaction_date: int | None = None
    deliveries: list[httpx.Response] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return self.result_code is not None


class DarajaFake(FakeServer):
    """Fake Daraja server.

    Args:
        consumer_key / consumer_secret: the app credentials OAuth expects (Basic auth).
        shortcode: the Paybill/till ``BusinessShortCode`` pushes must use.
        passkey: the Lipa Na M-Pesa Online passkey the ``Password`` is derived from.
        token_ttl: access-token lifetime in seconds (``expires_in`` is sent as a string).
        max_timestamp_skew: when set, refuse a ``Timestamp`` more than this many seconds away
            from now in Kenyan time.
    """

    phone_pattern = re.compile(r"^254(7\d|1[01])\d{7}$")

    def __init__(
        self,
        consumer_key: str = DEFAULT_CONSUMER_KEY,
        consumer_secret: str = DEFAULT_CONSUMER_SECRET,
        shortcode: str = "174379",
        passkey: str = DEFAULT_PASSKEY,
        token_ttl: int = 3599,
        max_timestamp_skew: float | None = None,
    ) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.shortcode = str(shortcode)
        self.passkey = passkey
        self.token_ttl = token_ttl
        self.max_timestamp_skew = max_timestamp_skew
        self.pushes: dict[str, StkPush] = {}
        self._tokens: dict[str, float] = {}
        self._token_issues = 0
        self._counter = itertools.count(1)
        super().__init__()

    # -- helpers for tests and adapters ----------------------------------------------------------

    @staticmethod
    def timestamp(moment: datetime | None = None) -> str:
        """A Daraja ``Timestamp`` (``YYYYMMDDHHmmss``, Kenyan time)."""
        return (moment or datetime.now(NAIROBI)).astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")

    def password(self, timestamp: str) -> str:
        """The expected ``Password`` for ``timestamp``: ``base64(shortcode + passkey + ts)``."""
        raw = f"{self.shortcode}{self.passkey}{timestamp}".encode()
        return base64.b64encode(raw).decode("ascii")

    def basic_auth_header(self) -> str:
        """The ``Authorization`` header value the OAuth endpoint expects."""
        raw = f"{self.consumer_key}:{self.consumer_secret}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    @property
    def token_issues(self) -> int:
        """How many access tokens the OAuth endpoint has issued."""
        with self._lock:
            return self._token_issues

    def expire_tokens(self) -> None:
        """Expire every issued access token (the next API call gets ``404.001.03``)."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = 0.0

    # -- routes ----------------------------------------------------------------------------------

    def _register_routes(self) -> None:
        self.route("GET", r"/oauth/v1/generate", self._oauth)
        self.route("POST", r"/mpesa/stkpush/v1/processrequest", self._stk_push)
        self.route("POST", r"/mpesa/stkpushquery/v1/query", self._stk_query)

    def error_response(self, status: int, message: str) -> Response:
        code = {
            400: "400.002.02",
            401: "404.001.03",
            404: "404.001.01",
            429: "500.003.02",
            500: "500.001.1001",
            503: "503.001.01",
        }.get(status, f"{status}.000.00")
        return self._error(status, code, message)

    @staticmethod
    def _error(status: int, code: str, message: str) -> Response:
        request_id = f"{secrets.randbelow(90000) + 10000}-{secrets.randbelow(10**8)}-1"
        return Response.of_json(
            status, {"requestId": request_id, "errorCode": code, "errorMessage": message}
        )

    def _raise(self, status: int, code: str, message: str) -> HttpError:
        return HttpError(self._error(status, code, message))

    # -- OAuth -----------------------------------------------------------------------------------

    def _oauth(self, request: Request) -> Response:
        if request.query.get("grant_type") != "client_credentials":
            raise self._raise(400, "400.008.02", "Invalid grant type passed")
        auth = request.header("Authorization") or ""
        scheme, _, encoded = auth.partition(" ")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        expected = f"{self.consumer_key}:{self.consumer_secret}"
        if scheme != "Basic" or not hmac.compare_digest(decoded, expected):
            raise self._raise(400, "400.008.01", "Invalid Authentication passed")
        token = secrets.token_urlsafe(21)
        self._tokens[token] = time.monotonic() + self.token_ttl
        self._token_issues += 1
        return Response.of_json(200, {"access_token": token, "expires_in": str(self.token_ttl)})

    def _require_bearer(self, request: Request) -> None:
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        expiry = self._tokens.get(token) if scheme == "Bearer" else None
        if expiry is None or expiry <= time.monotonic():
            raise self._raise(401, "404.001.03", "Invalid Access Token")

    def _body(self, request: Request) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise self._raise(400, "400.002.05", "Invalid Request Payload")
        return body

    def _check_credentials(self, body: dict[str, Any]) -> None:
        if str(body.get("BusinessShortCode", "")) != self.shortcode:
            raise self._raise(400, "400.002.02", "Bad Request - Invalid BusinessShortCode")
        ts = body.get("Timestamp")
        if not isinstance(ts, str) or not re.fullmatch(r"\d{14}", ts):
            raise self._raise(400, "400.002.02", "Bad Request - Invalid Timestamp")
        if self.max_timestamp_skew is not None:
            try:
                sent = datetime.strptime(ts, "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
            except ValueError:
                raise self._raise(400, "400.002.02", "Bad Request - Invalid Timestamp") from None
            skew = abs((datetime.now(NAIROBI) - sent).total_seconds())
            if skew > self.max_timestamp_skew:
                raise self._raise(400, "400.002.02", "Bad Request - Invalid Timestamp")
        password = body.get("Password")
        if not isinstance(password, str) or not hmac.compare_digest(password, self.password(ts)):
            raise self._raise(500, "500.001.1001", "Wrong credentials")

    # -- STK push --------------------------------------------------------------------------------

    def _stk_push(self, request: Request) -> Response:
        self._require_bearer(request)
        body = self._body(request)
        self._check_credentials(body)

        def invalid(name: str) -> HttpError:
            return self._raise(400, "400.002.02", f"Bad Request - Invalid {name}")

        if body.get("TransactionType") not in TRANSACTION_TYPES:
            raise invalid("TransactionType")
        amount = body.get("Amount")
        if isinstance(amount, str) and amount.isdigit():
            amount = int(amount)
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
            raise invalid("Amount")
        for name in ("PartyA", "PhoneNumber"):
            if not self.phone_pattern.fullmatch(str(body.get(name, ""))):
                raise invalid(name)
        if not str(body.get("PartyB", "")).isdigit():
            raise invalid("PartyB")
        callback = body.get("CallBackURL")
        if not isinstance(callback, str) or not re.match(r"^https?://\S+$", callback):
            raise invalid("CallBackURL")
        reference = body.get("AccountReference")
        if not isinstance(reference, str) or not 1 <= len(reference) <= 12:
            raise invalid("AccountReference")
        if not isinstance(body.get("TransactionDesc"), str) or not body["TransactionDesc"]:
            raise invalid("TransactionDesc")
        n = next(self._counter)
        now = datetime.now(NAIROBI)
        push = StkPush(
            merchant_request_id=f"{29115 + n}-{34620561 + n * 7}-1",
            checkout_request_id=f"ws_CO_{now.strftime('%d%m%Y%H%M%S')}{n:06d}",
            request=copy.deepcopy(body),
            amount=amount,
            phone_number=str(body["PhoneNumber"]),
            callback_url=callback,
            account_reference=reference,
        )
        self.pushes[push.checkout_request_id] = push
        message = "Success. Request accepted for processing"
        return Response.of_json(
            200,
            {
                "MerchantRequestID": push.merchant_request_id,
                "CheckoutRequestID": push.checkout_request_id,
                "ResponseCode": "0",
                "ResponseDescription": message,
                "CustomerMessage": message,
            },
        )

    # -- STK query -------------------------------------------------------------------------------

    def _stk_query(self, request: Request) -> Response:
        self._require_bearer(request)
        body = self._body(request)
        self._check_credentials(body)
        push = self.pushes.get(str(body.get("CheckoutRequestID", "")))
        if push is None:
            raise self._raise(400, "400.002.02", "Bad Request - Invalid CheckoutRequestID")
        if not push.answered:
            raise self._raise(500, "500.001.1001", PENDING_MESSAGE)
        return Response.of_json(
            200,
            {
                "ResponseCode": "0",
                "ResponseDescription": "The service request has been accepted successsfully",
                "MerchantRequestID": push.merchant_request_id,
                "CheckoutRequestID": push.checkout_request_id,
                "ResultCode": str(push.result_code),
                "ResultDesc": push.result_desc,
            },
        )

    # -- test controls ---------------------------------------------------------------------------

    def start_push(
        self,
        amount: int = 150,
        phone: str = "254708374149",
        callback_url: str = "https://pay.example.com/webhooks/mpesa/token",
    ) -> str:
        """Start an STK push over HTTP, as a merchant would (own token); its CheckoutRequestID."""
        token = httpx.get(
            self.url("/oauth/v1/generate?grant_type=client_credentials"),
            headers={"Authorization": self.basic_auth_header()},
        ).json()["access_token"]
        timestamp = self.timestamp()
        response = httpx.post(
            self.url("/mpesa/stkpush/v1/processrequest"),
            headers={"Authorization": f"Bearer {token}"},
            json={
                "BusinessShortCode": self.shortcode,
                "Password": self.password(timestamp),
                "Timestamp": timestamp,
                "TransactionType": "CustomerPayBillOnline",
                "Amount": amount,
                "PartyA": phone,
                "PartyB": self.shortcode,
                "PhoneNumber": phone,
                "CallBackURL": callback_url,
                "AccountReference": "ORD42",
                "TransactionDesc": "Order 42",
            },
        )
        if response.status_code != 200:
            raise AssertionError(f"STK push refused: {response.text}")
        return str(response.json()["CheckoutRequestID"])

    def push(self, checkout_request_id: str) -> StkPush:
        """The remembered push (raises ``KeyError`` for unknown ids)."""
        with self._lock:
            return self.pushes[checkout_request_id]

    def answer(
        self,
        checkout_request_id: str,
        result_code: int,
        receipt: str | None = None,
        amount: int | float | None = None,
        result_desc: str | None = None,
    ) -> StkPush:
        """Record the customer's answer (0 = paid; e.g. 1032 cancelled, 1037 timeout, 1 funds).

        On success a receipt (``MpesaReceiptNumber``) is generated unless given, and the paid
        amount defaults to the pushed amount.
        """
        with self._lock:
            push = self.pushes[checkout_request_id]
            push.result_code = int(result_code)
            push.result_desc = result_desc or RESULT_DESCRIPTIONS.get(
                push.result_code, "The transaction failed."
            )
            if push.result_code == 0:
                push.receipt = receipt or _receipt()
                push.paid_amount = amount if amount is not None else push.amount
                push.transaction_date = int(self.timestamp())
            else:
                push.receipt, push.paid_amount, push.transaction_date = None, None, None
            return push

    def callback_body(self, checkout_request_id: str) -> bytes:
        """The STK callback JSON Daraja POSTs to ``CallBackURL`` for an answered push."""
        with self._lock:
            push = self.pushes[checkout_request_id]
            if not push.answered:
                raise ValueError(f"push {checkout_request_id} has not been answered yet")
            callback: dict[str, Any] = {
                "MerchantRequestID": push.merchant_request_id,
                "CheckoutRequestID": push.checkout_request_id,
                "ResultCode": push.result_code,
                "ResultDesc": push.result_desc,
            }
            if push.result_code == 0:
                assert push.paid_amount is not None
                callback["CallbackMetadata"] = {
                    "Item": [
                        {"Name": "Amount", "Value": float(push.paid_amount)},
                        {"Name": "MpesaReceiptNumber", "Value": push.receipt},
                        {"Name": "Balance"},
                        {"Name": "TransactionDate", "Value": push.transaction_date},
                        {"Name": "PhoneNumber", "Value": int(push.phone_number)},
                    ]
                }
        return json.dumps({"Body": {"stkCallback": callback}}, separators=(",", ":")).encode()

    def deliver_callback(
        self, checkout_request_id: str, url: str | None = None, timeout: float = 5.0
    ) -> httpx.Response:
        """POST :meth:`callback_body` to the push's ``CallBackURL`` (or ``url``).

        Unsigned and without auth headers, like Daraja. The response is kept on the push.
        """
        body = self.callback_body(checkout_request_id)
        push = self.push(checkout_request_id)
        response = httpx.post(
            url or push.callback_url,
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        )
        with self._lock:
            push.deliveries.append(response)
        return response


def _receipt() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(10))
