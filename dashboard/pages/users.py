"""Users (admins only). Managing people in the dashboard is a later step; today this page only
proves that the server refuses it to other roles."""

from __future__ import annotations

import reflex as rx
from reflex.event import EventSpec

from dashboard.components.nav import layout
from dashboard.state import HOME_ROUTE, LOGIN_ROUTE, AuthState
from payments_core.services.permissions import Permission

ROUTE = "/users"


class UsersState(AuthState):
    @rx.event
    def load(self) -> EventSpec | None:
        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        if not actor.can(Permission.MANAGE_USERS):
            return rx.redirect(HOME_ROUTE)
        return None


def users_page() -> rx.Component:
    return layout(
        rx.heading("Users", size="6"),
        rx.text("Managing users from the dashboard is not built yet; use `paydesk user ...`."),
    )
