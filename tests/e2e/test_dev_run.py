"""What `make run` runs (`paydesk dev`): prepare the database, print credentials, start the
services, and stop every one of them on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from factories import make_payment
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from payments_core.models import AppUser, Payment
from payments_core.providers import dummy
from payments_core.services.users import password_matches


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _a_signed_webhook_is_applied_by_the_running_worker(engine: Engine, port: int) -> None:
    with Session(engine) as session, session.begin():
        payment_id = make_payment(
            session, provider="dummy", provider_reference=None, amount_minor=1000, currency="CHF"
        ).id
    body = json.dumps(
        {"id": "dmy_e2e", "type": "payment.succeeded", "payment_id": payment_id,
         "amount": 1000, "currency": "CHF"}
    ).encode()  # fmt: skip
    answer = httpx.post(
        f"http://127.0.0.1:{port}/webhooks/dummy",
        content=body,
        headers={"X-Dummy-Signature": dummy.sign_payload(body, "e2e-dummy-secret")},
    )
    assert answer.status_code == 200 and answer.json()["status"] == "accepted"
    deadline = time.monotonic() + 30
    status = "pending"
    while status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
        with Session(engine) as session:
            payment = session.get(Payment, payment_id)
            assert payment is not None
            status = payment.status
    assert status == "succeeded", "the in-process worker did not apply the webhook"


def _a_dummy_payment_is_paid_through_the_api_and_simulate_page(port: int, key: str) -> None:
    """The whole flow without a provider account: the host API creates the payment, the
    customer pays on /simulate, the signed dummy webhook goes through intake and the worker."""
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "e2e-order-1"}
    created = httpx.post(
        f"{base}/api/v1/payments",
        json={"provider": "dummy", "amount": 2500, "currency": "CHF", "description": "E2E"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["checkout_url"] == f"{base}/simulate/{payment['id']}"
    page = httpx.get(payment["checkout_url"])
    assert page.status_code == 200 and "25.00 CHF" in page.text and "Pay" in page.text
    paid = httpx.post(f"{base}/simulate/{payment['id']}/succeeded", follow_redirects=True)
    assert paid.status_code == 200, paid.text
    deadline = time.monotonic() + 30
    status = payment["status"]
    while status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
        read = httpx.get(f"{base}/api/v1/payments/{payment['id']}", headers=headers)
        status = read.json()["status"]
    assert status == "succeeded", "the simulated payment did not succeed through the webhook"
    assert read.json()["captured"] == 2500


def test_dev_prepares_database_serves_and_stops_on_ctrl_c(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    port = _free_port()
    env = os.environ | {
        "PAYDESK_ENV": "development",
        "DATABASE_URL": db_url,
        "VAR_DIR": str(tmp_path / "var"),
        "WEBHOOK_PORT": str(port),
        "DUMMY_WEBHOOK_SECRET": "e2e-dummy-secret",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "payments_core.cli",
            "dev",
            "--seed-payments",
            "200",
            "--no-dashboard",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        healthy = False
        while time.monotonic() < deadline and not healthy:
            try:
                healthy = (
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
                )
            except httpx.HTTPError:
                time.sleep(0.3)
        assert healthy, "the webhook server did not come up"
        _a_signed_webhook_is_applied_by_the_running_worker(engine, port)
        key = (tmp_path / "var" / "demo-api-key.txt").read_text().strip()
        _a_dummy_payment_is_paid_through_the_api_and_simulate_page(port, key)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}/healthz" in output
    assert "seeded 200 payments" in output
    assert "stopped" in output
    email, password = (tmp_path / "var" / "demo-admin.txt").read_text().split("\n")[:2]
    assert f"demo admin: {email} / {password}" in output
    assert f"demo API key: {key}" in output
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Payment)).one() == 202
        admin = session.exec(select(AppUser)).one()
        assert admin.role == "admin" and password_matches(admin, password)
    # Nothing is left listening.
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_dev_services_start_the_dashboard_on_configured_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The full `paydesk dev` run above passes --no-dashboard (tests/browser drives the dashboard).
    from payments_core.cli import dev_services
    from payments_core.config import get_settings

    monkeypatch.setenv("DASHBOARD_PORT", "3105")
    monkeypatch.setenv("DASHBOARD_BACKEND_PORT", "8105")
    get_settings.cache_clear()
    names = {s.name: s for s in dev_services()}
    dashboard = names["dashboard"]
    assert dashboard.url == "http://127.0.0.1:3105"
    assert dashboard.command[-6:] == [
        "--frontend-port", "3105", "--backend-port", "8105", "--backend-host", "127.0.0.1"
    ]  # fmt: skip
    assert dashboard.cwd is not None and (dashboard.cwd / "rxconfig.py").exists()
    assert [s.name for s in dev_services(dashboard=False)] == ["webhook server"]
