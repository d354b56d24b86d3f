"""Sign in: email and password against ``payments_core.services.users.login``."""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex.event import EventSpec
from sqlalchemy.exc import SQLAlchemyError

from dashboard.state import HOME_ROUTE, AuthState
from payments_core.config import get_settings
from payments_core.db import transaction
from payments_core.services.users import LoginRefused, login

ROUTE = "/login"


class LoginState(AuthState):
    error: str = ""

    @rx.event
    def sign_in(self, form: dict[str, Any]) -> EventSpec | None:
        email = str(form.get("email", "")).strip()
        password = str(form.get("password", ""))
        if not email or not password:
            self.error = "enter your email and password"
            return None
        token = ""
        try:
            with transaction() as session:
                try:
                    _, token = login(
                        session=session, email=email, password=password, settings=get_settings()
                    )
                except LoginRefused as exc:
                    # Caught inside the transaction: the failed attempt must be committed.
                    self.error = str(exc)
        except SQLAlchemyError:
            self.error = "the database is not available right now; try again in a moment"
        if not token:
            return None
        self.error = ""
        self.session_token = token
        return rx.redirect(HOME_ROUTE)

    @rx.event
    def leave_if_signed_in(self) -> EventSpec | None:
        actor = self._actor()
        self._remember(actor)
        return rx.redirect(HOME_ROUTE) if actor else None


def login_page() -> rx.Component:
    return rx.center(
        rx.card(
            rx.form(
                rx.vstack(
                    rx.heading("Sign in to Paydesk", size="6"),
                    rx.input(placeholder="Email", name="email", type="email", id="email"),
                    rx.input(
                        placeholder="Password", name="password", type="password", id="password"
                    ),
                    rx.cond(
                        LoginState.error != "",
                        rx.callout(LoginState.error, color_scheme="red", id="login-error"),
                    ),
                    rx.button("Sign in", type="submit", id="sign-in", width="100%"),
                    spacing="3",
                    width="20em",
                ),
                on_submit=LoginState.sign_in,
                reset_on_submit=False,
            ),
        ),
        height="100vh",
    )
