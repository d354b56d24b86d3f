"""One payment: amounts in its currency, its customer, a link to it in the provider's dashboard,
its refunds, its webhook deliveries and one timeline (status changes, webhooks, refunds, disputes,
proofs and, for those who may read the audit log, audit entries). Actions follow the role, and each
handler reads the actor again from the session and calls a guarded service, so a crafted event is
refused on the server: "Request refund", "Replay" per delivery (``processing.replay_as``, as on
/webhooks) and "Record proof" for open manual payments (``proofs.record_proof_by_staff``).

A refund request may call the provider, so it runs as a background event: the button is disabled
and says so while it runs, and a second request from the same page is ignored until it ends. A
proof is an upload (``rx.upload``) that carries the form's fields with it; the amount is parsed
with ``parse_amount`` in the payment's currency."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

import reflex as rx
from reflex.event import EventSpec
from reflex.vars import ObjectVar
from sqlmodel import Session

from dashboard.components.nav import layout
from dashboard.pages.webhooks import delivery_row
from dashboard.state import LOGIN_ROUTE, AuthState, actor_for_session
from payments_core.config import get_settings
from payments_core.db import read_engine, transaction
from payments_core.models import ManualProof, Refund
from payments_core.models.payments import OPEN_STATUSES
from payments_core.money import MoneyError, format_amount, parse_amount
from payments_core.providers.base import ProviderName
from payments_core.providers.registry import Adapters
from payments_core.services.payments import PaymentNotFoundError
from payments_core.services.permissions import Actor, Permission, PermissionDenied, require
from payments_core.services.processing import replay_as
from payments_core.services.proofs import ProofError, ProofFile, record_proof_by_staff
from payments_core.services.refunds import RefundError, refunds_for_payment, request_and_execute
from payments_core.services.search import PaymentView, get_payment_view

log = logging.getLogger(__name__)
# One set of provider adapters per server process, built from the settings on first use.
ADAPTERS = Adapters()

ROUTE = "/payments/[payment_id]"
_DETAIL_FIELDS = (
    ("Status", "status"),
    ("Amount", "amount"),
    ("Captured", "captured"),
    ("Refunded", "refunded"),
    ("Refund in flight", "refund_pending"),
    ("Disputed", "disputed"),
    ("Refundable", "refundable"),
    ("Provider", "provider"),
    ("Provider reference", "provider_reference"),
    ("Host reference", "host_reference"),
    ("Method", "method"),
    ("Created (UTC)", "created_at"),
    ("Paid (UTC)", "paid_at"),
)
_CUSTOMER_FIELDS = (
    ("Name", "customer_name"),
    ("Email", "customer_email"),
    ("Phone", "customer_phone"),
)
# Shown on their own, above the fields, when set.
_NOTE_FIELDS = ("description", "failure_reason", "review_reason", "provider_url")
_OPEN = frozenset(s.value for s in OPEN_STATUSES)
PROOF_UPLOAD_ID = "proof-upload"
PROOF_TYPES = {"image/png": [".png"], "image/jpeg": [".jpg", ".jpeg"], "application/pdf": [".pdf"]}


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else ""


def refund_row(refund: Refund) -> dict[str, str]:
    """A refund as the dashboard's tables show it (also used by the refunds page)."""
    return {
        "id": refund.id,
        "payment_id": refund.payment_id,
        "requested_at": _when(refund.created_at),
        "amount": format_amount(refund.amount_minor, refund.currency),
        "status": refund.status,
        "reason": refund.reason,
        "note": refund.note or "",
        "requested_by": refund.requested_by,
        "decided_by": refund.decided_by or "",
        "why": refund.rejection_reason or refund.failure_reason or "",
    }


def _change(from_status: str | None, to_status: str | None) -> str:
    if not to_status:
        return ""
    return f"{from_status} → {to_status}" if from_status else to_status


def _form_amount(
    form: dict[str, Any],
    currency: str,
    payment_id: str,
    error: Callable[[str, str], Exception],
) -> int:
    """The form's amount in minor units of the payment's currency; ``error(field, message)``
    is raised when the payment is not loaded or the amount is not one of that currency."""
    if not currency:
        raise error("payment", f"payment {payment_id} is not loaded")
    try:
        return parse_amount(str(form.get("amount", "")), currency)
    except MoneyError as exc:
        raise error("amount", str(exc)) from None


@dataclass(frozen=True, slots=True)
class _RefundOutcome:
    actor: Actor | None  # None: the session has ended
    refund: Refund | None = None
    error: str = ""


