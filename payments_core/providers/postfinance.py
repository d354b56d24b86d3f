"""PostFinance Checkout (wallee): what transaction and refund states mean for us.

Three parts: status mapping, webhook verification, and ``PostFinanceReader``, which reads the
authoritative transaction/refund through the SDK (webhooks are only hints) and states it as
``EventFacts``. The state sets are the SDK's own enums,
``postfinancecheckout.models.TransactionState`` and ``RefundState``; the ``match`` statements over
them are exhaustive, so an SDK upgrade that adds a state is a mypy error here. Raw strings (e.g.
the ``state`` field of a signed webhook) go through the enum constructor, and an unknown one
raises ``UnknownProviderState``. Amounts are floats in major units on the wire and become int
minor units in exactly one place, ``_minor_units``. SDK services are imported lazily (slow).

Source: ../shared/reference/providers.md sections 2.3 (SDK services and errors), 2.6 (transaction
states), 2.7 (refunds), 2.8 (webhooks) and 5 (suggested mapping).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Final, TypeVar, assert_never

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

# Imported from the defining modules: under mypy --strict (no implicit re-export) the names
# re-exported by `postfinancecheckout.models` are "not explicitly exported" (attr-defined). Same
# classes as `postfinancecheckout.models.TransactionState` / `.RefundState`.
from postfinancecheckout.models.refund_state import RefundState
from postfinancecheckout.models.transaction_state import TransactionState

from payments_core.money import minor_from_decimal, normalize_currency
from payments_core.providers.base import (
    IGNORED_EVENT,
    EventFacts,
    PaymentFacts,
    PaymentMethod,
    ProviderEntityNotFound,
    ProviderName,
    ProviderUnavailable,
    RefundFacts,
    RejectionReason,
    UnknownProviderState,
    Verification,
    VerifiedWebhook,
    WebhookRejected,
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
    from postfinancecheckout.models.transaction import Transaction

_T = TypeVar("_T")
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
        state = parse_transaction_state(_required(tx.state, "transaction", "state"))
        currency = normalize_currency(_required(tx.currency, "transaction", "currency"))
        captured_minor = None
        if state in _CAPTURED_STATES:
            captured = tx.completed_amount or tx.authorization_amount
            captured_minor = _minor_units(captured, currency)
        payment = PaymentFacts(
            reference=str(_required(tx.id, "transaction", "id")),
            status=map_transaction_state(state, failure_reason=_reason_text(tx.failure_reason)),
            amount_minor=_minor_units(tx.authorization_amount, currency),
            currency=currency,
            captured_minor=captured_minor,
            payment_id=(tx.meta_data or {}).get("paydesk_payment_id") or None,
            complete=True,
            method=_payment_method(tx),
            host_reference=tx.merchant_reference or None,
            customer_email=tx.customer_email_address or None,
            livemode=_livemode(tx.environment),
            created_at=tx.created_on,
        )
        return EventFacts(payment=payment, summary=f"Transaction {state.value}")

    def refund_facts(self, refund_id: str) -> EventFacts:
        """Read ``GET /payment/refunds/{id}``: the refund, and which transaction it belongs to."""
        from postfinancecheckout.service.refunds_service import RefundsService

        service = self._service(RefundsService)
        refund = self._read(service.get_payment_refunds_id, "refund", refund_id)
        tx = _required(refund.transaction, "refund", "transaction")
        currency = normalize_currency(_required(tx.currency, "refund's transaction", "currency"))
        state = parse_refund_state(_required(refund.state, "refund", "state"))
        external_id = refund.external_id or ""
        facts = RefundFacts(
            provider_refund_id=str(_required(refund.id, "refund", "id")),
            amount_minor=_required(_minor_units(refund.amount, currency), "refund", "amount"),
            currency=currency,
            status=map_refund_state(state),
            refund_id=external_id if external_id.startswith(OUR_REFUND_ID_PREFIX) else None,
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
