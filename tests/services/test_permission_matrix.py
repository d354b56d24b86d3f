"""The permission matrix, walked: every service that acts for a person is guarded, and each role
is allowed or refused exactly as ROLE_PERMISSIONS says (SQLite and PostgreSQL)."""

from __future__ import annotations

import collections.abc
import functools
import importlib
import inspect
import pkgutil
import typing
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

import payments_core.services as services_package
from payments_core.config import get_settings
from payments_core.db import transaction
from payments_core.models import Role
from payments_core.providers.registry import Adapters
from payments_core.services.permissions import (
    GUARDED,
    ROLE_PERMISSIONS,
    Actor,
    Permission,
    PermissionDenied,
)


def service_modules() -> list[ModuleType]:
    return [
        importlib.import_module(f"{services_package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(services_package.__path__)
    ]


def test_every_service_acting_for_a_person_is_guarded() -> None:
    modules = service_modules()
    unguarded = []
    for module in modules:
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__ or name.startswith("_"):
                continue
            if module.__name__.endswith(".permissions"):
                continue  # the guard itself
            hints = typing.get_type_hints(inspect.unwrap(function))
            if hints.get("actor") is Actor and not hasattr(function, "permission"):
                unguarded.append(f"{module.__name__}.{name}")
    assert unguarded == []
    # And the walk below has something to walk: one entry per guarded service.
    assert len(GUARDED) >= 15


def test_roles_build_on_each_other() -> None:
    analyst, finance, manager, admin = (ROLE_PERMISSIONS[r] for r in Role)
    assert analyst < finance < manager < admin
    assert Permission.APPROVE_REFUND in manager and Permission.APPROVE_REFUND not in finance
    assert Permission.REQUEST_REFUND in finance and Permission.REQUEST_REFUND not in analyst
    assert Permission.MANAGE_USERS in admin and Permission.MANAGE_USERS not in manager


def _placeholder(parameter: inspect.Parameter, hint: Any) -> Any:
    """A value of the right kind that names nothing: the call must fail after the check."""
    origin = typing.get_origin(hint) or hint
    if hint is str or parameter.name.endswith("_id") or parameter.name in ("email", "reason"):
        return "nothing-here"
    if hint is int:
        return 1
    if hint is bytes:
        return b""
    if origin in (dict, collections.abc.Mapping):
        return {}
    if origin in (list, tuple, collections.abc.Sequence):
        return ()
    if hint is Role or parameter.name == "role":
        return Role.ANALYST
    return None


def call_with_placeholders(service: Any, actor: Actor, session: Session, engine: Engine) -> None:
    target = inspect.unwrap(service)
    hints = typing.get_type_hints(target)
    kwargs: dict[str, Any] = {}
    for name, parameter in inspect.signature(target).parameters.items():
        if name == "actor":
            kwargs[name] = actor
        elif name == "session":
            kwargs[name] = session
        elif name == "transaction":
            kwargs[name] = functools.partial(transaction, engine)
        elif name == "adapters":
            kwargs[name] = Adapters()
        elif name == "settings":
            kwargs[name] = get_settings()
        elif parameter.default is inspect.Parameter.empty:
            kwargs[name] = _placeholder(parameter, hints.get(name))
    service(**kwargs)


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_each_role_is_allowed_or_refused_as_the_matrix_says(
    role: Role, db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    get_settings.cache_clear()
    service_modules()
    actor = Actor(name=f"{role.value}@example.com", role=role)
    wrong = []
    for name, (service, permission) in sorted(GUARDED.items()):
        with Session(engine) as session:
            try:
                call_with_placeholders(service, actor, session, engine)
            except PermissionDenied:
                refused = True
            except Exception:
                refused = False
            else:
                refused = False
            session.rollback()
        allowed = permission in ROLE_PERMISSIONS[role]
        if refused == allowed:
            wrong.append(f"{name} ({permission}): {'refused' if refused else 'allowed'}")
    assert wrong == [], f"{role.value}: {wrong}"


def test_a_refusal_says_who_and_what(engine: Engine) -> None:
    from payments_core.services.refunds import approve_refund

    with Session(engine) as session, pytest.raises(PermissionDenied) as refused:
        approve_refund(
            session=session, actor=Actor("fin@example.com", Role.FINANCE), refund_id="rf_x"
        )
    assert str(refused.value) == "fin@example.com (finance) may not approve or reject refunds"