def _request_refund(
    token: str, payment_id: str, currency: str, form: dict[str, Any]
) -> _RefundOutcome:
    """Check the session and the permission, then request (and, when due, execute) the refund."""
    actor = actor_for_session(token)
    if actor is None:
        return _RefundOutcome(None)
    try:
        require(actor, Permission.REQUEST_REFUND)
        amount_minor = _form_amount(form, currency, payment_id, RefundError)
        refund = request_and_execute(
            transaction=transaction,
            adapters=ADAPTERS,
            actor=actor,
            payment_id=payment_id,
            amount_minor=amount_minor,
            currency=currency,
            reason=str(form.get("reason", "")),
            note=str(form.get("note", "")) or None,
        )
    except PermissionDenied as exc:
        log.warning("refund request refused on payment %s: %s", payment_id, exc)
        return _RefundOutcome(actor, error=f"Refused: {exc}")
    except RefundError as exc:
        return _RefundOutcome(actor, error=f"Refund refused ({exc.field}): {exc.message}")
    return _RefundOutcome(actor, refund)


def _accepts_proofs(view: PaymentView) -> bool:
    """Whether the page offers "Record proof": an open manual payment (the service decides)."""
    return view.provider == ProviderName.MANUAL.value and view.status in _OPEN


def _paid_on(text: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ProofError("paid_on", f"{text!r} is not a date (YYYY-MM-DD)") from None


def _record_proof(
    actor: Actor, payment_id: str, currency: str, form: dict[str, Any], upload: ProofFile | None
) -> ManualProof:
    """Parse the form (the amount in the payment's currency) and record the proof; the service
    checks the permission before anything else."""
    require(actor, Permission.RECORD_PROOF)  # before parsing: a refused actor learns nothing
    amount_minor = _form_amount(form, currency, payment_id, ProofError)
    note = str(form.get("note", "")).strip()
    with transaction() as session:
        return record_proof_by_staff(
            session=session,
            settings=get_settings(),
            actor=actor,
            payment_id=payment_id,
            reference=str(form.get("reference", "")),
            amount_minor=amount_minor,
            currency=currency,
            paid_on=_paid_on(str(form.get("paid_on", ""))),
            file=upload,
            notes=note or None,
        )


class PaymentDetailState(AuthState):
    payment: rx.Field[dict[str, str]] = rx.field({})
    timeline: rx.Field[list[dict[str, str]]] = rx.field([])
    refunds: rx.Field[list[dict[str, str]]] = rx.field([])
    deliveries: rx.Field[list[dict[str, str]]] = rx.field([])
    accepts_proofs: bool = False
    proof_max_bytes: int = 0  # from the settings, read when the page loads
    error: str = ""
    # The outcome of the last refund request: a refusal, or the new refund's status.
    refund_error: str = ""
    refund_notice: str = ""
    refund_status: str = ""
    refunding: bool = False  # a request is with the service (and maybe the provider) right now
    # The outcome of the last replay, and of the last proof (with what the reviewer will see).
    delivery_error: str = ""
    delivery_notice: str = ""
    proof_error: str = ""
    proof_notice: str = ""
    proof_warning: str = ""
    _currency: str = ""

    def _payment_id(self) -> str:
        return str(self.router.url.path).rstrip("/").rsplit("/", 1)[-1]

    def _fill(self, actor: Actor) -> None:
        payment_id = self._payment_id()
        self.payment, self.timeline, self.refunds, self._currency = {}, [], [], ""
        self.deliveries, self.accepts_proofs = [], False
        try:
            with Session(read_engine()) as session:
                view = get_payment_view(
                    session=session,
                    actor=actor,
                    payment_id=payment_id,
                    postfinance_space_id=get_settings().postfinance_space_id,
                )
                refunds = refunds_for_payment(session=session, payment_id=view.id)
        except (PaymentNotFoundError, PermissionDenied) as exc:
            self.error = str(exc)
            return
        self.error = ""
        self._currency = view.currency
        self.payment = {
            key: (
                _when(getattr(view, key)) if key.endswith("_at") else str(getattr(view, key) or "")
            )
            for key in (
                *(k for _, k in _DETAIL_FIELDS),
                *(k for _, k in _CUSTOMER_FIELDS),
                *_NOTE_FIELDS,
            )
        } | {"id": view.id}
        self.timeline = [
            {
                "at": _when(e.at),
                "kind": e.kind,
                "actor": e.actor,
                "summary": e.summary,
                "change": _change(e.from_status, e.to_status),
            }
            for e in view.timeline
        ]
        self.refunds = [refund_row(r) for r in refunds]
        self.deliveries = [delivery_row(w) for w in view.webhooks]
        self.accepts_proofs = _accepts_proofs(view)
        self.proof_max_bytes = get_settings().proof_max_bytes

    def _clear_outcomes(self) -> None:
        self.refund_error = self.refund_notice = self.refund_status = ""
        self.delivery_error = self.delivery_notice = ""
        self.proof_error = self.proof_notice = self.proof_warning = ""

    @rx.event
    def load(self) -> EventSpec | None:
        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        self._clear_outcomes()
        self._fill(actor)
        return None

    @rx.event(background=True)
    async def request_refund(self, form: dict[str, Any]) -> AsyncIterator[EventSpec | None]:
        async with self:
            if self.refunding:  # one request at a time, whatever the browser sends
                log.warning(
                    "refund request on payment %s ignored: one is already running",
                    self._payment_id(),
                )
                return
            self.refunding = True
            self._clear_outcomes()
            token, payment_id, currency = self.session_token, self._payment_id(), self._currency
        # The form shows the request running from here on; the session check and the provider
        # call run off the event loop, so a slow provider stalls no one else's page.
        outcome: _RefundOutcome | None = None
        try:
            outcome = await asyncio.to_thread(_request_refund, token, payment_id, currency, form)
        finally:
            async with self:
                self.refunding = False
                if outcome is None:  # an unexpected error (logged by Reflex): the outcome is open
                    self.refund_error = (
                        "The refund request did not finish; check this payment's refunds "
                        "before trying again."
                    )
                elif outcome.actor is not None:
                    self.refund_error = outcome.error
                    if outcome.refund is not None:
                        refund = outcome.refund
                        self.refund_status = refund.status
                        self.refund_notice = (
                            f"Refund {refund.id} of "
                            f"{format_amount(refund.amount_minor, refund.currency)}"
                        )
                        self._fill(outcome.actor)
        if outcome is not None and outcome.actor is None:
            yield rx.redirect(LOGIN_ROUTE)

    @rx.event
    def replay_delivery(self, event_id: str) -> EventSpec | None:
        """Make one of this payment's deliveries due again (``replay_as`` checks the role)."""
        actor = self._actor()  # read again: the role may have changed since the page loaded
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        self._clear_outcomes()
        wanted = str(event_id)
        delivery = next((d for d in self.deliveries if d["id"] == wanted), None)
        try:
            if delivery is None:
                raise LookupError(f"event {wanted} is not one of this payment's deliveries")
            with transaction() as session:
                replay_as(session=session, actor=actor, event_ids=[int(wanted)])
        except (PermissionDenied, LookupError, ValueError) as exc:
            log.warning(
                "replay of event %s refused on payment %s: %s", wanted, self._payment_id(), exc
            )
            self.delivery_error = f"Not replayed: {exc}"
            self._fill(actor)
            return None
        self._fill(actor)
        now = next((d["status"] for d in self.deliveries if d["id"] == wanted), "")
        self.delivery_notice = (
            f"{delivery['provider']} event {delivery['event_id']} ({delivery['event_type']}) "
            f"will be processed again: it was {delivery['status']}, it is now {now}."
        )
        return None

    @rx.event
    async def record_proof(
        self, files: list[rx.UploadFile], form: dict[str, Any]
    ) -> list[EventSpec] | EventSpec | None:
        """Record a proof from the form and its file (sent together as one upload)."""
        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        self._clear_outcomes()
        payment_id = self._payment_id()
        upload = None
        if files:
            # One byte over the limit is enough for the service to refuse the file as too large.
            content = await files[0].read(get_settings().proof_max_bytes + 1)
            upload = ProofFile(files[0].name or "proof", content)
        try:
            fields = form if isinstance(form, dict) else {}
            proof = _record_proof(actor, payment_id, self._currency, fields, upload)
        except PermissionDenied as exc:
            log.warning("proof refused on payment %s: %s", payment_id, exc)
            self.proof_error = f"Refused: {exc}"
            return None
        except ProofError as exc:
            self.proof_error = f"Proof not recorded ({exc.field}): {exc}"
            return None
        self._fill(actor)
        amount = format_amount(proof.amount_minor, proof.currency)
        self.proof_notice = (
            f"Proof {proof.id} of {amount} recorded. A manager must review it on /review (not "
            f"{actor.name}: whoever records a proof cannot approve it) before the payment is paid."
        )
        warnings = []
        if proof.duplicate_of_payment_id:
            warnings.append(
                f"the same file or reference was already used on {proof.duplicate_of_payment_id}"
            )
        if amount != self.payment.get("amount"):
            warnings.append(f"its amount differs from the payment's {self.payment.get('amount')}")
        self.proof_warning = (
            ("Flagged for the reviewer: " + "; ".join(warnings) + ".") if warnings else ""
        )
        return [
            rx.clear_selected_files(PROOF_UPLOAD_ID),
            *(
                rx.set_value(f"proof-{name}", "")
                for name in ("amount", "reference", "paid-on", "note")
            ),
        ]

    @rx.event
    def proof_file_refused(self) -> None:
        """The browser refused the chosen file (its type or size) before sending it."""
        self._clear_outcomes()
        self.proof_error = (
            "That file was not taken: only PNG, JPEG or PDF, at most "
            f"{get_settings().proof_max_bytes:,} bytes."
        )


def _payment() -> ObjectVar[dict[str, str]]:
    # Reflex's type stubs see a dict field as an array; it is an object var at run time.
    return cast(ObjectVar[dict[str, str]], PaymentDetailState.payment)


# Badge colours by timeline kind; audit entries are grey and outlined, apart from the payment's
# own events.
_KIND_COLOURS = (
    ("status", "green"),
    ("webhook", "violet"),
    ("refund", "blue"),
    ("dispute", "red"),
    ("proof", "amber"),
    ("flag", "orange"),
)


def _kind_badge(kind: rx.Var[str]) -> rx.Component:
    return rx.cond(
        kind == "audit",
        rx.badge("audit", variant="outline", color_scheme="gray", class_name="kind-badge"),
        rx.match(
            kind,
            *(
                (name, rx.badge(name, color_scheme=colour, class_name="kind-badge"))
                for name, colour in _KIND_COLOURS
            ),
            rx.badge(kind, color_scheme="gray", class_name="kind-badge"),
        ),
    )


def _event(event: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(event["at"]),
        rx.table.cell(_kind_badge(event["kind"])),
        rx.table.cell(event["summary"]),
        rx.table.cell(event["change"]),
        rx.table.cell(event["actor"]),
        class_name=rx.cond(event["kind"] == "audit", "timeline-row timeline-audit", "timeline-row"),
        custom_attrs={"data-kind": event["kind"]},
    )


def _refund(refund: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(refund["requested_at"]),
        rx.table.cell(refund["id"]),
        rx.table.cell(refund["amount"], text_align="right"),
        rx.table.cell(refund["status"], class_name="refund-status"),
        rx.table.cell(refund["reason"]),
        rx.table.cell(refund["requested_by"]),
        rx.table.cell(refund["decided_by"]),
        rx.table.cell(refund["why"]),
        class_name="refund-row",
    )


def _refunds_table() -> rx.Component:
    return rx.table.root(
        rx.table.header(
            rx.table.row(
                *(
                    rx.table.column_header_cell(h)
                    for h in (
                        "Requested (UTC)",
                        "Refund",
                        "Amount",
                        "Status",
                        "Reason",
                        "Requested by",
                        "Decided by",
                        "Why",
                    )
                )
            )
        ),
        rx.table.body(rx.foreach(PaymentDetailState.refunds, _refund)),
        width="100%",
        id="refunds",
    )


def _refund_form() -> rx.Component:
    return rx.form(
        rx.hstack(
            rx.input(placeholder="Amount, e.g. 12.50", name="amount", id="refund-amount"),
            rx.input(placeholder="Reason", name="reason", id="refund-reason", width="16em"),
            rx.input(placeholder="Note (optional)", name="note", id="refund-note", width="20em"),
            rx.button(
                rx.cond(
                    PaymentDetailState.refunding,
                    rx.fragment(rx.spinner(size="1"), "Requesting refund…"),
                    "Request refund",
                ),
                type="submit",
                disabled=PaymentDetailState.refunding,
                id="refund-submit",
            ),
            spacing="3",
        ),
        on_submit=PaymentDetailState.request_refund,
        reset_on_submit=False,
        id="refund-form",
    )


def _refund_outcome() -> rx.Component:
    # Outside the permission cond: a refusal is shown whoever triggered it.
    return rx.fragment(
        rx.cond(
            PaymentDetailState.refund_error != "",
            rx.callout(PaymentDetailState.refund_error, color_scheme="red", id="refund-error"),
        ),
        rx.cond(
            PaymentDetailState.refund_status != "",
            rx.callout.root(
                rx.callout.text(
                    PaymentDetailState.refund_notice,
                    ": ",
                    rx.el.span(PaymentDetailState.refund_status, id="refund-result-status"),
                ),
                color_scheme="green",
                id="refund-notice",
            ),
        ),
    )


def _delivery(delivery: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(delivery["received_at"]),
        rx.table.cell(delivery["provider"]),
        rx.table.cell(delivery["event_type"]),
        rx.table.cell(delivery["event_id"]),
        rx.table.cell(delivery["verification"], class_name="delivery-verification"),
        rx.table.cell(rx.badge(delivery["status"]), class_name="delivery-status"),
        rx.table.cell(delivery["attempts"], class_name="delivery-attempts"),
        rx.table.cell(delivery["last_error"], max_width="24em", class_name="delivery-error"),
        rx.table.cell(
            rx.cond(
                AuthState.permissions.contains(Permission.REPLAY_WEBHOOKS.value)
                & (delivery["replayable"] != ""),
                rx.button(
                    "Replay",
                    on_click=PaymentDetailState.replay_delivery(delivery["id"]),  # type: ignore[operator]
                    size="1",
                    variant="soft",
                    class_name="replay-button",
                ),
            )
        ),
        class_name="delivery-row",
        id="delivery-" + delivery["id"],
    )


def _deliveries() -> rx.Component:
    return rx.vstack(
        rx.heading("Deliveries", size="4"),
        rx.cond(
            PaymentDetailState.delivery_error != "",
            rx.callout(PaymentDetailState.delivery_error, color_scheme="red", id="delivery-error"),
        ),
        rx.cond(
            PaymentDetailState.delivery_notice != "",
            rx.callout(
                PaymentDetailState.delivery_notice, color_scheme="green", id="delivery-notice"
            ),
        ),
        rx.cond(
            PaymentDetailState.deliveries.length() > 0,
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        *(
                            rx.table.column_header_cell(h)
                            for h in (
                                "Received (UTC)",
                                "Provider",
                                "Type",
                                "Event id",
                                "Verification",
                                "Status",
                                "Attempts",
                                "Last error",
                                "",
                            )
                        )
                    )
                ),
                rx.table.body(rx.foreach(PaymentDetailState.deliveries, _delivery)),
                size="1",
                width="100%",
                id="deliveries",
            ),
            rx.text("No webhook deliveries about this payment.", size="2", id="no-deliveries"),
        ),
        width="100%",
        spacing="3",
    )


