"""The host-application API (``/api/v1``): create payments, read them, send manual-payment proofs.

Every call needs ``Authorization: Bearer <api key>`` (``paydesk apikey create``). Handlers are
thin: they validate the shape of the request (FastAPI/pydantic, 422 with field-level messages),
then call ``payments_core.services``; business rules live there.

``POST /api/v1/payments`` honours ``Idempotency-Key``: the same key with the same body returns the
stored answer for API_IDEMPOTENCY_HOURS; with a different body it is 409. When the provider call's
outcome was unknown (answer 502), repeating the request with the same key tries the checkout again
with the same provider idempotency key, so the provider never sees two payments.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from payments_core.config import Settings, get_settings
from payments_core.db import read_engine, transaction
from payments_core.models import ApiKey, Payment, Refund
from payments_core.providers.base import (
    LineItem,
    LineItemKind,
    ProviderAuthError,
    ProviderDeclined,
    ProviderError,
    ProviderName,
    ProviderNotConfigured,
)
from payments_core.providers.registry import Adapters
from payments_core.services import checkout, idempotency, proofs
from payments_core.services.apikeys import authenticate

router = APIRouter(prefix="/api/v1", tags=["payments"])
adapters = Adapters()


# --- Authentication ------------------------------------------------------------------------------


def api_key(authorization: Annotated[str | None, Header()] = None) -> ApiKey:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401, "missing API key: send Authorization: Bearer <key>", {"WWW-Authenticate": "Bearer"}
        )
    with transaction() as session:
        key = authenticate(session=session, key=token.strip())
    if key is None:
        raise HTTPException(401, "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
    return key


ApiKeyDep = Annotated[ApiKey, Depends(api_key)]


# --- Request and response shapes -----------------------------------------------------------------


class Customer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, max_length=32)
    name: str | None = Field(default=None, max_length=200)


class LineItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    quantity: int = Field(default=1, ge=1, le=1_000_000, strict=True)
    unit_amount: int = Field(ge=1, strict=True, description="Minor units, always positive.")
    kind: Literal["product", "discount", "shipping", "fee"] = "product"
    sku: str | None = Field(default=None, max_length=100)


class PaymentCreate(BaseModel):
    """A payment to start. ``amount`` is an integer count of the currency's minor units
    (4990 CHF = 49.90; 500 JPY = 500; 1234 KWD = 1.234)."""

    model_config = ConfigDict(extra="forbid")
    provider: Literal["stripe", "postfinance", "paystack", "mpesa", "manual", "dummy"]
    amount: int = Field(gt=0, strict=True)
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    host_reference: str | None = Field(default=None, max_length=255)
    method: str | None = Field(default=None, max_length=30)
    description: str | None = Field(default=None, max_length=500)
    customer: Customer | None = None
    line_items: list[LineItemIn] = Field(default_factory=list, max_length=100)
    metadata: dict[str, str] = Field(default_factory=dict)
    success_url: str | None = Field(default=None, max_length=2000)
    cancel_url: str | None = Field(default=None, max_length=2000)


class RefundSummary(BaseModel):
    id: str
    amount: int
    currency: str
    status: str
    created_at: str


class PaymentOut(BaseModel):
    id: str
    provider: str
    status: str
    amount: int
    currency: str
    method: str
    host_reference: str | None
    provider_reference: str | None
    checkout_url: str | None
    instructions: dict[str, Any] | None
    expires_at: str | None
    captured: int
    refunded: int
    refund_pending: int
    disputed: int
    failure_reason: str | None
    checkout_error: str | None
    livemode: bool
    created_at: str | None
    paid_at: str | None
    metadata: dict[str, Any]
    refunds: list[RefundSummary] = Field(default_factory=list)


class ProofOut(BaseModel):
    id: str
    payment_id: str
    status: str
    reference: str
    amount: int
    currency: str
    content_type: str | None
    duplicate_of_payment_id: str | None


class ApiError(BaseModel):
    error: str
    detail: str
    payment: PaymentOut | None = None


# --- Helpers ------------------------------------------------------------------------------------


def _field_errors(errors: dict[str, str]) -> JSONResponse:
    """Service-level validation failures, shaped like FastAPI's own 422 answers."""
    detail = [
        {"loc": ["body", *name.split(".")], "msg": message, "type": "value_error"}
        for name, message in errors.items()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _new_payment(body: PaymentCreate) -> checkout.NewPayment:
    customer = body.customer or Customer()
    return checkout.NewPayment(
        provider=body.provider,
        amount_minor=body.amount,
        currency=body.currency,
        host_reference=body.host_reference,
        method=body.method,
        description=body.description,
        customer_email=customer.email,
        customer_phone=customer.phone,
        customer_name=customer.name,
        line_items=tuple(
            LineItem(
                name=item.name,
                quantity=item.quantity,
                unit_amount_minor=item.unit_amount,
                kind=LineItemKind(item.kind),
                sku=item.sku,
            )
            for item in body.line_items
        ),
        metadata=body.metadata,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
    )


def _payment_out(session: Session, payment: Payment) -> dict[str, Any]:
    refunds = session.exec(
        select(Refund).where(col(Refund.payment_id) == payment.id).order_by(col(Refund.created_at))
    ).all()
    return checkout.payment_summary(payment) | {
        "refunds": [
            {
                "id": r.id,
                "amount": r.amount_minor,
                "currency": r.currency,
                "status": r.status,
                "created_at": r.created_at.isoformat(),
            }
            for r in refunds
        ]
    }


def _outcome_answer(outcome: checkout.CheckoutOutcome) -> tuple[int, dict[str, Any]]:
    with Session(read_engine()) as session:
        payment = session.get(Payment, outcome.payment.id)
        assert payment is not None
        body = _payment_out(session, payment)
    error = outcome.error
    if error is None:
        return 201, body
    return _error_status(error), {
        "error": _error_code(error),
        "detail": str(error),
        "payment": body,
    }


def _error_status(error: ProviderError) -> int:
    if isinstance(error, ProviderDeclined):
        return 422
    if isinstance(error, ProviderNotConfigured):
        return 503
    return 502


def _error_code(error: ProviderError) -> str:
    if isinstance(error, ProviderDeclined):
        return "provider_declined"
    if isinstance(error, ProviderNotConfigured):
        return "provider_not_configured"
    if isinstance(error, ProviderAuthError):
        return "provider_credentials_refused"
    return "provider_unavailable"


# --- Routes -------------------------------------------------------------------------------------


@router.post(
    "/payments",
    status_code=201,
    response_model=PaymentOut,
    responses={
        409: {"description": "Idempotency-Key reused with another body, or still in progress"},
        422: {"model": ApiError, "description": "Invalid request, or refused by the provider"},
        502: {"model": ApiError, "description": "Provider unreachable; retry with the same key"},
        503: {"model": ApiError, "description": "Provider not configured on this server"},
    },
)
def create_payment(
    body: PaymentCreate,
    key: ApiKeyDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    """Create a payment and start its checkout. Answers with the payment, its status and where to
    send the customer (``checkout_url``), or payment instructions for a manual payment."""
    settings = get_settings()
    new = _new_payment(body)
    try:
        new = checkout.validate(new)
    except checkout.PaymentRequestError as exc:
        return _field_errors(exc.errors)
    claim = None
    if idempotency_key is not None:
        digest = idempotency.request_hash(body.model_dump(mode="json"))
        try:
            with transaction() as session:
                claim = idempotency.claim(
                    session=session,
                    scope=f"api_key:{key.id}:payments",
                    key=idempotency_key,
                    digest=digest,
                    ttl=timedelta(hours=settings.api_idempotency_hours),
                )
        except idempotency.IdempotencyConflict as exc:
            return JSONResponse({"error": "idempotency_conflict", "detail": str(exc)}, 409)
        except ValueError as exc:
            return _field_errors({"idempotency_key": str(exc)})
        if claim.replay:
            return _replay(claim, key, settings)
    actor = f"api:{key.name}"
    try:
        outcome = checkout.create_payment(
            transaction=transaction,
            adapters=adapters,
            new=new,
            actor=actor,
            api_key_id=key.id,
            settings=settings,
        )
    except BaseException:
        if claim is not None:
            with transaction() as session:
                idempotency.release(session=session, record_id=claim.record_id)
        raise
    status, answer = _outcome_answer(outcome)
    if claim is not None:
        with transaction() as session:
            idempotency.store(
                session=session, record_id=claim.record_id, status=status, body=answer
            )
    return JSONResponse(answer, status_code=status)


def _replay(claim: idempotency.Claim, key: ApiKey, settings: Settings) -> JSONResponse:
    """The stored answer; if it told of an unknown provider outcome, try that checkout again
    (same provider idempotency key) and store the new answer."""
    assert claim.status is not None
    assert claim.body is not None
    stored = claim.body.get("payment", claim.body) if claim.status >= 400 else claim.body
    payment_id = stored.get("id") if isinstance(stored, dict) else None
    if claim.status == 502 and isinstance(payment_id, str):
        with Session(read_engine()) as session:
            payment = session.get(Payment, payment_id)
        if payment is not None:
            outcome = checkout.retry_checkout(
                transaction=transaction,
                adapters=adapters,
                payment=payment,
                actor=f"api:{key.name}",
                settings=settings,
            )
            status, answer = _outcome_answer(outcome)
            with transaction() as session:
                idempotency.store(
                    session=session, record_id=claim.record_id, status=status, body=answer
                )
            return JSONResponse(answer, status_code=status, headers={"Idempotent-Replayed": "true"})
    return JSONResponse(
        claim.body, status_code=claim.status, headers={"Idempotent-Replayed": "true"}
    )


@router.get("/payments/{payment_id}", response_model=PaymentOut)
def get_payment(payment_id: str, key: ApiKeyDep) -> dict[str, Any]:
    """A payment's status, amounts and refunds."""
    del key
    with Session(read_engine()) as session:
        payment = session.get(Payment, payment_id)
        if payment is None:
            raise HTTPException(404, f"no payment {payment_id}")
        return _payment_out(session, payment)


@router.post("/payments/{payment_id}/proofs", status_code=201, response_model=ProofOut)
async def upload_proof(
    payment_id: str,
    key: ApiKeyDep,
    file: Annotated[UploadFile, File(description="PNG, JPEG or PDF")],
    reference: Annotated[str, Form(min_length=1, max_length=255)],
    amount: Annotated[int, Form(gt=0, description="Minor units")],
    paid_on: Annotated[date | None, Form()] = None,
    kind: Annotated[
        Literal["bank_transfer", "cash_on_delivery", "mobile_money"] | None, Form()
    ] = None,
    notes: Annotated[str | None, Form(max_length=2000)] = None,
) -> JSONResponse:
    """A customer's proof of a manual payment; it waits for review by a manager."""
    settings = get_settings()
    content = await file.read(settings.proof_max_bytes + 1)
    if len(content) > settings.proof_max_bytes:
        return _field_errors({"file": f"larger than {settings.proof_max_bytes:,} bytes"})
    from starlette.concurrency import run_in_threadpool

    def record() -> dict[str, Any]:
        with transaction() as session:
            proof = proofs.record_proof(
                session=session,
                settings=settings,
                payment_id=payment_id,
                reference=reference,
                amount_minor=amount,
                actor=f"api:{key.name}",
                kind=kind,
                paid_on=paid_on,
                file=proofs.ProofFile(file.filename or "proof", content),
                notes=notes,
            )
            return {
                "id": proof.id,
                "payment_id": proof.payment_id,
                "status": proof.status,
                "reference": proof.reference,
                "amount": proof.amount_minor,
                "currency": proof.currency,
                "content_type": proof.content_type,
                "duplicate_of_payment_id": proof.duplicate_of_payment_id,
            }

    from payments_core.services.payments import PaymentNotFoundError

    try:
        answer = await run_in_threadpool(record)
    except PaymentNotFoundError:
        raise HTTPException(404, f"no payment {payment_id}") from None
    except proofs.ProofError as exc:
        return _field_errors({exc.field: str(exc)})
    return JSONResponse(answer, status_code=201)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with one entry per field: where (``loc``), what (``msg``) and the kind (``type``)."""
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


__all__ = ["ProviderName", "router", "validation_error"]
