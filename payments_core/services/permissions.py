"""Who may do what: the permission matrix, in one place, and the guard every service uses.

Roles build on each other (DESIGN.md): an analyst reads and sees analytics; finance also requests
refunds, works disputes, records manual payments and statement imports, replays webhooks; a
manager also approves (refunds, proofs); an admin also manages people and API keys. Maker-checker
(the requester never approves their own request) is not a role question: the services check it,
and the database refuses it too (CHECK constraints on refund and manual_proof).

A service that changes data is decorated with ``@guarded(Permission.X)``: the check runs first,
before any argument is looked at, so a refused actor learns nothing and changes nothing. The
decorator also registers the service in ``GUARDED``, which the permission test walks.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar

from sqlmodel import Session, col, select

from payments_core.models import AppUser, Role


class Permission(enum.StrEnum):
    VIEW_PAYMENTS = "payments.view"
    VIEW_ANALYTICS = "analytics.view"
    VIEW_AUDIT = "audit.view"
    REQUEST_REFUND = "refunds.request"
    APPROVE_REFUND = "refunds.approve"
    MANAGE_DISPUTES = "disputes.manage"
    RECORD_PROOF = "proofs.record"
    REVIEW_PROOF = "proofs.review"
    IMPORT_STATEMENT = "statements.import"
    REPLAY_WEBHOOKS = "webhooks.replay"
    MANAGE_USERS = "users.manage"
    MANAGE_API_KEYS = "api_keys.manage"


_P = Permission
_ANALYST: Final = frozenset({_P.VIEW_PAYMENTS, _P.VIEW_ANALYTICS})
_FINANCE: Final = _ANALYST | {
    _P.VIEW_AUDIT,
    _P.REQUEST_REFUND,
    _P.MANAGE_DISPUTES,
    _P.RECORD_PROOF,
    _P.IMPORT_STATEMENT,
    _P.REPLAY_WEBHOOKS,
}
_MANAGER: Final = _FINANCE | {_P.APPROVE_REFUND, _P.REVIEW_PROOF}
_ADMIN: Final = _MANAGER | {_P.MANAGE_USERS, _P.MANAGE_API_KEYS}

ROLE_PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.ANALYST: _ANALYST,
    Role.FINANCE: _FINANCE,
    Role.MANAGER: _MANAGER,
    Role.ADMIN: _ADMIN,
}


@dataclass(frozen=True, slots=True)
class Actor:
    """A person acting through the dashboard or the CLI. ``name`` is what the audit log, the
    timeline and the maker-checker columns record (the email)."""

    name: str
    role: Role
    user_id: int | None = None

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


class PermissionDenied(Exception):
    def __init__(self, actor: Actor, permission: Permission) -> None:
        super().__init__(
            f"{actor.name} ({actor.role.value}) may not {_WORDS.get(permission, permission.value)}"
        )
        self.actor = actor
        self.permission = permission


_WORDS: Final = {
    _P.VIEW_PAYMENTS: "view payments",
    _P.VIEW_ANALYTICS: "view analytics",
    _P.VIEW_AUDIT: "view the audit log",
    _P.REQUEST_REFUND: "request refunds",
    _P.APPROVE_REFUND: "approve or reject refunds",
    _P.MANAGE_DISPUTES: "work on disputes",
    _P.RECORD_PROOF: "record payment proofs",
    _P.REVIEW_PROOF: "review payment proofs",
    _P.IMPORT_STATEMENT: "import bank statements",
    _P.REPLAY_WEBHOOKS: "replay webhooks",
    _P.MANAGE_USERS: "manage users",
    _P.MANAGE_API_KEYS: "manage API keys",
}


def require(actor: Actor, permission: Permission) -> None:
    if not isinstance(actor, Actor) or not actor.can(permission):
        raise PermissionDenied(actor, permission)


class UnknownActor(LookupError):
    pass


def actor_for(*, session: Session, email: str) -> Actor:
    """The active user with this email as an Actor (CLI ``--actor``, dashboard sessions)."""
    user = session.exec(
        select(AppUser).where(col(AppUser.email) == email.strip().lower())
    ).one_or_none()
    if user is None:
        raise UnknownActor(f"no user {email.strip().lower()}")
    if not user.is_active:
        raise UnknownActor(f"user {user.email} is disabled")
    return Actor(name=user.email, role=Role(user.role), user_id=user.id)


P = ParamSpec("P")
R = TypeVar("R")

# Every guarded service, by "module.function": what the permission test walks.
GUARDED: dict[str, tuple[Callable[..., Any], Permission]] = {}


def guarded(permission: Permission) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Check ``actor`` (a keyword argument of the service) for ``permission`` before anything."""

    def wrap(service: Callable[P, R]) -> Callable[P, R]:
        if "actor" not in inspect.signature(service).parameters:
            raise TypeError(f"{service.__qualname__} is guarded but takes no actor")

        @functools.wraps(service)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            actor = kwargs.get("actor")
            if not isinstance(actor, Actor):
                raise TypeError(f"{service.__qualname__} needs actor=Actor(...) as a keyword")
            require(actor, permission)
            return service(*args, **kwargs)

        checked.permission = permission  # type: ignore[attr-defined]
        GUARDED[f"{service.__module__}.{service.__qualname__}"] = (checked, permission)
        return checked

    return wrap


__all__ = [
    "GUARDED",
    "ROLE_PERMISSIONS",
    "Actor",
    "Permission",
    "PermissionDenied",
    "UnknownActor",
    "actor_for",
    "guarded",
    "require",
]
