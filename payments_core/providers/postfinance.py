"""PostFinance Checkout (wallee): state mapping, webhooks, reading and outbound operations.

Four parts: status mapping, webhook verification, ``PostFinanceReader``, which reads the
authoritative transaction/refund through the SDK (webhooks are only hints) and states it as
``EventFacts``, and ``PostFinanceAdapter`` (checkout, refund, fetch_payment). The state sets are
the SDK's own enums, ``postfinancecheckout.models.TransactionState`` and ``RefundState``; the
``match`` statements over them are exhaustive, so an SDK upgrade that adds a state is a mypy error
here. Raw strings (e.g. the ``state`` field of a signed webhook) go through the enum constructor,
and an unknown one raises ``UnknownProviderState``. Amounts are major units on the wire (floats
in the SDK): they become int minor units in exactly one place, ``_minor_units``, and int minor
units become wire amounts in exactly one place, ``_wire_amount``. Transaction create has no
idempotency key, so the adapter looks a transaction up by merchantReference (our payment id)
before every create; refunds are deduplicated by PostFinance on externalId. SDK services are
imported lazily (slow).

Source: ../shared/reference/providers.md sections 2.3 (SDK services and errors), 2.4 (transaction
create), 2.5 (payment page), 2.6 (transaction states), 2.7 (refunds), 2.8 (webhooks) and 5
(suggested mapping).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, TypeVar, assert_never

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

# Imported from the defining modules: under mypy --strict (no implicit re-export) the names
# re-exported by `postfinancecheckout.models` are "not explicitly exported" (attr-defined). Same
# classes as `postfinancecheckout.models.TransactionState` / `.RefundState`.
from postfinancecheckout.models.line_item_type import LineItemType
from postfinancecheckout.models.refund_state import RefundState
from postfinancecheckout.models.refund_type import RefundType
from postfinancecheckout.models.transaction_state import TransactionState

from payments_core.money import (
    InvalidAmountError,
    minor_from_decimal,
    normalize_currency,
    to_major_decimal,
)
from payments_core.providers.base import (
    IGNORED_EVENT,
    CheckoutRequest,
    CheckoutResult,
    EventFacts,
    LineItem,
    LineItemKind,
    PaymentFacts,
    PaymentMethod,
    ProviderAuthError,
    ProviderDeclined,
    ProviderEntityNotFound,
    ProviderError,
    ProviderName,
    ProviderNotConfigured,
    ProviderOutcomeUnknown,
    ProviderUnavailable,
    RefundFacts,
    RefundRequest,
    RefundResult,
    RejectionReason,
    UnknownProviderState,
    Verification,
    VerifiedWebhook,
    WebhookRejected,
    with_retries,
)
from payments_core.providers.base import (
    id_text as _id_str,
)
from payments_core.providers.base import (
    load_json_object as _load_json_object,
)
from payments_core.providers.base import (
    malformed_delivery as _malformed,
)
from payments_core.status import MappedStatus, PaymentStatus, RefundStatus

if TYPE_CHECKING:
    from postfinancecheckout.configuration import Configuration
    from postfinancecheckout.exceptions import ApiException
    from postfinancecheckout.models.environment import Environment
    from postfinancecheckout.models.failure_reason import FailureReason
    from postfinancecheckout.models.refund import Refund
    from postfinancecheckout.models.refund_create import RefundCreate
    from postfinancecheckout.models.transaction import Transaction
    from postfinancecheckout.models.transaction_create import TransactionCreate

    from payments_core.config import Settings

_T = TypeVar("_T")
_E = TypeVar("_E", bound=ProviderError)
_Service = TypeVar("_Service")
_Entity = TypeVar("_Entity")

# --- Transaction (section 2.6) ------------------------------------------------------------------


def parse_transaction_state(value: TransactionState | str) -> TransactionState:
    try:
        return TransactionState(value)
    except ValueError:
        raise UnknownProviderState(ProviderName.POSTFINANCE, "transaction state", value) from None


def map_transaction_state(
    state: TransactionState | str, *, failure_reason: str | None = None
) -> MappedStatus:
    """Map a transaction state; pass the transaction's ``failureReason`` name/description if any.

    ``failure_reason`` is only kept for ``FAILED``. ``DECLINE`` is the negative delivery decision
    after a capture (``COMPLETED``): money was taken but the order must not be fulfilled.
    """
    parsed = parse_transaction_state(state)
    provider_state = parsed.value
    match parsed:
        case TransactionState.CREATE | TransactionState.PENDING | TransactionState.CONFIRMED:
            return MappedStatus(PaymentStatus.PENDING, provider_state)
        case TransactionState.PROCESSING:
            return MappedStatus(PaymentStatus.PROCESSING, provider_state)
        case TransactionState.AUTHORIZED:
            return MappedStatus(PaymentStatus.AUTHORIZED, provider_state)
        case TransactionState.COMPLETED | TransactionState.FULFILL:
            return MappedStatus(PaymentStatus.SUCCEEDED, provider_state)
        case TransactionState.FAILED:
            return MappedStatus(PaymentStatus.FAILED, provider_state, failure_reason=failure_reason)
        case TransactionState.VOIDED:
            return MappedStatus(PaymentStatus.CANCELED, provider_state)
        case TransactionState.DECLINE:
            return MappedStatus(PaymentStatus.DECLINED, provider_state)
        case _ as unreachable:
            assert_never(unreachable)


# --- Refund (section 2.7) -----------------------------------------------------------------------


def parse_refund_state(value: RefundState | str) -> RefundState:
    try:
        return RefundState(value)
    except ValueError:
        raise UnknownProviderState(ProviderName.POSTFINANCE, "refund state", value) from None


def map_refund_state(state: RefundState | str) -> RefundStatus:
    """Map a refund state; ``MANUAL_CHECK`` waits for someone at PostFinance/the merchant."""
    parsed = parse_refund_state(state)
    match parsed:
        case RefundState.CREATE | RefundState.SCHEDULED | RefundState.PENDING:
            return RefundStatus.PROCESSING
        case RefundState.MANUAL_CHECK:
            return RefundStatus.NEEDS_ATTENTION
        case RefundState.SUCCESSFUL:
            return RefundStatus.SUCCEEDED
        case RefundState.FAILED:
            return RefundStatus.FAILED
        case _ as unreachable:
            assert_never(unreachable)


# --- Webhook verification -----------------------------------------------------------------------
# Section 2.8: payload, X-Signature header, key service, signed vs unsigned listeners.

SIGNATURE_HEADER: Final = "X-Signature"
SIGNATURE_ALGORITHM: Final = "SHA256withECDSA"
# Exactly the SDK's pattern (WebhookEncryptionKeysService.is_content_valid); used with fullmatch,
# so unlike the SDK's re.match a trailing newline does not slip through ``$``.
SIGNATURE_HEADER_PATTERN: Final = re.compile(
    r"^algorithm=([a-zA-Z0-9]+),\skeyId=([a-z0-9\-]+),\s{1}signature=([a-zA-Z0-9+\/=]+)$"
)
_MAX_KEY_ID_LENGTH: Final = 64  # key ids are UUIDs (36); longer ones are not fetched at all


class UnknownSigningKey(LookupError):
    """Raised by a key fetcher when PostFinance does not know the key id."""


class PublicKeyCache:
    """Webhook signing keys by key id, fetched once per id and kept (keys never change per id).

    ``fetch(key_id)`` returns the base64 DER (SubjectPublicKeyInfo) public key. It signals an
    unknown key id by raising ``LookupError`` (e.g. ``UnknownSigningKey``): the delivery is
    rejected as BAD_SIGNATURE, "unknown signing key". Any other exception is a failure to reach
    PostFinance (network, 5xx, wrong API credentials): rejected with status 503 so that PostFinance
    redelivers later. Failed fetches are not cached. Thread-safe: concurrent requests for one key
    id fetch it once; different key ids are fetched in parallel.
    """

    def __init__(self, fetch: Callable[[str], str]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._fetching: dict[str, threading.Lock] = {}

    def get(self, key_id: str) -> ec.EllipticCurvePublicKey:
        with self._lock:
            key = self._keys.get(key_id)
            if key is not None:
                return key
            fetch_lock = self._fetching.setdefault(key_id, threading.Lock())
        try:
            with fetch_lock:
                with self._lock:
                    key = self._keys.get(key_id)
                if key is not None:  # fetched by the thread we waited for
                    return key
                key = self._load(key_id)
                with self._lock:
                    self._keys[key_id] = key
                return key
        finally:
            with self._lock:
                if self._fetching.get(key_id) is fetch_lock:
                    del self._fetching[key_id]

    def _load(self, key_id: str) -> ec.EllipticCurvePublicKey:
        try:
            encoded = self._fetch(key_id)
        except LookupError:
            raise WebhookRejected(RejectionReason.BAD_SIGNATURE, "unknown signing key") from None
        except Exception:
            raise WebhookRejected(
                RejectionReason.NOT_CONFIGURED,
                "signing key could not be fetched from PostFinance",
                status_code=503,
            ) from None
        try:
            key = serialization.load_der_public_key(base64.b64decode(encoded, validate=True))
        except (ValueError, TypeError):  # binascii.Error is a ValueError
            key = None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise WebhookRejected(RejectionReason.BAD_SIGNATURE, "unusable signing key")
        return key


def sdk_key_fetcher(configuration: Configuration) -> Callable[[str], str]:
    """A ``PublicKeyCache`` fetcher reading ``GET /webhooks/encryption-keys/{id}`` via the SDK.

    404/400 and an empty answer mean an unknown key id (``UnknownSigningKey``); other SDK errors
    propagate as they are (a transient failure for the cache).
    """
    # Imported here: importing the SDK's services is slow.
    from postfinancecheckout.exceptions import BadRequestException, NotFoundException
    from postfinancecheckout.service.webhook_encryption_keys_service import (
        WebhookEncryptionKeysService,
    )

    service = WebhookEncryptionKeysService(configuration)  # type: ignore[no-untyped-call]

    def fetch(key_id: str) -> str:
        try:
            encoded = service.get_webhooks_encryption_keys_id(key_id)
        except (NotFoundException, BadRequestException):
            raise UnknownSigningKey(key_id) from None
        if not encoded:
            raise UnknownSigningKey(key_id)
        return str(encoded)

    return fetch


def verify_webhook(
    raw: bytes, signature_header: str | None, *, keys: PublicKeyCache, allow_unsigned: bool
) -> VerifiedWebhook:
    """Verify a PostFinance delivery (ECDSA P-256/SHA-256 over the raw bytes) and extract ids.

    Without a signature header the delivery is rejected (UNSIGNED) unless ``allow_unsigned``:
    then it is a HINT, and its ``state`` must not be trusted (read the entity from the API).
    """
    if signature_header is None or not signature_header.strip():
        if not allow_unsigned:
            raise WebhookRejected(RejectionReason.UNSIGNED, "unsigned delivery not accepted")
        return _parse_notification(raw, Verification.HINT)
    match = SIGNATURE_HEADER_PATTERN.fullmatch(signature_header)
    if match is None:
        raise WebhookRejected(RejectionReason.BAD_SIGNATURE, "malformed X-Signature header")
    algorithm, key_id, signature_b64 = match.groups()
    if algorithm != SIGNATURE_ALGORITHM:
        raise WebhookRejected(RejectionReason.BAD_SIGNATURE, "unsupported signature algorithm")
    if len(key_id) > _MAX_KEY_ID_LENGTH:
        raise WebhookRejected(RejectionReason.BAD_SIGNATURE, "unknown signing key")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except binascii.Error:
        raise WebhookRejected(
            RejectionReason.BAD_SIGNATURE, "signature is not valid base64"
        ) from None
    public_key = keys.get(key_id)
    try:
        public_key.verify(signature, raw, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise WebhookRejected(RejectionReason.BAD_SIGNATURE, "signature does not match") from None
    return _parse_notification(raw, Verification.SIGNED)


def _parse_notification(raw: bytes, verification: Verification) -> VerifiedWebhook:
    body = _load_json_object(raw)
    event_id = _id_str(body.get("eventId"))
    entity_id = _id_str(body.get("entityId"))
    entity_name = body.get("listenerEntityTechnicalName")
    if event_id is None or entity_id is None or not isinstance(entity_name, str) or not entity_name:
        raise _malformed("notification without eventId, entityId or listenerEntityTechnicalName")
    if verification is Verification.SIGNED and not isinstance(body.get("state"), str):
        # Signed listeners always send the entity's state (vendor plugin rule, section 2.8).
        raise _malformed("signed notification without state")
    return VerifiedWebhook(
        provider=ProviderName.POSTFINANCE,
        event_id=event_id,
        event_type=entity_name,
        verification=verification,
        livemode=None,
        # For other entities (Refund, TransactionCompletion, ...) entityId is not a transaction.
        reference=entity_id if entity_name == "Transaction" else None,
    )


# --- Reading the authoritative state (section 2.3) -----------------------------------------------
# Webhooks only say "entity X changed"; processing reads the entity and acts on what it says.

# Transaction states in which ``completedAmount`` is the money actually taken.
_CAPTURED_STATES: Final = frozenset(
    {TransactionState.COMPLETED, TransactionState.FULFILL, TransactionState.DECLINE}
)
# Refund ``externalId``s that are our refund ids (others were created outside Paydesk).
OUR_REFUND_ID_PREFIX: Final = "rf_"
_PREFERRED_LANGUAGE: Final = "en-US"


class PostFinanceReader:
    """Reads transactions and refunds of one space through the SDK and states them as facts.

    ``configuration`` is the SDK's ``Configuration`` (host, user id, authentication key). Failures
    are translated: network errors, timeouts, unreadable answers, HTTP 429 and 5xx raise
    ``ProviderUnavailable`` (retry later); 401/403 raise ``ProviderUnavailable`` naming wrong
    credentials (retry once they are fixed); 404 raises ``ProviderEntityNotFound``. Other SDK
    errors (400, 409, 422, a state this SDK does not know: pydantic ``ValidationError``), missing
    fields (``ValueError``) and amounts that are not whole minor units (``InvalidAmountError``)
    propagate: they need a person, not a retry.
    """

    def __init__(self, configuration: Configuration, space_id: int) -> None:
        self._configuration = configuration
        self._space_id = space_id
        self._services: dict[object, object] = {}

    # -- public -----------------------------------------------------------------------------------

    def facts(self, entity_name: str, entity_id: str) -> EventFacts:
        """The facts behind a webhook about ``entity_name`` (``listenerEntityTechnicalName``).

        ``Transaction`` and ``Refund`` are read directly. A ``TransactionCompletion``,
        ``TransactionVoid`` or ``TransactionInvoice`` is read for its ``linkedTransaction``,
        whose facts are returned. Any other entity (tokens, manual tasks, ...) is
        ``IGNORED_EVENT``.
        """
        if entity_name == "Transaction":
            return self.transaction_facts(entity_id)
        if entity_name == "Refund":
            return self.refund_facts(entity_id)
        linked = self._linked_transaction_id(entity_name, entity_id)
        if linked is None:
            return IGNORED_EVENT
        return self.transaction_facts(linked)

    def transaction_facts(self, transaction_id: str) -> EventFacts:
        """Read ``GET /payment/transactions/{id}``: complete facts about the payment."""
        from postfinancecheckout.service.transactions_service import TransactionsService

        service = self._service(TransactionsService)
        tx = self._read(service.get_payment_transactions_id, "transaction", transaction_id)
        return transaction_event_facts(tx)

    def refund_facts(self, refund_id: str) -> EventFacts:
        """Read ``GET /payment/refunds/{id}``: the refund, and which transaction it belongs to."""
        from postfinancecheckout.service.refunds_service import RefundsService

        service = self._service(RefundsService)
        refund = self._read(service.get_payment_refunds_id, "refund", refund_id)
        tx = _required(refund.transaction, "refund", "transaction")
        currency = normalize_currency(_required(tx.currency, "refund's transaction", "currency"))
        state = parse_refund_state(_required(refund.state, "refund", "state"))
        facts = RefundFacts(
            provider_refund_id=str(_required(refund.id, "refund", "id")),
            amount_minor=_required(_minor_units(refund.amount, currency), "refund", "amount"),
            currency=currency,
            status=map_refund_state(state),
            refund_id=_our_refund_id(refund.merchant_reference, refund.external_id),
            failure_reason=_reason_text(refund.failure_reason),
        )
        payment = PaymentFacts(reference=str(_required(tx.id, "refund's transaction", "id")))
        return EventFacts(payment=payment, refunds=(facts,), summary=f"Refund {state.value}")

    # -- SDK calls --------------------------------------------------------------------------------

    def _linked_transaction_id(self, entity_name: str, entity_id: str) -> str | None:
        # SDK services are imported only for the entity at hand (each import is slow).
        linked: int | None
        if entity_name == "TransactionCompletion":
            from postfinancecheckout.service.transaction_completions_service import (
                TransactionCompletionsService,
            )

            completions = self._service(TransactionCompletionsService)
            read_completion = completions.get_payment_transactions_completions_id
            linked = self._read(read_completion, "completion", entity_id).linked_transaction
        elif entity_name == "TransactionVoid":
            from postfinancecheckout.service.transaction_voids_service import (
                TransactionVoidsService,
            )

            voids = self._service(TransactionVoidsService)
            read_void = voids.get_payment_transactions_voids_id
            linked = self._read(read_void, "void", entity_id).linked_transaction
        elif entity_name == "TransactionInvoice":
            from postfinancecheckout.service.transaction_invoices_service import (
                TransactionInvoicesService,
            )

            invoices = self._service(TransactionInvoicesService)
            read_invoice = invoices.get_payment_transactions_invoices_id
            linked = self._read(read_invoice, "invoice", entity_id).linked_transaction
        else:
            return None
        return None if linked is None else str(linked)

    def _service(self, service_class: Callable[[Configuration], _Service]) -> _Service:
        service = self._services.get(service_class)
        if service is None:
            service = self._services[service_class] = service_class(self._configuration)
        return service  # type: ignore[return-value]  # keyed by its own class

    def _read(self, read: Callable[[int, int], _Entity], what: str, entity_id: str) -> _Entity:
        import urllib3
        from postfinancecheckout.exceptions import ApiException

        where = f"PostFinance {what} {entity_id} (space {self._space_id})"
        try:
            numeric_id = int(entity_id)
        except ValueError:
            raise ProviderEntityNotFound(f"{where}: not a PostFinance id") from None
        try:
            return read(numeric_id, self._space_id)
        except ApiException as exc:
            raise _translate_api_error(exc, where) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # timeouts, refused, reset
            raise ProviderUnavailable(f"{where}: PostFinance not reachable ({exc})") from exc
        except json.JSONDecodeError as exc:
            raise ProviderUnavailable(f"{where}: unreadable answer from PostFinance") from exc


def transaction_event_facts(tx: Transaction) -> EventFacts:
    """What a ``Transaction`` (as read from the API) says: complete facts about the payment."""
    state = parse_transaction_state(_required(tx.state, "transaction", "state"))
    currency = normalize_currency(_required(tx.currency, "transaction", "currency"))
    captured_minor = None
    if state in _CAPTURED_STATES:
        captured = tx.completed_amount or tx.authorization_amount
        captured_minor = _minor_units(captured, currency)
    meta = tx.meta_data or {}
    payment_id = meta.get("paydesk_payment_id") or None
    # Paydesk's own transactions carry our payment id as merchantReference and the host's
    # reference in metaData; others use merchantReference for the host's order reference.
    host_reference = meta.get("host_reference") or (
        tx.merchant_reference if tx.merchant_reference != payment_id else None
    )
    payment = PaymentFacts(
        reference=str(_required(tx.id, "transaction", "id")),
        status=map_transaction_state(state, failure_reason=_reason_text(tx.failure_reason)),
        amount_minor=_minor_units(tx.authorization_amount, currency),
        currency=currency,
        captured_minor=captured_minor,
        payment_id=payment_id,
        complete=True,
        method=_payment_method(tx),
        host_reference=host_reference or None,
        customer_email=tx.customer_email_address or None,
        livemode=_livemode(tx.environment),
        created_at=tx.created_on,
    )
    return EventFacts(payment=payment, summary=f"Transaction {state.value}")


def _our_refund_id(*candidates: str | None) -> str | None:
    """Our refund id: the refund's merchantReference (adapter) or externalId (older refunds)."""
    for candidate in candidates:
        if candidate and candidate.startswith(OUR_REFUND_ID_PREFIX):
            return candidate
    return None


