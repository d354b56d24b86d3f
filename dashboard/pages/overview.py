"""Overview: today / 7 days / 30 days volume per currency and success rate per provider, and the
attention queue with a link to where each item is dealt with.

Numbers come from ``analytics.overview_summary`` (formatted amounts and rates included) and the
queue from ``attention.attention_queue``; this module only lays them out.
"""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex.event import EventSpec
from reflex.vars import ObjectVar
from sqlmodel import Session

from dashboard.components.nav import layout
from dashboard.state import LOGIN_ROUTE, AuthState
from payments_core.db import read_engine
from payments_core.services.analytics import OVERVIEW_PERIODS, PeriodSummary, overview_summary
from payments_core.services.attention import AttentionItem, AttentionKind, attention_queue
from payments_core.services.permissions import Actor, Permission, PermissionDenied

ROUTE = "/overview"
PERIODS = tuple(label for label, _ in OVERVIEW_PERIODS)
ATTENTION_LIMIT = 100

# Where each kind of item is dealt with; None: on its payment's page.
PAGE_OF: dict[AttentionKind, str | None] = {
    AttentionKind.REFUND_APPROVAL: "/refunds",
    AttentionKind.REFUND_PROBLEM: "/refunds",
    AttentionKind.PROOF_REVIEW: "/review",
    AttentionKind.DISPUTE_RESPONSE: "/disputes",
    AttentionKind.STUCK_PAYMENT: None,
    AttentionKind.PAYMENT_REVIEW: None,
    AttentionKind.DEAD_WEBHOOK: "/webhooks",
    AttentionKind.UNMATCHED_CALLBACK: "/webhooks",
    AttentionKind.UNMATCHED_STATEMENT_LINE: "/review",
}


def _link(item: AttentionItem, actor: Actor) -> str:
    page = PAGE_OF.get(item.kind)
    if item.kind == AttentionKind.PROOF_REVIEW and not actor.can(Permission.REVIEW_PROOF):
        page = None  # /review shows finance the statement import only, not the proof queue
    if page is None and item.payment_id:
        return f"/payments/{item.payment_id}"
    return page or "/payments"


def _volume_rows(summaries: list[PeriodSummary]) -> list[dict[str, str]]:
    """One row per currency, one column per period (the service's formatted amounts)."""
    rows: dict[str, dict[str, str]] = {}
    for summary in summaries:
        for record in summary.volume.rows:
            currency = str(record["currency"])
            row = rows.setdefault(currency, {"currency": currency} | dict.fromkeys(PERIODS, "—"))
            row[summary.label] = f"{record['volume']} ({record['succeeded']}/{record['count']})"
    return [rows[currency] for currency in sorted(rows)]


def _provider_rows(summaries: list[PeriodSummary]) -> list[dict[str, str]]:
    """One row per provider, one column per period: success rate and the counts behind it."""
    rows: dict[str, dict[str, str]] = {}
    for summary in summaries:
        for record in summary.providers.rows:
            provider = str(record["provider"])
            row = rows.setdefault(provider, {"provider": provider} | dict.fromkeys(PERIODS, "—"))
            succeeded = int(record["succeeded"] or 0)
            outcomes = succeeded + int(record["unsuccessful"] or 0)
            rate = record["success_rate"]
            shown = "—" if rate is None else f"{rate}%"
            row[summary.label] = f"{shown} ({succeeded} of {outcomes})"
    return [rows[provider] for provider in sorted(rows)]


class OverviewState(AuthState):
    volume: rx.Field[list[dict[str, str]]] = rx.field([])
    providers: rx.Field[list[dict[str, str]]] = rx.field([])
    attention: rx.Field[list[dict[str, str]]] = rx.field([])
    error: str = ""

    @rx.event
    def load(self) -> EventSpec | None:
        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        try:
            with Session(read_engine()) as session:
                summaries = overview_summary(session=session, actor=actor)
                items = attention_queue(session=session, actor=actor, limit=ATTENTION_LIMIT)
        except PermissionDenied as exc:
            self.error = str(exc)
            self.volume, self.providers, self.attention = [], [], []
            return None
        self.error = ""
        self.volume = _volume_rows(summaries)
        self.providers = _provider_rows(summaries)
        self.attention = [
            {
                "kind": item.kind.value.replace("_", " "),
                "since": item.since.strftime("%Y-%m-%d %H:%M"),
                "title": item.title,
                "href": _link(item, actor),
            }
            for item in items
        ]
        return None


def _period_table(first: str, rows: Any, table_id: str, row_class: str) -> rx.Component:
    def row(record: ObjectVar[dict[str, str]]) -> rx.Component:
        return rx.table.row(
            rx.table.row_header_cell(record[first]),
            *(rx.table.cell(record[label]) for label in PERIODS),
            class_name=row_class,
        )

    return rx.table.root(
        rx.table.header(
            rx.table.row(
                rx.table.column_header_cell(first.capitalize()),
                *(rx.table.column_header_cell(label.capitalize()) for label in PERIODS),
            )
        ),
        rx.table.body(rx.foreach(rows, row)),
        size="1",
        width="100%",
        id=table_id,
    )


def _attention_item(item: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(item["since"]),
        rx.table.cell(rx.badge(item["kind"])),
        rx.table.cell(rx.link(item["title"], href=item["href"], class_name="attention-link")),
        class_name="attention-row",
    )


def overview_page() -> rx.Component:
    return layout(
        rx.heading("Overview", size="6"),
        rx.cond(
            OverviewState.error != "",
            rx.callout(OverviewState.error, color_scheme="red", id="overview-error"),
        ),
        rx.grid(
            rx.card(
                rx.heading("Succeeded volume (succeeded / created payments)", size="3"),
                _period_table("currency", OverviewState.volume, "volume-table", "volume-row"),
            ),
            rx.card(
                rx.heading("Success rate per provider", size="3"),
                _period_table(
                    "provider", OverviewState.providers, "providers-table", "provider-row"
                ),
            ),
            columns=rx.breakpoints(initial="1", lg="2"),
            spacing="4",
            width="100%",
            padding_y="1em",
        ),
        rx.text(
            "Periods are whole UTC days ending today; payments count by creation time.", size="1"
        ),
        rx.heading("Needs attention", size="4", padding_top="1em"),
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    *(
                        rx.table.column_header_cell(h)
                        for h in ("Waiting since (UTC)", "Kind", "What")
                    )
                )
            ),
            rx.table.body(rx.foreach(OverviewState.attention, _attention_item)),
            size="1",
            width="100%",
            id="attention-table",
        ),
        rx.cond(
            OverviewState.attention.length() == 0,
            rx.text("Nothing waits for a person.", padding="1em", id="attention-empty"),
        ),
        rx.text(f"The oldest {ATTENTION_LIMIT} items are shown.", size="1"),
    )
