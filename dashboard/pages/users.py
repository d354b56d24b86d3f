"""Users (admins only): everyone who may sign in, adding someone, disabling or enabling them and
changing their role. Every handler checks MANAGE_USERS on the server and calls the users service,
whose refusals (your own account, the last admin, a weak password) are shown as they are."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import reflex as rx
from reflex.event import EventSpec
from reflex.vars import ObjectVar

from dashboard.components.nav import layout
from dashboard.state import HOME_ROUTE, LOGIN_ROUTE, AuthState
from payments_core.db import transaction
from payments_core.models import AppUser, Role
from payments_core.services.permissions import Actor, Permission, PermissionDenied
from payments_core.services.users import (
    MIN_PASSWORD_LENGTH,
    UserError,
    add_user,
    disable_user,
    enable_user,
    list_users,
    set_role,
)

ROUTE = "/users"
ROLES = [r.value for r in Role]

log = logging.getLogger(__name__)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else ""


def _row(user: AppUser) -> dict[str, str]:
    return {
        "email": user.email,
        "role": user.role,
        "active": "yes" if user.is_active else "no",
        "locked_until": _when(user.locked_until),
        "last_login": _when(user.last_login_at),
    }


class UsersState(AuthState):
    users: rx.Field[list[dict[str, str]]] = rx.field([])
    error: str = ""
    notice: str = ""

    def _admin(self) -> Actor | EventSpec:
        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        if not actor.can(Permission.MANAGE_USERS):
            return rx.redirect(HOME_ROUTE)
        return actor

    def _fill(self, actor: Actor) -> None:
        with transaction() as session:
            self.users = [_row(u) for u in list_users(session=session, actor=actor)]

    def _done(self, actor: Actor, notice: str) -> None:
        self.error, self.notice = "", notice
        self._fill(actor)

    def _refused(self, actor: Actor, what: str, exc: Exception) -> None:
        log.warning("users: %s refused %s: %s", actor.name, what, exc)
        self.error, self.notice = f"Refused: {exc}", ""
        self._fill(actor)

    @rx.event
    def load(self) -> EventSpec | None:
        actor = self._admin()
        if not isinstance(actor, Actor):
            return actor
        self.error = self.notice = ""
        self._fill(actor)
        return None

    @rx.event
    def create(self, form: dict[str, Any]) -> EventSpec | None:
        actor = self._admin()
        if not isinstance(actor, Actor):
            return actor
        email = str(form.get("email", ""))
        try:
            with transaction() as session:
                user = add_user(
                    session=session,
                    actor=actor,
                    email=email,
                    role=str(form.get("role", "")),
                    password=str(form.get("password", "")),
                )
                created = f"Added {user.email} as {user.role}"
        except (UserError, PermissionDenied) as exc:
            self._refused(actor, f"adding {email}", exc)
        else:
            self._done(actor, created)
        return None

    @rx.event
    def change_role(self, form: dict[str, Any]) -> EventSpec | None:
        actor = self._admin()
        if not isinstance(actor, Actor):
            return actor
        email = str(form.get("email", ""))
        try:
            with transaction() as session:
                user = set_role(
                    session=session, actor=actor, email=email, role=str(form.get("role", ""))
                )
                changed = f"{user.email} is now {user.role}"
        except (UserError, PermissionDenied) as exc:
            self._refused(actor, f"a role change for {email}", exc)
        else:
            self._done(actor, changed)
        return None

    def _switch(
        self, service: Callable[..., object], email: str, doing: str, done: str
    ) -> EventSpec | None:
        """Disable or enable ``email`` through ``service`` (checked on the server, as admin)."""
        actor = self._admin()
        if not isinstance(actor, Actor):
            return actor
        try:
            with transaction() as session:
                service(session=session, actor=actor, email=email)
        except (UserError, PermissionDenied) as exc:
            self._refused(actor, f"{doing} {email}", exc)
        else:
            self._done(actor, done)
        return None

    @rx.event
    def disable(self, email: str) -> EventSpec | None:
        return self._switch(disable_user, email, "disabling", f"{email} is disabled and signed out")

    @rx.event
    def enable(self, email: str) -> EventSpec | None:
        return self._switch(enable_user, email, "enabling", f"{email} may sign in again")


def _role_select(default: Any = None, **props: Any) -> rx.Component:
    return rx.el.select(
        *(rx.el.option(role, value=role) for role in ROLES),
        name="role",
        default_value=default if default is not None else Role.ANALYST.value,
        **props,
    )


def _user_row(row: ObjectVar[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["email"], class_name="user-email"),
        rx.table.cell(row["role"], class_name="user-role"),
        rx.table.cell(row["active"], class_name="user-active"),
        rx.table.cell(row["locked_until"]),
        rx.table.cell(row["last_login"]),
        rx.table.cell(
            rx.form(
                rx.hstack(
                    rx.el.input(type="hidden", name="email", value=row["email"]),
                    # Keyed by the role, so the select shows the stored role after a change.
                    _role_select(row["role"], class_name="role-select", key=row["role"]),
                    rx.button("Change role", type="submit", size="1", class_name="role-change"),
                    spacing="2",
                ),
                on_submit=UsersState.change_role,
                reset_on_submit=False,
            )
        ),
        rx.table.cell(
            rx.cond(
                row["active"] == "yes",
                rx.button(
                    "Disable",
                    on_click=UsersState.disable(row["email"]),  # type: ignore[operator]
                    color_scheme="red",
                    size="1",
                    class_name="user-disable",
                ),
                rx.button(
                    "Enable",
                    on_click=UsersState.enable(row["email"]),  # type: ignore[operator]
                    color_scheme="green",
                    size="1",
                    class_name="user-enable",
                ),
            )
        ),
        class_name="user-row",
    )


def _new_user_form() -> rx.Component:
    return rx.form(
        rx.hstack(
            rx.input(placeholder="email", name="email", id="new-user-email"),
            _role_select(id="new-user-role"),
            rx.input(
                placeholder=f"password (at least {MIN_PASSWORD_LENGTH} characters)",
                name="password",
                type="password",
                id="new-user-password",
                width="20em",
            ),
            rx.button("Add user", type="submit", id="new-user-add"),
            spacing="3",
            align="center",
        ),
        on_submit=UsersState.create,
        reset_on_submit=False,
    )


def users_page() -> rx.Component:
    return layout(
        rx.heading("Users", size="6"),
        rx.cond(
            UsersState.error != "",
            rx.callout(UsersState.error, color_scheme="red", id="users-error"),
        ),
        rx.cond(
            UsersState.notice != "",
            rx.callout(UsersState.notice, color_scheme="green", id="users-notice"),
        ),
        rx.heading("Add a user", size="4", padding_top="1em"),
        _new_user_form(),
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    *(
                        rx.table.column_header_cell(x)
                        for x in ("Email", "Role", "Active", "Locked until (UTC)", "Last login")
                    ),
                    rx.table.column_header_cell("Role"),
                    rx.table.column_header_cell(""),
                )
            ),
            rx.table.body(rx.foreach(UsersState.users, _user_row)),
            width="100%",
            id="users-table",
        ),
    )
