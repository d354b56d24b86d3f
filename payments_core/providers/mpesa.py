"""M-Pesa Daraja (STK Push / M-Pesa Express): result codes, callbacks, the client and the adapter.

Result codes are open ended, so instead of a ``Literal`` the known codes live in the
``RESULT_CODES`` table; every nonzero code is a failure of this attempt, known or not. The code
arrives as a JSON number in the callback and as a string in the STK Query answer; both are
normalised with ``int(str(x).strip())``.

Callbacks are unsigned: ``parse_stk_callback`` only identifies one (its URL token is checked by
the intake), and ``callback_facts`` counts a success only once ``DarajaClient.stk_query`` (an
authenticated server-to-server read) confirms it. Amounts are whole KES on the wire: they become
minor units in ``_kes_minor`` and whole shillings in ``amount_to_mpesa``, nowhere else.

``DarajaClient.stk_push`` starts a payment (the prompt on the customer's phone) and
``MpesaAdapter`` puts it behind the checkout/status adapter protocols. Daraja has no idempotency
key, so a push is sent exactly once: after an unknown outcome the caller gets
``ProviderOutcomeUnknown`` and must not push again (a second push could charge twice). Refunds
(M-Pesa reversals) are not supported.

Source: ../shared/reference/providers.md sections 0 (cross-provider rules), 4.1 (OAuth), 4.2 (STK
Push), 4.3 (callback), 4.4 (result codes), 4.5 (STK Query, the ``500.001.1001`` pending answer),
4.6 (callback security) and 5 (suggested mapping).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar
from zoneinfo import ZoneInfo

import httpx

from payments_core.money import UnknownCurrencyError, minor_from_decimal, normalize_currency
from payments_core.providers.base import (
    CheckoutRequest,
    CheckoutResult,
    EventFacts,
    MalformedEvent,
    OperationNotSupported,
    PaymentFacts,
    PaymentMethod,
    ProviderAuthError,
    ProviderDeclined,
    ProviderEntityNotFound,
    ProviderName,
    ProviderNotConfigured,
    ProviderOutcomeUnknown,
    ProviderUnavailable,
    RefundRequest,
    RefundResult,
    UnknownProviderState,
    Verification,
    VerifiedWebhook,
    with_retries,
)
from payments_core.providers.base import (
    malformed_delivery as _malformed,
)
from payments_core.status import MappedStatus, PaymentStatus

if TYPE_CHECKING:
    from payments_core.config import Settings

SUCCESS_RESULT_CODE: Final = 0
CURRENCY: Final = "KES"  # M-Pesa Express takes whole shillings only

# Known nonzero result codes (section 4.4): code -> (status, failure reason).
RESULT_CODES: Final[Mapping[int, tuple[PaymentStatus, str]]] = MappingProxyType(
    {
        1: (PaymentStatus.FAILED, "insufficient funds"),
        17: (PaymentStatus.FAILED, "receiving party unable to process"),
        1001: (PaymentStatus.FAILED, "subscriber busy: another M-Pesa session in progress"),
        1019: (PaymentStatus.EXPIRED, "transaction expired"),
        1025: (PaymentStatus.FAILED, "push could not be sent"),
        1032: (PaymentStatus.CANCELED, "cancelled by customer"),
        1037: (PaymentStatus.EXPIRED, "customer unreachable"),
        2001: (PaymentStatus.FAILED, "wrong PIN"),
        9999: (PaymentStatus.FAILED, "push could not be sent"),
    }
)

# STK Query's answer while the customer has not answered the prompt yet (section 4.5). The code
# is overloaded (also wrong password, unknown merchant, ...), so check the message as well.
STK_QUERY_PENDING_ERROR_CODE: Final = "500.001.1001"
STK_QUERY_PENDING_ERROR_MESSAGE: Final = "The transaction is being processed"


def parse_result_code(value: int | str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise UnknownProviderState(ProviderName.MPESA, "ResultCode", value) from None


def map_result_code(result_code: int | str) -> MappedStatus:
    """Map an STK ``ResultCode`` (callback number or STK Query string) to a payment status.

    ``provider_state`` is the normalised code, e.g. ``"1032"``.
    """
    code = parse_result_code(result_code)
    if code == SUCCESS_RESULT_CODE:
        # Callbacks are unsigned: 0 only counts as paid once an STK Query confirms it (and the
        # amount/phone match). That check is the processing layer's job, not this table's.
        return MappedStatus(PaymentStatus.SUCCEEDED, str(code))
    status, reason = RESULT_CODES.get(code, (PaymentStatus.FAILED, f"M-Pesa result code {code}"))
    return MappedStatus(status, str(code), failure_reason=reason)


def is_stk_query_pending(error_code: str, error_message: str) -> bool:
    """Whether an STK Query error answer is the "still waiting for the customer" one."""
    return (
        error_code.strip() == STK_QUERY_PENDING_ERROR_CODE
        and error_message.strip() == STK_QUERY_PENDING_ERROR_MESSAGE
    )


def map_stk_query_pending() -> MappedStatus:
    """The STK Query "The transaction is being processed" (``500.001.1001``) answer."""
    return MappedStatus(PaymentStatus.PROCESSING, STK_QUERY_PENDING_ERROR_CODE)


# --- Webhook verification -----------------------------------------------------------------------
# Sections 4.3 (callback) and 4.6 (callbacks are not signed: a secret token per payment URL).

STK_CALLBACK_EVENT_TYPE: Final = "stk_callback"


def new_callback_token() -> str:
    """A fresh secret for one payment's callback URL (256 bits, URL-safe); store only its hash."""
    return secrets.token_urlsafe(32)


