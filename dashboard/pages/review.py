"""Manual review: the proofs awaiting a manager, a preview of the uploaded file, approve or reject.

The preview is read on the server by proof id only (``read_proof_file``: the path comes from the
stored hash, never from the browser) and handed to the page as a data URL for the one proof being
looked at. Approving and rejecting call the services with the signed-in Actor, which also refuse a
reviewer who recorded the proof; their messages are shown as they are.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, cast

import reflex as rx
from reflex.event import EventSpec
from reflex.vars import ObjectVar
from sqlmodel import Session

from dashboard.components.nav import layout
from dashboard.state import HOME_ROUTE, LOGIN_ROUTE, AuthState
from payments_core.config import get_settings
from payments_core.db import read_engine, transaction
from payments_core.models import utcnow
from payments_core.services.payments import PaymentNotFoundError
from payments_core.services.permissions import Actor, Permission, PermissionDenied
from payments_core.services.proofs import (
    ProofError,
    ProofToReview,
    approve_proof,
    read_proof_file,
    reject_proof,
    review_queue,
)

ROUTE = "/review"
_PREVIEWABLE = frozenset({"image/png", "image/jpeg", "application/pdf"})


def _age(created_at: datetime) -> str:
    seconds = max(0, int((utcnow() - created_at).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def _row(proof: ProofToReview) -> dict[str, str]:
    return {
        "id": proof.id,
        "payment_id": proof.payment_id,
        "kind": proof.kind,
        "reference": proof.reference,
        "amount": proof.amount,
        "payment_amount": proof.payment_amount,
        "amount_differs": "yes" if proof.amount_differs else "",
        "paid_on": proof.paid_on.isoformat() if proof.paid_on else "",
        "notes": proof.notes or "",
        "recorded_by": proof.recorded_by,
        "created_at": proof.created_at.strftime("%Y-%m-%d %H:%M"),
        "age": _age(proof.created_at),
        "file_name": proof.file_name or "",
        "duplicate_of": proof.duplicate_of_payment_id or "",
    }


class ReviewState(AuthState):
    proofs: rx.Field[list[dict[str, str]]] = rx.field([])
    selected: rx.Field[dict[str, str]] = rx.field({})
    preview_url: str = ""
    preview_type: str = ""
    preview_error: str = ""
    reason: str = ""
    error: str = ""
    message: str = ""

    def _reviewer(self) -> Actor | EventSpec:
        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        if not actor.can(Permission.REVIEW_PROOF):
            return rx.redirect(HOME_ROUTE)
        return actor

    def _refresh(self, actor: Actor, keep: str = "") -> None:
        with Session(read_engine()) as session:
            self.proofs = [_row(p) for p in review_queue(session=session, actor=actor)]
        chosen = next((p for p in self.proofs if p["id"] == keep), None)
        self._show(actor, chosen or (self.proofs[0] if self.proofs else None))

    def _show(self, actor: Actor, proof: dict[str, str] | None) -> None:
        self.selected = proof or {}
        self.reason = ""
        self.preview_url = self.preview_type = self.preview_error = ""
        if proof is None or not proof["file_name"]:
            return
        try:
            with Session(read_engine()) as session:
                found = read_proof_file(
                    session=session, settings=get_settings(), actor=actor, proof_id=proof["id"]
                )
        except ProofError as exc:
            self.preview_error = str(exc)
            return
        if found is None:
            return
        file, content_type = found
        if content_type in _PREVIEWABLE:
            encoded = base64.b64encode(file.content).decode("ascii")
            self.preview_type = content_type
            self.preview_url = f"data:{content_type};base64,{encoded}"

    @rx.event
    def load(self) -> EventSpec | None:
        actor = self._reviewer()
        if not isinstance(actor, Actor):
            return actor
        self.error = self.message = ""
        try:
            self._refresh(actor)
        except PermissionDenied as exc:
            self.error = str(exc)
        return None

    @rx.event
    def choose(self, proof_id: str) -> EventSpec | None:
        actor = self._reviewer()
        if not isinstance(actor, Actor):
            return actor
        self.error = self.message = ""
        self._show(actor, next((p for p in self.proofs if p["id"] == proof_id), None))
        return None

    @rx.event
    def set_reason(self, value: str) -> None:
        self.reason = value

    @rx.event
    def approve(self) -> EventSpec | None:
        actor = self._reviewer()
        if not isinstance(actor, Actor):
            return actor
        proof_id = self.selected.get("id", "")
        try:
            with transaction() as session:
                approve_proof(session=session, actor=actor, proof_id=proof_id)
        except (ProofError, PermissionDenied, PaymentNotFoundError) as exc:
            self.error, self.message = str(exc), ""
            return None
        self.error = ""
        self.message = (
            f"Proof {proof_id} approved: payment {self.selected['payment_id']} succeeded."
        )
        self._refresh(actor)
        return None

    @rx.event
    def reject(self, form: dict[str, Any]) -> EventSpec | None:
        actor = self._reviewer()
        if not isinstance(actor, Actor):
            return actor
        proof_id = self.selected.get("id", "")
        reason = str(form.get("reason", ""))
        try:
            with transaction() as session:
                reject_proof(session=session, actor=actor, proof_id=proof_id, reason=reason)
        except (ProofError, PermissionDenied, PaymentNotFoundError) as exc:
            self.error, self.message = str(exc), ""
            self.reason = reason
            return None
        self.error = ""
        self.message = (
            f"Proof {proof_id} rejected; payment {self.selected['payment_id']} stays open."
        )
        self._refresh(actor)
        return None


def _selected() -> ObjectVar[dict[str, str]]:
    # Reflex's type stubs see a dict field as an array; it is an object var at run time.
    return cast(ObjectVar[dict[str, str]], ReviewState.selected)


def _queue_row(proof: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(
            rx.button(
                "Review",
                # mypy reads rx.event as a class, not the EventCallback it returns.
                on_click=ReviewState.choose(proof["id"]),  # type: ignore[operator]
                size="1",
                variant=rx.cond(_selected()["id"] == proof["id"], "solid", "soft"),
                class_name="proof-select",
            )
        ),
        rx.table.cell(proof["id"]),
        rx.table.cell(
            rx.link(
                proof["payment_id"],
                href="/payments/" + proof["payment_id"],
                class_name="proof-payment-link",
            )
        ),
        rx.table.cell(proof["amount"], text_align="right"),
        rx.table.cell(proof["reference"]),
        rx.table.cell(proof["kind"]),
        rx.table.cell(proof["recorded_by"]),
        rx.table.cell(proof["age"]),
        rx.table.cell(
            rx.cond(proof["duplicate_of"] != "", rx.badge("duplicate", color_scheme="red"))
        ),
        class_name="proof-row",
    )


def _preview() -> rx.Component:
    return rx.box(
        rx.cond(
            ReviewState.preview_error != "",
            rx.callout(ReviewState.preview_error, color_scheme="orange", id="preview-error"),
        ),
        rx.cond(
            ReviewState.preview_type == "application/pdf",
            rx.vstack(
                rx.el.object(
                    rx.text("This browser shows no PDFs inline; use the link below."),
                    data=ReviewState.preview_url,
                    type="application/pdf",
                    width="100%",
                    height="600px",
                    id="proof-preview-pdf",
                ),
                rx.link(
                    "Download the PDF",
                    href=ReviewState.preview_url,
                    download=_selected()["file_name"],
                    id="proof-download",
                ),
                width="100%",
            ),
            rx.cond(
                ReviewState.preview_url != "",
                rx.image(
                    src=ReviewState.preview_url,
                    alt=_selected()["file_name"],
                    max_width="100%",
                    max_height="600px",
                    border="1px solid var(--gray-5)",
                    id="proof-preview",
                ),
                rx.cond(
                    ReviewState.preview_error == "",
                    rx.text("No file was uploaded with this proof.", id="no-file"),
                ),
            ),
        ),
        width="100%",
    )


def _details() -> rx.Component:
    fields = (
        ("Proof", "id"),
        ("Payment amount", "payment_amount"),
        ("Proof amount", "amount"),
        ("Reference", "reference"),
        ("Kind", "kind"),
        ("Paid on", "paid_on"),
        ("Recorded by", "recorded_by"),
        ("Recorded (UTC)", "created_at"),
        ("File", "file_name"),
        ("Notes", "notes"),
    )
    return rx.vstack(
        rx.heading(
            "Proof for payment ",
            rx.link(_selected()["payment_id"], href="/payments/" + _selected()["payment_id"]),
            size="4",
            id="selected-proof",
        ),
        rx.cond(
            _selected()["duplicate_of"] != "",
            rx.callout(
                rx.text(
                    "The same proof (file, or reference with amount) was already used on payment ",
                    rx.link(
                        _selected()["duplicate_of"],
                        href="/payments/" + _selected()["duplicate_of"],
                        id="duplicate-link",
                    ),
                    ". Check it before approving.",
                ),
                color_scheme="red",
                id="duplicate-warning",
            ),
        ),
        rx.cond(
            _selected()["amount_differs"] != "",
            rx.callout(
                "The proof's amount differs from the payment's.",
                color_scheme="orange",
                id="amount-warning",
            ),
        ),
        rx.data_list.root(
            *(
                rx.data_list.item(rx.data_list.label(label), rx.data_list.value(_selected()[key]))
                for label, key in fields
            ),
            id="proof-fields",
        ),
        _preview(),
        rx.hstack(
            rx.button("Approve", on_click=ReviewState.approve, color_scheme="green", id="approve"),
            rx.form(
                rx.hstack(
                    rx.input(
                        placeholder="Why is it rejected? (required)",
                        name="reason",
                        value=ReviewState.reason,
                        on_change=ReviewState.set_reason,
                        id="reject-reason",
                        width="24em",
                    ),
                    rx.button("Reject", type="submit", color_scheme="red", id="reject"),
                ),
                on_submit=ReviewState.reject,
                reset_on_submit=False,
            ),
            spacing="4",
            align="center",
        ),
        spacing="3",
        width="100%",
        padding_top="1em",
    )


def review_page() -> rx.Component:
    return layout(
        rx.heading("Manual review", size="6"),
        rx.cond(
            ReviewState.message != "",
            rx.callout(ReviewState.message, color_scheme="green", id="review-message"),
        ),
        rx.cond(
            ReviewState.error != "",
            rx.callout(ReviewState.error, color_scheme="red", id="review-error"),
        ),
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    *(
                        rx.table.column_header_cell(h)
                        for h in (
                            "",
                            "Proof",
                            "Payment",
                            "Amount",
                            "Reference",
                            "Kind",
                            "Recorded by",
                            "Age",
                            "",
                        )
                    )
                )
            ),
            rx.table.body(rx.foreach(ReviewState.proofs, _queue_row)),
            size="1",
            width="100%",
            id="proof-queue",
        ),
        rx.cond(
            ReviewState.proofs.length() == 0,
            rx.text("No proofs are waiting for review.", padding="1em", id="queue-empty"),
        ),
        rx.cond(_selected().contains("id"), _details()),
    )
