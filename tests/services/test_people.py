from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from payments_core.config import Settings, get_settings
from payments_core.models import AppUser, AuditEntry, Role, UserSession
from payments_core.services.permissions import Actor, PermissionDenied, actor_for
from payments_core.services.users import (
    BAD_CREDENTIALS,
    DISABLED,
    LoginRefused,
    UserError,
    add_user,
    create_user,
    disable_user,
    enable_user,
    login,
    logout,
    session_actor,
    set_role,
)

T = TypeVar("T")
PASSWORD = "correct horse battery"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def settings() -> Settings:
    return get_settings().model_copy(
        update={"login_max_failures": 3, "login_lockout_minutes": 15, "session_hours": 12}
    )


def _user(session: Session, email: str, role: Role = Role.FINANCE) -> AppUser:
    with session.begin():
        return create_user(session=session, email=email, role=role, password=PASSWORD, actor="t")


def _attempt(
    session: Session, settings: Settings, email: str, password: str, now: datetime
) -> tuple[AppUser, str] | str:
    """One sign-in in its own transaction, committed even when refused (as callers must)."""
    with session.begin():
        try:
            return login(
                session=session, email=email, password=password, settings=settings, now=now
            )
        except LoginRefused as exc:
            return str(exc)


def _token(result: tuple[AppUser, str] | str) -> str:
    assert isinstance(result, tuple), result
    return result[1]


def _read(session: Session, statement: SelectOfScalar[T]) -> list[T]:
    with session.begin():
        return list(session.exec(statement))


def _actions(session: Session) -> list[str]:
    return [e.action for e in _read(session, select(AuditEntry).order_by(col(AuditEntry.seq)))]


def _admin(session: Session, email: str = "root@example.com") -> Actor:
    _user(session, email, Role.ADMIN)
    with session.begin():
        return actor_for(session=session, email=email)


def test_login_returns_token_stores_only_its_hash_and_audits(
    session: Session, settings: Settings
) -> None:
    _user(session, "anna@example.com")
    user, token = _attempt(session, settings, " Anna@Example.com ", PASSWORD, T0)  # type: ignore[misc]
    assert user.email == "anna@example.com" and user.last_login_at == T0
    [stored] = _read(session, select(UserSession))
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(stored.model_dump()) and len(token) >= 40
    assert stored.expires_at == T0 + timedelta(hours=12)
    assert _actions(session)[-1] == "user.signed_in"
    with session.begin():
        actor = session_actor(session=session, token=token, now=T0 + timedelta(minutes=5))
    assert actor == Actor(name="anna@example.com", role=Role.FINANCE, user_id=user.id)
    with session.begin():
        assert session_actor(session=session, token=token + "x", now=T0) is None
        assert session_actor(session=session, token="", now=T0) is None


def test_wrong_password_and_unknown_email_get_the_same_answer(
    session: Session, settings: Settings
) -> None:
    _user(session, "anna@example.com")
    wrong = _attempt(session, settings, "anna@example.com", "wrong password!!", T0)
    unknown = _attempt(session, settings, "nobody@example.com", PASSWORD, T0)
    malformed = _attempt(session, settings, "not an email", PASSWORD, T0)
    assert wrong == unknown == malformed == BAD_CREDENTIALS
    assert _read(session, select(UserSession)) == []


def test_lockout_after_max_failures_then_unlock_after_the_window(
    session: Session, settings: Settings
) -> None:
    _user(session, "anna@example.com")
    for minute in range(2):
        answer = _attempt(session, settings, "anna@example.com", "nope nope nope", T0)
        assert answer == BAD_CREDENTIALS, minute
    third = _attempt(session, settings, "anna@example.com", "nope nope nope", T0)
    assert isinstance(third, str) and third.startswith(BAD_CREDENTIALS) and "locked" in third
    assert "user.locked" in _actions(session)

    # Locked: even the right password is refused until the window ends.
    during = _attempt(session, settings, "anna@example.com", PASSWORD, T0 + timedelta(minutes=14))
    assert isinstance(during, str) and "locked until 2026-03-02 09:15 UTC" in during
    after = _attempt(session, settings, "anna@example.com", PASSWORD, T0 + timedelta(minutes=15))
    _token(after)
    [user] = _read(session, select(AppUser))
    assert (user.failed_login_count, user.locked_until) == (0, None)


