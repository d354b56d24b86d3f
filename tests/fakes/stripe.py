"""Fake Stripe API (v1): Checkout Sessions, PaymentIntents, refunds and disputes.

``base_url`` is the origin (``http://127.0.0.1:PORT``), standing in for
``https://api.stripe.com``; point ``stripe.StripeClient`` at it with
``base_addresses={"api": fake.base_url}``. It speaks the wire protocol the SDK uses
(reference section 1.1): form-encoded bodies with bracket keys (``metadata[k]=v``,
``line_items[0][price_data][unit_amount]=500``), ``Authorization: Bearer <key>`` (anything else
-> 401 in Stripe's error shape), any ``Stripe-Version``, JSON answers with an ``"object"`` field,
errors as ``{"error": {"type", "message", "code", "param"}}``. Amounts are Stripe wire units.

* ``POST /v1/checkout/sessions`` (mode ``payment``, ``price_data`` line items) -> an ``open``
  session; ``GET /v1/checkout/sessions/{id}``. Unknown parameters are refused as Stripe does.
* ``GET /v1/payment_intents/{id}``. PaymentIntents appear when a test calls
  :meth:`StripeFake.complete_session` (``succeeded``, ``amount_received``) or
  :meth:`StripeFake.fail_session_payment` (``requires_payment_method`` with a card decline in
  ``last_payment_error``).
* ``POST /v1/refunds`` (``payment_intent`` or ``charge``, optional ``amount``, default all that
  is left) -> ``succeeded`` (or :attr:`StripeFake.refund_status`); more than what remains ->
  400 ``amount_too_large``, nothing left -> 400 ``charge_already_refunded``.
  ``GET /v1/refunds?payment_intent=...`` lists them, newest first.
* ``POST /v1/files`` (``multipart/form-data``: a ``purpose`` part, ``dispute_evidence`` only,
  and a ``file`` part with a filename; PDF, JPEG or PNG by content) -> a ``file`` object
  (``file_...``, ``size``, ``type``); the uploads are kept in :attr:`StripeFake.files`, bytes
  included. The SDK sends uploads to its ``files`` base address: point it at ``base_url`` too.
* ``GET``/``POST /v1/disputes/{id}`` (``evidence[...]``, ``submit``) and
  ``POST /v1/disputes/{id}/close``; disputes come from :meth:`StripeFake.create_dispute`.
  Stripe's file evidence fields (:data:`FILE_EVIDENCE_FIELDS`) take only ids of
  ``dispute_evidence`` files this fake issued; the others take text.

Idempotency (section 1.10): a POST's ``Idempotency-Key`` stores the answer once the endpoint
has started executing (parameter-validation errors are not stored). The same key with the same
method, path and parameters replays the stored answer with ``Idempotent-Replayed: true`` and
creates nothing; with different ones -> 400 ``idempotency_error``.

Card declines: :meth:`StripeFake.decline_next` answers the next matching request with Stripe's
402 ``card_error`` (decline code included), or :meth:`StripeFake.fail_session_payment` leaves a
declined attempt on the session's PaymentIntent.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fakes.base import FakeServer, Handler, HttpError, RecordedRequest, Request, Response

DEFAULT_API_KEY = "sk_test_fake51Hx0123456789abcdefABCDEF"
API_VERSION = "2026-10-28.endive"
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv"}
    | {"xaf", "xof", "xpf"}
)
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
REFUND_STATUSES = frozenset({"pending", "requires_action", "succeeded", "failed", "canceled"})
EVIDENCE_FIELDS = frozenset(
    {
        "access_activity_log", "billing_address", "cancellation_policy",
        "cancellation_policy_disclosure", "cancellation_rebuttal", "customer_communication",
        "customer_email_address", "customer_name", "customer_purchase_ip", "customer_signature",
        "duplicate_charge_documentation", "duplicate_charge_explanation", "duplicate_charge_id",
        "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
        "refund_refusal_explanation", "service_date", "service_documentation",
        "shipping_address", "shipping_carrier", "shipping_date", "shipping_documentation",
        "shipping_tracking_number", "uncategorized_file", "uncategorized_text",
    }
)  # fmt: skip
# The evidence fields that take the id of an uploaded file (purpose dispute_evidence), not text.
FILE_EVIDENCE_FIELDS = frozenset(
    {
        "cancellation_policy", "customer_communication", "customer_signature",
        "duplicate_charge_documentation", "receipt", "refund_policy", "service_documentation",
        "shipping_documentation", "uncategorized_file",
    }
)  # fmt: skip
FILE_PURPOSES = frozenset({"dispute_evidence"})  # the only purpose this fake takes
# File ``type`` Stripe reports, by leading bytes.
_FILE_SIGNATURES = ((b"%PDF-", "pdf"), (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpg"))
CLOSED_DISPUTE_STATUSES = frozenset({"won", "lost", "warning_closed", "prevented"})
_SESSION_PARAMS = frozenset(
    {
        "mode", "line_items", "success_url", "cancel_url", "client_reference_id",
        "customer_email", "metadata", "payment_intent_data", "expires_at", "expand", "locale",
        "payment_method_types",
    }
)  # fmt: skip
_REFUND_PARAMS = frozenset(
    {"payment_intent", "charge", "amount", "reason", "metadata", "expand", "instructions_email"}
)
_DISPUTE_PARAMS = frozenset({"evidence", "submit", "metadata", "expand"})
_FILE_PARAMS = frozenset({"purpose", "file", "expand"})
_KEY_PART = re.compile(r"\[([^\[\]]*)\]")
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_DISPOSITION_PARAM = re.compile(r';\s*([a-z]+)="([^"]*)"', re.IGNORECASE)


def decode_form(body: bytes | str) -> dict[str, Any]:
    """A form body with Stripe's bracket keys as nested dicts and lists (values stay strings).

    ``a[b][0][c]=1&a[b][1][c]=2`` -> ``{"a": {"b": [{"c": "1"}, {"c": "2"}]}}``.
    """
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head, *_KEY_PART.findall("[" + rest)] if rest else [head]
        node = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "":  # ``key[]=v``: append
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ValueError(f"conflicting form keys at {key!r}")
                node = child
    form: dict[str, Any] = _listify(root)  # top-level keys are names, never all digits
    return form


@dataclass(frozen=True)
class Part:
    """One part of a ``multipart/form-data`` body."""

    name: str
    filename: str | None
    content_type: str | None
    content: bytes


def decode_multipart(body: bytes, content_type: str | None) -> list[Part]:
    """The parts of a ``multipart/form-data`` body (RFC 7578), split on its boundary; the bytes
    of each part are kept exactly. Raises ``ValueError`` for a body that is not one."""
    mime, _, _ = (content_type or "").partition(";")
    if mime.strip().lower() != "multipart/form-data":
        raise ValueError(f"not multipart/form-data: {content_type!r}")
    found = _BOUNDARY.search(content_type or "")
    if found is None:
        raise ValueError("multipart/form-data without a boundary")
    delimiter = b"--" + found.group(1).encode("ascii")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or chunks[0] not in (b"", b"\r\n") or not chunks[-1].startswith(b"--"):
        raise ValueError("malformed multipart body (boundaries)")
    parts = []
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
            raise ValueError("malformed multipart body (line breaks)")
        head, sep, content = chunk[2:-2].partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("multipart part without headers")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8").split("\r\n"):
            key, colon, value = line.partition(":")
            if not colon:
                raise ValueError(f"malformed part header {line!r}")
            headers[key.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        if not disposition.lower().startswith("form-data"):
            raise ValueError("part without Content-Disposition: form-data")
        params = {k.lower(): v for k, v in _DISPOSITION_PARAM.findall(disposition)}
        if "name" not in params:
            raise ValueError("part without a name")
        parts.append(
            Part(params["name"], params.get("filename"), headers.get("content-type"), content)
        )
    return parts


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    converted = {key: _listify(child) for key, child in value.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


class _InvalidParams(HttpError):
    """Refused while validating parameters: Stripe does not store these under the key."""


@dataclass
class _Stored:
    fingerprint: tuple[str, str, tuple[tuple[str, str], ...]]
    response: Response


class StripeFake(FakeServer):
    """Fake Stripe server (see the module docstring).

    Args:
        api_key: the secret key clients must send as ``Authorization: Bearer``.
    """

    def __init__(self, api_key: str = DEFAULT_API_KEY) -> None:
        self.api_key = api_key
        self.sessions: dict[str, dict[str, Any]] = {}
        self.session_line_items: dict[str, list[dict[str, Any]]] = {}
        self.session_payment_intent_data: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        # Uploaded files by id: the ``file`` object Stripe answers plus ``content`` (bytes).
        self.files: dict[str, dict[str, Any]] = {}
        # Status new refunds get (card refunds in test mode succeed at once).
        self.refund_status = "succeeded"
        self._idempotency: dict[str, _Stored] = {}
        self._counter = itertools.count(1)
        super().__init__()

    # -- routes ----------------------------------------------------------------------------------

    def _register_routes(self) -> None:
        self._add("POST", r"/v1/checkout/sessions", self._create_session)
        self._add("GET", r"/v1/checkout/sessions/(?P<id>[^/]+)", self._get_session)
        self._add("GET", r"/v1/payment_intents/(?P<id>[^/]+)", self._get_payment_intent)
        self._add("POST", r"/v1/refunds", self._create_refund)
        self._add("GET", r"/v1/refunds", self._list_refunds)
        self._add("GET", r"/v1/refunds/(?P<id>[^/]+)", self._get_refund)
        self._add("POST", r"/v1/files", self._create_file)
        self._add("GET", r"/v1/disputes/(?P<id>[^/]+)", self._get_dispute)
        self._add("POST", r"/v1/disputes/(?P<id>[^/]+)", self._update_dispute)
        self._add("POST", r"/v1/disputes/(?P<id>[^/]+)/close", self._close_dispute)

    def _add(self, method: str, pattern: str, handler: Handler) -> None:
        def authenticated(request: Request) -> Response:
            self._authenticate(request)
            if request.method != "POST":
                return handler(request)
            return self._idempotent(request, handler)

        self.route(method, pattern, authenticated)

    def error_response(self, status: int, message: str) -> Response:
        if status >= 500:
            return self._error(status, "api_error", message)
        if status == 429:
            return self._error(status, "invalid_request_error", message, code="rate_limit")
        return self._error(status, "invalid_request_error", message)

    def _error(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        **extra: Any,
    ) -> Response:
        error: dict[str, Any] = {"type": error_type, "message": message}
        if code is not None:
            error["code"] = code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param is not None:
            error["param"] = param
        error.update(extra)
        return Response.of_json(status, {"error": error}, {"Request-Id": self._id("req")})

    def _fail(self, status: int, message: str, **kwargs: Any) -> HttpError:
        """An error from a running endpoint (stored under the idempotency key)."""
        return HttpError(self._error(status, "invalid_request_error", message, **kwargs))

    def _invalid(self, message: str, *, param: str | None = None, **kwargs: Any) -> _InvalidParams:
        return _InvalidParams(
            self._error(400, "invalid_request_error", message, param=param, **kwargs)
        )

    def _ok(self, payload: dict[str, Any]) -> Response:
        return Response.of_json(
            200, payload, {"Request-Id": self._id("req"), "Stripe-Version": API_VERSION}
        )

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{'' if prefix == 'req' else 'test_'}Fake{next(self._counter):08d}"

    def _authenticate(self, request: Request) -> None:
        scheme, _, key = (request.header("Authorization") or "").partition(" ")
        if scheme != "Bearer" or not key:
            raise HttpError(
                self._error(
                    401,
                    "invalid_request_error",
                    "You did not provide an API key. You need to provide your API key in the "
                    "Authorization header, using Bearer auth.",
                )
            )
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise HttpError(
                self._error(
                    401, "invalid_request_error", f"Invalid API Key provided: {key[:8]}****"
                )
            )

    def _idempotent(self, request: Request, handler: Handler) -> Response:
        key = request.header("Idempotency-Key")
        if not key:
            return self._run(request, handler)[0]
        fingerprint = (request.method, request.path, self._parameters(request))
        stored = self._idempotency.get(key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise HttpError(
                    self._error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters "
                        f"they were first used with. Try using a key other than '{key}' if you "
                        "meant to execute a different request.",
                    )
                )
            replay = stored.response
            return Response(
                replay.status,
                replay.body,
                replay.content_type,
                {**replay.headers, "Idempotent-Replayed": "true", "Original-Request": key},
            )
        response, store = self._run(request, handler)
        if store:
            self._idempotency[key] = _Stored(fingerprint, response)
        return response

    @staticmethod
    def _parameters(request: Request) -> tuple[tuple[str, str], ...]:
        """The request's parameters, to compare under one key. A multipart body is compared by
        its parts (file contents by SHA-256): its boundary is random per request."""
        content_type = request.header("Content-Type") or ""
        if content_type.lower().startswith("multipart/"):
            try:
                parts = decode_multipart(request.body, content_type)
            except (ValueError, UnicodeDecodeError):
                return (("<unparsable multipart>", hashlib.sha256(request.body).hexdigest()),)
            return tuple(
                sorted(
                    (part.name, f"{part.filename}:{hashlib.sha256(part.content).hexdigest()}")
                    for part in parts
                )
            )
        return tuple(sorted(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)))

    @staticmethod
    def _run(request: Request, handler: Handler) -> tuple[Response, bool]:
        try:
            return handler(request), True
        except _InvalidParams as exc:
            return exc.response, False
        except HttpError as exc:
            return exc.response, True

    # -- parameters ------------------------------------------------------------------------------

    def _form(self, request: Request, allowed: frozenset[str]) -> dict[str, Any]:
        try:
            form = decode_form(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._invalid(f"Invalid request body: {exc}") from None
        for name in form:
            if name not in allowed:
                raise self._invalid(f"Received unknown parameter: {name}", param=name)
        return form

    def _int(self, value: Any, param: str, *, minimum: int = 0) -> int:
        if not isinstance(value, str) or not re.fullmatch(r"-?[0-9]+", value):
            raise self._invalid(f"Invalid integer: {value}", param=param)
        number = int(value)
        if number < minimum:
            word = "positive" if minimum > 0 else "non-negative"
            raise self._invalid(f"Invalid {word} integer", param=param)
        return number

    def _metadata(self, value: Any, param: str) -> dict[str, str]:
        if value is None or value == "":
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._invalid(f"Invalid object: {param}", param=param)
        return {k: v for k, v in value.items() if v != ""}

    # -- checkout sessions -----------------------------------------------------------------------

    def _create_session(self, request: Request) -> Response:
        form = self._form(request, _SESSION_PARAMS)
        if form.get("mode") != "payment":
            raise self._invalid("This fake supports only mode=payment.", param="mode")
        if not form.get("success_url"):
            raise self._invalid("Missing required param: success_url.", param="success_url")
        lines = form.get("line_items")
        if not isinstance(lines, list) or not lines:
            raise self._invalid(
                "You must provide `line_items` in `payment` mode.", param="line_items"
            )
        currency: str | None = None
        total = 0
        stored_lines = []
        for index, line in enumerate(lines):
            where = f"line_items[{index}]"
            if not isinstance(line, dict) or not isinstance(line.get("price_data"), dict):
                raise self._invalid(f"Missing required param: {where}[price_data].", param=where)
            price = line["price_data"]
            line_currency = price.get("currency")
            if not isinstance(line_currency, str) or not re.fullmatch(r"[a-z]{3}", line_currency):
                raise self._invalid(
                    f"Invalid currency: {line_currency}", param=f"{where}[price_data][currency]"
                )
            if currency is not None and line_currency != currency:
                raise self._invalid(
                    "All line items must use the same currency.", param=f"{where}[price_data]"
                )
            currency = line_currency
            unit = self._int(price.get("unit_amount"), f"{where}[price_data][unit_amount]")
            if currency in THREE_DECIMAL and unit % 10:
                raise self._invalid(
                    f"Amounts in {currency} must be a multiple of 10 (the last digit must be 0).",
                    param=f"{where}[price_data][unit_amount]",
                    code="invalid_amount",
                )
            product = price.get("product_data")
            if not isinstance(product, dict) or not product.get("name"):
                raise self._invalid(
                    f"Missing required param: {where}[price_data][product_data][name].",
                    param=f"{where}[price_data][product_data][name]",
                )
            quantity = self._int(line.get("quantity"), f"{where}[quantity]", minimum=1)
            total += unit * quantity
            stored_lines.append(
                {
                    "object": "item",
                    "description": product["name"],
                    "quantity": quantity,
                    "currency": currency,
                    "amount_total": unit * quantity,
                    "price": {"object": "price", "unit_amount": unit, "currency": currency},
                }
            )
        intent_data = form.get("payment_intent_data") or {}
        if not isinstance(intent_data, dict):
            raise self._invalid("Invalid object", param="payment_intent_data")
        intent_metadata = self._metadata(
            intent_data.get("metadata"), "payment_intent_data[metadata]"
        )
        session_id = self._id("cs")
        created = int(time.time())
        expires_at = (
            self._int(form["expires_at"], "expires_at")
            if "expires_at" in form
            else created + 24 * 3600
        )
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_subtotal": total,
            "amount_total": total,
            "currency": currency,
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "success_url": form["success_url"],
            "cancel_url": form.get("cancel_url"),
            "client_reference_id": form.get("client_reference_id"),
            "customer": None,
            "customer_email": form.get("customer_email"),
            "customer_details": None,
            "metadata": self._metadata(form.get("metadata"), "metadata"),
            "payment_intent": None,
            "payment_method_types": ["card"],
            "created": created,
            "expires_at": expires_at,
            "livemode": False,
        }
        self.sessions[session_id] = session
        self.session_line_items[session_id] = stored_lines
        self.session_payment_intent_data[session_id] = {
            "metadata": intent_metadata,
            "description": intent_data.get("description"),
        }
        return self._ok(copy.deepcopy(session))

    def _get_session(self, request: Request) -> Response:
        session = self.sessions.get(request.params["id"])
        if session is None:
            raise self._missing("checkout.session", request.params["id"], "session")
        return self._ok(copy.deepcopy(session))

    def _missing(self, kind: str, object_id: str, param: str) -> HttpError:
        return HttpError(
            self._error(
                404,
                "invalid_request_error",
                f"No such {kind}: '{object_id}'",
                code="resource_missing",
                param=param,
            )
        )

    # -- payment intents -------------------------------------------------------------------------

    def _get_payment_intent(self, request: Request) -> Response:
        intent = self.payment_intents.get(request.params["id"])
        if intent is None:
            raise self._missing("payment_intent", request.params["id"], "intent")
        return self._ok(copy.deepcopy(intent))

    def _intent_for_session(self, session: dict[str, Any]) -> dict[str, Any]:
        if session["payment_intent"] is not None:
            return self.payment_intents[session["payment_intent"]]
        data = self.session_payment_intent_data[session["id"]]
        intent = {
            "id": self._id("pi"),
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_capturable": 0,
            "amount_received": 0,
            "currency": session["currency"],
            "status": "requires_payment_method",
            "capture_method": "automatic",
            "cancellation_reason": None,
            "description": data["description"],
            "latest_charge": None,
            "last_payment_error": None,
            "metadata": dict(data["metadata"]),
            "payment_method_types": ["card"],
            "receipt_email": session["customer_email"],
            "created": int(time.time()),
            "livemode": False,
        }
        self.payment_intents[intent["id"]] = intent
        session["payment_intent"] = intent["id"]
        return intent

    # -- test helpers ----------------------------------------------------------------------------

    def complete_session(self, session_id: str, *, email: str | None = None) -> dict[str, Any]:
        """The customer paid: a ``succeeded`` PaymentIntent with ``amount_received`` = the
        session total, and the session ``complete``/``paid``. Returns the PaymentIntent."""
        with self._lock:
            session = self.sessions[session_id]
            intent = self._intent_for_session(session)
            intent.update(
                status="succeeded",
                amount_received=intent["amount"],
                latest_charge=self._id("ch"),
                last_payment_error=None,
            )
            session.update(status="complete", payment_status="paid")
            customer_email = email or session["customer_email"]
            session["customer_details"] = {"email": customer_email, "name": None, "phone": None}
            return copy.deepcopy(intent)

    def fail_session_payment(
        self,
        session_id: str,
        *,
        decline_code: str = "generic_decline",
        message: str = "Your card was declined.",
    ) -> dict[str, Any]:
        """A declined card attempt: the PaymentIntent back in ``requires_payment_method`` with
        ``last_payment_error``; the session stays open. Returns the PaymentIntent."""
        with self._lock:
            session = self.sessions[session_id]
            intent = self._intent_for_session(session)
            intent.update(
                status="requires_payment_method",
                latest_charge=self._id("ch"),
                last_payment_error={
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": decline_code,
                    "message": message,
                },
            )
            return copy.deepcopy(intent)

    def expire_session(self, session_id: str) -> None:
        with self._lock:
            self.sessions[session_id]["status"] = "expired"

    def decline_next(
        self,
        path_prefix: str,
        *,
        decline_code: str = "card_declined",
        message: str = "Your card was declined.",
        method: str | None = "POST",
    ) -> None:
        """Answer the next matching request with Stripe's 402 ``card_error``."""
        body = {
            "error": {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": decline_code,
                "message": message,
            }
        }
        self.fail_next(path_prefix, 402, body=body, method=method)

    def create_dispute(
        self,
        payment_intent_id: str,
        *,
        amount: int | None = None,
        reason: str = "fraudulent",
        status: str = "needs_response",
        due_by: int | None = None,
    ) -> dict[str, Any]:
        """A dispute on the PaymentIntent's charge (default: the whole amount received)."""
        with self._lock:
            intent = self.payment_intents[payment_intent_id]
            dispute_id = self._id("du")
            self.disputes[dispute_id] = {
                "id": dispute_id,
                "object": "dispute",
                "amount": intent["amount_received"] if amount is None else amount,
                "currency": intent["currency"],
                "charge": intent["latest_charge"],
                "payment_intent": payment_intent_id,
                "status": status,
                "reason": reason,
                "evidence": dict.fromkeys(sorted(EVIDENCE_FIELDS)),
                "evidence_details": {
                    "due_by": int(time.time()) + 7 * 24 * 3600 if due_by is None else due_by,
                    "has_evidence": False,
                    "past_due": False,
                    "submission_count": 0,
                },
                "is_charge_refundable": False,
                "balance_transactions": [],
                "metadata": {},
                "created": int(time.time()),
                "livemode": False,
            }
            return copy.deepcopy(self.disputes[dispute_id])

    def set_refund_status(
        self, refund_id: str, status: str, *, failure_reason: str | None = None
    ) -> None:
        if status not in REFUND_STATUSES:
            raise ValueError(f"unknown refund status {status!r}")
        with self._lock:
            self.refunds[refund_id].update(status=status, failure_reason=failure_reason)

    def refunds_for(self, payment_intent_id: str) -> list[dict[str, Any]]:
        """Refunds of a PaymentIntent, oldest first."""
        with self._lock:
            return [
                copy.deepcopy(r)
                for r in self.refunds.values()
                if r["payment_intent"] == payment_intent_id
            ]

    def forms(self, path_prefix: str, method: str = "POST") -> list[dict[str, Any]]:
        """The decoded form bodies of the recorded requests to a path."""
        return [form_of(rec) for rec in self.requests_to(path_prefix, method)]

    # -- refunds ---------------------------------------------------------------------------------

    def _create_refund(self, request: Request) -> Response:
        form = self._form(request, _REFUND_PARAMS)
        intent = self._refund_intent(form)
        reason = form.get("reason")
        if reason is not None and reason not in REFUND_REASONS:
            raise self._invalid(f"Invalid reason: must be one of {sorted(REFUND_REASONS)}")
        amount = self._int(form["amount"], "amount", minimum=1) if form.get("amount") else None
        metadata = self._metadata(form.get("metadata"), "metadata")
        if intent["status"] != "succeeded":
            raise self._fail(
                400,
                f"This PaymentIntent ({intent['id']}) does not have a successful charge to refund.",
                code="charge_not_refundable",
            )
        remaining = intent["amount_received"] - sum(
            r["amount"]
            for r in self.refunds.values()
            if r["payment_intent"] == intent["id"] and r["status"] not in {"failed", "canceled"}
        )
        if remaining <= 0:
            raise self._fail(
                400,
                f"Charge {intent['latest_charge']} has already been refunded.",
                code="charge_already_refunded",
            )
        if amount is None:
            amount = remaining
        elif amount > remaining:
            raise self._fail(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({remaining})",
                code="amount_too_large",
                param="amount",
            )
        refund_id = self._id("re")
        refund = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "charge": intent["latest_charge"],
            "payment_intent": intent["id"],
            "status": self.refund_status,
            "reason": reason,
            "failure_reason": None,
            "metadata": metadata,
            "balance_transaction": self._id("txn"),
            "created": int(time.time()),
        }
        self.refunds[refund_id] = refund
        return self._ok(copy.deepcopy(refund))

    def _refund_intent(self, form: dict[str, Any]) -> dict[str, Any]:
        intent_id, charge_id = form.get("payment_intent"), form.get("charge")
        if bool(intent_id) == bool(charge_id):
            raise self._invalid("You must pass exactly one of payment_intent or charge.")
        if intent_id:
            intent = self.payment_intents.get(intent_id)
            if intent is None:
                raise self._invalid(
                    f"No such payment_intent: '{intent_id}'",
                    param="payment_intent",
                    code="resource_missing",
                )
            return intent
        for intent in self.payment_intents.values():
            if intent["latest_charge"] == charge_id and intent["status"] == "succeeded":
                return intent
        raise self._invalid(
            f"No such charge: '{charge_id}'", param="charge", code="resource_missing"
        )

    def _list_refunds(self, request: Request) -> Response:
        intent_id = request.query.get("payment_intent")
        charge_id = request.query.get("charge")
        limit = self._int(request.query.get("limit", "10"), "limit", minimum=1)
        if limit > 100:
            raise self._invalid("limit must be at most 100", param="limit")
        matching = [
            r
            for r in reversed(self.refunds.values())  # newest first, as Stripe lists
            if (intent_id is None or r["payment_intent"] == intent_id)
            and (charge_id is None or r["charge"] == charge_id)
        ]
        after = request.query.get("starting_after")
        if after:
            ids = [r["id"] for r in matching]
            if after not in ids:
                raise self._invalid(f"No such refund: '{after}'", param="starting_after")
            matching = matching[ids.index(after) + 1 :]
        page = matching[:limit]
        return self._ok(
            {
                "object": "list",
                "url": "/v1/refunds",
                "has_more": len(matching) > limit,
                "data": copy.deepcopy(page),
            }
        )

    def _get_refund(self, request: Request) -> Response:
        refund = self.refunds.get(request.params["id"])
        if refund is None:
            raise self._missing("refund", request.params["id"], "refund")
        return self._ok(copy.deepcopy(refund))

    # -- files -----------------------------------------------------------------------------------

    def _create_file(self, request: Request) -> Response:
        try:
            parts = decode_multipart(request.body, request.header("Content-Type"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._invalid(
                f"File uploads must be multipart/form-data ({exc})", param="file"
            ) from None
        by_name: dict[str, Part] = {}
        for part in parts:
            if part.name not in _FILE_PARAMS:
                raise self._invalid(f"Received unknown parameter: {part.name}", param=part.name)
            if part.name in by_name:
                raise self._invalid(f"Received {part.name} more than once", param=part.name)
            by_name[part.name] = part
        purpose_part = by_name.get("purpose")
        if purpose_part is None:
            raise self._invalid("Missing required param: purpose.", param="purpose")
        purpose = purpose_part.content.decode("utf-8", "replace")
        if purpose not in FILE_PURPOSES:
            raise self._invalid(
                f"Invalid purpose: this fake takes only {sorted(FILE_PURPOSES)}", param="purpose"
            )
        file_part = by_name.get("file")
        if file_part is None or file_part.filename is None:
            raise self._invalid("Missing required param: file.", param="file")
        if not file_part.content:
            raise self._invalid("The file you uploaded is empty.", param="file")
        file_type = next(
            (kind for magic, kind in _FILE_SIGNATURES if file_part.content.startswith(magic)), None
        )
        if file_type is None:
            raise self._invalid(
                f"The file you uploaded is not a PDF, JPEG or PNG file, which {purpose} requires.",
                param="file",
                code="file_type_not_supported",
            )
        file_id = self._id("file")
        created = int(time.time())
        uploaded = {
            "id": file_id,
            "object": "file",
            "created": created,
            "expires_at": None,
            "filename": file_part.filename,
            "links": None,
            "purpose": purpose,
            "size": len(file_part.content),
            "title": None,
            "type": file_type,
            "url": f"https://files.stripe.com/v1/files/{file_id}/contents",
        }
        self.files[file_id] = {**uploaded, "content": file_part.content}
        return self._ok(copy.deepcopy(uploaded))

    # -- disputes --------------------------------------------------------------------------------

    def _dispute(self, request: Request) -> dict[str, Any]:
        dispute = self.disputes.get(request.params["id"])
        if dispute is None:
            raise self._missing("dispute", request.params["id"], "dispute")
        return dispute

    def _get_dispute(self, request: Request) -> Response:
        return self._ok(copy.deepcopy(self._dispute(request)))

    def _update_dispute(self, request: Request) -> Response:
        dispute = self._dispute(request)
        form = self._form(request, _DISPUTE_PARAMS)
        evidence = form.get("evidence") or {}
        if not isinstance(evidence, dict):
            raise self._invalid("Invalid object", param="evidence")
        for name, value in evidence.items():
            if name not in EVIDENCE_FIELDS:
                raise self._invalid(
                    f"Received unknown parameter: evidence[{name}]", param=f"evidence[{name}]"
                )
            if not isinstance(value, str):
                raise self._invalid("Invalid string", param=f"evidence[{name}]")
            if name in FILE_EVIDENCE_FIELDS and value:
                uploaded = self.files.get(value)
                if uploaded is None or uploaded["purpose"] != "dispute_evidence":
                    raise self._invalid(
                        f"No such file upload: '{value}'",
                        param=f"evidence[{name}]",
                        code="resource_missing",
                    )
        submit = form.get("submit", "true")  # Stripe submits unless told otherwise
        if submit not in {"true", "false"}:
            raise self._invalid("Invalid boolean", param="submit")
        if dispute["status"] in CLOSED_DISPUTE_STATUSES:
            raise self._fail(400, "This dispute is already closed.")
        if dispute["status"].endswith("under_review"):
            raise self._fail(
                400, "This dispute has already been submitted and can no longer be updated."
            )
        dispute["evidence"].update({k: v or None for k, v in evidence.items()})
        dispute["metadata"].update(self._metadata(form.get("metadata"), "metadata"))
        details = dispute["evidence_details"]
        details["has_evidence"] = any(v for v in dispute["evidence"].values())
        if submit == "true":
            dispute["status"] = dispute["status"].replace("needs_response", "under_review")
            details["submission_count"] += 1
        return self._ok(copy.deepcopy(dispute))

    def _close_dispute(self, request: Request) -> Response:
        dispute = self._dispute(request)
        self._form(request, frozenset({"expand"}))
        if dispute["status"] in CLOSED_DISPUTE_STATUSES:
            raise self._fail(400, "This dispute is already closed.")
        if not dispute["status"].endswith("needs_response"):
            raise self._fail(400, "This dispute is under review and can no longer be closed.")
        warning = dispute["status"].startswith("warning_")
        dispute["status"] = "warning_closed" if warning else "lost"
        return self._ok(copy.deepcopy(dispute))


def form_of(recorded: RecordedRequest) -> dict[str, Any]:
    """The decoded form body of one recorded request."""
    return decode_form(recorded.body)


def parts_of(recorded: RecordedRequest) -> dict[str, Part]:
    """The multipart parts of one recorded request, by name."""
    return {p.name: p for p in decode_multipart(recorded.body, recorded.headers["content-type"])}
