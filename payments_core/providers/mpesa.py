"""M-Pesa Daraja (STK Push / M-Pesa Express): what an STK ``ResultCode`` means for a payment.

Mapping only, no API calls yet (the adapter is added to this module later). Result codes are open
ended, so instead of a ``Literal`` the known codes live in the ``RESULT_CODES`` table; every nonzero
code is a failure of this attempt, known or not. The code arrives as a JSON number in the callback
and as a string in the STK Query answer; both are normalised with ``int(str(x).strip())``.

Source: ../shared/reference/providers.md sections 4.3 (callback), 4.4 (result codes),
4.5 (STK Query, the ``500.001.1001`` pending answer) and 5 (suggested mapping).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from payments_core.providers.base import (
    ProviderName,
    RejectionReason,
    UnknownProviderState,
    Verification,
    VerifiedWebhook,
    WebhookRejected,
)
from payments_core.status import MappedStatus, PaymentStatus

SUCCESS_RESULT_CODE: Final = 0

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


def _malformed(detail: str) -> WebhookRejected:
    return WebhookRejected(RejectionReason.MALFORMED, detail)
