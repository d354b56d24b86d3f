"""Settings: one pydantic-settings class, read lazily from the environment and `.env`.

`get_settings()` is cached; tests and commands that change the environment call
`get_settings.cache_clear()`. Secrets that still hold a placeholder from `.env.example`
(anything starting with ``change-me``) are accepted only when ``PAYDESK_ENV=development``; in
``test`` and ``production`` the process refuses to start rather than run with a guessable secret.
"""

from __future__ import annotations

import enum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER_PREFIX = "change-me"


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    paydesk_env: Environment = Environment.DEVELOPMENT
    # Directory for the SQLite database, uploaded proofs and other local state.
    var_dir: Path = PROJECT_ROOT / "var"
    database_url: str = ""
    # Pool size for PostgreSQL; SQLite uses one connection per thread.
    database_pool_size: int = Field(default=10, ge=1, le=200)

    secret_key: SecretStr = SecretStr("change-me-development-secret-key")

    # Provider credentials. Empty means "not configured": that provider's operations are refused.
    stripe_api_key: SecretStr = SecretStr("")
    stripe_webhook_secret: SecretStr = SecretStr("")
    stripe_api_base: str = "https://api.stripe.com"
    stripe_test_mode: bool = True

    postfinance_space_id: int = 0
    postfinance_user_id: int = 0
    postfinance_authentication_key: SecretStr = SecretStr("")
    postfinance_api_base: str = "https://checkout.postfinance.ch/api/v2.0"
    postfinance_test_mode: bool = True

    paystack_secret_key: SecretStr = SecretStr("")
    paystack_api_base: str = "https://api.paystack.co"
    paystack_test_mode: bool = True

    mpesa_consumer_key: SecretStr = SecretStr("")
    mpesa_consumer_secret: SecretStr = SecretStr("")
    mpesa_shortcode: str = "174379"
    mpesa_passkey: SecretStr = SecretStr("")
    mpesa_api_base: str = "https://sandbox.safaricom.co.ke"
    mpesa_test_mode: bool = True

    dummy_webhook_secret: SecretStr = SecretStr("")

    # Webhook intake. Stripe accepts several comma-separated secrets while one is being rolled.
    webhook_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1)
    # Unsigned PostFinance deliveries are refused unless allowed; then they are only a hint.
    postfinance_allow_unsigned_webhooks: bool = False
    # Optional source-IP allowlists (comma-separated); empty means any source.
    paystack_webhook_allowed_ips: str = ""
    mpesa_callback_allowed_ips: str = ""

    # Webhook processing: failed events retry after base * 2^(attempt-1) seconds (capped, with
    # jitter) and are dead after the last attempt; `paydesk webhooks replay` runs them again.
    webhook_max_attempts: int = Field(default=10, ge=1, le=100)
    webhook_retry_base_seconds: float = Field(default=15.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0)
    worker_batch_size: int = Field(default=100, ge=1, le=10_000)
    worker_poll_seconds: float = Field(default=1.0, gt=0)

    # Where `make run` / `paydesk dev` serve the webhook server.
    webhook_host: str = "127.0.0.1"
    webhook_port: int = Field(default=8000, ge=1, le=65535)
    # The Reflex dashboard `paydesk dev` starts (its backend listens on 127.0.0.1 only).
    dashboard_port: int = Field(default=3000, ge=1, le=65535)
    dashboard_backend_port: int = Field(default=8001, ge=1, le=65535)
    # The webhook server's address as customers and providers reach it: M-Pesa callback URLs and
    # the dummy provider's /simulate page are built on it.
    public_base_url: str = "http://127.0.0.1:8000"

    # Outbound provider calls: seconds before a call counts as timed out (outcome unknown), and
    # how many more times a transient failure is tried (only calls that are safe to repeat).
    provider_timeout_seconds: float = Field(default=20.0, gt=0)
    provider_max_retries: int = Field(default=2, ge=0, le=10)

    # Manual / offline payments: what the payment instructions tell the customer.
    manual_bank_account_name: str = "Paydesk Demo Ltd"
    manual_bank_iban: str = "CH93 0076 2011 6238 5295 7"
    manual_bank_bic: str = "POFICHBEXXX"
    manual_bank_name: str = "PostFinance AG"
    manual_payment_days: int = Field(default=14, ge=1, le=365)

    # Reconciliation: open payments are read back from their provider once they have waited
    # longer than their provider's expected time (reconcile_after_seconds > 0 sets one age for
    # all), by `paydesk reconcile` and by the worker every reconcile_interval_seconds (0 = never).
    reconcile_after_seconds: int = Field(default=0, ge=0)
    reconcile_interval_seconds: int = Field(default=300, ge=0)

    # Host API: how long a stored Idempotency-Key answer is replayed.
    api_idempotency_hours: int = Field(default=24, ge=1, le=24 * 30)
    # Proof uploads (host API and dashboard): largest file accepted.
    proof_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)

    # People: sessions expire after this many hours; this many failed sign-ins in a row lock the
    # account for lockout_minutes.
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_lockout_minutes: int = Field(default=15, ge=1, le=24 * 60)

    # Refunds at or above these amounts (minor units per currency, "CHF:50000,EUR:50000") wait
    # for a manager; currencies not listed use refund_approval_default_minor (0 = always approve).
    refund_approval_thresholds: str = (
        "CHF:50000,EUR:50000,USD:50000,GBP:50000,JPY:5000000,KWD:20000,"
        "NGN:50000000,GHS:500000,KES:5000000,ZAR:1000000"
    )
    refund_approval_default_minor: int = Field(default=50000, ge=0)
    # Days after capture within which a refund may be requested, and per-provider overrides
    # ("paystack:90,mpesa:30").
    refund_window_days: int = Field(default=120, ge=1, le=3650)
    refund_window_days_by_provider: str = ""

    @field_validator("var_dir")
    @classmethod
    def _absolute_var_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("public_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.strip().rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _strip_url(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _tables_parse(self) -> Settings:
        _code_table(self.refund_approval_thresholds, "REFUND_APPROVAL_THRESHOLDS")
        _code_table(self.refund_window_days_by_provider, "REFUND_WINDOW_DAYS_BY_PROVIDER")
        return self

    @model_validator(mode="after")
    def _refuse_placeholders_outside_development(self) -> Settings:
        if self.paydesk_env is not Environment.DEVELOPMENT:
            offenders = sorted(
                name
                for name, value in self.__dict__.items()
                if isinstance(value, SecretStr)
                and value.get_secret_value().startswith(PLACEHOLDER_PREFIX)
            )
            if len(self.secret_key.get_secret_value()) < 32:
                offenders.append("secret_key (needs at least 32 characters)")
            if offenders:
                names = ", ".join(name.upper() for name in offenders)
                raise ValueError(
                    "placeholder or weak secrets are not allowed when "
                    f"PAYDESK_ENV={self.paydesk_env}: {names}. "
                    "Set real values, or leave an unused provider's key empty."
                )
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.var_dir / 'paydesk.sqlite3'}"

    @property
    def stripe_webhook_secrets(self) -> tuple[str, ...]:
        return _comma_list(self.stripe_webhook_secret.get_secret_value())

    @staticmethod
    def ip_list(value: str) -> frozenset[str]:
        return _ip_set(value)

    def refund_approval_threshold(self, currency: str) -> int:
        """Minor units from which a refund in ``currency`` needs a manager's approval."""
        table = _code_table(self.refund_approval_thresholds, "REFUND_APPROVAL_THRESHOLDS")
        return table.get(currency.upper(), self.refund_approval_default_minor)

    def refund_window(self, provider: str) -> int:
        """Days after capture within which a refund of a ``provider`` payment may be asked."""
        table = _code_table(self.refund_window_days_by_provider, "REFUND_WINDOW_DAYS_BY_PROVIDER")
        return table.get(provider.upper(), self.refund_window_days)

    @property
    def is_development(self) -> bool:
        return self.paydesk_env is Environment.DEVELOPMENT


@lru_cache(maxsize=8)
def _comma_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ("a", "b", "c"); cached: webhook intake reads it for every delivery."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


@lru_cache(maxsize=8)
def _ip_set(text: str) -> frozenset[str]:
    """An allowlist setting as a set; cached like ``_comma_list`` (read for every delivery)."""
    return frozenset(_comma_list(text))


def _code_table(text: str, name: str) -> dict[str, int]:
    """``"CHF:50000, EUR:20000"`` -> {"CHF": 50000, "EUR": 20000}; a malformed entry is an error
    that names the setting."""
    table: dict[str, int] = {}
    for entry in text.split(","):
        if not entry.strip():
            continue
        code, sep, number = entry.partition(":")
        if not sep or not number.strip().isdigit():
            raise ValueError(f"{name}: {entry.strip()!r} is not CODE:NUMBER")
        table[code.strip().upper()] = int(number)
    return table


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