def hash_callback_token(token: str) -> str:
    """The stored form of a callback token: SHA-256 hex (the token itself is high-entropy)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_stk_callback(raw: bytes) -> VerifiedWebhook:
    """Read an STK callback; the URL token has already been checked by the intake.

    ``event_id`` is ``{CheckoutRequestID}:{ResultCode}`` with the code normalised (``0`` and
    ``"0"`` are the same event), so a redelivery dedupes while a success and a failure reported
    for the same request stay two events.
    """
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _malformed("body is not valid JSON") from None
    callback = _object_at(body, "Body", "stkCallback")
    checkout_request_id = callback.get("CheckoutRequestID")
    result_code = callback.get("ResultCode")
    if not isinstance(checkout_request_id, str) or not checkout_request_id:
        raise _malformed("stkCallback without CheckoutRequestID")
    if isinstance(result_code, bool) or not isinstance(result_code, int | str):
        raise _malformed("stkCallback without ResultCode")
    try:
        code = parse_result_code(result_code)
    except UnknownProviderState:
        raise _malformed("stkCallback ResultCode is not a number") from None
    return VerifiedWebhook(
        provider=ProviderName.MPESA,
        event_id=f"{checkout_request_id}:{code}",
        event_type=STK_CALLBACK_EVENT_TYPE,
        verification=Verification.TOKEN,
        livemode=None,
        reference=checkout_request_id,
    )


def _object_at(body: object, *path: str) -> dict[str, Any]:
    node = body
    for name in path:
        if not isinstance(node, dict):
            break
        node = node.get(name)
    if not isinstance(node, dict):
        raise _malformed("body is not an STK callback (Body.stkCallback)")
    return node


# --- STK Query client (sections 4.1 and 4.5) ------------------------------------------------------

NAIROBI: Final = ZoneInfo("Africa/Nairobi")
OAUTH_PATH: Final = "/oauth/v1/generate"
STK_PUSH_PATH: Final = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH: Final = "/mpesa/stkpushquery/v1/query"
# Daraja's "Invalid Access Token" error code (expired or unknown token).
INVALID_TOKEN_ERROR_CODE: Final = "404.001.03"  # noqa: S105 (an error code, not a secret)
# Daraja's throttling codes (spike arrest, quota): the request was not carried out.
THROTTLED_ERROR_CODES: Final = frozenset({"500.003.02", "500.003.03"})
# The overloaded 500.001.1001 with this message: the Password (shortcode/passkey) is wrong.
WRONG_CREDENTIALS_MESSAGE: Final = "Wrong credentials"
_TOKEN_REFRESH_MARGIN_SECONDS: Final = 60
_DEFAULT_TIMEOUT: Final = httpx.Timeout(15.0, connect=5.0)


@dataclass(frozen=True, slots=True)
class StkPushResult:
    """Daraja's acknowledgement of an STK push: accepted for processing, not paid."""

    merchant_request_id: str
    checkout_request_id: str
    response_code: str
    response_description: str
    customer_message: str


@dataclass(frozen=True, slots=True)
class StkQueryResult:
    """Daraja's answer to an STK Query.

    ``pending`` is the "being processed" answer (customer has not answered yet): ``status`` is
    then PROCESSING and ``result_code`` None. Otherwise ``result_code`` is the STK ``ResultCode``
    as text and ``status`` its mapping.
    """

    status: MappedStatus
    result_code: str | None
    result_desc: str
    pending: bool


class DarajaCredentialsRefused(ProviderAuthError, ProviderUnavailable):
    """Daraja refused our consumer key/secret (OAuth) or our Password (shortcode/passkey).

    A ``ProviderAuthError``; also a ``ProviderUnavailable``, so the webhook worker keeps treating
    it as "try again later" (it retries once the credentials are fixed), as it always has.
    """