def test_success_resets_the_failure_count(session: Session, settings: Settings) -> None:
    _user(session, "anna@example.com")
    for _ in range(2):
        _attempt(session, settings, "anna@example.com", "nope nope nope", T0)
    _token(_attempt(session, settings, "anna@example.com", PASSWORD, T0))
    for _ in range(2):
        assert _attempt(session, settings, "anna@example.com", "nope nope", T0) == BAD_CREDENTIALS
    _token(_attempt(session, settings, "anna@example.com", PASSWORD, T0))


def test_disabled_user_is_refused_and_loses_open_sessions(
    session: Session, settings: Settings
) -> None:
    admin = _admin(session)
    _user(session, "anna@example.com")
    token = _token(_attempt(session, settings, "anna@example.com", PASSWORD, T0))
    with session.begin():
        disable_user(session=session, actor=admin, email="anna@example.com", now=T0)
    with session.begin():
        assert session_actor(session=session, token=token, now=T0) is None
        assert session.exec(select(UserSession)).one().revoked_at == T0
    assert _attempt(session, settings, "anna@example.com", PASSWORD, T0) == DISABLED
    # Without the password, a disabled account looks like any other failure.
    assert _attempt(session, settings, "anna@example.com", "nope nope", T0) == BAD_CREDENTIALS

    with session.begin():
        enable_user(session=session, actor=admin, email="anna@example.com", now=T0)
    _token(_attempt(session, settings, "anna@example.com", PASSWORD, T0))
    with session.begin():
        assert session_actor(session=session, token=token, now=T0) is None  # old one stays dead
    [entry] = _read(session, select(AuditEntry).where(col(AuditEntry.action) == "user.disabled"))
    assert entry.actor == "root@example.com"
    assert entry.before is not None and entry.before["is_active"] is True
    assert entry.after is not None and entry.after["is_active"] is False
    assert entry.after["sessions_revoked"] == 1


def test_enable_lifts_a_lockout(session: Session, settings: Settings) -> None:
    admin = _admin(session)
    _user(session, "anna@example.com")
    for _ in range(3):
        _attempt(session, settings, "anna@example.com", "nope nope", T0)
    assert "locked" in str(_attempt(session, settings, "anna@example.com", PASSWORD, T0))
    with session.begin():
        enable_user(session=session, actor=admin, email="anna@example.com", now=T0)
    _token(_attempt(session, settings, "anna@example.com", PASSWORD, T0))


def test_session_expires_and_last_seen_is_written_at_most_once_a_minute(
    session: Session, settings: Settings
) -> None:
    _user(session, "anna@example.com")
    token = _token(_attempt(session, settings, "anna@example.com", PASSWORD, T0))
    with session.begin():
        assert session_actor(session=session, token=token, now=T0 + timedelta(seconds=30))
    assert _read(session, select(UserSession.last_seen_at)) == [T0]
    later = T0 + timedelta(minutes=2)
    with session.begin():
        assert session_actor(session=session, token=token, now=later)
    assert _read(session, select(UserSession.last_seen_at)) == [later]
    with session.begin():
        assert session_actor(session=session, token=token, now=T0 + timedelta(hours=11, minutes=59))
        assert session_actor(session=session, token=token, now=T0 + timedelta(hours=12)) is None


def test_logout_revokes_the_session_and_is_audited(session: Session, settings: Settings) -> None:
    _user(session, "anna@example.com")
    token = _token(_attempt(session, settings, "anna@example.com", PASSWORD, T0))
    other = _token(_attempt(session, settings, "anna@example.com", PASSWORD, T0))
    with session.begin():
        assert logout(session=session, token=token, now=T0) is True
    with session.begin():
        assert session_actor(session=session, token=token, now=T0) is None
        assert session_actor(session=session, token=other, now=T0) is not None
        assert logout(session=session, token=token, now=T0) is False
        assert logout(session=session, token="unknown", now=T0) is False
    assert _actions(session).count("user.signed_out") == 1


