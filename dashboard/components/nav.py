"""The navigation bar: only the pages the signed-in role may use, and who is signed in."""

from __future__ import annotations

import functools
import operator

import reflex as rx

from dashboard.state import AuthState
from payments_core.services.permissions import Permission

_P = Permission
# (label, route, permissions): a page appears in the bar for roles that hold any of them (the
# page's on_load checks the same on the server). Review holds the proof queue (REVIEW_PROOF) and
# the bank statement import (IMPORT_STATEMENT); each role sees the parts it may use.
NAV_ITEMS: tuple[tuple[str, str, tuple[Permission, ...]], ...] = (
    ("Overview", "/overview", (_P.VIEW_PAYMENTS,)),
    ("Payments", "/payments", (_P.VIEW_PAYMENTS,)),
    ("Review", "/review", (_P.REVIEW_PROOF, _P.IMPORT_STATEMENT)),
    ("Refunds", "/refunds", (_P.REQUEST_REFUND,)),
    ("Disputes", "/disputes", (_P.MANAGE_DISPUTES,)),
    ("Analytics", "/analytics", (_P.VIEW_ANALYTICS,)),
    ("Webhooks", "/webhooks", (_P.VIEW_PAYMENTS,)),
    ("Audit", "/audit", (_P.VIEW_AUDIT,)),
    ("Users", "/users", (_P.MANAGE_USERS,)),
)


def _item(label: str, route: str, permissions: tuple[Permission, ...]) -> rx.Component:
    held = (AuthState.permissions.contains(p.value) for p in permissions)
    return rx.cond(
        functools.reduce(operator.or_, held),
        rx.link(label, href=route, id=f"nav-{label.lower()}", weight="medium"),
    )


def nav() -> rx.Component:
    return rx.hstack(
        rx.heading("Paydesk", size="5"),
        *(_item(*item) for item in NAV_ITEMS),
        rx.spacer(),
        rx.text(AuthState.user_email, " (", AuthState.user_role, ")", id="signed-in-as"),
        rx.button("Sign out", on_click=AuthState.sign_out, variant="soft", id="sign-out"),
        align="center",
        spacing="5",
        width="100%",
        padding="1em",
        border_bottom="1px solid var(--gray-5)",
    )


def layout(*children: rx.Component) -> rx.Component:
    return rx.box(nav(), rx.box(*children, padding="1em"), width="100%")
