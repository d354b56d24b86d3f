from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from payments_core.config import get_settings
from payments_core.db import dispose_engines


def test_healthz_ok_when_the_database_answers(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    get_settings.cache_clear()
    from webhook_server.app import app

    try:
        response = TestClient(app).get("/healthz")
    finally:
        dispose_engines()
    assert response.status_code == 200 and response.json()["database"] == "ok"


def test_healthz_503_when_the_database_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    get_settings.cache_clear()
    from webhook_server.app import app

    try:
        response = TestClient(app).get("/healthz")
    finally:
        dispose_engines()
    assert response.status_code == 503 and response.json()["status"] == "unavailable"