def _translate_api_error(exc: ApiException, where: str) -> Exception:
    status = int(exc.status or 0)
    if status == 404:
        return ProviderEntityNotFound(f"{where}: not found (HTTP 404)")
    if status in (401, 403):
        return ProviderUnavailable(
            f"{where}: HTTP {status}, PostFinance refused our credentials; check "
            "POSTFINANCE_USER_ID, POSTFINANCE_AUTHENTICATION_KEY and the user's role in the space"
        )
    if status == 0 or status == 429 or status >= 500:  # 0: the SDK's own TLS/request errors
        return ProviderUnavailable(f"{where}: HTTP {status} {exc.reason or ''}".rstrip())
    return exc  # 400, 409, 422: the request itself is wrong, a retry will not help


def _required(value: _T | None, entity: str, field_name: str) -> _T:
    if value is None:
        raise ValueError(f"PostFinance {entity} has no {field_name}")
    return value


def _minor_units(value: float | None, currency: str) -> int | None:
    """The one place PostFinance's float major units become int minor units (exact, or raise)."""
    if value is None:
        return None
    return minor_from_decimal(Decimal(str(value)), currency)


def _reason_text(reason: FailureReason | None) -> str | None:
    """A ``FailureReason``'s description (else its name), in English when available."""
    if reason is None:
        return None
    for texts in (reason.description, reason.name):
        if texts:
            text = texts.get(_PREFERRED_LANGUAGE) or next(iter(texts.values()), "")
            if text:
                return text
    return None


