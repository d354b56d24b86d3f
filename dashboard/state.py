"""Who is signed in: the session token in a cookie, checked on the server on every page load.

The browser holds only the random session token (``payments_core.services.users``); each page's
``on_load`` runs ``AuthState.check_session`` first, which turns the token back into an ``Actor``
through ``session_actor`` (so a disabled user or a changed role takes effect at once) and sends
anyone without a live session to ``/login``. Page states subclass ``AuthState`` and call
``_actor()`` again in every handler that reads or changes data: hiding a button is never the check.
Routes outside Reflex's state (the export downloads) read the same cookie and call the same
``actor_for_session``.
"""

from __future__ import annotations

import reflex as rx
from reflex.event import EventSpec

from payments_core.db import transaction
from payments_core.services.permissions import ROLE_PERMISSIONS, Actor
from payments_core.services.users import logout, session_actor

LOGIN_ROUTE = "/login"
# Where signing in lands, and where a page the role may not use sends it.
HOME_ROUTE = "/overview"
SESSION_COOKIE = "paydesk_session"


def actor_for_session(token: str) -> Actor | None:
    """The signed-in person for a session token, read from the database on each call."""
    if not token:
        return None
    with transaction() as session:
        return session_actor(session=session, token=token)


class AuthState(rx.State):
    session_token: str = rx.Cookie("", name=SESSION_COOKIE, same_site="strict", max_age=None)
    user_email: str = ""
    user_role: str = ""
    permissions: rx.Field[list[str]] = rx.field([])

    def _actor(self) -> Actor | None:
        """The signed-in person, read from the database on each call."""
        return actor_for_session(self.session_token)

    def _remember(self, actor: Actor | None) -> None:
        self.user_email = actor.name if actor else ""
        self.user_role = actor.role.value if actor else ""
        self.permissions = sorted(p.value for p in ROLE_PERMISSIONS[actor.role]) if actor else []

    @rx.event
    def check_session(self) -> EventSpec | None:
        actor = self._actor()
        self._remember(actor)
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        return None

    @rx.event
    def sign_out(self) -> EventSpec:
        if self.session_token:
            with transaction() as session:
                logout(session=session, token=self.session_token)
        self.session_token = ""
        self._remember(None)
        return rx.redirect(LOGIN_ROUTE)