class DarajaClient:
    """Daraja API client: OAuth access token, STK Push and STK Query.

    The access token is cached until 60 s before it expires (by ``clock``) and fetched again once
    when an API call answers that it is invalid (401 / ``404.001.03``). ``Timestamp`` and
    ``Password`` use Kenyan time from ``clock``. Network errors, timeouts, HTTP 429 and 5xx (other
    than the pending answer) and unreadable answers raise ``ProviderUnavailable``; so do refused
    credentials, with a message naming them (``DarajaCredentialsRefused``). A ``CheckoutRequestID``
    Daraja does not know raises ``ProviderEntityNotFound``; other 4xx answers raise
    ``DarajaError``. ``stk_push`` has its own error rules (see there): it is a write.

    Pass ``http`` to share a client (its owner closes it); otherwise ``close()`` closes ours.
    Thread-safe.
    """

    def __init__(
        self,
        base_url: str,
        consumer_key: str,
        consumer_secret: str,
        shortcode: str,
        passkey: str,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float | None = None,
    ) -> None:
        """``timeout`` (seconds) applies to every request, also on a shared ``http`` client;
        without it our own client waits up to 15 s (5 s to connect) and a shared one its own."""
        self._base_url = base_url.rstrip("/")
        self._basic_auth = httpx.BasicAuth(consumer_key, consumer_secret)
        self._shortcode = str(shortcode)
        self._passkey = passkey
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=_DEFAULT_TIMEOUT)
        self._timeout = httpx.Timeout(timeout) if timeout is not None else None
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_refresh_at = 0.0

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- STK Push -------------------------------------------------------------------------------

    def stk_push(
        self,
        *,
        amount: int,
        phone_number: str,
        callback_url: str,
        account_reference: str,
        description: str,
    ) -> StkPushResult:
        """``POST /mpesa/stkpush/v1/processrequest``: prompt ``phone_number`` to pay ``amount``.

        A Paybill push (``CustomerPayBillOnline``, ``PartyB`` = the shortcode). ``amount`` is whole
        KES, ``phone_number`` ``2547XXXXXXXX``/``2541XXXXXXXX`` (both ``PartyA`` and
        ``PhoneNumber``), ``account_reference`` at most 12 and ``description`` at most 13
        characters (see ``amount_to_mpesa``, ``normalize_msisdn``); ``Password``/``Timestamp`` as
        for the query. ``ResponseCode "0"`` only means accepted: the outcome comes by callback or
        STK Query.

        Sent once and never repeated here (Daraja has no idempotency key; only a refused access
        token is retried, once, with a new one). Errors: ``ProviderOutcomeUnknown`` when the push
        may have gone out (timeout or dropped connection after sending, 5xx, unreadable answer);
        ``ProviderUnavailable`` when it surely did not (connection refused, throttled, OAuth
        failed); ``DarajaCredentialsRefused`` for wrong consumer credentials or a wrong Password;
        ``ProviderDeclined`` for any other refusal (4xx, or a ``ResponseCode`` other than "0").
        """
        timestamp = self.timestamp()
        body: dict[str, object] = {
            "BusinessShortCode": self._shortcode,
            "Password": self.password(timestamp),
            "Timestamp": timestamp,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": amount,
            "PartyA": phone_number,
            "PartyB": self._shortcode,
            "PhoneNumber": phone_number,
            "CallBackURL": callback_url,
            "AccountReference": account_reference,
            "TransactionDesc": description,
        }
        return _stk_push_result(self._post(STK_PUSH_PATH, body, write=True))

    # -- STK Query ------------------------------------------------------------------------------

    def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        """``POST /mpesa/stkpushquery/v1/query``: the outcome of one STK push, or pending."""
        timestamp = self.timestamp()
        body = {
            "BusinessShortCode": self._shortcode,
            "Password": self.password(timestamp),
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_request_id,
        }
        response = self._post(STK_QUERY_PATH, body)
        answer = _json_object(response)
        if response.status_code == httpx.codes.OK:
            result_code = answer.get("ResultCode")
            if isinstance(result_code, bool) or not isinstance(result_code, int | str):
                raise ProviderUnavailable("M-Pesa STK Query answer without ResultCode")
            code = str(result_code).strip()
            return StkQueryResult(
                status=map_result_code(code),
                result_code=code,
                result_desc=str(answer.get("ResultDesc") or ""),
                pending=False,
            )
        error_code = str(answer.get("errorCode") or "")
        error_message = str(answer.get("errorMessage") or "")
        if is_stk_query_pending(error_code, error_message):
            return StkQueryResult(
                status=map_stk_query_pending(),
                result_code=None,
                result_desc=error_message,
                pending=True,
            )
        problem = f"HTTP {response.status_code} {error_code} {error_message}".strip()
        if _is_wrong_credentials(error_code, error_message):
            raise DarajaCredentialsRefused(
                f"M-Pesa STK Query failed: {problem}; check MPESA_SHORTCODE and MPESA_PASSKEY",
                provider=ProviderName.MPESA,
                code=error_code,
                status_code=response.status_code,
            )
        if _is_transient(response.status_code):
            raise ProviderUnavailable(f"M-Pesa STK Query failed: {problem}")
        if "CheckoutRequestID" in error_message:
            raise ProviderEntityNotFound(
                f"M-Pesa does not know CheckoutRequestID {checkout_request_id!r}: {problem}"
            )
        raise DarajaError(response.status_code, error_code, error_message)

    # -- credentials ----------------------------------------------------------------------------

    def timestamp(self) -> str:
        """Daraja's ``Timestamp``: now in Kenyan time as ``YYYYMMDDHHMMSS``."""
        return datetime.fromtimestamp(self._clock(), NAIROBI).strftime("%Y%m%d%H%M%S")

    def password(self, timestamp: str) -> str:
        """``base64(shortcode + passkey + timestamp)``, sent with that same ``Timestamp``."""
        raw = f"{self._shortcode}{self._passkey}{timestamp}".encode()
        return base64.b64encode(raw).decode("ascii")

    def access_token(self) -> str:
        """The cached access token; fetched when there is none or it is near expiry."""
        with self._lock:
            if self._token is not None and self._clock() < self._token_refresh_at:
                return self._token
            return self._fetch_and_cache_token()

    def _replace_token(self, refused: str) -> str:
        """A new token after ``refused`` was refused (unless another thread already got one)."""
        with self._lock:
            token = self._token
            if token is not None and token != refused and self._clock() < self._token_refresh_at:
                return token
            return self._fetch_and_cache_token()

    def _fetch_and_cache_token(self) -> str:
        token, expires_in = self._fetch_token()
        self._token = token
        self._token_refresh_at = self._clock() + expires_in - _TOKEN_REFRESH_MARGIN_SECONDS
        return token

    def _fetch_token(self) -> tuple[str, float]:
        response = self._send(
            "GET",
            OAUTH_PATH,
            params={"grant_type": "client_credentials"},
            auth=self._basic_auth,
        )
        if response.status_code in (400, 401, 403):
            raise DarajaCredentialsRefused(
                f"M-Pesa refused our credentials (HTTP {response.status_code}); check "
                "MPESA_CONSUMER_KEY and MPESA_CONSUMER_SECRET",
                provider=ProviderName.MPESA,
                status_code=response.status_code,
            )
        if response.status_code != httpx.codes.OK:
            raise ProviderUnavailable(f"M-Pesa OAuth failed: HTTP {response.status_code}")
        answer = _json_object(response)
        token = answer.get("access_token")
        try:
            expires_in = float(str(answer.get("expires_in")))  # a string of seconds, or a number
        except ValueError:
            expires_in = math.nan
        if not isinstance(token, str) or not token or not math.isfinite(expires_in):
            raise ProviderUnavailable("M-Pesa OAuth answer without access_token/expires_in")
        return token, expires_in

    # -- HTTP -----------------------------------------------------------------------------------

    def _post(
        self, path: str, body: Mapping[str, object], *, write: bool = False
    ) -> httpx.Response:
        """POST with the cached token; a refused token is replaced and the POST sent once more
        (safe for writes too: Daraja refused the request, so nothing was done)."""
        token = self.access_token()
        response = self._authorized_post(path, body, token, write)
        if _token_refused(response):
            response = self._authorized_post(path, body, self._replace_token(token), write)
            if _token_refused(response):
                raise ProviderUnavailable("M-Pesa refused a freshly issued access token")
        return response

    def _authorized_post(
        self, path: str, body: Mapping[str, object], token: str, write: bool
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return self._send("POST", path, write=write, json=body, headers=headers)

    def _send(
        self, method: str, path: str, *, write: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """One request. Failures before it left are ``ProviderUnavailable``; after, for a write
        (``write=True``), ``ProviderOutcomeUnknown``, since Daraja may have acted on it."""
        if self._timeout is not None:
            kwargs["timeout"] = self._timeout
        try:
            return self._http.request(method, self._base_url + path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ProviderUnavailable(
                f"M-Pesa not reachable ({type(exc).__name__}: {exc})"
            ) from exc
        except httpx.HTTPError as exc:  # timeouts, dropped connections, protocol errors
            if write:
                raise ProviderOutcomeUnknown(
                    f"M-Pesa {path} sent, no answer ({type(exc).__name__}: {exc}); "
                    "it may have been carried out",
                    provider=ProviderName.MPESA,
                ) from exc
            raise ProviderUnavailable(
                f"M-Pesa not reachable ({type(exc).__name__}: {exc})"
            ) from exc


class DarajaError(Exception):
    """Daraja refused a request for a reason a retry will not fix (4xx other than 401/429)."""

    def __init__(self, status_code: int, error_code: str, error_message: str) -> None:
        super().__init__(f"M-Pesa answered HTTP {status_code} {error_code}: {error_message}")
        self.status_code = status_code
        self.error_code = error_code
        self.error_message = error_message


def _is_wrong_credentials(error_code: str, error_message: str) -> bool:
    """Daraja's "Wrong credentials" answer (overloaded ``500.001.1001``): a wrong Password."""
    return (
        error_code.strip() == STK_QUERY_PENDING_ERROR_CODE
        and error_message.strip() == WRONG_CREDENTIALS_MESSAGE
    )


def _stk_push_result(response: httpx.Response) -> StkPushResult:
    """Daraja's answer to an STK push, or the ``base`` error it means (see ``stk_push``)."""
    status = response.status_code
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        if httpx.codes.is_client_error(status) and status != httpx.codes.TOO_MANY_REQUESTS:
            raise ProviderDeclined(
                f"M-Pesa refused the STK push: HTTP {status}",
                provider=ProviderName.MPESA,
                status_code=status,
            )
        raise ProviderOutcomeUnknown(
            f"M-Pesa answered the STK push with HTTP {status} and an unreadable body; "
            "the push may have been sent",
            provider=ProviderName.MPESA,
            status_code=status,
        )
    if httpx.codes.is_success(status):
        response_code = str(answer.get("ResponseCode", "")).strip()
        checkout_request_id = answer.get("CheckoutRequestID")
        description = str(answer.get("ResponseDescription") or "")
        if response_code == "0" and isinstance(checkout_request_id, str) and checkout_request_id:
            return StkPushResult(
                merchant_request_id=str(answer.get("MerchantRequestID") or ""),
                checkout_request_id=checkout_request_id,
                response_code=response_code,
                response_description=description,
                customer_message=str(answer.get("CustomerMessage") or ""),
            )
        if response_code and response_code != "0":
            raise ProviderDeclined(
                f"M-Pesa refused the STK push: {description or response_code}",
                provider=ProviderName.MPESA,
                code=response_code,
                status_code=status,
            )
        raise ProviderOutcomeUnknown(
            "M-Pesa STK push answer without CheckoutRequestID; the push may have been sent",
            provider=ProviderName.MPESA,
            status_code=status,
        )
    error_code = str(answer.get("errorCode") or "").strip()
    error_message = str(answer.get("errorMessage") or "").strip()
    problem = f"HTTP {status} {error_code} {error_message}".strip()
    if status == httpx.codes.TOO_MANY_REQUESTS or error_code in THROTTLED_ERROR_CODES:
        raise ProviderUnavailable(
            f"M-Pesa throttled the STK push: {problem}",
            provider=ProviderName.MPESA,
            code=error_code or None,
            status_code=status,
        )
    if _is_wrong_credentials(error_code, error_message):
        raise DarajaCredentialsRefused(
            f"M-Pesa refused the STK push: {problem}; check MPESA_SHORTCODE and MPESA_PASSKEY",
            provider=ProviderName.MPESA,
            code=error_code,
            status_code=status,
        )
    if status >= httpx.codes.INTERNAL_SERVER_ERROR:
        raise ProviderOutcomeUnknown(
            f"M-Pesa STK push failed: {problem}; the push may have been sent",
            provider=ProviderName.MPESA,
            code=error_code or None,
            status_code=status,
        )
    raise ProviderDeclined(
        error_message or problem,
        provider=ProviderName.MPESA,
        code=error_code or None,
        status_code=status,
    )


def _is_transient(status_code: int) -> bool:
    return status_code == httpx.codes.TOO_MANY_REQUESTS or status_code >= 500


def _token_refused(response: httpx.Response) -> bool:
    if response.status_code == httpx.codes.UNAUTHORIZED:
        return True
    try:
        answer = response.json()
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("errorCode") == INVALID_TOKEN_ERROR_CODE


def _json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer as a JSON object; anything else is treated as a transient failure."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        if _is_transient(response.status_code) or response.status_code == httpx.codes.OK:
            raise ProviderUnavailable(
                f"M-Pesa answered HTTP {response.status_code} with an unreadable body"
            )
        raise DarajaError(response.status_code, "", "unreadable error body")
    return answer


# --- Facts from an STK callback -------------------------------------------------------------------


def callback_facts(raw: bytes, query: StkQueryResult | None) -> EventFacts:
    """What an STK callback says about its payment, checked against an STK Query.

    Callbacks are unsigned (section 4.6), so the rule is:

    * a success (``ResultCode`` 0) counts only when ``query`` confirms it (its status is
      SUCCEEDED); then ``captured_minor`` is the callback's amount;
    * a success while the query is pending, or without a query, is PROCESSING;
    * a success the query contradicts (cancelled, failed, ...) takes the query's status;
    * a failure callback is applied as it is, with or without a query; except that a definitive
      query (not pending) always wins, since it is the authenticated answer.

    ``amount_minor`` (KES, x100 from whole shillings), phone and receipt are what the callback
    says; processing must check them against the payment it started. ``complete`` is False: a
    callback only updates a payment Paydesk created. Raises ``MalformedEvent`` for a body that is
    not an STK callback.
    """
    callback = _stk_callback(raw)
    checkout_request_id = str(callback["CheckoutRequestID"])
    try:
        code = parse_result_code(callback["ResultCode"])
    except UnknownProviderState:
        raise MalformedEvent("stkCallback ResultCode is not a number") from None
    result_desc = str(callback.get("ResultDesc") or "")
    items = _metadata_items(callback)
    amount_minor = _kes_minor(items.get("Amount"))
    receipt = items.get("MpesaReceiptNumber")
    phone = items.get("PhoneNumber")

    status = map_result_code(code)
    if query is not None and not query.pending:
        status = query.status
    elif code == SUCCESS_RESULT_CODE:
        # Unconfirmed success: the customer answered, the money is not proven yet.
        status = query.status if query is not None else MappedStatus(PaymentStatus.PROCESSING, "0")
    succeeded = status.status is PaymentStatus.SUCCEEDED
    payment = PaymentFacts(
        reference=checkout_request_id,
        status=status,
        amount_minor=amount_minor,
        currency=CURRENCY,
        captured_minor=amount_minor if succeeded else None,
        complete=False,
        method=PaymentMethod.MOBILE_MONEY,
        customer_phone=str(phone) if phone is not None else None,
        details={"receipt": str(receipt)} if receipt else {},
    )
    summary = f"STK callback ResultCode {code}"
    if result_desc:
        summary += f": {result_desc}"
    return EventFacts(payment=payment, summary=summary)


def _stk_callback(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise MalformedEvent("STK callback body is not valid JSON") from None
    node: object = body
    for name in ("Body", "stkCallback"):
        node = node.get(name) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise MalformedEvent("body is not an STK callback (Body.stkCallback)")
    checkout_request_id = node.get("CheckoutRequestID")
    result_code = node.get("ResultCode")
    if not isinstance(checkout_request_id, str) or not checkout_request_id:
        raise MalformedEvent("stkCallback without CheckoutRequestID")
    if isinstance(result_code, bool) or not isinstance(result_code, int | str):
        raise MalformedEvent("stkCallback without ResultCode")
    return node


def _metadata_items(callback: dict[str, Any]) -> dict[str, Any]:
    """``CallbackMetadata.Item`` by ``Name`` (only on success; ``Balance`` may have no value)."""
    metadata = callback.get("CallbackMetadata")
    raw_items = metadata.get("Item") if isinstance(metadata, dict) else None
    if not isinstance(raw_items, list):
        return {}
    return {
        item["Name"]: item["Value"]
        for item in raw_items
        if isinstance(item, dict) and isinstance(item.get("Name"), str) and "Value" in item
    }


def _kes_minor(amount: object) -> int | None:
    """The callback's whole-shilling ``Amount`` (``1`` or ``1.00``) in KES minor units."""
    if amount is None:
        return None
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        raise MalformedEvent(f"stkCallback Amount is not a number: {amount!r}")
    try:
        return minor_from_decimal(Decimal(str(amount)), CURRENCY)
    except (ArithmeticError, ValueError):
        raise MalformedEvent(f"stkCallback Amount is not an amount: {amount!r}") from None


# --- Adapter (checkout and status; no refunds) ----------------------------------------------------

ACCOUNT_REFERENCE_MAX_LENGTH: Final = 12
TRANSACTION_DESC_MAX_LENGTH: Final = 13
_KES_MINOR_PER_SHILLING: Final = 100
_MSISDN: Final = re.compile(r"254[17]\d{8}")
_LOCAL_NUMBER: Final = re.compile(r"0?([17]\d{8})")
_PHONE_SEPARATORS: Final = re.compile(r"[\s().-]")
# Characters kept in AccountReference / TransactionDesc (shown in the customer's prompt).
_PROMPT_TEXT_DROP: Final = re.compile(r"[^A-Za-z0-9 ]")


def amount_to_mpesa(amount_minor: int, currency: str) -> int:
    """Whole KES for ``amount_minor`` KES cents: 15000 -> 150. The one minor -> wire conversion.

    ``ProviderDeclined`` before any call for another currency (``currency_not_supported``), a
    fraction of a shilling (``amount_not_whole_shillings``; M-Pesa takes whole numbers only) and
    an amount below one shilling (``invalid_amount``). Never rounds.
    """
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError(f"an amount in minor units is an int, got {type(amount_minor).__name__}")
    try:
        code = normalize_currency(currency)
    except UnknownCurrencyError:
        code = currency
    if code != CURRENCY:
        raise ProviderDeclined(
            f"M-Pesa takes KES only, not {currency!r}",
            provider=ProviderName.MPESA,
            code="currency_not_supported",
        )
    shillings, cents = divmod(amount_minor, _KES_MINOR_PER_SHILLING)
    if cents:
        raise ProviderDeclined(
            f"M-Pesa takes whole shillings only, not KES {amount_minor} minor units",
            provider=ProviderName.MPESA,
            code="amount_not_whole_shillings",
        )
    if shillings < 1:
        raise ProviderDeclined(
            f"amount must be at least KES 1, got {amount_minor} minor units",
            provider=ProviderName.MPESA,
            code="invalid_amount",
        )
    return shillings


def normalize_msisdn(phone: str) -> str:
    """A Kenyan mobile number as Daraja wants it: ``2547XXXXXXXX`` or ``2541XXXXXXXX``.

    Accepts ``+254 712 345 678``, ``254712345678``, ``0712345678``, ``712345678`` (and ``01...``);
    anything else is ``ProviderDeclined`` (``invalid_phone``).
    """
    digits = _PHONE_SEPARATORS.sub("", phone.strip()).removeprefix("+")
    local = _LOCAL_NUMBER.fullmatch(digits)
    msisdn = f"254{local.group(1)}" if local else digits
    if not _MSISDN.fullmatch(msisdn):
        raise ProviderDeclined(
            f"{phone!r} is not a Kenyan mobile number (2547XXXXXXXX or 2541XXXXXXXX)",
            provider=ProviderName.MPESA,
            code="invalid_phone",
        )
    return msisdn


def stk_query_facts(checkout_request_id: str, query: StkQueryResult) -> EventFacts:
    """What an STK Query answer says about its payment (the reconciliation read).

    Partial facts: the query carries neither amount nor receipt (section 4.5), so ``amount_minor``
    and ``captured_minor`` stay None and the payment must exist already.
    """
    details = {"result_desc": query.result_desc} if query.result_desc else {}
    if query.result_code is not None:
        details["result_code"] = query.result_code
    payment = PaymentFacts(
        reference=checkout_request_id,
        status=query.status,
        currency=CURRENCY,
        complete=False,
        method=PaymentMethod.MOBILE_MONEY,
        details=details,
    )
    what = "pending" if query.pending else f"ResultCode {query.result_code}"
    summary = f"STK Query {what}"
    if query.result_desc:
        summary += f": {query.result_desc}"
    return EventFacts(payment=payment, summary=summary)


class MpesaAdapter:
    """M-Pesa Express behind the checkout and status protocols, on a ``DarajaClient``.

    ``create_checkout`` sends one STK push (never repeated, see ``DarajaClient.stk_push``);
    ``fetch_payment`` reads an STK Query (retried, ``attempts`` tries in all); ``refund`` raises
    ``OperationNotSupported``. The OAuth token is the client's, cached until 60 s before it
    expires. Errors are ``base`` types; refused credentials are a plain ``ProviderAuthError``.
    """

    def __init__(
        self,
        client: DarajaClient,
        *,
        attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._attempts = max(1, attempts)
        self._sleep = sleep

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> MpesaAdapter:
        """The adapter for ``settings``; ``ProviderNotConfigured`` without consumer key,
        consumer secret, shortcode or passkey."""
        credentials = {
            "MPESA_CONSUMER_KEY": settings.mpesa_consumer_key.get_secret_value(),
            "MPESA_CONSUMER_SECRET": settings.mpesa_consumer_secret.get_secret_value(),
            "MPESA_SHORTCODE": settings.mpesa_shortcode,
            "MPESA_PASSKEY": settings.mpesa_passkey.get_secret_value(),
        }
        missing = [name for name, value in credentials.items() if not value]
        if missing:
            raise ProviderNotConfigured(
                f"M-Pesa is not configured: set {', '.join(missing)}",
                provider=ProviderName.MPESA,
            )
        client = DarajaClient(
            settings.mpesa_api_base,
            credentials["MPESA_CONSUMER_KEY"],
            credentials["MPESA_CONSUMER_SECRET"],
            settings.mpesa_shortcode,
            credentials["MPESA_PASSKEY"],
            http=http,
            clock=clock,
            timeout=settings.provider_timeout_seconds,
        )
        return cls(client, attempts=settings.provider_max_retries + 1, sleep=sleep)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create_checkout(self, request: CheckoutRequest) -> CheckoutResult:
        """Prompt the customer's phone to pay (STK push); the outcome arrives later.

        Needs KES in whole shillings, ``customer_phone`` and ``callback_url`` (the service's
        per-payment URL with its secret token); otherwise ``ProviderDeclined`` before any call.
        ``AccountReference`` is the host reference (else our payment id) cut to 12 letters and
        digits, ``TransactionDesc`` the description cut to 13. ``provider_reference`` is the
        ``CheckoutRequestID``; status PENDING.

        The push is sent once. ``ProviderOutcomeUnknown`` means it may have reached the customer:
        do not push again (a second push could charge twice); read the outcome with
        ``fetch_payment`` once the ``CheckoutRequestID`` is known, or wait for the callback,
        or give up on this attempt. Only the access token is fetched with retries (a read).
        """
        amount = amount_to_mpesa(request.amount_minor, request.currency)
        if not request.customer_phone:
            raise ProviderDeclined(
                "M-Pesa needs the customer's phone number",
                provider=ProviderName.MPESA,
                code="phone_required",
            )
        phone = normalize_msisdn(request.customer_phone)
        if not request.callback_url:
            raise ProviderDeclined(
                "M-Pesa needs a per-payment callback URL",
                provider=ProviderName.MPESA,
                code="callback_url_required",
            )
        reference = _prompt_text(request.host_reference or request.payment_id)
        description = _prompt_text(request.description or "") or "Payment"
        self._call(self._client.access_token, retry=True)
        push = self._call(
            lambda: self._client.stk_push(
                amount=amount,
                phone_number=phone,
                callback_url=request.callback_url or "",
                account_reference=reference[:ACCOUNT_REFERENCE_MAX_LENGTH].strip() or "Paydesk",
                description=description[:TRANSACTION_DESC_MAX_LENGTH].strip() or "Payment",
            ),
            retry=False,
        )
        return CheckoutResult(
            provider_reference=push.checkout_request_id,
            status=MappedStatus(PaymentStatus.PENDING, f"ResponseCode {push.response_code}"),
            details={
                "merchant_request_id": push.merchant_request_id,
                "customer_message": push.customer_message,
            },
        )

    def fetch_payment(self, provider_reference: str) -> EventFacts:
        """The push's outcome now, by STK Query (pending while the customer has not answered).

        Mapped by ``map_result_code`` like the callback path. An unknown ``CheckoutRequestID``
        raises ``ProviderEntityNotFound``; another refusal ``ProviderDeclined``.
        """
        query = self._call(lambda: self._client.stk_query(provider_reference), retry=True)
        return stk_query_facts(provider_reference, query)

    def refund(self, request: RefundRequest) -> RefundResult:
        """M-Pesa reversals are not supported: always ``OperationNotSupported``."""
        raise OperationNotSupported(
            "M-Pesa refunds (reversals) are not supported; refund the customer another way",
            provider=ProviderName.MPESA,
            code="refund_not_supported",
        )

    def _call(self, call: Callable[[], _T], *, retry: bool) -> _T:
        """``call`` with client errors as ``base`` errors, retried when ``retry`` (reads)."""

        def translated() -> _T:
            try:
                return call()
            except DarajaCredentialsRefused as exc:
                # A plain ProviderAuthError: not retried, not mistaken for a passing outage.
                raise ProviderAuthError(
                    exc.message,
                    provider=ProviderName.MPESA,
                    code=exc.code,
                    status_code=exc.status_code,
                ) from exc
            except DarajaError as exc:
                raise ProviderDeclined(
                    exc.error_message or str(exc),
                    provider=ProviderName.MPESA,
                    code=exc.error_code or None,
                    status_code=exc.status_code,
                ) from exc

        if not retry:
            return translated()
        return with_retries(translated, attempts=self._attempts, sleep=self._sleep)


_T = TypeVar("_T")


def _prompt_text(text: str) -> str:
    """Text for the customer's prompt: letters, digits and spaces only, single-spaced."""
    return " ".join(_PROMPT_TEXT_DROP.sub("", text).split())