def _proof_form() -> rx.Component:
    return rx.vstack(
        rx.heading("Record proof", size="4"),
        rx.text(
            "A bank transfer seen in the bank's portal or cash taken at the counter: the proof "
            "waits for a manager's review before the payment counts as paid.",
            size="2",
            color_scheme="gray",
        ),
        rx.upload(
            rx.text(
                rx.cond(
                    rx.selected_files(PROOF_UPLOAD_ID).length() > 0,
                    rx.selected_files(PROOF_UPLOAD_ID).join(", "),
                    "Drop the receipt here (PNG, JPEG or PDF), or click to choose; optional",
                ),
                id="proof-chosen",
            ),
            id=PROOF_UPLOAD_ID,
            multiple=False,
            max_files=1,
            max_size=PaymentDetailState.proof_max_bytes,
            accept=PROOF_TYPES,
            on_drop_rejected=PaymentDetailState.proof_file_refused,
            border="1px dashed var(--gray-7)",
            padding="0.75em",
        ),
        rx.form(
            rx.hstack(
                rx.input(placeholder="Amount, e.g. 125.00", name="amount", id="proof-amount"),
                rx.input(
                    placeholder="Reference on the transfer or receipt",
                    name="reference",
                    id="proof-reference",
                    width="18em",
                ),
                rx.el.label(
                    "Paid on ",
                    rx.input(type="date", name="paid_on", id="proof-paid-on"),
                    display="flex",
                    align_items="center",
                    gap="0.5em",
                ),
                rx.input(placeholder="Note (optional)", name="note", id="proof-note", width="16em"),
                rx.button("Record proof", type="submit", id="proof-submit"),
                spacing="3",
                align="center",
                wrap="wrap",
            ),
            # The file travels with the fields in one upload request.
            on_submit=lambda form: PaymentDetailState.record_proof(  # type: ignore[operator]
                rx.upload_files(upload_id=PROOF_UPLOAD_ID), form
            ),
            reset_on_submit=False,
            id="proof-form",
        ),
        width="100%",
        spacing="3",
        id="proof-section",
    )


