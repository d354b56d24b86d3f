from __future__ import annotations

import pytest
from sqlmodel import Session, select

from payments_core.models import AuditEntry
from payments_core.services.users import (
    UserError,
    create_user,
    get_user_by_email,
    password_matches,
)

PASSWORD = "correct horse battery"


def test_create_user_hashes_password_and_audits(session: Session) -> None:
    with session.begin():
        user = create_user(
            session=session,
            email=" Anna@Example.COM ",
            role="finance",
            password=PASSWORD,
            actor="cli:root",
        )
    assert user.email == "anna@example.com" and user.role == "finance"
    assert PASSWORD not in user.password_hash and user.password_hash.startswith("$argon2")
    assert password_matches(user, PASSWORD) and not password_matches(user, "wrong password!!")
    entry = session.exec(select(AuditEntry)).one()
    assert (entry.actor, entry.action, entry.entity_id) == ("cli:root", "user.created", user.email)
    assert entry.after is not None and PASSWORD not in str(entry.after)
    assert get_user_by_email(session=session, email="ANNA@example.com") is not None


@pytest.mark.parametrize(
    ("email", "role", "password", "message"),
    [
        ("not-an-email", "finance", PASSWORD, "not an email"),
        ("a@example.com", "owner", PASSWORD, "unknown role 'owner'"),
        ("a@example.com", "finance", "short", "at least 12"),
    ],
)
def test_bad_input_is_refused_clearly(
    session: Session, email: str, role: str, password: str, message: str
) -> None:
    with pytest.raises(UserError, match=message), session.begin():
        create_user(session=session, email=email, role=role, password=password, actor="t")


def test_duplicate_email_refused(session: Session) -> None:
    with session.begin():
        create_user(
            session=session, email="a@example.com", role="admin", password=PASSWORD, actor="t"
        )
    with pytest.raises(UserError, match="already exists"), session.begin():
        create_user(
            session=session, email="A@example.com", role="analyst", password=PASSWORD, actor="t"
        )
