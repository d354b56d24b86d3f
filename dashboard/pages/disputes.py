"""Disputes: the open disputes, soonest evidence due date first; choosing one shows its evidence
draft (Stripe's text fields and files, one file per file field), saved as a draft, then submitted
once or the dispute accepted (after a confirmation that states the amount lost). Every handler
checks MANAGE_DISPUTES on the server and calls the disputes service; its refusals and the
provider's errors are shown as messages. Submitting and accepting call the provider, so they run
as background events that disable both buttons and say what is running until the answer is in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import reflex as rx
from reflex.event import EventSpec
from reflex.vars import ObjectVar
from sqlmodel import Session

from dashboard.components.nav import layout
from dashboard.pages.payment_detail import ADAPTERS
from dashboard.state import HOME_ROUTE, LOGIN_ROUTE, AuthState, actor_for_session
from payments_core.db import read_engine, transaction
from payments_core.models import Dispute
from payments_core.services.disputes import (
    DEFAULT_FILE_FIELD,
    STRIPE_FILE_EVIDENCE_FIELDS,
    STRIPE_TEXT_EVIDENCE_FIELDS,
    DisputeError,
    DisputeRow,
    EvidenceUpload,
    accept_dispute,
    evidence_fields,
    evidence_files,
    file_field,
    list_disputes,
    save_evidence_draft,
    submit_evidence,
)
from payments_core.services.permissions import Actor, Permission, PermissionDenied
from payments_core.status import OPEN_DISPUTE_STATUSES

ROUTE = "/disputes"
UPLOAD_ID = "evidence-upload"
TEXT_FIELDS = sorted(STRIPE_TEXT_EVIDENCE_FIELDS)
FILE_FIELDS = sorted(STRIPE_FILE_EVIDENCE_FIELDS)
_OPEN = {s.value for s in OPEN_DISPUTE_STATUSES}

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Upload:
    name: str
    content: bytes


def _refusal(actor: Actor, what: str, exc: Exception) -> str:
    log.warning("disputes: %s refused %s: %s", actor.name, what, exc)
    return f"Refused: {exc}"


def _row(d: DisputeRow) -> dict[str, str]:
    return {
        "id": d.id,
        "payment_id": d.payment_id,
        "provider": d.provider,
        "provider_dispute_id": d.provider_dispute_id,
        "amount": d.amount,
        "reason": d.reason or "",
        "status": d.status,
        "due": d.evidence_due_at.strftime("%Y-%m-%d %H:%M") if d.evidence_due_at else "",
        "answer": d.response_state or "",
        "answer_error": d.response_error or "",
    }


class DisputesState(AuthState):
    disputes: rx.Field[list[dict[str, str]]] = rx.field([])
    selected: rx.Field[dict[str, str]] = rx.field({})
    draft: rx.Field[dict[str, str]] = rx.field({})
    files: rx.Field[list[dict[str, str]]] = rx.field([])
    file_field: str = DEFAULT_FILE_FIELD
    error: str = ""
    notice: str = ""
    working: str = ""  # the answer ("submit" or "accept") being sent to the provider right now

    def _worker(self) -> Actor | EventSpec:
        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        if not actor.can(Permission.MANAGE_DISPUTES):
            return rx.redirect(HOME_ROUTE)
        return actor

    def _fill(self) -> None:
        with Session(read_engine()) as session:
            rows = [_row(d) for d in list_disputes(session=session) if d.status in _OPEN]
            self.disputes = rows
            chosen = self.selected.get("id", "")
            current = next((r for r in rows if r["id"] == chosen), None)
            dispute = session.get(Dispute, chosen) if current else None
            if current is None or dispute is None:
                self.selected, self.draft, self.files = {}, {}, []
                return
            self.selected = current | {
                "submitted": "yes" if dispute.evidence_submitted_at else "",
            }
            fields = evidence_fields(dispute)
            self.draft = {name: fields.get(name, "") for name in TEXT_FIELDS}
            self.files = [
                {
                    "name": str(f["name"]),
                    "field": file_field(f),
                    "content_type": str(f["content_type"]),
                    "size": f"{int(f['size']):,} bytes",
                    "uploaded": "yes" if f.get("provider_file_id") else "",
                }
                for f in evidence_files(dispute)
            ]

    @rx.event
    def load(self) -> EventSpec | None:
        actor = self._worker()
        if not isinstance(actor, Actor):
            return actor
        self.error = self.notice = ""
        self.selected = {}
        self._fill()
        return None

    @rx.event
    def choose(self, dispute_id: str) -> EventSpec | None:
        actor = self._worker()
        if not isinstance(actor, Actor):
            return actor
        self.error = self.notice = ""
        self.selected = {"id": dispute_id}
        self._fill()
        return None

    @rx.event
    def set_file_field(self, value: str) -> None:
        self.file_field = value if value in STRIPE_FILE_EVIDENCE_FIELDS else DEFAULT_FILE_FIELD

    @rx.event
    def save_draft(self, form: dict[str, Any]) -> EventSpec | None:
        actor = self._worker()
        if not isinstance(actor, Actor):
            return actor
        dispute_id = self.selected.get("id", "")
        fields = {k: str(v) for k, v in form.items() if k in STRIPE_TEXT_EVIDENCE_FIELDS}
        self._save(actor, dispute_id, fields, [])
        return None

    @rx.event
    async def attach(self, uploads: list[rx.UploadFile]) -> EventSpec | None:
        actor = self._worker()
        if not isinstance(actor, Actor):
            return actor
        dispute_id = self.selected.get("id", "")
        if not uploads:
            self.error, self.notice = "Choose a file to attach first.", ""
            return None
        files = [
            EvidenceUpload(self.file_field, _Upload(u.name or "evidence", await u.read()))
            for u in uploads
        ]
        self._save(actor, dispute_id, {}, files)
        return rx.clear_selected_files(UPLOAD_ID)

    def _save(
        self, actor: Actor, dispute_id: str, fields: dict[str, str], files: list[EvidenceUpload]
    ) -> None:
        try:
            with transaction() as session:
                save_evidence_draft(
                    session=session,
                    actor=actor,
                    dispute_id=dispute_id,
                    fields=fields,
                    files=files,
                    settings=ADAPTERS.settings,
                )
        except (DisputeError, PermissionDenied) as exc:
            self.error, self.notice = _refusal(actor, f"a draft for {dispute_id}", exc), ""
        else:
            what = "file attached" if files else "draft saved"
            self.error, self.notice = "", f"Evidence {what} for {dispute_id}"
        self._fill()

    async def _answer(self, action: str) -> AsyncIterator[EventSpec | None]:
        """Submit or accept the chosen dispute. The provider call runs off the event loop while
        the page shows it running; a second answer from this page is ignored until it ends."""
        async with self:
            if self.working:  # one answer at a time, whatever the browser sends
                log.warning("disputes: %s ignored: %s is already running", action, self.working)
                return
            self.working = action
            self.error = self.notice = ""
            token, dispute_id = self.session_token, self.selected.get("id", "")
        answer: _Answer | None = None
        try:
            answer = await asyncio.to_thread(_answer_dispute, token, dispute_id, action)
        finally:
            async with self:
                self.working = ""
                if answer is None:  # an unexpected error (logged by Reflex)
                    self.error = "The answer did not finish; reload to see where the dispute is."
                elif answer.redirect is None:
                    self.error, self.notice = answer.error, answer.notice
                    self._fill()
        if answer is not None and answer.redirect is not None:
            yield rx.redirect(answer.redirect)

    @rx.event(background=True)
    async def submit(self) -> AsyncIterator[EventSpec | None]:
        async for event in self._answer("submit"):
            yield event

    @rx.event(background=True)
    async def accept(self) -> AsyncIterator[EventSpec | None]:
        """Concede the dispute (the page asks for confirmation first, stating the amount lost)."""
        async for event in self._answer("accept"):
            yield event


@dataclass(frozen=True, slots=True)
class _Answer:
    redirect: str | None = None  # the session ended, or the role may not work on disputes
    error: str = ""
    notice: str = ""


def _answer_dispute(token: str, dispute_id: str, action: str) -> _Answer:
    actor = actor_for_session(token)
    if actor is None:
        return _Answer(redirect=LOGIN_ROUTE)
    if not actor.can(Permission.MANAGE_DISPUTES):
        return _Answer(redirect=HOME_ROUTE)
    answer = submit_evidence if action == "submit" else accept_dispute
    what = "evidence submitted" if action == "submit" else "accepted"
    try:
        outcome = answer(
            transaction=transaction, adapters=ADAPTERS, actor=actor, dispute_id=dispute_id
        )
    except (DisputeError, PermissionDenied) as exc:
        return _Answer(error=_refusal(actor, f"{action} for {dispute_id}", exc))
    if outcome.error is not None:
        _refusal(actor, f"{action} for {dispute_id}", outcome.error)
        return _Answer(error=f"The provider refused: {outcome.error}")
    return _Answer(notice=f"Dispute {outcome.dispute.id} {what}: now {outcome.dispute.status}")


def _selected() -> ObjectVar[dict[str, str]]:
    # Reflex's type stubs see a dict field as an array; it is an object var at run time.
    return cast(ObjectVar[dict[str, str]], DisputesState.selected)


def _draft() -> ObjectVar[dict[str, str]]:
    return cast(ObjectVar[dict[str, str]], DisputesState.draft)


def _dispute_row(row: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["due"]),
        rx.table.cell(row["amount"], text_align="right"),
        rx.table.cell(row["reason"]),
        rx.table.cell(row["status"], rx.cond(row["answer"] != "", f" ({row['answer']})", "")),
        rx.table.cell(row["provider"]),
        rx.table.cell(rx.link(row["payment_id"], href=f"/payments/{row['payment_id']}")),
        rx.table.cell(
            rx.button(
                "Open",
                # mypy reads rx.event as a class, not the EventCallback it returns.
                on_click=DisputesState.choose(row["id"]),  # type: ignore[operator]
                size="1",
                class_name="dispute-select",
            )
        ),
        class_name="dispute-row",
    )


def _text_field(name: str) -> rx.Component:
    return rx.box(
        rx.text(name.replace("_", " "), size="2", weight="medium"),
        rx.text_area(
            name=name,
            id=f"evidence-{name}",
            default_value=_draft()[name],
            width="100%",
            rows="2",
        ),
        width="100%",
    )


def _file_row(row: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["field"]),
        rx.table.cell(row["name"]),
        rx.table.cell(row["content_type"]),
        rx.table.cell(row["size"]),
        rx.table.cell(rx.cond(row["uploaded"] != "", "sent to provider", "in draft")),
        class_name="evidence-file-row",
    )


def _files() -> rx.Component:
    return rx.vstack(
        rx.heading("Files", size="3"),
        rx.table.root(
            rx.table.body(rx.foreach(DisputesState.files, _file_row)),
            width="100%",
            id="evidence-files",
        ),
        rx.hstack(
            rx.el.select(
                *(rx.el.option(f, value=f) for f in FILE_FIELDS),
                value=DisputesState.file_field,
                on_change=DisputesState.set_file_field,
                id="evidence-file-field",
            ),
            rx.upload(
                rx.text(
                    rx.cond(
                        rx.selected_files(UPLOAD_ID).length() > 0,
                        rx.selected_files(UPLOAD_ID).join(", "),
                        "Drop a PNG, JPEG or PDF here, or click to choose",
                    )
                ),
                id=UPLOAD_ID,
                multiple=False,
                accept={
                    "application/pdf": [".pdf"],
                    "image/png": [".png"],
                    "image/jpeg": [".jpg", ".jpeg"],
                },
                border="1px dashed var(--gray-7)",
                padding="0.75em",
            ),
            rx.button(
                "Attach",
                on_click=DisputesState.attach(  # type: ignore[operator]
                    rx.upload_files(upload_id=UPLOAD_ID)
                ),
                id="evidence-attach",
            ),
            align="center",
            spacing="3",
        ),
        width="100%",
    )


def _accept_dialog() -> rx.Component:
    """Accepting concedes the money and cannot be undone: say how much, and ask first."""
    selected = _selected()
    return rx.alert_dialog.root(
        rx.alert_dialog.trigger(
            rx.button(
                rx.cond(
                    DisputesState.working == "accept",
                    rx.fragment(rx.spinner(size="1"), "Accepting…"),
                    "Accept dispute",
                ),
                color_scheme="red",
                variant="soft",
                disabled=DisputesState.working != "",
                id="dispute-accept",
            )
        ),
        rx.alert_dialog.content(
            rx.alert_dialog.title("Accept this dispute?"),
            rx.alert_dialog.description(
                "Accepting concedes ",
                selected["provider"],
                " dispute ",
                selected["provider_dispute_id"],
                ": you lose ",
                rx.text(selected["amount"], as_="span", weight="bold", id="accept-amount"),
                ", the disputed amount, and no evidence can be sent afterwards. "
                "This cannot be undone.",
            ),
            rx.hstack(
                rx.alert_dialog.cancel(
                    rx.button(
                        "Cancel", variant="soft", color_scheme="gray", id="dispute-accept-cancel"
                    )
                ),
                rx.alert_dialog.action(
                    rx.button(
                        "Accept and lose ",
                        selected["amount"],
                        on_click=DisputesState.accept,
                        color_scheme="red",
                        id="dispute-accept-confirm",
                    )
                ),
                spacing="3",
                justify="end",
                margin_top="1em",
            ),
            id="dispute-accept-dialog",
        ),
    )


def _evidence() -> rx.Component:
    selected = _selected()
    return rx.vstack(
        rx.heading("Evidence for ", selected["id"], size="4", id="evidence-title"),
        rx.text(
            selected["provider"],
            " dispute ",
            selected["provider_dispute_id"],
            " · ",
            selected["amount"],
            " · due ",
            selected["due"],
        ),
        rx.cond(
            selected["answer_error"] != "",
            rx.callout("Last answer failed: " + selected["answer_error"], color_scheme="orange"),
        ),
        # Keyed by the dispute: choosing another one (or a reload) shows its own saved draft.
        rx.form(
            rx.grid(*(_text_field(name) for name in TEXT_FIELDS), columns="2", spacing="3"),
            rx.button("Save draft", type="submit", id="evidence-save", margin_top="0.75em"),
            on_submit=DisputesState.save_draft,
            reset_on_submit=False,
            key=selected["id"],
            width="100%",
        ),
        _files(),
        rx.hstack(
            rx.button(
                rx.cond(
                    DisputesState.working == "submit",
                    rx.fragment(rx.spinner(size="1"), "Submitting evidence…"),
                    "Submit evidence",
                ),
                on_click=DisputesState.submit,
                color_scheme="green",
                disabled=(selected["submitted"] == "yes") | (DisputesState.working != ""),
                id="evidence-submit",
            ),
            _accept_dialog(),
            spacing="3",
        ),
        width="100%",
        spacing="3",
        padding_top="1em",
        id="evidence-form",
    )


def disputes_page() -> rx.Component:
    return layout(
        rx.heading("Disputes", size="6"),
        rx.cond(
            DisputesState.error != "",
            rx.callout(DisputesState.error, color_scheme="red", id="disputes-error"),
        ),
        rx.cond(
            DisputesState.notice != "",
            rx.callout(DisputesState.notice, color_scheme="green", id="disputes-notice"),
        ),
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    *(
                        rx.table.column_header_cell(x)
                        for x in (
                            "Due (UTC)",
                            "Amount",
                            "Reason",
                            "Status",
                            "Provider",
                            "Payment",
                            "",
                        )
                    )
                )
            ),
            rx.table.body(rx.foreach(DisputesState.disputes, _dispute_row)),
            width="100%",
            id="disputes-table",
        ),
        rx.cond(DisputesState.disputes.length() == 0, rx.text("No open disputes.", padding="1em")),
        rx.cond(_selected().contains("id"), _evidence()),
    )
