from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from payments_core.config import Environment, Settings, get_settings


def test_database_defaults_to_sqlite_file_under_var(tmp_path: Path) -> None:
    settings = get_settings()
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'var' / 'paydesk.sqlite3'}"


def test_database_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", " postgresql+psycopg://u@h/db ")
    assert get_settings().effective_database_url == "postgresql+psycopg://u@h/db"


def test_get_settings_is_cached() -> None:
    assert get_settings() is get_settings()


def test_placeholder_secret_allowed_in_development() -> None:
    settings = Settings(paydesk_env=Environment.DEVELOPMENT, secret_key="change-me-x")
    assert settings.is_development


@pytest.mark.parametrize("env", [Environment.TEST, Environment.PRODUCTION])
def test_placeholder_secret_refused_outside_development(env: Environment) -> None:
    with pytest.raises(ValidationError, match="STRIPE_WEBHOOK_SECRET"):
        Settings(
            paydesk_env=env,
            secret_key="a" * 40,
            stripe_webhook_secret="change-me-stripe-webhook-secret",
        )


def test_weak_secret_key_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(paydesk_env=Environment.PRODUCTION, secret_key="short")


def test_unconfigured_provider_is_fine_in_production() -> None:
    settings = Settings(paydesk_env=Environment.PRODUCTION, secret_key="k" * 40)
    assert settings.paystack_secret_key.get_secret_value() == ""


def test_dashboard_ports_from_environment_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().dashboard_port, Settings().dashboard_backend_port) == (3000, 8001)
    monkeypatch.setenv("DASHBOARD_PORT", "3999")
    assert Settings().dashboard_port == 3999
    monkeypatch.setenv("DASHBOARD_BACKEND_PORT", "70000")
    with pytest.raises(ValidationError, match="dashboard_backend_port"):
        Settings()