def _proof_outcome() -> rx.Component:
    # Outside the permission cond: a refusal is shown whoever triggered it.
    return rx.fragment(
        rx.cond(
            PaymentDetailState.proof_error != "",
            rx.callout(PaymentDetailState.proof_error, color_scheme="red", id="proof-error"),
        ),
        rx.cond(
            PaymentDetailState.proof_notice != "",
            rx.callout.root(
                rx.callout.text(
                    PaymentDetailState.proof_notice,
                    " ",
                    rx.link("Open the review queue", href="/review", id="proof-review-link"),
                ),
                color_scheme="green",
                id="proof-notice",
            ),
        ),
        rx.cond(
            PaymentDetailState.proof_warning != "",
            rx.callout(PaymentDetailState.proof_warning, color_scheme="orange", id="proof-warning"),
        ),
    )


def _notes() -> rx.Component:
    """What the payment says about itself, and whether it waits for someone, in plain sight."""
    payment = _payment()
    return rx.fragment(
        rx.cond(
            payment["review_reason"] != "",
            rx.callout.root(
                rx.callout.text("Needs review: ", payment["review_reason"]),
                color_scheme="orange",
                id="review-flag",
            ),
        ),
        rx.cond(
            payment["failure_reason"] != "",
            rx.callout.root(
                rx.callout.text("Failed: ", payment["failure_reason"]),
                color_scheme="red",
                id="failure-reason",
            ),
        ),
        rx.cond(
            payment["description"] != "",
            rx.text(payment["description"], id="payment-description"),
        ),
    )


