"""The webhook server app on the test database, with every provider's webhook secret set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from webhook_support import DUMMY_SECRET, PAYSTACK_SECRET, STRIPE_SECRET

from payments_core.config import get_settings
from payments_core.db import dispose_engines

STRIPE_OLD_SECRET = "whsec_test_previous"


@pytest.fixture
def client(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"{STRIPE_SECRET},{STRIPE_OLD_SECRET}")
    monkeypatch.setenv("PAYSTACK_SECRET_KEY", PAYSTACK_SECRET)
    monkeypatch.setenv("DUMMY_WEBHOOK_SECRET", DUMMY_SECRET)
    monkeypatch.delenv("PAYDESK_IN_PROCESS_WORKER", raising=False)
    get_settings.cache_clear()
    from webhook_server.app import app
    from webhook_server.intake import reset_postfinance_keys

    reset_postfinance_keys()
    with TestClient(app) as test_client:
        yield test_client
    reset_postfinance_keys()
    dispose_engines()
