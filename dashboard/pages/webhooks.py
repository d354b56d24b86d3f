"""Webhooks: the inbox, newest first, filtered by provider and status; replay for finance and up.

The list is ``inbox.list_inbox`` (no raw bodies); Replay calls ``processing.replay_as`` with the
actor read again from the session, so the button being hidden is never the only check.
"""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex.event import EventSpec
from reflex.vars import ObjectVar
from sqlmodel import Session

from dashboard.components.nav import layout
from dashboard.state import HOME_ROUTE, LOGIN_ROUTE, AuthState
from payments_core.db import read_engine, transaction
from payments_core.models import InboxStatus
from payments_core.providers.base import ProviderName
from payments_core.services.inbox import INBOX_PAGE_LIMIT, InboxEntry, list_inbox
from payments_core.services.permissions import Permission, PermissionDenied
from payments_core.services.processing import replay_as
from payments_core.services.search import WebhookSummary

ROUTE = "/webhooks"
ALL = "all"
PROVIDERS = [ALL, *(p.value for p in ProviderName)]
STATUSES = [ALL, *(s.value for s in InboxStatus)]
# States worth a replay by hand; a pending or processing event is already on its way.
REPLAYABLE = frozenset({InboxStatus.FAILED, InboxStatus.DEAD, InboxStatus.UNMATCHED})


def delivery_row(e: InboxEntry | WebhookSummary) -> dict[str, str]:
    """One delivery as the webhook tables show it (here and on the payment page)."""
    return {
        "id": str(e.id),
        "provider": e.provider,
        "event_id": e.event_id,
        "event_type": e.event_type,
        "verification": e.verification,
        "status": e.status,
        "attempts": str(e.attempts),
        "last_error": e.last_error.splitlines()[0][:200] if e.last_error else "",
        "received_at": e.received_at.strftime("%Y-%m-%d %H:%M:%S"),
        "replayable": "yes" if e.status in REPLAYABLE else "",
    }


class WebhooksState(AuthState):
    provider: str = ALL
    status: str = ALL
    events: rx.Field[list[dict[str, str]]] = rx.field([])
    can_replay: bool = False
    error: str = ""
    message: str = ""

    def _load(self) -> EventSpec | None:
        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        if not actor.can(Permission.VIEW_PAYMENTS):
            return rx.redirect(HOME_ROUTE)
        self.can_replay = actor.can(Permission.REPLAY_WEBHOOKS)
        try:
            with Session(read_engine()) as session:
                entries = list_inbox(
                    session=session,
                    actor=actor,
                    provider=None if self.provider == ALL else self.provider,
                    status=None if self.status == ALL else self.status,
                )
        except PermissionDenied as exc:
            self.error, self.events = str(exc), []
            return None
        self.events = [delivery_row(e) | {"payment_id": e.payment_id or ""} for e in entries]
        return None

    @rx.event
    def load(self) -> EventSpec | None:
        self.message = ""
        return self._load()

    @rx.event
    def choose_provider(self, value: str) -> EventSpec | None:
        self.provider = value if value in PROVIDERS else ALL
        return self._load()

    @rx.event
    def choose_status(self, value: str) -> EventSpec | None:
        self.status = value if value in STATUSES else ALL
        return self._load()

    @rx.event
    def replay(self, event_id: Any) -> EventSpec | None:
        actor = self._actor()  # read again: the role may have changed since the page loaded
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        try:
            wanted = int(event_id)
            with transaction() as session:
                replay_as(session=session, actor=actor, event_ids=[wanted])
        except (PermissionDenied, LookupError, ValueError) as exc:
            self.error, self.message = str(exc), ""
            return self._load()
        self.error = ""
        self.message = f"Event {wanted} will be processed again (now pending)."
        return self._load()


def _event(event: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(event["received_at"]),
        rx.table.cell(event["provider"]),
        rx.table.cell(
            rx.cond(
                event["payment_id"] != "",
                rx.link(event["event_id"], href="/payments/" + event["payment_id"]),
                rx.text(event["event_id"]),
            )
        ),
        rx.table.cell(event["event_type"]),
        rx.table.cell(event["verification"]),
        rx.table.cell(rx.badge(event["status"]), class_name="webhook-status"),
        rx.table.cell(event["attempts"]),
        rx.table.cell(event["last_error"], max_width="24em"),
        rx.table.cell(
            rx.cond(
                WebhooksState.can_replay & (event["replayable"] != ""),
                rx.button(
                    "Replay",
                    on_click=WebhooksState.replay(event["id"]),  # type: ignore[operator]
                    size="1",
                    variant="soft",
                    class_name="replay-button",
                    id="replay-" + event["id"],
                ),
            )
        ),
        class_name="webhook-row",
        id="webhook-" + event["id"],
    )


def webhooks_page() -> rx.Component:
    return layout(
        rx.heading("Webhooks", size="6"),
        rx.hstack(
            rx.text("Provider"),
            rx.select(
                PROVIDERS,
                value=WebhooksState.provider,
                on_change=WebhooksState.choose_provider,
                id="provider-filter",
            ),
            rx.text("Status"),
            rx.select(
                STATUSES,
                value=WebhooksState.status,
                on_change=WebhooksState.choose_status,
                id="status-filter",
            ),
            align="center",
            spacing="3",
            padding_y="1em",
        ),
        rx.cond(
            WebhooksState.error != "",
            rx.callout(WebhooksState.error, color_scheme="red", id="webhooks-error"),
        ),
        rx.cond(
            WebhooksState.message != "",
            rx.callout(WebhooksState.message, color_scheme="green", id="webhooks-message"),
        ),
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    *(
                        rx.table.column_header_cell(h)
                        for h in (
                            "Received (UTC)",
                            "Provider",
                            "Event id",
                            "Type",
                            "Verification",
                            "Status",
                            "Attempts",
                            "Last error",
                            "",
                        )
                    )
                )
            ),
            rx.table.body(rx.foreach(WebhooksState.events, _event)),
            size="1",
            width="100%",
            id="webhooks-table",
        ),
        rx.cond(
            WebhooksState.events.length() == 0,
            rx.text("No events match.", padding="1em", id="webhooks-empty"),
        ),
        rx.text(f"The newest {INBOX_PAGE_LIMIT} matching events are shown.", size="1"),
    )
