"""People: users with argon2-hashed passwords, sign-in sessions, and managing who may sign in.

Sign-in (``login``) checks the password with argon2 and answers an unknown email and a wrong
password with the same message (an unknown email still pays for one argon2 verification, so the
time taken does not tell either). ``settings.login_max_failures`` wrong passwords in a row lock the
account for ``settings.login_lockout_minutes``; a success resets the count. A refused sign-in
raises ``LoginRefused`` *after* recording the failure in the session: the caller catches it inside
its transaction so the count is committed (a rollback would forget the failure and defeat the
lockout).

A session is a random token handed to the browser once; the database keeps only its SHA-256
(``UserSession.token_hash``). ``session_actor`` turns a token back into an ``Actor`` while the
session is unexpired, unrevoked and its user active; it reads the role each time, so a role change
or a disabled account takes effect on the next request.

Managing people (``list_users``, ``add_user``, ``disable_user``, ``enable_user``, ``set_role``)
needs ``Permission.MANAGE_USERS``. An admin cannot disable or demote themselves, and the last active
admin can be neither disabled nor demoted, so there is always someone who can manage users. Every
change is audited with before/after. ``create_user`` stays unguarded: the CLI and ``paydesk dev``
bootstrap the first admin with it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, col, select

from payments_core.config import Settings
from payments_core.models import AppUser, Role, UserSession, utcnow
from payments_core.services.audit import record_audit
from payments_core.services.permissions import Actor, Permission, guarded

MIN_PASSWORD_LENGTH = 12
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHasher()


class UserError(ValueError):
    pass


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise UserError(f"{email!r} is not an email address")
    return email


def parse_role(role: str) -> Role:
    try:
        return Role(role.strip().lower())
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise UserError(f"unknown role {role!r}; use one of: {allowed}") from None


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password:
        raise UserError("password must not start or end with spaces")


def get_user_by_email(*, session: Session, email: str) -> AppUser | None:
    return session.exec(
        select(AppUser).where(col(AppUser.email) == normalize_email(email))
    ).one_or_none()


def create_user(
    *,
    session: Session,
    email: str,
    role: Role | str,
    password: str,
    actor: str,
    display_name: str | None = None,
) -> AppUser:
    email = normalize_email(email)
    role = parse_role(role) if isinstance(role, str) else role
    check_password_strength(password)
    if get_user_by_email(session=session, email=email) is not None:
        raise UserError(f"a user with email {email} already exists")
    user = AppUser(
        email=email,
        role=role.value,
        display_name=display_name,
        password_hash=_hasher.hash(password),
    )
    session.add(user)
    session.flush()
    record_audit(
        session=session,
        actor=actor,
        action="user.created",
        entity_type="user",
        entity_id=email,
        after={"email": email, "role": role.value, "display_name": display_name},
    )
    return user


def password_matches(user: AppUser, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# --- Sign-in and sessions -------------------------------------------------------------------

BAD_CREDENTIALS = "wrong email or password"
DISABLED = "this account is disabled; ask an administrator to enable it"
# How often a session's last_seen_at is written at most (every request would be a write).
LAST_SEEN_EVERY = timedelta(minutes=1)
_TOKEN_BYTES = 32


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so that answer takes as long as a wrong
    password (made on first use: hashing costs time at import)."""
    return _hasher.hash(secrets.token_urlsafe(16))


class LoginRefused(UserError):
    """Sign-in refused; the message is safe to show (it never says whether the email exists)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _until(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _login_state(user: AppUser) -> dict[str, Any]:
    return {"failed_login_count": user.failed_login_count, "locked_until": user.locked_until}


def login(
    *,
    session: Session,
    email: str,
    password: str,
    settings: Settings,
    now: datetime | None = None,
) -> tuple[AppUser, str]:
    """Sign in: the user and a new session token (shown once; only its SHA-256 is stored).

    Raises ``LoginRefused`` for an unknown email or a wrong password (same message), a locked
    account, or a disabled one (said only to someone who knows the password). Catch it inside the
    transaction: the failure count it recorded must be committed.
    """
    now = now or utcnow()
    try:
        email = normalize_email(email)
    except UserError:
        email = ""
    # Row-locked, so two wrong passwords at the same moment both count.
    user = (
        session.exec(
            select(AppUser).where(col(AppUser.email) == email).with_for_update()
        ).one_or_none()
        if email
        else None
    )
    if user is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_dummy_hash(), password)
        raise LoginRefused(BAD_CREDENTIALS)

    if user.locked_until is not None:
        if user.locked_until > now:
            raise LoginRefused(
                "too many failed sign-ins: this account is locked until "
                f"{_until(user.locked_until)}; try again later or ask an administrator"
            )
        # The lockout is over: a fresh set of attempts.
        user.failed_login_count, user.locked_until = 0, None

    if not password_matches(user, password):
        before = _login_state(user)
        user.failed_login_count += 1
        locks = user.failed_login_count >= settings.login_max_failures
        if locks:
            user.locked_until = now + timedelta(minutes=settings.login_lockout_minutes)
        session.add(user)
        session.flush()
        if locks:
            assert user.locked_until is not None
            record_audit(
                session=session,
                actor=user.email,
                action="user.locked",
                entity_type="user",
                entity_id=user.email,
                before=before,
                after=_login_state(user),
                at=now,
            )
            raise LoginRefused(
                f"{BAD_CREDENTIALS}; after {user.failed_login_count} failed sign-ins the "
                f"account is locked until {_until(user.locked_until)}"
            )
        raise LoginRefused(BAD_CREDENTIALS)

    if not user.is_active:
        raise LoginRefused(DISABLED)

    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_login_count, user.locked_until, user.last_login_at = 0, None, now
    session.add(user)
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    assert user.id is not None
    user_session = UserSession(
        user_id=user.id,
        token_hash=token_hash(token),
        created_at=now,
        expires_at=now + timedelta(hours=settings.session_hours),
        last_seen_at=now,
    )
    session.add(user_session)
    session.flush()
    record_audit(
        session=session,
        actor=user.email,
        action="user.signed_in",
        entity_type="user",
        entity_id=user.email,
        after={"session_id": user_session.id, "expires_at": user_session.expires_at},
        at=now,
    )
    return user, token


def _find_session(session: Session, token: str) -> tuple[UserSession, AppUser] | None:
    if not token:
        return None
    row = session.exec(
        select(UserSession, AppUser)
        .join(AppUser, col(AppUser.id) == col(UserSession.user_id))
        .where(col(UserSession.token_hash) == token_hash(token))
    ).one_or_none()
    return (row[0], row[1]) if row else None


def session_actor(*, session: Session, token: str, now: datetime | None = None) -> Actor | None:
    """The signed-in person for ``token``, or None when the session is unknown, expired, revoked
    or its user disabled. Writes ``last_seen_at`` at most once a minute."""
    now = now or utcnow()
    found = _find_session(session, token)
    if found is None:
        return None
    user_session, user = found
    if user_session.revoked_at is not None or user_session.expires_at <= now:
        return None
    if not user.is_active:
        return None
    if user_session.last_seen_at is None or now - user_session.last_seen_at >= LAST_SEEN_EVERY:
        user_session.last_seen_at = now
        session.add(user_session)
        session.flush()
    return Actor(name=user.email, role=Role(user.role), user_id=user.id)


def logout(*, session: Session, token: str, now: datetime | None = None) -> bool:
    """Revoke the session for ``token``; False when there was no live session to end."""
    now = now or utcnow()
    found = _find_session(session, token)
    if found is None or found[0].revoked_at is not None:
        return False
    user_session, user = found
    user_session.revoked_at = now
    session.add(user_session)
    session.flush()
    record_audit(
        session=session,
        actor=user.email,
        action="user.signed_out",
        entity_type="user",
        entity_id=user.email,
        before={"session_id": user_session.id, "revoked_at": None},
        after={"session_id": user_session.id, "revoked_at": now},
        at=now,
    )
    return True


# --- Managing people (admins) -----------------------------------------------------------------


def _locked_user(session: Session, email: str) -> AppUser:
    email = normalize_email(email)
    user = session.exec(
        select(AppUser).where(col(AppUser.email) == email).with_for_update()
    ).one_or_none()
    if user is None:
        raise UserError(f"no user {email}")
    return user


def _is_self(actor: Actor, user: AppUser) -> bool:
    if actor.user_id is not None:
        return actor.user_id == user.id
    return actor.name.strip().lower() == user.email


def _other_active_admins(session: Session, user: AppUser) -> int:
    # Locks every active admin row: two admins demoting each other at once are serialized, and
    # the second sees the first's change (PostgreSQL re-checks locked rows against the WHERE).
    rows = session.exec(
        select(AppUser.id)
        .where(col(AppUser.role) == Role.ADMIN.value, col(AppUser.is_active).is_(True))
        .with_for_update()
    ).all()
    return sum(1 for user_id in rows if user_id != user.id)


def _state(user: AppUser) -> dict[str, Any]:
    return {
        "email": user.email,
        "role": user.role,
        "is_active": user.is_active,
        "failed_login_count": user.failed_login_count,
        "locked_until": user.locked_until,
    }


def _audit_user(
    session: Session,
    actor: Actor,
    action: str,
    user: AppUser,
    before: dict[str, Any],
    at: datetime,
    **extra: Any,
) -> None:
    record_audit(
        session=session,
        actor=actor.name,
        action=action,
        entity_type="user",
        entity_id=user.email,
        before=before,
        after=_state(user) | extra,
        at=at,
    )


@guarded(Permission.MANAGE_USERS)
def list_users(*, session: Session, actor: Actor) -> list[AppUser]:
    """Every user, admins first, then by email (for the admin's users page)."""
    return list(
        session.exec(
            select(AppUser).order_by(col(AppUser.role) != Role.ADMIN.value, col(AppUser.email))
        ).all()
    )


@guarded(Permission.MANAGE_USERS)
def add_user(
    *,
    session: Session,
    actor: Actor,
    email: str,
    role: Role | str,
    password: str,
    display_name: str | None = None,
) -> AppUser:
    """A new user (audited as ``user.created`` by ``create_user``)."""
    return create_user(
        session=session,
        email=email,
        role=role,
        password=password,
        actor=actor.name,
        display_name=display_name,
    )


@guarded(Permission.MANAGE_USERS)
def disable_user(
    *, session: Session, actor: Actor, email: str, now: datetime | None = None
) -> AppUser:
    """Stop ``email`` from signing in and end their open sessions."""
    now = now or utcnow()
    user = _locked_user(session, email)
    if _is_self(actor, user):
        raise UserError("you cannot disable your own account; ask another admin")
    if not user.is_active:
        return user
    if user.role == Role.ADMIN.value and _other_active_admins(session, user) == 0:
        raise UserError(f"{user.email} is the last active admin and cannot be disabled")
    before = _state(user)
    user.is_active = False
    session.add(user)
    live = session.exec(
        select(UserSession).where(
            col(UserSession.user_id) == user.id, col(UserSession.revoked_at).is_(None)
        )
    ).all()
    for user_session in live:
        user_session.revoked_at = now
        session.add(user_session)
    revoked = len(live)
    session.flush()
    _audit_user(session, actor, "user.disabled", user, before, now, sessions_revoked=revoked)
    return user


@guarded(Permission.MANAGE_USERS)
def enable_user(
    *, session: Session, actor: Actor, email: str, now: datetime | None = None
) -> AppUser:
    """Let ``email`` sign in again; this also lifts a lockout after failed sign-ins."""
    now = now or utcnow()
    user = _locked_user(session, email)
    if user.is_active and user.locked_until is None and user.failed_login_count == 0:
        return user
    before = _state(user)
    user.is_active, user.failed_login_count, user.locked_until = True, 0, None
    session.add(user)
    session.flush()
    _audit_user(session, actor, "user.enabled", user, before, now)
    return user


@guarded(Permission.MANAGE_USERS)
def set_role(
    *, session: Session, actor: Actor, email: str, role: Role | str, now: datetime | None = None
) -> AppUser:
    """Give ``email`` another role; effective on their next request."""
    now = now or utcnow()
    new_role = parse_role(role) if isinstance(role, str) else role
    user = _locked_user(session, email)
    if user.role == new_role.value:
        return user
    if user.role == Role.ADMIN.value:
        if _is_self(actor, user):
            raise UserError("you cannot demote yourself; ask another admin")
        if user.is_active and _other_active_admins(session, user) == 0:
            raise UserError(f"{user.email} is the last active admin and cannot be demoted")
    before = _state(user)
    user.role = new_role.value
    session.add(user)
    session.flush()
    _audit_user(session, actor, "user.role_changed", user, before, now)
    return user
