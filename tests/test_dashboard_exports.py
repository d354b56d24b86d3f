"""The export download route (``dashboard.exports``) without a browser: the real route, a real
database (SQLite and PostgreSQL) and real sessions from ``users.login``.

Only the signed-in author of an export gets it back; everything else is 401 or 404 with no file
content. The browser test in tests/browser/test_payments_filters.py covers the whole way through
the running app (the page's download, the backend port, the cookie).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from dashboard.exports import (
    KEPT_SECONDS,
    download_url,
    exports_root,
    find_export,
    mount_exports,
    new_export_path,
    sweep,
)
from dashboard.state import SESSION_COOKIE
from payments_core.config import get_settings
from payments_core.db import dispose_engines
from payments_core.models import Role
from payments_core.services.permissions import Actor
from payments_core.services.users import create_user, login

CSV = "payment_id,amount_minor,currency\r\npay_1,4990,CHF\r\n"


def _user(engine: Engine, name: str, role: str) -> tuple[Actor, str]:
    """A user and a live session token for them."""
    password = f"{name}-password-123"
    with Session(engine) as session, session.begin():
        user = create_user(
            session=session, email=f"{name}@example.com", role=role, password=password, actor="t"
        )
        assert user.id is not None
        actor = Actor(name=user.email, role=Role(role), user_id=user.id)
        _, token = login(
            session=session, email=user.email, password=password, settings=get_settings()
        )
    return actor, token


@pytest.fixture
def client(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The route in front of a stand-in for Reflex's backend, on this test's database."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    get_settings.cache_clear()

    def reflex_backend(_: object) -> PlainTextResponse:
        return PlainTextResponse("reflex", status_code=404)

    backend = Starlette(routes=[Route("/{path:path}", reflex_backend)])
    with TestClient(mount_exports(backend), base_url="http://127.0.0.1:8001") as test_client:
        yield test_client
    dispose_engines()


def _export(actor: Actor) -> Path:
    path = new_export_path(actor)
    path.write_text(CSV, encoding="utf-8")
    return path


def _cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={token}"}


def _refused(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status
    assert "pay_1" not in answer.text


def test_the_author_downloads_their_export_as_an_attachment(
    client: TestClient, engine: Engine
) -> None:
    finance, token = _user(engine, "finance", "finance")
    path = _export(finance)
    assert path.parent == get_settings().var_dir / "exports" / str(finance.user_id)

    answer = client.get(f"/exports/{path.name}", headers=_cookie(token))
    assert answer.status_code == 200
    assert answer.text == CSV
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="paydesk-payments-')
    assert answer.headers["cache-control"] == "no-store"
    # Everything else still reaches Reflex's backend.
    assert client.get("/ping").text == "reflex"


def test_no_session_another_user_or_a_bad_name_gets_no_content(
    client: TestClient, engine: Engine
) -> None:
    finance, finance_token = _user(engine, "finance", "finance")
    _, analyst_token = _user(engine, "analyst", "analyst")
    path = _export(finance)
    url = f"/exports/{path.name}"

    _refused(client.get(url), 401)
    _refused(client.get(url, headers=_cookie("made-up")), 401)
    # The analyst may view payments, but this is not their export.
    _refused(client.get(url, headers=_cookie(analyst_token)), 404)

    owner = _cookie(finance_token)
    for bad in (
        f"/exports/..%2F{finance.user_id}%2F{path.name}",
        f"/exports/{finance.user_id}%2F{path.name}",
        "/exports/..%2F..%2Fpaydesk.sqlite3",
        "/exports/%2E%2E",
        f"/exports/{path.stem}.txt",
        f"/exports/{path.name}%00",
        "/exports/" + "A" * 32 + ".csv",
    ):
        _refused(client.get(bad, headers=owner), 404)


def test_a_signed_out_session_no_longer_downloads(client: TestClient, engine: Engine) -> None:
    from payments_core.services.users import logout

    finance, token = _user(engine, "finance", "finance")
    path = _export(finance)
    with Session(engine) as session, session.begin():
        assert logout(session=session, token=token)
    _refused(client.get(f"/exports/{path.name}", headers=_cookie(token)), 401)


def test_names_are_random_and_checked_strictly(tmp_path: Path) -> None:
    alice = Actor("alice@example.com", Role.FINANCE, user_id=1)
    bob = Actor("bob@example.com", Role.FINANCE, user_id=2)
    first, second = new_export_path(alice, root=tmp_path), new_export_path(alice, root=tmp_path)
    assert first.parent == second.parent == tmp_path / "1"
    assert first.name != second.name
    first.write_text(CSV)

    assert find_export(alice, first.name, root=tmp_path) == first
    assert find_export(bob, first.name, root=tmp_path) is None
    assert find_export(alice, second.name, root=tmp_path) is None  # never written
    for bad in ("..", f"../1/{first.name}", f"1/{first.name}", first.name.upper() + "x", ""):
        assert find_export(alice, bad, root=tmp_path) is None
    cli = Actor("cli", Role.ADMIN)  # not a dashboard session: owns no folder
    assert find_export(cli, first.name, root=tmp_path) is None


def test_old_exports_are_swept_when_a_new_one_starts(tmp_path: Path) -> None:
    alice = Actor("alice@example.com", Role.FINANCE, user_id=1)
    bob = Actor("bob@example.com", Role.FINANCE, user_id=2)
    old, fresh = new_export_path(alice, root=tmp_path), new_export_path(bob, root=tmp_path)
    old.write_text(CSV)
    fresh.write_text(CSV)
    long_ago = time.time() - KEPT_SECONDS - 60
    os.utime(old, (long_ago, long_ago))

    sweep(tmp_path)
    assert not old.exists()
    assert fresh.exists()


def test_the_download_url_points_at_the_backend_as_the_frontend_reaches_it() -> None:
    name = "A" * 32 + ".csv"
    # Reflex's default api_url is localhost: the page's own host is used instead.
    assert (
        download_url(name, "http://127.0.0.1:3000/payments", api_url="http://localhost:8001")
        == f"http://127.0.0.1:8001/exports/{name}"
    )
    assert (
        download_url(name, "https://desk.example.com/payments", api_url="http://0.0.0.0:8001")
        == f"https://desk.example.com/exports/{name}"
    )
    # A real address is kept as configured.
    assert (
        download_url(
            name, "https://desk.example.com/payments", api_url="https://api.example.com/paydesk"
        )
        == f"https://api.example.com/paydesk/exports/{name}"
    )


def test_exports_live_under_the_var_directory() -> None:
    assert exports_root() == get_settings().var_dir / "exports"
