"""Fake PostFinance Checkout API v2.0, as spoken by the ``postfinancecheckout`` SDK 6.4.0.

Mounted at ``/api/v2.0``; configure the real SDK with ``fake.configuration()`` or::

    Configuration(host=fake.base_url, user_id=fake.user_id,
                  authentication_key=fake.authentication_key)

Authentication is checked exactly as SDK 6.4.0 produces it (``ApiClient._apply_auth_params``):
``Authorization: Bearer <JWT HS256>`` signed with ``base64decode(authentication_key)``, claims
``sub`` == user id (int or str), ``iat`` within +-300 s, ``requestPath`` == the request target
(path + ``?query``), ``requestMethod`` == the HTTP method. Space-scoped endpoints need the
``Space`` header (missing/invalid -> 400, another space -> 404).

Served endpoints (relative to the mount):

* ``POST /payment/transactions`` -> 201 ``Transaction`` (state ``PENDING``)
* ``GET /payment/transactions/{id}`` -> 200 ``Transaction``
* ``GET /payment/transactions/{id}/payment-page-url`` -> 200 JSON string
* ``GET /payment/transactions/search`` -> 200 ``TransactionSearchResponse``
* ``POST /payment/refunds`` -> 201 ``Refund`` (``externalId`` is idempotent; over-refund -> 409)
* ``GET /payment/refunds/{id}`` -> 200 ``Refund``
* ``GET /payment/refunds/search`` -> 200 ``RefundSearchResponse``
* ``GET /payment/transactions/completions/{id}``, ``.../voids/{id}``, ``.../invoices/{id}`` ->
  200 ``TransactionCompletion`` / ``TransactionVoid`` / ``TransactionInvoice`` (minimal: id,
  state, ``linkedTransaction``), created with :meth:`PostFinanceFake.create_linked_entity`
* ``GET /webhooks/encryption-keys/{id}`` (no ``Space``) -> 200 JSON string, base64 DER P-256 key

Searches take ``query`` as terms ``field:value`` or ``field:"quoted value"`` (backslash escapes),
optionally joined by ``AND`` -- the subset of the vendor's query syntax Paydesk sends (vendor SDK
tests: ``merchantReference:"..." AND id:...``); ``order`` is ``id:ASC`` or ``id:DESC``; ``limit``
1-100 and ``offset``. Anything else (``OR``, ranges, groups) is answered 400.

Amounts are major units (JSON numbers). Test controls are plain Python methods:
:meth:`PostFinanceFake.create_transaction`, :meth:`~PostFinanceFake.set_transaction_state`,
:meth:`~PostFinanceFake.set_refund_state`, :meth:`~PostFinanceFake.refunds_for`, webhook signing
with :meth:`~PostFinanceFake.sign` / :meth:`~PostFinanceFake.webhook_body` /
:meth:`~PostFinanceFake.rotate_key`, and :meth:`~PostFinanceFake.deliver_webhook`.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx
import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fakes.base import FakeServer, HttpError, Request, Response

if TYPE_CHECKING:
    from postfinancecheckout.configuration import Configuration

TRANSACTION_STATES = frozenset(
    {
        "CREATE",
        "PENDING",
        "CONFIRMED",
        "PROCESSING",
        "FAILED",
        "AUTHORIZED",
        "VOIDED",
        "COMPLETED",
        "FULFILL",
        "DECLINE",
    }
)
REFUND_STATES = frozenset(
    {"CREATE", "SCHEDULED", "PENDING", "MANUAL_CHECK", "FAILED", "SUCCESSFUL"}
)
REFUND_TYPES = frozenset(
    {
        "MERCHANT_INITIATED_ONLINE",
        "MERCHANT_INITIATED_OFFLINE",
        "CUSTOMER_INITIATED_AUTOMATIC",
        "CUSTOMER_INITIATED_MANUAL",
    }
)
LINE_ITEM_TYPES = frozenset({"SHIPPING", "DISCOUNT", "FEE", "PRODUCT", "TIP"})
COMPLETED_STATES = frozenset({"COMPLETED", "FULFILL", "DECLINE"})

# listenerEntityId constants (pfpayments/plugin-core src/Webhook/Enum/WebhookListener.php)
LISTENER_ENTITY_IDS: dict[str, int] = {
    "Transaction": 1472041829003,
    "Refund": 1472041839405,
    "TransactionCompletion": 1472041831364,
    "TransactionVoid": 1472041867364,
    "TransactionInvoice": 1472041816898,
    "DeliveryIndication": 1472041819799,
    "ManualTask": 1487165678181,
    "Token": 1472041806455,
    "TokenVersion": 1472041811051,
    "Charge": 1472041836176,
    "ChargeAttempt": 1472041801860,
    "ChargeFlow": 1472041871385,
    "PaymentTerminal": 1582966575099,
    "TransactionGroup": 1472041814414,
}
# Entities that point at a transaction (``linkedTransaction``): states and the URL segment.
LINKED_ENTITY_STATES: dict[str, frozenset[str]] = {
    "TransactionCompletion": frozenset({"CREATE", "SCHEDULED", "PENDING", "FAILED", "SUCCESSFUL"}),
    "TransactionVoid": frozenset({"CREATE", "PENDING", "FAILED", "SUCCESSFUL"}),
    "TransactionInvoice": frozenset(
        {"CREATE", "OPEN", "OVERDUE", "CANCELED", "PAID", "DERECOGNIZED", "NOT_APPLICABLE"}
    ),
}
_LINKED_ENTITY_PATHS: dict[str, str] = {
    "TransactionCompletion": "completions",
    "TransactionVoid": "voids",
    "TransactionInvoice": "invoices",
}
_STATES_BY_ENTITY: dict[str, frozenset[str]] = {
    "Transaction": TRANSACTION_STATES,
    "Refund": REFUND_STATES,
    **LINKED_ENTITY_STATES,
}


# One search term: optional "AND", then field:"quoted \\" value" or field:bare-value.
_QUERY_TERM = re.compile(
    r"\s*(?:AND\s+)?(?P<field>[A-Za-z][A-Za-z.]*):"
    r'(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s"()]+))\s*'
)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def _num(value: Decimal) -> float:
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class PostFinanceFake(FakeServer):
    """Fake PostFinance Checkout v2.0 server.

    Args:
        space_id: the space the fake serves (``Space`` header value).
        user_id: application user id expected in the JWT ``sub`` claim (int or str).
        authentication_key: base64 text of the HMAC key; random when omitted.
        refund_state: state new refunds get (``SUCCESSFUL`` like the vendor's test space; use
            ``PENDING``/``MANUAL_CHECK`` to exercise asynchronous refunds).
        iat_leeway: accepted clock skew for the JWT ``iat`` claim, seconds.
        replay_external_id: a refund repeating an ``externalId`` gets the original refund (the
            documented behaviour); ``False`` answers it 409 instead, to exercise clients that
            must read the refund back.
    """

    mount = "/api/v2.0"

    def __init__(
        self,
        space_id: int = 4711,
        user_id: int | str = 512,
        authentication_key: str | None = None,
        refund_state: str = "SUCCESSFUL",
        iat_leeway: int = 300,
        replay_external_id: bool = True,
    ) -> None:
        if refund_state not in REFUND_STATES:
            raise ValueError(f"invalid refund state {refund_state!r}")
        self.space_id = space_id
        self.user_id = user_id
        self.authentication_key = authentication_key or base64.b64encode(
            secrets.token_bytes(32)
        ).decode("ascii")
        self.refund_state = refund_state
        self.iat_leeway = iat_leeway
        self.replay_external_id = replay_external_id
        self.transactions: dict[int, dict[str, Any]] = {}
        self.refunds: dict[int, dict[str, Any]] = {}
        # entity name -> id -> JSON, for TransactionCompletion / TransactionVoid / ...Invoice
        self.linked_entities: dict[str, dict[int, dict[str, Any]]] = {
            name: {} for name in LINKED_ENTITY_STATES
        }
        self._linked_ids = itertools.count(400_001)
        self.deliveries: list[httpx.Response] = []
        self._refunds_by_external_id: dict[str, int] = {}
        self._tx_ids = itertools.count(100_001)
        self._refund_ids = itertools.count(200_001)
        self._event_ids = itertools.count(300_001)
        self._keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self._current_key_id = ""
        self.webhook_listener_id = 55
        super().__init__()
        self.rotate_key()

    # -- SDK convenience -------------------------------------------------------------------------

    def configuration(self, **overrides: Any) -> Configuration:
        """A real SDK ``Configuration`` pointed at this fake (keyword overrides allowed)."""
        from postfinancecheckout.configuration import Configuration

        kwargs: dict[str, Any] = {
            "host": self.base_url,
            "user_id": self.user_id,
            "authentication_key": self.authentication_key,
            "request_timeout": 5,
        }
        kwargs.update(overrides)
        return Configuration(**kwargs)

    # -- routes ----------------------------------------------------------------------------------

    def _register_routes(self) -> None:
        self.route("POST", r"/payment/transactions", self._post_transaction)
        self.route("GET", r"/payment/transactions/search", self._search_transactions)
        self.route("GET", r"/payment/refunds/search", self._search_refunds)
        self.route("GET", r"/payment/transactions/(?P<id>\d+)", self._get_transaction)
        self.route("GET", r"/payment/transactions/(?P<id>\d+)/payment-page-url", self._get_page_url)
        self.route("POST", r"/payment/refunds", self._post_refund)
        self.route("GET", r"/payment/refunds/(?P<id>\d+)", self._get_refund)
        self.route("GET", r"/webhooks/encryption-keys/(?P<id>[^/]+)", self._get_encryption_key)
        for entity, segment in _LINKED_ENTITY_PATHS.items():
            self.route(
                "GET",
                rf"/payment/transactions/{segment}/(?P<id>\d+)",
                lambda request, entity=entity: self._get_linked_entity(entity, request),
            )

    def error_response(self, status: int, message: str) -> Response:
        code = {
            400: "bad_request",
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            409: "conflict",
            422: "unprocessable_entity",
        }.get(status, "server_error" if status >= 500 else "client_error")
        return Response.of_json(
            status,
            {
                "id": str(uuid.uuid4()),
                "date": _iso(_now()),
                "code": code,
                "message": message,
                "type": "CLIENT_ERROR" if status < 500 else "SERVER_ERROR",
            },
        )

    def _fail(self, status: int, message: str) -> HttpError:
        return HttpError(self.error_response(status, message))

    # -- auth ------------------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> None:
        problem = self._jwt_problem(request)
        if problem is not None:
            raise self._fail(401, f"Authentication failed: {problem}")

    def _jwt_problem(self, request: Request) -> str | None:
        auth = request.header("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme != "Bearer" or not token:
            return "missing bearer token"
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                base64.b64decode(self.authentication_key),
                algorithms=["HS256"],
                options={"verify_sub": False, "verify_iat": False, "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            return f"invalid token ({exc})"
        if header.get("alg") != "HS256":
            return "unexpected JWT algorithm"
        if str(claims.get("sub")) != str(self.user_id):
            return "unknown user"
        iat = claims.get("iat")
        if not isinstance(iat, int) or isinstance(iat, bool):
            return "iat claim missing"
        if abs(time.time() - iat) > self.iat_leeway:
            return "iat outside the accepted window"
        if claims.get("requestPath") != request.target:
            return f"requestPath {claims.get('requestPath')!r} != {request.target!r}"
        if claims.get("requestMethod") != request.method:
            return "requestMethod mismatch"
        return None

    def _authenticate_space(self, request: Request) -> None:
        self._authenticate(request)
        space = request.header("Space")
        if space is None or not space.strip().isdigit():
            raise self._fail(400, "The 'Space' header is required and must be a space id")
        if int(space) != self.space_id:
            raise self._fail(404, f"Space {space} not found")

    # -- transactions ----------------------------------------------------------------------------

    def _post_transaction(self, request: Request) -> Response:
        self._authenticate_space(request)
        body = request.json()
        if not isinstance(body, dict):
            raise self._fail(400, "TransactionCreate object expected")
        try:
            tx = self._build_transaction(body)
        except ValueError as exc:
            raise self._fail(400, str(exc)) from exc
        return Response.of_json(201, copy.deepcopy(tx))

    def _get_transaction(self, request: Request) -> Response:
        self._authenticate_space(request)
        return Response.of_json(200, copy.deepcopy(self._tx_or_404(int(request.params["id"]))))

    def _get_page_url(self, request: Request) -> Response:
        self._authenticate_space(request)
        tx = self._tx_or_404(int(request.params["id"]))
        url = (
            f"{self.origin}/s/{self.space_id}/payment/transaction/pay/{tx['id']}"
            f"?securityToken={tx['_securityToken']}"
        )
        return Response.of_json(200, url)

    def _tx_or_404(self, tx_id: int) -> dict[str, Any]:
        tx = self.transactions.get(tx_id)
        if tx is None:
            raise self._fail(404, f"Transaction {tx_id} not found")
        return tx

    def _build_transaction(self, body: dict[str, Any]) -> dict[str, Any]:
        items = body.get("lineItems")
        if not isinstance(items, list) or not items:
            raise ValueError("lineItems: at least one line item is required")
        currency = body.get("currency")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
            raise ValueError("currency: an ISO 4217 code is required")
        meta = body.get("metaData") or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ValueError("metaData: values must be strings")
        reference = body.get("merchantReference")
        if reference is not None and (not isinstance(reference, str) or len(reference) > 100):
            raise ValueError("merchantReference: at most 100 characters")
        line_items, seen, total = [], set(), Decimal(0)
        for index, item in enumerate(items):
            line_items.append(self._line_item(index, item, seen))
            total += _dec(item["amountIncludingTax"])
        now = _now()
        tx_id = next(self._tx_ids)
        tx: dict[str, Any] = {
            "id": tx_id,
            "version": 1,
            "state": "PENDING",
            "linkedSpaceId": self.space_id,
            "createdOn": _iso(now),
            "createdBy": self.user_id if isinstance(self.user_id, int) else None,
            "plannedPurgeDate": _iso(now + timedelta(days=365)),
            "authorizationTimeoutOn": _iso(now + timedelta(days=1)),
            "currency": currency,
            "lineItems": line_items,
            "authorizationAmount": _num(total),
            "completedAmount": 0.0,
            "refundedAmount": 0.0,
            "totalSettledAmount": 0.0,
            "totalAppliedFees": 0.0,
            "merchantReference": reference,
            "metaData": dict(meta),
            "environment": "PREVIEW",
            "customersPresence": body.get("customersPresence", "VIRTUAL_PRESENT"),
            "completionBehavior": body.get("completionBehavior", "COMPLETE_IMMEDIATELY"),
            "autoConfirmationEnabled": body.get("autoConfirmationEnabled", True),
            "chargeRetryEnabled": body.get("chargeRetryEnabled", True),
            "emailsDisabled": body.get("emailsDisabled", False),
            "language": body.get("language"),
            "successUrl": body.get("successUrl"),
            "failedUrl": body.get("failedUrl"),
            "customerEmailAddress": body.get("customerEmailAddress"),
            "customerId": body.get("customerId"),
            "_securityToken": secrets.token_hex(16),
        }
        for passthrough in (
            "tokenizationMode",
            "environmentSelectionStrategy",
            "billingAddress",
            "shippingAddress",
            "shippingMethod",
            "invoiceMerchantReference",
            "timeZone",
            "spaceViewId",
            "allowedPaymentMethodConfigurations",
            "allowedPaymentMethodBrands",
        ):
            if passthrough in body:
                tx[passthrough] = body[passthrough]
        tx = {k: v for k, v in tx.items() if v is not None}
        self.transactions[tx_id] = tx
        return tx

    @staticmethod
    def _line_item(index: int, item: Any, seen: set[str]) -> dict[str, Any]:
        where = f"lineItems[{index}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: object expected")
        name, unique_id = item.get("name"), item.get("uniqueId")
        if not isinstance(name, str) or not 1 <= len(name) <= 150:
            raise ValueError(f"{where}.name: 1-150 characters required")
        if not isinstance(unique_id, str) or not unique_id or len(unique_id) > 200:
            raise ValueError(f"{where}.uniqueId: required")
        if unique_id in seen:
            raise ValueError(f"{where}.uniqueId: {unique_id!r} is not unique")
        seen.add(unique_id)
        if item.get("type") not in LINE_ITEM_TYPES:
            raise ValueError(f"{where}.type: one of {sorted(LINE_ITEM_TYPES)} required")
        quantity, amount = item.get("quantity"), item.get("amountIncludingTax")
        if not _is_number(quantity) or quantity <= 0:
            raise ValueError(f"{where}.quantity: positive number required")
        if not _is_number(amount):
            raise ValueError(f"{where}.amountIncludingTax: number required")
        taxes = item.get("taxes") or []
        rate = sum((_dec(tax.get("rate", 0)) for tax in taxes), Decimal(0))
        incl = _dec(amount)
        excl = (incl / (1 + rate / 100)).quantize(Decimal("0.01"))
        line: dict[str, Any] = {
            "name": name,
            "uniqueId": unique_id,
            "type": item["type"],
            "quantity": quantity,
            "amountIncludingTax": amount,
            "amountExcludingTax": _num(excl),
            "taxAmount": _num(incl - excl),
            "aggregatedTaxRate": _num(rate),
            "unitPriceIncludingTax": _num((incl / _dec(quantity)).quantize(Decimal("0.01"))),
            "shippingRequired": bool(item.get("shippingRequired", False)),
            "taxes": [{"rate": t.get("rate"), "title": t.get("title")} for t in taxes],
        }
        for optional in ("sku", "discountIncludingTax", "attributes"):
            if item.get(optional) is not None:
                line[optional] = item[optional]
        return line

    # -- refunds ---------------------------------------------------------------------------------

    def _post_refund(self, request: Request) -> Response:
        self._authenticate_space(request)
        body = request.json()
        if not isinstance(body, dict):
            raise self._fail(400, "RefundCreate object expected")
        external_id = body.get("externalId")
        if not isinstance(external_id, str) or not 1 <= len(external_id) <= 100:
            raise self._fail(400, "externalId: 1-100 characters required")
        existing = self._refunds_by_external_id.get(external_id)
        if existing is not None:  # idempotent replay: the original result, nothing executed
            if not self.replay_external_id:
                raise self._fail(409, f"A refund with externalId {external_id!r} exists")
            return Response.of_json(201, self._refund_json(self.refunds[existing]))
        if body.get("type") not in REFUND_TYPES:
            raise self._fail(400, f"type: one of {sorted(REFUND_TYPES)} required")
        tx_id = body.get("transaction")
        if not isinstance(tx_id, int) or isinstance(tx_id, bool):
            message = "transaction: a transaction id is required"
            if body.get("completion") is not None:
                message += " (refunds by completion are not supported by this fake)"
            raise self._fail(400, message)
        if body.get("reductions"):
            raise self._fail(400, "reductions are not supported by this fake; send amount")
        amount = body.get("amount")
        if not _is_number(amount) or amount <= 0:
            raise self._fail(400, "amount: a positive number is required")
        tx = self.transactions.get(tx_id)
        if tx is None:
            raise self._fail(404, f"Transaction {tx_id} not found")
        refundable = self._refundable(tx)
        if _dec(amount) > refundable:
            raise self._fail(
                409,
                f"The refund amount {amount} exceeds the refundable amount {refundable} "
                f"of transaction {tx_id} (state {tx['state']})",
            )
        now = _now()
        refund: dict[str, Any] = {
            "id": next(self._refund_ids),
            "version": 0,  # _apply_refund_state below makes it 1
            "state": "CREATE",
            "externalId": external_id,
            "type": body["type"],
            "amount": amount,
            "transaction": tx_id,
            "linkedSpaceId": self.space_id,
            "createdOn": _iso(now),
            "createdBy": self.user_id if isinstance(self.user_id, int) else None,
            "environment": "PREVIEW",
            "merchantReference": body.get("merchantReference"),
            "metaData": dict(body.get("metaData") or {}),
            "timeoutOn": _iso(now + timedelta(days=7)),
            "reductions": [],
            "taxes": [],
        }
        refund = {k: v for k, v in refund.items() if v is not None}
        self.refunds[refund["id"]] = refund
        self._refunds_by_external_id[external_id] = refund["id"]
        self._apply_refund_state(refund, self.refund_state)
        return Response.of_json(201, self._refund_json(refund))

    def _get_refund(self, request: Request) -> Response:
        self._authenticate_space(request)
        refund = self.refunds.get(int(request.params["id"]))
        if refund is None:
            raise self._fail(404, f"Refund {request.params['id']} not found")
        return Response.of_json(200, self._refund_json(refund))

    def _refundable(self, tx: dict[str, Any]) -> Decimal:
        if tx["state"] not in COMPLETED_STATES:
            return Decimal(0)
        reserved = sum(
            (
                _dec(r["amount"])
                for r in self.refunds.values()
                if r["transaction"] == tx["id"] and r["state"] != "FAILED"
            ),
            Decimal(0),
        )
        return _dec(tx["completedAmount"]) - reserved

    def _refund_json(self, refund: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(refund)
        tx = self.transactions[refund["transaction"]]
        out["transaction"] = self._public_tx(tx)  # the Refund model nests a full Transaction
        return out

    def _apply_refund_state(
        self, refund: dict[str, Any], state: str, failure_reason: str | None = None
    ) -> None:
        now = _iso(_now())
        refund["state"] = state
        refund["version"] += 1
        if state == "SUCCESSFUL":
            refund["succeededOn"] = now
            refund.pop("nextUpdateOn", None)
        elif state == "FAILED":
            refund["failedOn"] = now
            refund["failureReason"] = _failure_reason(failure_reason or "Refund declined")
        elif state in {"PENDING", "MANUAL_CHECK", "SCHEDULED"}:
            refund["processingOn"] = now
            refund["nextUpdateOn"] = _iso(_now() + timedelta(minutes=10))
        tx = self.transactions[refund["transaction"]]
        refunded = sum(
            (
                _dec(r["amount"])
                for r in self.refunds.values()
                if r["transaction"] == tx["id"] and r["state"] == "SUCCESSFUL"
            ),
            Decimal(0),
        )
        if _dec(tx["refundedAmount"]) != refunded:
            tx["refundedAmount"] = _num(refunded)
            tx["version"] += 1

    # -- search ----------------------------------------------------------------------------------

    def _search_transactions(self, request: Request) -> Response:
        self._authenticate_space(request)
        fields = {"id", "merchantReference", "state", "currency"}
        found = self._search(request, list(self.transactions.values()), fields)
        return self._search_response(request, [self._public_tx(tx) for tx in found])

    def _search_refunds(self, request: Request) -> Response:
        self._authenticate_space(request)
        fields = {"id", "externalId", "merchantReference", "state", "transaction"}
        found = self._search(request, list(self.refunds.values()), fields)
        return self._search_response(request, [self._refund_json(r) for r in found])

    def _search(
        self, request: Request, entities: list[dict[str, Any]], fields: set[str]
    ) -> list[dict[str, Any]]:
        terms = self._parse_query(request.query.get("query", ""), fields)
        order = request.query.get("order", "")
        if order not in {"", "id:ASC", "id:DESC"}:
            raise self._fail(400, f"order {order!r} is not supported by this fake")
        matching = [
            entity
            for entity in entities
            if all(str(entity.get(field)) == value for field, value in terms)
        ]
        return sorted(matching, key=lambda entity: entity["id"], reverse=order == "id:DESC")

    def _parse_query(self, query: str, fields: set[str]) -> list[tuple[str, str]]:
        terms: list[tuple[str, str]] = []
        position = 0
        while position < len(query):
            match = _QUERY_TERM.match(query, position)
            if match is None or match.end() == position:
                raise self._fail(400, f"query {query!r} is not supported by this fake")
            if match["field"] not in fields:
                raise self._fail(400, f"query field {match['field']!r} is not searchable")
            value = match["quoted"]
            value = re.sub(r"\\(.)", r"\1", value) if value is not None else match["bare"]
            terms.append((match["field"], value))
            position = match.end()
        return terms

    def _search_response(self, request: Request, found: list[dict[str, Any]]) -> Response:
        try:
            limit = int(request.query.get("limit", "10"))
            offset = int(request.query.get("offset", "0"))
        except ValueError as exc:
            raise self._fail(400, "limit and offset must be integers") from exc
        if not 1 <= limit <= 100 or not 0 <= offset <= 10_000:
            raise self._fail(400, "limit must be 1-100, offset 0-10000")
        page = found[offset : offset + limit]
        return Response.of_json(
            200,
            {
                "data": page,
                "offset": offset,
                "limit": limit,
                "hasMore": offset + limit < len(found),
            },
        )

    # -- completions, voids, invoices ------------------------------------------------------------

    def _get_linked_entity(self, entity: str, request: Request) -> Response:
        self._authenticate_space(request)
        found = self.linked_entities[entity].get(int(request.params["id"]))
        if found is None:
            raise self._fail(404, f"{entity} {request.params['id']} not found")
        return Response.of_json(200, copy.deepcopy(found))

    # -- encryption keys -------------------------------------------------------------------------

    def _get_encryption_key(self, request: Request) -> Response:
        self._authenticate(request)  # no Space header on this endpoint
        key_id = request.params["id"]
        if key_id not in self._keys:
            raise self._fail(404, f"Webhook encryption key {key_id} not found")
        return Response.of_json(200, self.public_key(key_id))

    # -- test controls ---------------------------------------------------------------------------

    def create_transaction(
        self,
        amount: float | int | str | Decimal = "10.00",
        currency: str = "CHF",
        state: str = "PENDING",
        merchant_reference: str | None = None,
        meta_data: dict[str, str] | None = None,
        line_items: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Create a transaction directly (no HTTP); returns its public JSON (a copy).

        With ``state`` other than ``PENDING`` the transaction is moved there via
        :meth:`set_transaction_state` (completed states get ``completedAmount`` = full amount).
        """
        if line_items is None:
            line_items = [
                {
                    "name": "Item",
                    "quantity": 1,
                    "uniqueId": "li-1",
                    "type": "PRODUCT",
                    "amountIncludingTax": _num(_dec(amount)),
                }
            ]
        body: dict[str, Any] = {
            "lineItems": line_items,
            "currency": currency,
            "metaData": dict(meta_data or {}),
        }
        if merchant_reference is not None:
            body["merchantReference"] = merchant_reference
        with self._lock:
            tx = self._build_transaction(body)
            if state != "PENDING":
                return self.set_transaction_state(tx["id"], state)
            return self._public_tx(tx)

    def set_transaction_state(
        self,
        tx_id: int,
        state: str,
        completed_amount: float | int | str | Decimal | None = None,
        failure_reason: str | None = None,
    ) -> dict[str, Any]:
        """Move a transaction to ``state`` (a valid ``TransactionState``), bumping ``version``.

        Completed states (``COMPLETED``/``FULFILL``/``DECLINE``) set ``completedAmount`` to
        ``completed_amount`` or, if not given and nothing was completed yet, the authorization
        amount. ``FAILED`` sets ``failureReason``/``userFailureMessage``. Returns the public JSON.
        """
        if state not in TRANSACTION_STATES:
            raise ValueError(f"invalid transaction state {state!r}")
        with self._lock:
            tx = self.transactions[tx_id]
            now = _iso(_now())
            tx["state"] = state
            tx["version"] += 1
            if state == "CONFIRMED":
                tx.setdefault("confirmedOn", now)
            elif state == "PROCESSING":
                tx.setdefault("processingOn", now)
            elif state == "AUTHORIZED":
                tx["authorizedOn"] = now
                tx["completionTimeoutOn"] = _iso(_now() + timedelta(days=7))
            elif state in COMPLETED_STATES:
                tx.setdefault("authorizedOn", now)
                tx.setdefault("completedOn", now)
                if completed_amount is not None:
                    tx["completedAmount"] = _num(_dec(completed_amount))
                elif not _dec(tx["completedAmount"]):
                    tx["completedAmount"] = tx["authorizationAmount"]
                tx["totalSettledAmount"] = tx["completedAmount"]
                if state in {"FULFILL", "DECLINE"}:
                    tx["deliveryDecisionMadeOn"] = now
            elif state == "FAILED":
                reason = failure_reason or "The payment was declined."
                tx["failedOn"] = now
                tx["failureReason"] = _failure_reason(reason)
                tx["userFailureMessage"] = reason
            if completed_amount is not None and state not in COMPLETED_STATES:
                tx["completedAmount"] = _num(_dec(completed_amount))
            return self._public_tx(tx)

    def set_refund_state(
        self, refund_id: int, state: str, failure_reason: str | None = None
    ) -> dict[str, Any]:
        """Move a refund to ``state`` (a valid ``RefundState``); returns the refund JSON."""
        if state not in REFUND_STATES:
            raise ValueError(f"invalid refund state {state!r}")
        with self._lock:
            refund = self.refunds[refund_id]
            self._apply_refund_state(refund, state, failure_reason)
            return self._refund_json(refund)

    def create_linked_entity(
        self, entity: str, tx_id: int, state: str = "SUCCESSFUL"
    ) -> dict[str, Any]:
        """Add a ``TransactionCompletion``/``TransactionVoid``/``TransactionInvoice`` of a
        transaction (no side effect on the transaction; move it with
        :meth:`set_transaction_state`). Returns its JSON (a copy)."""
        allowed = LINKED_ENTITY_STATES.get(entity)
        if allowed is None:
            raise ValueError(f"unknown linked entity {entity!r}")
        if state not in allowed:
            raise ValueError(f"invalid {entity} state {state!r}")
        with self._lock:
            if tx_id not in self.transactions:
                raise KeyError(tx_id)
            entity_id = next(self._linked_ids)
            self.linked_entities[entity][entity_id] = {
                "id": entity_id,
                "version": 1,
                "state": state,
                "linkedTransaction": tx_id,
                "linkedSpaceId": self.space_id,
                "createdOn": _iso(_now()),
            }
            return copy.deepcopy(self.linked_entities[entity][entity_id])

    def get_transaction(self, tx_id: int) -> dict[str, Any]:
        """The public JSON of a transaction (a copy)."""
        with self._lock:
            return self._public_tx(self.transactions[tx_id])

    def refunds_for(self, tx_id: int) -> list[dict[str, Any]]:
        """All refunds created for a transaction (copies, with ``transaction`` as the id)."""
        with self._lock:
            return [copy.deepcopy(r) for r in self.refunds.values() if r["transaction"] == tx_id]

    @staticmethod
    def _public_tx(tx: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in tx.items() if not k.startswith("_")}

    # -- webhooks --------------------------------------------------------------------------------

    @property
    def key_ids(self) -> list[str]:
        """All webhook key ids the fake serves (oldest first)."""
        with self._lock:
            return list(self._keys)

    @property
    def current_key_id(self) -> str:
        """The key id :meth:`sign` uses by default (the newest)."""
        return self._current_key_id

    def rotate_key(self) -> str:
        """Add a new P-256 signing key, make it current and return its id (old keys stay)."""
        key_id = str(uuid.uuid4())
        with self._lock:
            self._keys[key_id] = ec.generate_private_key(ec.SECP256R1())
            self._current_key_id = key_id
        return key_id

    def remove_key(self, key_id: str) -> None:
        """Stop serving a key (its public-key lookup then answers 404)."""
        with self._lock:
            del self._keys[key_id]
            if key_id == self._current_key_id:
                self._current_key_id = next(reversed(self._keys), "")

    def public_key(self, key_id: str | None = None) -> str:
        """Base64 of the DER SubjectPublicKeyInfo, as the encryption-keys endpoint returns it."""
        with self._lock:
            key = self._keys[key_id or self._current_key_id]
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode("ascii")

    def sign(self, body: bytes, key_id: str | None = None) -> str:
        """The exact ``X-Signature`` header value for ``body`` (SHA256withECDSA, DER, base64)."""
        with self._lock:
            key_id = key_id or self._current_key_id
            key = self._keys[key_id]
        signature = key.sign(body, ec.ECDSA(hashes.SHA256()))
        encoded = base64.b64encode(signature).decode("ascii")
        return f"algorithm=SHA256withECDSA, keyId={key_id}, signature={encoded}"

    def webhook_body(
        self,
        entity_id: int,
        state: str,
        entity: str = "Transaction",
        event_id: int | None = None,
    ) -> bytes:
        """A webhook payload (compact JSON, sorted keys like the vendor test vector)."""
        if entity not in LISTENER_ENTITY_IDS:
            raise ValueError(f"unknown webhook entity {entity!r}")
        allowed = _STATES_BY_ENTITY.get(entity)
        if allowed is not None and state not in allowed:
            raise ValueError(f"invalid {entity} state {state!r}")
        payload = {
            "entityId": entity_id,
            "eventId": event_id if event_id is not None else next(self._event_ids),
            "listenerEntityId": LISTENER_ENTITY_IDS[entity],
            "listenerEntityTechnicalName": entity,
            "spaceId": self.space_id,
            "state": state,
            "timestamp": _now().strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "webhookListenerId": self.webhook_listener_id,
        }
        return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")

    def signed_webhook(
        self,
        entity_id: int,
        state: str,
        entity: str = "Transaction",
        event_id: int | None = None,
        key_id: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """``(body, headers)`` of a signed webhook delivery."""
        body = self.webhook_body(entity_id, state, entity, event_id)
        headers = {"Content-Type": "application/json", "X-Signature": self.sign(body, key_id)}
        return body, headers

    def deliver_webhook(
        self,
        url: str,
        entity_id: int,
        state: str,
        entity: str = "Transaction",
        *,
        event_id: int | None = None,
        signed: bool = True,
        key_id: str | None = None,
        timeout: float = 5.0,
    ) -> httpx.Response:
        """POST a (signed) webhook to ``url``; the response is also kept in ``deliveries``."""
        body, headers = self.signed_webhook(entity_id, state, entity, event_id, key_id)
        if not signed:
            del headers["X-Signature"]
        response = httpx.post(url, content=body, headers=headers, timeout=timeout)
        with self._lock:
            self.deliveries.append(response)
        return response


def _failure_reason(text: str) -> dict[str, Any]:
    return {
        "id": 1_000_001,
        "name": {"en-US": text},
        "description": {"en-US": text},
        "category": "END_USER",
    }