def test_managing_people_needs_the_permission(session: Session) -> None:
    _user(session, "anna@example.com")
    manager = Actor(name="boss@example.com", role=Role.MANAGER)
    calls = [
        lambda: add_user(
            session=session, actor=manager, email="x@example.com", role="admin", password=PASSWORD
        ),
        lambda: disable_user(session=session, actor=manager, email="anna@example.com"),
        lambda: enable_user(session=session, actor=manager, email="anna@example.com"),
        lambda: set_role(session=session, actor=manager, email="anna@example.com", role="admin"),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied, match="may not manage users"), session.begin():
            call()
    [user] = _read(session, select(AppUser))
    assert (user.role, user.is_active) == ("finance", True)


def test_add_user_and_set_role_are_audited_with_before_and_after(session: Session) -> None:
    admin = _admin(session)
    with session.begin():
        user = add_user(
            session=session,
            actor=admin,
            email="Ben@example.com",
            role="analyst",
            password=PASSWORD,
            display_name="Ben",
        )
    assert (user.email, user.role, user.display_name) == ("ben@example.com", "analyst", "Ben")
    with session.begin():
        set_role(session=session, actor=admin, email="ben@example.com", role="manager", now=T0)
    entries = _read(
        session,
        select(AuditEntry)
        .where(col(AuditEntry.entity_id) == "ben@example.com")
        .order_by(col(AuditEntry.seq)),
    )
    assert [(e.actor, e.action) for e in entries] == [
        ("root@example.com", "user.created"),
        ("root@example.com", "user.role_changed"),
    ]
    changed = entries[1]
    assert changed.before is not None and changed.before["role"] == "analyst"
    assert changed.after is not None and changed.after["role"] == "manager"
    with pytest.raises(UserError, match="unknown role"), session.begin():
        set_role(session=session, actor=admin, email="ben@example.com", role="owner")
    with pytest.raises(UserError, match="no user"), session.begin():
        set_role(session=session, actor=admin, email="nobody@example.com", role="analyst")


def test_an_admin_cannot_disable_or_demote_themselves(session: Session) -> None:
    admin = _admin(session)
    _admin(session, "second@example.com")
    with pytest.raises(UserError, match="cannot disable your own"), session.begin():
        disable_user(session=session, actor=admin, email="root@example.com")
    with pytest.raises(UserError, match="cannot demote yourself"), session.begin():
        set_role(session=session, actor=admin, email="root@example.com", role="manager")
    # Another admin may.
    with session.begin():
        set_role(session=session, actor=admin, email="second@example.com", role="manager")
    assert _read(session, select(AppUser.role).order_by(col(AppUser.id))) == [
        "admin",
        "manager",
    ]


def test_the_last_active_admin_can_be_neither_disabled_nor_demoted(session: Session) -> None:
    _admin(session)
    second = _admin(session, "second@example.com")
    cli = Actor(name="cli:ops", role=Role.ADMIN)  # an operator at the console, not a user row
    with session.begin():
        disable_user(session=session, actor=second, email="root@example.com", now=T0)
    with pytest.raises(UserError, match="last active admin"), session.begin():
        disable_user(session=session, actor=cli, email="second@example.com")
    with pytest.raises(UserError, match="last active admin"), session.begin():
        set_role(session=session, actor=cli, email="second@example.com", role="finance")
    # A disabled admin does not count, but may itself be demoted.
    with session.begin():
        set_role(session=session, actor=cli, email="root@example.com", role="finance")
    active_admins = _read(
        session, select(AppUser.email).where(col(AppUser.role) == "admin", col(AppUser.is_active))
    )
    assert active_admins == ["second@example.com"]
