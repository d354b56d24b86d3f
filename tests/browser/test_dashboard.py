"""The dashboard in headless Chromium: the real Reflex app on a seeded database.

One app per module (starting Reflex compiles the frontend, which takes a while): the fixture seeds
a SQLite database with a few hundred payments and one user per role, runs ``reflex run`` on free
ports against it, and always stops its whole process group. Its log is printed when it does not
come up. Each test saves screenshots under ``var/screenshots/`` of its VAR_DIR.

Chromium is the system one (/usr/bin/chromium; `make install` installs it). Without it the tests
skip locally and fail with CI=true.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from payments_core.config import get_settings
from payments_core.db import make_engine
from payments_core.services.users import create_user

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
START_TIMEOUT = 300  # the first start installs the frontend packages
WAIT_MS = 30_000
PASSWORDS = {role: f"{role}-password-123" for role in ("admin", "analyst")}

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - playwright is in the dev extras
    sync_playwright = None


def _require_browser() -> None:
    problem = None
    if sync_playwright is None:
        problem = "the playwright package is not installed (pip install -e '.[dev]')"
    elif not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install -y chromium, or `make install`)"
    if problem:
        if IN_CI:
            pytest.fail(f"browser tests must run in CI: {problem}", pytrace=False)
        pytest.skip(f"browser tests SKIPPED: {problem}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Dashboard:
    url: str
    log: Path


def _run(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "payments_core.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _stop(process: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    _require_browser()
    base = tmp_path_factory.mktemp("dashboard")
    database_url = f"sqlite:///{base / 'paydesk.sqlite3'}"
    bin_dir = ROOT / ".tools" / "node_modules" / ".bin"
    env = os.environ | {
        "DATABASE_URL": database_url,
        "VAR_DIR": str(base / "var"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "REFLEX_USE_SYSTEM_BUN": "1",
        "REFLEX_CHECK_LATEST_VERSION": "false",
    }
    _run(["migrate"], env)
    _run(["seed", "--payments", "300"], env)
    engine = make_engine(database_url)
    with Session(engine) as session, session.begin():
        for role, password in PASSWORDS.items():
            create_user(
                session=session,
                email=f"{role}@example.com",
                role=role,
                password=password,
                actor="test",
            )
    engine.dispose()

    port, backend_port = _free_port(), _free_port()
    log = base / "reflex.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "reflex", "run", "--env", "dev",
             "--frontend-port", str(port), "--backend-port", str(backend_port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        ready = False
        while not ready:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the dashboard did not come up (exit {process.poll()}); its log:\n"
                    + log.read_text()[-5000:],
                    pytrace=False,
                )
            with contextlib.suppress(httpx.HTTPError):
                ready = (
                    httpx.get(f"http://127.0.0.1:{backend_port}/ping", timeout=2).is_success
                    and httpx.get(f"{url}/login", timeout=5).is_success
                )
            if not ready:
                time.sleep(1)
        yield Dashboard(url=url, log=log)
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def browser(dashboard: Dashboard) -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    yield context.new_page()
    context.close()


def _screenshot(page: Page, name: str) -> None:
    folder = get_settings().var_dir / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _sign_in(page: Page, dashboard: Dashboard, role: str, password: str | None = None) -> None:
    page.goto(f"{dashboard.url}/login")
    page.fill("#email", f"{role}@example.com")
    page.fill("#password", password or PASSWORDS[role])
    page.click("#sign-in")


def test_a_visitor_without_a_session_is_sent_to_sign_in(page: Page, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/payments")
    page.wait_for_url("**/login")
    _screenshot(page, "login")


def test_a_wrong_password_shows_a_readable_error(page: Page, dashboard: Dashboard) -> None:
    _sign_in(page, dashboard, "admin", password="not-the-password")
    error = page.wait_for_selector("#login-error")
    assert error is not None
    assert "wrong email or password" in error.inner_text()
    assert page.url.endswith("/login")
    _screenshot(page, "login-error")


def test_admin_searches_and_opens_a_payment_timeline(page: Page, dashboard: Dashboard) -> None:
    _sign_in(page, dashboard, "admin")
    page.wait_for_url("**/payments")
    page.wait_for_selector(".payment-row")
    assert page.locator(".payment-row").count() == 50
    assert page.locator("#nav-users").is_visible()
    _screenshot(page, "payments")

    page.click("#next-page")
    page.wait_for_selector("text=Page 2")
    assert page.locator(".payment-row").count() == 50

    wanted = page.locator(".payment-link").nth(3).inner_text()
    page.fill("#search-text", wanted)
    page.click("#search-button")
    page.wait_for_function("document.querySelectorAll('.payment-row').length === 1")
    assert page.locator(".payment-link").inner_text() == wanted
    _screenshot(page, "payments-search")

    page.click(".payment-link")
    page.wait_for_url(f"**/payments/{wanted}")
    page.wait_for_selector(".timeline-row")
    assert wanted in page.inner_text("#payment-id")
    fields = page.inner_text("#payment-fields")
    assert "Amount" in fields and "Refundable" in fields
    assert page.locator(".timeline-row").count() >= 1
    _screenshot(page, "payment-detail")


def test_analyst_sees_no_admin_navigation_and_is_refused_on_the_server(
    page: Page, dashboard: Dashboard
) -> None:
    _sign_in(page, dashboard, "analyst")
    page.wait_for_url("**/payments")
    page.wait_for_selector(".payment-row")
    assert page.locator("#nav-payments").is_visible()
    assert page.locator("#nav-users").count() == 0
    assert "(analyst)" in page.inner_text("#signed-in-as")
    _screenshot(page, "payments-analyst")
    # Typing the address does not help: the page's on_load checks the role on the server.
    page.goto(f"{dashboard.url}/users")
    page.wait_for_url("**/payments")
    page.click("#sign-out")
    page.wait_for_url("**/login")