def _livemode(environment: Environment | None) -> bool | None:
    if environment is None:
        return None
    return environment.value == "LIVE"


def _payment_method(tx: Transaction) -> str:
    # Card unless the connector configuration says TWINT; other methods show as card until
    # someone needs them told apart.
    connector = tx.payment_connector_configuration
    name = (connector.name or "") if connector is not None else ""
    return PaymentMethod.TWINT if "twint" in name.lower() else PaymentMethod.CARD


# --- Outbound operations (sections 2.3, 2.4, 2.5, 2.7) -------------------------------------------
# Transaction create has no idempotency key, so every create attempt first looks the transaction
# up by merchantReference (our payment id): repeating a checkout, here after an unknown outcome or
# later by the service, finds the first transaction instead of making a second one. A refund's
# externalId is its idempotency key: PostFinance answers a repeat with the original refund.


class PostFinanceAdapter:
    """Checkout (transaction + payment page), refunds and status reads for one space.

    Only the SDK's services are used. Every failure is a ``base`` error: 400/404/409/422 ->
    ``ProviderDeclined`` (or ``ProviderEntityNotFound`` when a read names an unknown id), 401/403
    -> ``ProviderAuthError``, 429 and refused connections -> ``ProviderUnavailable``; 5xx,
    timeouts, lost connections and unreadable answers -> ``ProviderUnavailable`` for reads and
    ``ProviderOutcomeUnknown`` for writes. Reads, refunds (externalId) and the find-or-create of
    a transaction are retried with ``with_retries``; nothing else is.
    """

    def __init__(
        self,
        configuration: Configuration,
        space_id: int,
        *,
        max_retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # Imported here: importing the SDK's services is slow.
        from postfinancecheckout.service.refunds_service import RefundsService
        from postfinancecheckout.service.transactions_service import TransactionsService

        self._space_id = space_id
        self._attempts = max_retries + 1
        self._sleep = sleep
        self._transactions = TransactionsService(configuration)  # type: ignore[no-untyped-call]
        self._refunds = RefundsService(configuration)  # type: ignore[no-untyped-call]

    @classmethod
    def from_settings(cls, settings: Settings) -> PostFinanceAdapter:
        """The adapter for the configured space; ``ProviderNotConfigured`` without credentials."""
        from postfinancecheckout.configuration import Configuration

        key = settings.postfinance_authentication_key.get_secret_value()
        required = (
            ("POSTFINANCE_USER_ID", settings.postfinance_user_id),
            ("POSTFINANCE_AUTHENTICATION_KEY", key),
            ("POSTFINANCE_SPACE_ID", settings.postfinance_space_id),
        )
        missing = [name for name, value in required if not value]
        if missing:
            raise ProviderNotConfigured(
                f"PostFinance is not configured: set {', '.join(missing)}",
                provider=ProviderName.POSTFINANCE,
            )
        try:
            base64.b64decode(key, validate=True)  # the SDK decodes it for every request
        except binascii.Error:
            raise ProviderNotConfigured(
                "POSTFINANCE_AUTHENTICATION_KEY is not base64 text",
                provider=ProviderName.POSTFINANCE,
            ) from None
        configuration = Configuration(
            host=settings.postfinance_api_base.rstrip("/"),
            user_id=settings.postfinance_user_id,
            authentication_key=key,
            request_timeout=settings.provider_timeout_seconds,
        )
        return cls(
            configuration, settings.postfinance_space_id, max_retries=settings.provider_max_retries
        )

    # -- public -----------------------------------------------------------------------------------

    def create_checkout(self, request: CheckoutRequest) -> CheckoutResult:
        """Create (or find) the payment's transaction and read its payment page URL."""
        where = f"PostFinance checkout of {request.payment_id}"
        payload = _transaction_create(request, where)
        tx = self._find_or_create_transaction(request, payload, where)
        tx_id = _required(tx.id, "transaction", "id")  # checked by _usable_transaction
        try:
            url = self._retrying(
                lambda: self._call(
                    lambda: self._transactions.get_payment_transactions_id_payment_page_url(
                        tx_id, self._space_id
                    ),
                    where,
                    write=False,
                )
            )
        except ProviderUnavailable as exc:
            raise ProviderOutcomeUnknown(
                f"{where}: transaction {tx_id} exists but its payment page URL could not be read "
                f"({exc.message}); a repeated checkout finds the transaction",
                provider=ProviderName.POSTFINANCE,
                status_code=exc.status_code,
            ) from exc
        return CheckoutResult(
            provider_reference=str(tx_id),
            status=map_transaction_state(
                _required(tx.state, "transaction", "state"),
                failure_reason=_reason_text(tx.failure_reason),
            ),
            checkout_url=str(url),
            expires_at=tx.authorization_timeout_on,
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund through the processor; ``externalId`` = the refund's idempotency key."""
        where = (
            f"PostFinance refund {request.refund_id} of transaction {request.provider_reference}"
        )
        payload = _refund_create(request, where)
        outcome_unknown = False

        def attempt() -> Refund:
            nonlocal outcome_unknown
            try:
                return self._call(
                    lambda: self._refunds.post_payment_refunds(self._space_id, payload),
                    where,
                    write=True,
                )
            except ProviderOutcomeUnknown:
                outcome_unknown = True
                raise

        try:
            refund = self._retrying(attempt)
        except ProviderDeclined:
            # An earlier attempt may have been carried out and the repeat refused (e.g. nothing
            # left to refund): the refund with our externalId is then the answer.
            found = self._find_refund(request.idempotency_key, where) if outcome_unknown else None
            if found is None:
                raise
            refund = found
        return _refund_result(refund, request, where)

    def fetch_payment(self, provider_reference: str) -> EventFacts:
        """Read the transaction as PostFinance sees it now (refunds are not listed)."""
        where = f"PostFinance transaction {provider_reference} (space {self._space_id})"
        try:
            tx_id = int(provider_reference)
        except ValueError:
            raise ProviderEntityNotFound(f"{where}: not a PostFinance id") from None
        tx = self._retrying(
            lambda: self._call(
                lambda: self._transactions.get_payment_transactions_id(tx_id, self._space_id),
                where,
                write=False,
                entity=True,
            )
        )
        return transaction_event_facts(tx)

    # -- transactions -----------------------------------------------------------------------------

    def _find_or_create_transaction(
        self, request: CheckoutRequest, payload: TransactionCreate, where: str
    ) -> Transaction:
        outcome_unknown = False

        def attempt() -> Transaction:
            nonlocal outcome_unknown
            existing = self._find_transaction(request, where)
            if existing is not None:
                return existing
            try:
                created = self._call(
                    lambda: self._transactions.post_payment_transactions(self._space_id, payload),
                    where,
                    write=True,
                )
                return _usable_transaction(created, where)
            except ProviderOutcomeUnknown:
                outcome_unknown = True
                raise

        try:
            return self._retrying(attempt)
        except ProviderUnavailable as exc:
            if outcome_unknown and not isinstance(exc, ProviderOutcomeUnknown):
                raise ProviderOutcomeUnknown(
                    f"{exc.message} (after a create whose outcome is unknown)",
                    provider=ProviderName.POSTFINANCE,
                    status_code=exc.status_code,
                ) from exc
            raise

    def _find_transaction(self, request: CheckoutRequest, where: str) -> Transaction | None:
        """The first transaction whose merchantReference is our payment id, if any."""
        query = f"merchantReference:{_query_value(request.payment_id)}"
        found = self._call(
            lambda: self._transactions.get_payment_transactions_search(
                self._space_id, limit=10, order="id:ASC", query=query
            ),
            where,
            write=False,
        )
        matches = [tx for tx in found.data or () if tx.merchant_reference == request.payment_id]
        if not matches:
            return None
        tx = _usable_transaction(matches[0], where)
        amount = _minor_units(tx.authorization_amount, tx.currency or request.currency)
        if tx.currency != normalize_currency(request.currency) or (
            amount is not None and amount != request.amount_minor
        ):
            raise ProviderDeclined(
                f"{where}: transaction {tx.id} already has merchantReference "
                f"{request.payment_id} with another amount or currency",
                provider=ProviderName.POSTFINANCE,
                code="merchant_reference_conflict",
            )
        return tx

    # -- refunds ----------------------------------------------------------------------------------

    def _find_refund(self, external_id: str, where: str) -> Refund | None:
        query = f"externalId:{_query_value(external_id)}"
        found = self._retrying(
            lambda: self._call(
                lambda: self._refunds.get_payment_refunds_search(
                    self._space_id, limit=10, order="id:ASC", query=query
                ),
                where,
                write=False,
            )
        )
        matches = [refund for refund in found.data or () if refund.external_id == external_id]
        return matches[0] if matches else None

    # -- SDK calls --------------------------------------------------------------------------------

    def _retrying(self, call: Callable[[], _T]) -> _T:
        return with_retries(call, attempts=self._attempts, sleep=self._sleep)

    def _call(
        self, call: Callable[[], _T | None], where: str, *, write: bool, entity: bool = False
    ) -> _T:
        """Run one SDK call; every failure becomes a ``base`` error (see the class docstring)."""
        import urllib3
        from postfinancecheckout.exceptions import ApiException, OpenApiException

        unknown = ProviderOutcomeUnknown if write else ProviderUnavailable
        try:
            result = call()
        except ApiException as exc:
            raise _adapter_error(exc, where, write=write, entity=entity) from exc
        except urllib3.exceptions.HTTPError as exc:
            if _never_sent(exc):  # refused, unresolvable, connect timeout: nothing happened
                message = f"{where}: PostFinance not reachable ({exc})"
                raise _error(ProviderUnavailable, message) from exc
            raise _error(unknown, f"{where}: no answer from PostFinance ({exc})") from exc
        except OSError as exc:
            raise _error(unknown, f"{where}: connection to PostFinance failed ({exc})") from exc
        except (OpenApiException, ValueError) as exc:  # JSON or pydantic errors on the answer
            raise _error(
                unknown, f"{where}: unreadable answer from PostFinance ({type(exc).__name__})"
            ) from exc
        if result is None:  # a create answered with another status than 201
            raise _error(unknown, f"{where}: empty answer from PostFinance")
        return result


def _wire_amount(minor: int, currency: str) -> int | float:
    """The one place int minor units become PostFinance's wire unit: major units as the SDK's
    number type. Whole amounts go as ``int`` (JPY 1500 -> ``1500``); others as the ``float``
    whose shortest form is the exact decimal (KWD 12345 -> ``12.345``), checked, never computed.
    """
    major = to_major_decimal(minor, currency)
    if major == major.to_integral_value():
        return int(major)
    wire = float(major)
    if Decimal(repr(wire)) != major:
        raise InvalidAmountError(f"{major} {currency} cannot be sent exactly as a JSON number")
    return wire


def _line_item_type(kind: LineItemKind) -> LineItemType:
    match kind:
        case LineItemKind.PRODUCT:
            return LineItemType.PRODUCT
        case LineItemKind.DISCOUNT:
            return LineItemType.DISCOUNT
        case LineItemKind.SHIPPING:
            return LineItemType.SHIPPING
        case LineItemKind.FEE:
            return LineItemType.FEE
        case _ as unreachable:
            assert_never(unreachable)


def _transaction_create(request: CheckoutRequest, where: str) -> TransactionCreate:
    """The ``TransactionCreate``; an invalid request is ``ProviderDeclined`` before sending."""
    from postfinancecheckout.models.line_item_create import LineItemCreate
    from postfinancecheckout.models.transaction_create import TransactionCreate

    try:
        currency = normalize_currency(request.currency)
        lines = request.line_items or (
            LineItem(
                name=request.description or f"Payment {request.payment_id}",
                quantity=1,
                unit_amount_minor=request.amount_minor,
            ),
        )
        total = sum(line.total_minor for line in lines)
        if request.amount_minor <= 0 or total != request.amount_minor:
            raise ValueError(f"line items sum to {total}, the amount is {request.amount_minor}")
        items = []
        for number, line in enumerate(lines, start=1):
            optional: dict[str, Any] = {"sku": line.sku} if line.sku else {}
            items.append(
                LineItemCreate(
                    name=line.name[:150],
                    quantity=line.quantity,
                    unique_id=f"line-{number}",
                    type=_line_item_type(line.kind),
                    # The line total; a discount line is negative, so the lines sum to the amount.
                    amount_including_tax=_wire_amount(line.total_minor, currency),
                    **optional,
                )
            )
        # Our keys last: the caller's metadata cannot overwrite them.
        meta = {**request.metadata, "paydesk_payment_id": request.payment_id}
        if request.host_reference:
            meta["host_reference"] = request.host_reference
        fields: dict[str, Any] = {
            "success_url": request.success_url,
            "failed_url": request.cancel_url,
            "customer_email_address": request.customer_email,
        }
        return TransactionCreate(
            line_items=items,
            currency=currency,
            merchant_reference=request.payment_id,
            meta_data=meta,
            **{name: value for name, value in fields.items() if value},
        )
    except ValueError as exc:  # MoneyError, pydantic ValidationError
        raise ProviderDeclined(
            f"{where}: refused before sending: {exc}",
            provider=ProviderName.POSTFINANCE,
            code="invalid_request",
        ) from exc


def _refund_create(request: RefundRequest, where: str) -> RefundCreate:
    from postfinancecheckout.models.refund_create import RefundCreate

    try:
        if request.amount_minor <= 0:
            raise ValueError(f"the amount must be positive, got {request.amount_minor}")
        return RefundCreate(
            external_id=request.idempotency_key,
            type=RefundType.MERCHANT_INITIATED_ONLINE,
            transaction=int(request.provider_reference),
            amount=_wire_amount(request.amount_minor, normalize_currency(request.currency)),
            merchant_reference=request.refund_id,
            meta_data={
                "paydesk_refund_id": request.refund_id,
                "paydesk_payment_id": request.payment_id,
            },
        )
    except ValueError as exc:  # not a transaction id, MoneyError, pydantic ValidationError
        raise ProviderDeclined(
            f"{where}: refused before sending: {exc}",
            provider=ProviderName.POSTFINANCE,
            code="invalid_request",
        ) from exc


def _refund_result(refund: Refund, request: RefundRequest, where: str) -> RefundResult:
    if refund.id is None or refund.state is None:
        raise _error(ProviderOutcomeUnknown, f"{where}: answer without refund id or state")
    tx_id = refund.transaction.id if refund.transaction is not None else None
    amount = _minor_units(refund.amount, request.currency)
    if str(tx_id) != request.provider_reference or amount != request.amount_minor:
        # PostFinance answered with the refund first made under this externalId.
        raise ProviderDeclined(
            f"{where}: externalId {request.idempotency_key} was used for refund {refund.id} "
            f"of transaction {tx_id} (amount {refund.amount})",
            provider=ProviderName.POSTFINANCE,
            code="external_id_conflict",
        )
    return RefundResult(
        provider_refund_id=str(refund.id),
        status=map_refund_state(refund.state),
        failure_reason=_reason_text(refund.failure_reason),
    )


def _usable_transaction(tx: Transaction, where: str) -> Transaction:
    if tx.id is None or tx.state is None:
        raise _error(ProviderOutcomeUnknown, f"{where}: answer without transaction id or state")
    return tx


def _query_value(value: str) -> str:
    """A quoted search-query value (``merchantReference:"..."``, as in the vendor SDK tests)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _never_sent(exc: Exception) -> bool:
    import urllib3

    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    return isinstance(exc, urllib3.exceptions.ConnectTimeoutError)  # incl. NewConnectionError


def _error(kind: type[_E], message: str, *, code: str | None = None, status: int = 0) -> _E:
    return kind(message, provider=ProviderName.POSTFINANCE, code=code, status_code=status or None)


def _adapter_error(exc: ApiException, where: str, *, write: bool, entity: bool) -> Exception:
    status = int(exc.status or 0)
    code, message = _error_body(exc)
    text = f"{where}: HTTP {status} {message or exc.reason or ''}".rstrip()
    if status in (401, 403):
        return _error(
            ProviderAuthError,
            f"{text}; check POSTFINANCE_USER_ID, POSTFINANCE_AUTHENTICATION_KEY and the "
            "user's role in the space",
            code=code,
            status=status,
        )
    if status == 429:  # refused before processing
        return _error(ProviderUnavailable, text, code=code, status=status)
    if status == 0 or status >= 500:  # 0: the SDK's own TLS or content-type errors
        kind = ProviderOutcomeUnknown if write else ProviderUnavailable
        return _error(kind, text, code=code, status=status)
    if status == 404 and entity:
        return ProviderEntityNotFound(f"{where}: not found (HTTP 404)")
    return _error(ProviderDeclined, text, code=code, status=status)


def _error_body(exc: ApiException) -> tuple[str | None, str | None]:
    """``code`` and ``message`` of a ``RestApiErrorResponse`` body, when it is one."""
    try:
        body = json.loads(exc.body) if exc.body else None
    except (TypeError, ValueError):
        return None, None
    if not isinstance(body, dict):
        return None, None
    code, message = body.get("code"), body.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )
