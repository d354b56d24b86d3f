"""People: creating users with argon2-hashed passwords (sign-in and sessions come later)."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlmodel import Session, col, select

from payments_core.models import AppUser, Role
from payments_core.services.audit import record_audit

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
    except VerificationError:
        return False
