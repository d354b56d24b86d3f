"""Audit log: the newest entries, filtered by actor, action and entity, and whether the hash chain
still holds (``verify_chain`` walks the whole log on each load)."""

from __future__ import annotations

import json
from typing import Any

import reflex as rx
from reflex.event import EventSpec
from reflex.vars import ObjectVar
from sqlmodel import Session

from dashboard.components.nav import layout
from dashboard.state import HOME_ROUTE, LOGIN_ROUTE, AuthState
from payments_core.db import read_engine
from payments_core.services.audit import AUDIT_PAGE_LIMIT, check_audit_chain, list_audit_entries
from payments_core.services.permissions import Permission, PermissionDenied

ROUTE = "/audit"


def _snapshot(value: object) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


class AuditState(AuthState):
    by: str = ""
    action: str = ""
    entity: str = ""
    entries: rx.Field[list[dict[str, str]]] = rx.field([])
    chain_ok: bool = False
    chain_summary: str = ""
    error: str = ""

    def _load(self) -> EventSpec | None:
        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        if not actor.can(Permission.VIEW_AUDIT):
            return rx.redirect(HOME_ROUTE)
        try:
            with Session(read_engine()) as session:
                entries = list_audit_entries(
                    session=session,
                    actor=actor,
                    by=self.by or None,
                    action=self.action or None,
                    entity=self.entity or None,
                )
                report = check_audit_chain(session=session, actor=actor)
        except PermissionDenied as exc:
            self.error, self.entries = str(exc), []
            return None
        self.error = ""
        self.entries = [
            {
                "seq": str(e.seq),
                "at": e.at.strftime("%Y-%m-%d %H:%M:%S"),
                "actor": e.actor,
                "action": e.action,
                "entity": f"{e.entity_type} {e.entity_id}",
                "before": _snapshot(e.before),
                "after": _snapshot(e.after),
            }
            for e in entries
        ]
        self.chain_ok = report.ok
        self.chain_summary = (
            f"Chain intact: {report.checked:,} entries verified."
            if report.ok
            else f"Chain BROKEN at entry {report.broken_seq}: {report.problem} "
            f"({report.checked:,} entries before it verified)."
        )
        return None

    @rx.event
    def load(self) -> EventSpec | None:
        return self._load()

    @rx.event
    def apply_filters(self, form: dict[str, Any]) -> EventSpec | None:
        self.by = str(form.get("by", "")).strip()
        self.action = str(form.get("action", "")).strip()
        self.entity = str(form.get("entity", "")).strip()
        return self._load()


def _entry(entry: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(entry["seq"]),
        rx.table.cell(entry["at"]),
        rx.table.cell(entry["actor"]),
        rx.table.cell(entry["action"]),
        rx.table.cell(entry["entity"]),
        rx.table.cell(
            rx.cond(entry["before"] != "", rx.code(entry["before"], size="1")), max_width="20em"
        ),
        rx.table.cell(
            rx.cond(entry["after"] != "", rx.code(entry["after"], size="1")), max_width="20em"
        ),
        class_name="audit-row",
    )


def audit_page() -> rx.Component:
    return layout(
        rx.heading("Audit log", size="6"),
        rx.callout(
            AuditState.chain_summary,
            color_scheme=rx.cond(AuditState.chain_ok, "green", "red"),
            id="chain-status",
        ),
        rx.form(
            rx.hstack(
                rx.input(placeholder="Actor contains", name="by", id="audit-by"),
                rx.input(
                    placeholder="Action, e.g. refund.approved", name="action", id="audit-action"
                ),
                rx.input(placeholder="Entity id or type", name="entity", id="audit-entity"),
                rx.button("Filter", type="submit", id="audit-filter"),
                spacing="3",
            ),
            on_submit=AuditState.apply_filters,
            reset_on_submit=False,
            padding_y="1em",
        ),
        rx.cond(
            AuditState.error != "",
            rx.callout(AuditState.error, color_scheme="red", id="audit-error"),
        ),
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    *(
                        rx.table.column_header_cell(h)
                        for h in ("#", "When (UTC)", "Actor", "Action", "Entity", "Before", "After")
                    )
                )
            ),
            rx.table.body(rx.foreach(AuditState.entries, _entry)),
            size="1",
            width="100%",
            id="audit-table",
        ),
        rx.cond(
            AuditState.entries.length() == 0,
            rx.text("No entries match.", padding="1em", id="audit-empty"),
        ),
        rx.text(f"The newest {AUDIT_PAGE_LIMIT} matching entries are shown.", size="1"),
    )