def _customer() -> rx.Component:
    payment = _payment()
    return rx.card(
        rx.heading("Customer", size="3"),
        rx.data_list.root(
            *(
                rx.data_list.item(
                    rx.data_list.label(label),
                    rx.data_list.value(rx.cond(payment[key] != "", payment[key], "—")),
                )
                for label, key in _CUSTOMER_FIELDS
            ),
        ),
        id="customer",
        min_width="18em",
    )


def _provider_link() -> rx.Component:
    payment = _payment()
    return rx.cond(
        payment["provider_url"] != "",
        rx.link(
            "Open in ",
            payment["provider"],
            " ↗",
            href=payment["provider_url"],
            is_external=True,
            custom_attrs={"rel": "noopener noreferrer"},
            id="provider-link",
        ),
    )


def payment_detail_page() -> rx.Component:
    return layout(
        rx.link("← Payments", href="/payments"),
        rx.cond(
            PaymentDetailState.error != "",
            rx.callout(PaymentDetailState.error, color_scheme="red", id="detail-error"),
        ),
        rx.cond(
            PaymentDetailState.payment.contains("id"),
            rx.vstack(
                rx.hstack(
                    rx.heading("Payment ", _payment()["id"], size="6", id="payment-id"),
                    rx.badge(_payment()["status"], size="2", id="payment-status"),
                    _provider_link(),
                    align="center",
                    spacing="4",
                ),
                _notes(),
                rx.flex(
                    rx.data_list.root(
                        *(
                            rx.data_list.item(
                                rx.data_list.label(label),
                                rx.data_list.value(_payment()[key]),
                            )
                            for label, key in _DETAIL_FIELDS
                        ),
                        id="payment-fields",
                    ),
                    _customer(),
                    spacing="6",
                    wrap="wrap",
                    align="start",
                ),
                rx.heading("Refunds", size="4"),
                rx.cond(
                    AuthState.permissions.contains(Permission.REQUEST_REFUND.value),
                    _refund_form(),
                ),
                _refund_outcome(),
                _refunds_table(),
                rx.cond(
                    AuthState.permissions.contains(Permission.RECORD_PROOF.value)
                    & PaymentDetailState.accepts_proofs,
                    _proof_form(),
                ),
                _proof_outcome(),
                _deliveries(),
                rx.heading("Timeline", size="4"),
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            *(
                                rx.table.column_header_cell(h)
                                for h in ("When (UTC)", "Kind", "What", "Status", "By")
                            )
                        )
                    ),
                    rx.table.body(rx.foreach(PaymentDetailState.timeline, _event)),
                    width="100%",
                    id="timeline",
                ),
                spacing="4",
                width="100%",
            ),
        ),
    )
