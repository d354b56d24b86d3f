"""M-Pesa Daraja (STK Push / M-Pesa Express): what an STK ``ResultCode`` means for a payment.

Mapping only, no API calls yet (the adapter is added to this module later). Result codes are open
ended, so instead of a ``Literal`` the known codes live in the ``RESULT_CODES`` table; every nonzero
code is a failure of this attempt, known or not. The code arrives as a JSON number in the callback
and as a string in the STK Query answer; both are normalised with ``int(str(x).strip())``.

Source: ../shared/reference/providers.md sections 4.3 (callback), 4.4 (result codes),
4.5 (STK Query, the ``500.001.1001`` pending answer) and 5 (suggested mapping).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from payments_core.providers.base import ProviderName, UnknownProviderState
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
