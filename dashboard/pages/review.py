"""Manual review: the proofs awaiting a manager, a preview of the uploaded file, approve or reject;
and the bank statement import that turns matching credits into such proofs.

The page is open to a role with REVIEW_PROOF (the queue) or IMPORT_STATEMENT (the import): finance
imports statements and a manager reviews what they created. ``load`` sends anyone with neither
away, and reads the queue only for a role with REVIEW_PROOF (``review_queue`` would refuse the
others); the page shows each part only to the roles that may use it.

The preview is read on the server by proof id only (``read_proof_file``: the path comes from the
stored hash, never from the browser) and handed to the page as a data URL for the one proof being
looked at. Approving and rejecting call the services with the signed-in Actor, which check
REVIEW_PROOF themselves (so a crafted approve from finance is refused there) and also refuse a
reviewer who recorded the proof; their messages are shown as they are.

A bank statement (CSV or CAMT.053) uploaded here goes to ``import_statement`` with the signed-in
Actor, which checks IMPORT_STATEMENT itself, so a crafted upload from a role without it is refused
on the server. The page shows what the service returns (amounts come formatted from it): the
counts, the credits that became proofs, the others with their nearest payments and why, and the
lines that could not be read; then the queue reloads with the new proofs (for a reviewer).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import reflex as rx
from reflex.event import EventSpec
from reflex.vars import ArrayVar, ObjectVar, StringVar, Var
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
from payments_core.services.statements import (
    MAX_STATEMENT_BYTES,
    ImportedLine,
    ImportResult,
    StatementError,
    import_statement,
)

ROUTE = "/review"
# Either opens the page; each part of it needs its own (see the module docstring).
PAGE_PERMISSIONS = (Permission.REVIEW_PROOF, Permission.IMPORT_STATEMENT)
_PREVIEWABLE = frozenset({"image/png", "image/jpeg", "application/pdf"})
STATEMENT_UPLOAD_ID = "statement-upload"
# react-dropzone accepts a file whose type or extension is listed.
STATEMENT_TYPES = {"text/csv": [".csv"], "application/xml": [".xml"], "text/xml": [".xml"]}


@dataclass
class CandidateRow:
    payment_id: str
    amount: str
    status: str
    reason: str


@dataclass
class StatementLineRow:
    line: str
    booked_on: str
    amount: str
    reference: str
    counterparty: str
    payment_id: str = ""
    proof_id: str = ""
    note: str = ""
    candidates: list[CandidateRow] = field(default_factory=list)


def _statement_line(line: ImportedLine) -> StatementLineRow:
    return StatementLineRow(
        line=str(line.line),
        booked_on=line.booked_on.isoformat() if line.booked_on else "",
        amount=line.amount,
        reference=line.reference or "",
        counterparty=line.counterparty or "",
        payment_id=line.payment_id or "",
        proof_id=line.proof_id or "",
        note=line.note or "",
        candidates=[
            CandidateRow(c.payment_id, c.amount, c.status, c.reason) for c in line.candidates
        ],
    )


def _import_summary(filename: str, result: ImportResult) -> dict[str, str]:
    return {
        "file": filename,
        "format": result.format,
        "credits": str(result.credits),
        "matched": str(len(result.matched)),
        "already_imported": str(result.already_imported),
        "unmatched": str(len(result.unmatched)),
        "errors": str(len(result.errors)),
        "skipped": str(result.skipped),
    }


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
    statement_summary: rx.Field[dict[str, str]] = rx.field({})
    statement_matched: rx.Field[list[StatementLineRow]] = rx.field([])
    statement_unmatched: rx.Field[list[StatementLineRow]] = rx.field([])
    statement_errors: rx.Field[list[dict[str, str]]] = rx.field([])
    statement_error: str = ""

    def _signed_in(self) -> Actor | EventSpec:
        actor = self._actor()
        return rx.redirect(LOGIN_ROUTE) if actor is None else actor

    def _visitor(self) -> Actor | EventSpec:
        """The signed-in person if their role may use some part of the page; else a redirect."""
        actor = self._signed_in()
        if isinstance(actor, Actor) and not any(actor.can(p) for p in PAGE_PERMISSIONS):
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
        except (ProofError, PermissionDenied) as exc:
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
        actor = self._visitor()
        if not isinstance(actor, Actor):
            return actor
        self.error = self.message = ""
        self._clear_statement()
        if not actor.can(Permission.REVIEW_PROOF):
            # Statement import only; nothing left from an earlier sign-in in this tab either.
            self.proofs = []
            self._show(actor, None)
            return None
        try:
            self._refresh(actor)
        except PermissionDenied as exc:
            self.error = str(exc)
        return None

    def _clear_statement(self) -> None:
        self.statement_summary = {}
        self.statement_matched = []
        self.statement_unmatched = []
        self.statement_errors = []
        self.statement_error = ""

    @rx.event
    async def upload_statement(self, files: list[rx.UploadFile]) -> EventSpec | None:
        # No role check here but sign-in: import_statement is guarded by IMPORT_STATEMENT.
        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        self._clear_statement()
        if not files:
            self.statement_error = "Choose a CSV or CAMT.053 (.xml) statement first."
            return None
        upload = files[0]
        filename = upload.name or "statement"
        # One byte over the limit is enough for the service to refuse the file as too large.
        content = await upload.read(MAX_STATEMENT_BYTES + 1)
        try:
            with transaction() as session:
                result = import_statement(
                    session=session,
                    settings=get_settings(),
                    actor=actor,
                    content=content,
                    filename=filename,
                )
        except (StatementError, PermissionDenied) as exc:
            self.statement_error = f"{filename} was not imported: {exc}"
            return rx.clear_selected_files(STATEMENT_UPLOAD_ID)
        self.statement_summary = _import_summary(filename, result)
        self.statement_matched = [_statement_line(line) for line in result.matched]
        self.statement_unmatched = [_statement_line(line) for line in result.unmatched]
        self.statement_errors = [{"line": str(e.line), "message": e.message} for e in result.errors]
        if actor.can(Permission.REVIEW_PROOF):
            self._refresh(actor, keep=self.selected.get("id", ""))
        return rx.clear_selected_files(STATEMENT_UPLOAD_ID)

    @rx.event
    def statement_refused(self, reasons: str) -> None:
        """The browser refused the file (type or size) before sending it; ``reasons`` is its
        own account, one "name: why" per file (shown only to this person)."""
        self._clear_statement()
        self.statement_error = f"Not imported: {str(reasons)[:1000]}"

    @rx.event
    def choose(self, proof_id: str) -> EventSpec | None:
        # Only proofs the queue loaded can be chosen; read_proof_file checks REVIEW_PROOF.
        actor = self._signed_in()
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
        # No role check here but sign-in: approve_proof is guarded by REVIEW_PROOF.
        actor = self._signed_in()
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
        actor = self._signed_in()  # reject_proof is guarded by REVIEW_PROOF
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


def _can(permission: Permission) -> Var[bool]:
    """Whether the signed-in role holds ``permission`` (for showing a part; not the check)."""
    return ReviewState.permissions.contains(permission.value)


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


def _summary() -> ObjectVar[dict[str, str]]:
    return cast(ObjectVar[dict[str, str]], ReviewState.statement_summary)


def _payment_link(payment_id: StringVar, class_name: str) -> rx.Component:
    return rx.link(payment_id, href="/payments/" + payment_id, class_name=class_name)


def _matched_row(line: ObjectVar[StatementLineRow]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(line.line),
        rx.table.cell(line.booked_on),
        rx.table.cell(line.amount, text_align="right"),
        rx.table.cell(line.reference),
        rx.table.cell(line.counterparty),
        rx.table.cell(_payment_link(line.payment_id.to(str), "matched-payment-link")),
        rx.table.cell(line.proof_id, class_name="matched-proof"),
        class_name="matched-line",
    )


def _candidate(candidate: ObjectVar[CandidateRow]) -> rx.Component:
    return rx.box(
        _payment_link(candidate.payment_id.to(str), "candidate-link"),
        rx.text.span(" ", candidate.amount, " · ", candidate.status, " — ", candidate.reason),
        class_name="candidate",
    )


def _unmatched_row(line: ObjectVar[StatementLineRow]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(line.line),
        rx.table.cell(line.booked_on),
        rx.table.cell(line.amount, text_align="right"),
        rx.table.cell(line.reference),
        rx.table.cell(line.counterparty),
        rx.table.cell(
            rx.cond(line.note != "", rx.text(line.note, color_scheme="orange", size="2")),
            rx.cond(
                line.candidates.length() > 0,
                rx.foreach(line.candidates, _candidate),
                rx.text("No open payment is near.", color_scheme="gray", size="2"),
            ),
        ),
        class_name="unmatched-line",
    )


def _lines_table(
    headers: tuple[str, ...],
    rows: ArrayVar[Any],
    render: Callable[[ObjectVar[StatementLineRow]], rx.Component],
    table_id: str,
) -> rx.Component:
    return rx.table.root(
        rx.table.header(rx.table.row(*(rx.table.column_header_cell(h) for h in headers))),
        rx.table.body(rx.foreach(rows, render)),
        size="1",
        width="100%",
        id=table_id,
    )


def _import_result() -> rx.Component:
    counts = (
        ("Credits read", "credits"),
        ("Matched: proofs created", "matched"),
        ("Already imported", "already_imported"),
        ("Unmatched", "unmatched"),
        ("Line errors", "errors"),
        ("Skipped (debits, not booked)", "skipped"),
    )
    line_headers = ("Line", "Booked on", "Amount", "Reference", "From")
    return rx.vstack(
        rx.text(
            "Imported ",
            rx.code(_summary()["file"]),
            " (",
            _summary()["format"],
            ")",
            id="statement-file",
        ),
        rx.data_list.root(
            *(
                rx.data_list.item(
                    rx.data_list.label(label),
                    rx.data_list.value(_summary()[key], id=f"count-{key.replace('_', '-')}"),
                )
                for label, key in counts
            ),
            orientation="horizontal",
            id="statement-counts",
        ),
        rx.cond(
            ReviewState.statement_matched.length() > 0,
            rx.vstack(
                rx.heading("Matched: proofs awaiting review", size="3"),
                rx.text(
                    rx.cond(
                        _can(Permission.REVIEW_PROOF),
                        "They are recorded in your name, so another manager approves them.",
                        "They are recorded in your name; a manager reviews them before the "
                        "payments count as paid.",
                    ),
                    size="2",
                    color_scheme="gray",
                    id="statement-review-note",
                ),
                _lines_table(
                    (*line_headers, "Payment", "Proof"),
                    ReviewState.statement_matched,
                    _matched_row,
                    "statement-matched",
                ),
                width="100%",
            ),
        ),
        rx.cond(
            ReviewState.statement_unmatched.length() > 0,
            rx.vstack(
                rx.heading("Unmatched: nearest open payments", size="3"),
                _lines_table(
                    (*line_headers, "Nearest payments and why"),
                    ReviewState.statement_unmatched,
                    _unmatched_row,
                    "statement-unmatched",
                ),
                width="100%",
            ),
        ),
        rx.cond(
            ReviewState.statement_errors.length() > 0,
            rx.vstack(
                rx.heading("Lines that could not be read", size="3"),
                rx.table.root(
                    rx.table.body(
                        rx.foreach(
                            ReviewState.statement_errors,
                            lambda e: rx.table.row(
                                rx.table.cell("line ", e["line"]),
                                rx.table.cell(e["message"]),
                                class_name="statement-line-error",
                            ),
                        )
                    ),
                    size="1",
                    width="100%",
                    id="statement-errors",
                ),
                width="100%",
            ),
        ),
        spacing="3",
        width="100%",
        id="statement-result",
    )


def _refused_in_browser(rejected: ArrayVar[Any]) -> EventSpec:
    """react-dropzone's rejections as "name: why" text, built in the browser (the File objects
    themselves do not reach the server)."""

    def one(record: Var[Any]) -> Var[str]:
        item = record.to(ObjectVar, dict[str, Any])
        file = item["file"].to(ObjectVar, dict[str, Any])
        errors = item["errors"].to(ArrayVar, list[dict[str, Any]])
        messages = errors.map(lambda error: error.to(ObjectVar, dict[str, Any])["message"])
        return file["name"].to(str) + ": " + messages.join(", ")

    return ReviewState.statement_refused(  # type: ignore[operator,no-any-return]
        rejected.to(ArrayVar, list[Any]).map(one).join("; ")
    )


def _statement_import() -> rx.Component:
    return rx.cond(
        _can(Permission.IMPORT_STATEMENT),
        rx.vstack(
            rx.cond(_can(Permission.REVIEW_PROOF), rx.separator(size="4")),
            rx.heading("Bank statement", size="5"),
            rx.text(
                "A CSV or CAMT.053 (.xml) statement, at most ",
                f"{MAX_STATEMENT_BYTES // (1024 * 1024)} MB. A credit whose reference names an "
                "open manual payment, with its amount, becomes a proof awaiting review here; "
                "the others are listed with their nearest payments. Lines already imported are "
                "skipped.",
                size="2",
                color_scheme="gray",
            ),
            rx.hstack(
                rx.upload(
                    rx.text(
                        rx.cond(
                            rx.selected_files(STATEMENT_UPLOAD_ID).length() > 0,
                            rx.selected_files(STATEMENT_UPLOAD_ID).join(", "),
                            "Drop a statement here, or click to choose",
                        ),
                        id="statement-chosen",
                    ),
                    id=STATEMENT_UPLOAD_ID,
                    multiple=False,
                    max_files=1,
                    max_size=MAX_STATEMENT_BYTES,
                    accept=STATEMENT_TYPES,
                    on_drop_rejected=_refused_in_browser,
                    border="1px dashed var(--gray-7)",
                    padding="0.75em",
                ),
                rx.button(
                    "Import statement",
                    on_click=ReviewState.upload_statement(  # type: ignore[operator]
                        rx.upload_files(upload_id=STATEMENT_UPLOAD_ID)
                    ),
                    id="statement-import",
                ),
                align="center",
                spacing="3",
            ),
            rx.cond(
                ReviewState.statement_error != "",
                rx.callout(ReviewState.statement_error, color_scheme="red", id="statement-error"),
            ),
            rx.cond(_summary().contains("file"), _import_result()),
            spacing="3",
            width="100%",
            padding_top=rx.cond(_can(Permission.REVIEW_PROOF), "2em", "1em"),
            id="statement-section",
        ),
    )


def _queue() -> rx.Component:
    """The proofs awaiting review and the one being looked at (REVIEW_PROOF only)."""
    return rx.fragment(
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
        rx.cond(_can(Permission.REVIEW_PROOF), _queue()),
        _statement_import(),
    )
