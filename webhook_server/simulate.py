"""Pages customers see: the dummy provider's checkout (/simulate/{payment_id}) and the page a
checkout returns to when the host application gave no URL of its own (/return/{payment_id}).

The simulate page's Pay / Fail / Cancel buttons post a dummy webhook signed with
DUMMY_WEBHOOK_SECRET through the same intake as any provider's (verified on its bytes, stored in
the inbox, applied by the worker), so the whole flow can be watched without a provider account.
Only dummy payments have this page.
"""

from __future__ import annotations

from html import escape
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from payments_core.config import get_settings
from payments_core.db import read_engine
from payments_core.models import Payment
from payments_core.money import format_amount
from payments_core.providers import dummy
from payments_core.providers.base import ProviderName
from payments_core.status import PaymentStatus
from webhook_server.intake import Delivery, Intake

router = APIRouter(include_in_schema=False)
_intake: Intake | None = None


def use_intake(intake: Intake) -> None:
    global _intake
    _intake = intake


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">{refresh}
<style>
 body {{ font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; color: #1f2937; }}
 .card {{ border: 1px solid #e5e7eb; border-radius: 12px; padding: 1.5rem; }}
 .amount {{ font-size: 2rem; font-weight: 600; margin: .5rem 0 1rem; }}
 button {{ font-size: 1rem; padding: .6rem 1.2rem; border-radius: 8px; border: 0;
          margin-right: .5rem; cursor: pointer; }}
 .pay {{ background: #16a34a; color: white; }} .fail {{ background: #dc2626; color: white; }}
 .cancel {{ background: #e5e7eb; }} .muted {{ color: #6b7280; font-size: .9rem; }}
</style></head><body><div class="card">{body}</div></body></html>"""


def _page(title: str, body: str, status_code: int = 200, refresh: bool = False) -> HTMLResponse:
    meta = '\n<meta http-equiv="refresh" content="2">' if refresh else ""
    return HTMLResponse(
        _PAGE.format(title=escape(title), body=body, refresh=meta), status_code=status_code
    )


def _payment(payment_id: str) -> Payment | None:
    with Session(read_engine()) as session:
        return session.get(Payment, payment_id)


@router.get("/simulate/{payment_id}", response_class=HTMLResponse)
def simulate_page(payment_id: str) -> HTMLResponse:
    payment = _payment(payment_id)
    if payment is None or payment.provider != ProviderName.DUMMY.value:
        return _page("Not found", "<h1>No such simulated payment</h1>", 404)
    amount = escape(format_amount(payment.amount_minor, payment.currency))
    head = (
        "<p class='muted'>Dummy provider · test payment</p>"
        f"<h1>{escape(payment.description or 'Payment')}</h1>"
        f"<div class='amount' id='amount'>{amount}</div>"
        f"<p class='muted'>Payment <code>{escape(payment.id)}</code> · status "
        f"<strong id='status'>{escape(payment.status)}</strong></p>"
    )
    if payment.status_enum not in (PaymentStatus.CREATED, PaymentStatus.PENDING):
        return _page("Payment", head + "<p>This payment has no open checkout.</p>")
    if not get_settings().dummy_webhook_secret.get_secret_value():
        return _page(
            "Not configured",
            head + "<p>DUMMY_WEBHOOK_SECRET is not set: the simulator cannot sign webhooks.</p>",
            503,
        )
    buttons = "".join(
        f"<form method='post' action='/simulate/{escape(payment.id)}/{outcome}' "
        f"style='display:inline'><button class='{css}' type='submit' id='{outcome}'>"
        f"{label}</button></form>"
        for outcome, css, label in (
            ("succeeded", "pay", "Pay"),
            ("failed", "fail", "Fail"),
            ("canceled", "cancel", "Cancel"),
        )
    )
    return _page("Simulated checkout", head + buttons)


@router.post("/simulate/{payment_id}/{outcome}")
async def simulate_outcome(
    payment_id: str, outcome: Literal["succeeded", "failed", "canceled"]
) -> Response:
    """Post a signed dummy webhook for this payment through the intake, then send the customer
    back (success URL after paying, cancel URL otherwise)."""
    from starlette.concurrency import run_in_threadpool

    payment = await run_in_threadpool(_payment, payment_id)
    if payment is None or payment.provider != ProviderName.DUMMY.value or _intake is None:
        return _page("Not found", "<h1>No such simulated payment</h1>", 404)
    secret = get_settings().dummy_webhook_secret.get_secret_value()
    raw = dummy.simulated_event(
        payment.id, payment.amount_minor, payment.currency, outcome, livemode=payment.livemode
    )
    headers = {
        "content-type": "application/json",
        "x-dummy-signature": dummy.sign_payload(raw, secret),
    }
    answer = await _intake.areceive(Delivery("dummy", raw, headers, "127.0.0.1"))
    if answer.status_code != 200:
        detail = escape(str(answer.body.get("detail") or answer.body.get("error")))
        return _page("Not sent", f"<h1>The webhook was not accepted</h1><p>{detail}</p>", 502)
    target = payment.success_url if outcome == "succeeded" else payment.cancel_url
    return RedirectResponse(target or f"/return/{payment.id}", status_code=303)


@router.get("/return/{payment_id}", response_class=HTMLResponse)
def return_page(payment_id: str) -> HTMLResponse:
    """Where a checkout sends the customer back when the host application gave no URL."""
    payment = _payment(payment_id)
    if payment is None:
        return _page("Not found", "<h1>No such payment</h1>", 404)
    waiting = payment.status_enum in (
        PaymentStatus.CREATED,
        PaymentStatus.PENDING,
        PaymentStatus.PROCESSING,
    )
    amount = escape(format_amount(payment.amount_minor, payment.currency))
    words = {
        PaymentStatus.SUCCEEDED: "Thank you, the payment succeeded.",
        PaymentStatus.AUTHORIZED: "Thank you, the payment is authorized.",
        PaymentStatus.FAILED: "The payment failed.",
        PaymentStatus.CANCELED: "The payment was canceled.",
        PaymentStatus.EXPIRED: "The payment expired.",
    }.get(payment.status_enum, "Waiting for the provider's confirmation…")
    return _page(
        "Payment status",
        f"<h1>{escape(words)}</h1><div class='amount'>{amount}</div>"
        f"<p class='muted'>Payment <code>{escape(payment.id)}</code> · status "
        f"<strong id='status'>{escape(payment.status)}</strong></p>",
        refresh=waiting,
    )
