"""The navigation bar: only the pages the signed-in role may use, and who is signed in."""

from __future__ import annotations

import reflex as rx

from dashboard.state import AuthState
from payments_core.services.permissions import Permission

# (label, route, permission needed): a page appears in the bar only for roles that hold it.
NAV_ITEMS: tuple[tuple[str, str, Permission], ...] = (
    ("Overview", "/overview", Permission.VIEW_PAYMENTS),
    ("Payments", "/payments", Permission.VIEW_PAYMENTS),
    ("Review", "/review", Permission.REVIEW_PROOF),
    ("Refunds", "/refunds", Permission.REQUEST_REFUND),
    ("Disputes", "/disputes", Permission.MANAGE_DISPUTES),
    ("Analytics", "/analytics", Permission.VIEW_ANALYTICS),
    ("Webhooks", "/webhooks", Permission.VIEW_PAYMENTS),
    ("Audit", "/audit", Permission.VIEW_AUDIT),
    ("Users", "/users", Permission.MANAGE_USERS),
)


def _item(label: str, route: str, permission: Permission) -> rx.Component:
    return rx.cond(
        AuthState.permissions.contains(permission.value),
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
