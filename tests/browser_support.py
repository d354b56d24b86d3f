"""The dashboard in headless Chromium: the real Reflex app on a seeded database.

One app per test session (starting Reflex compiles the frontend, which takes a while): the
fixture seeds a SQLite database with a few hundred payments and one user per role (two managers,
for maker-checker), starts the fake Stripe server (``Dashboard.stripe``: the app's Stripe
adapter talks to it, so disputes can be answered), runs ``reflex run`` on free ports against
them, and always stops its whole process group. Reflex builds into the repository's ``.web``, so
a file lock keeps two test runs from building at the same time. The app's log is printed when it
does not come up. Signing in lands on ``HOME`` (the overview). Tests save screenshots under
``var/screenshots/`` of the session's VAR_DIR (``screenshot``). ``holding_writes`` keeps the
app's next write waiting, so a test can look at a page while one of its handlers is still
running; ``wait_for_log`` waits for what a handler logged. ``EventRelay`` and ``post_upload`` send
what a page never offers (an event or an upload for a handler the role may not use), as the
signed-in browser itself would, to show the server refuses it. ``small_png`` is a real PNG.

Chromium is the system one (/usr/bin/chromium; `make install` installs it). Without it the tests
skip locally and fail with CI=true.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.stripe import StripeFake
from sqlalchemy.engine import make_url
from sqlmodel import Session

from payments_core.db import make_engine
from payments_core.services.users import create_user

ROOT = Path(__file__).resolve().parents[1]
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
HOME = "**/overview"  # where signing in lands
USERS = {
    "admin": "admin",
    "manager": "manager",
    "manager2": "manager",
    "finance": "finance",
    "analyst": "analyst",
}  # login name -> role; the email is <name>@example.com
PASSWORDS = {name: f"{name}-password-123" for name in USERS}

try:
    from playwright.sync_api import Browser, Page, WebSocketRoute, sync_playwright
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
    backend_url: str
    log: Path
    database_url: str
    var_dir: Path
    stripe: StripeFake


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


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    _require_browser()
    base = tmp_path_factory.mktemp("dashboard")
    lock = (ROOT / ".web-build.lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # one Reflex build in this checkout at a time
    stripe = StripeFake().start()
    database_url = f"sqlite:///{base / 'paydesk.sqlite3'}"
    bin_dir = ROOT / ".tools" / "node_modules" / ".bin"
    env = os.environ | {
        "DATABASE_URL": database_url,
        "VAR_DIR": str(base / "var"),
        "STRIPE_API_KEY": stripe.api_key,
        "STRIPE_API_BASE": stripe.base_url,
        "STRIPE_TEST_MODE": "true",
        "PROVIDER_MAX_RETRIES": "0",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "REFLEX_USE_SYSTEM_BUN": "1",
        "REFLEX_CHECK_LATEST_VERSION": "false",
    }
    _run(["migrate"], env)
    _run(["seed", "--payments", "300"], env)
    engine = make_engine(database_url)
    with Session(engine) as session, session.begin():
        for name, role in USERS.items():
            create_user(
                session=session,
                email=f"{name}@example.com",
                role=role,
                password=PASSWORDS[name],
                actor="test",
            )
    engine.dispose()

    port, backend_port = _free_port(), _free_port()
    log = base / "reflex.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "reflex", "run", "--env", "dev",
             "--frontend-port", str(port), "--backend-port", str(backend_port),
             "--backend-host", "127.0.0.1"],
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
        yield Dashboard(
            url=url,
            backend_url=f"http://127.0.0.1:{backend_port}",
            log=log,
            database_url=database_url,
            var_dir=base / "var",
            stripe=stripe,
        )
    finally:
        _stop(process)
        stripe.stop()
        lock.close()


# Per module, not per session: while Playwright's sync API is open it keeps an event loop running
# in this thread, and later tests that call asyncio.run() would fail.
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


def screenshot(page: Page, dashboard: Dashboard, name: str) -> None:
    folder = dashboard.var_dir / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def sign_in(page: Page, dashboard: Dashboard, name: str, password: str | None = None) -> None:
    """Submit the sign-in form; on success the app goes to ``HOME`` (wait for it)."""
    page.goto(f"{dashboard.url}/login")
    page.fill("#email", f"{name}@example.com")
    page.fill("#password", password or PASSWORDS[name])
    page.click("#sign-in")


@contextlib.contextmanager
def holding_writes(dashboard: Dashboard) -> Iterator[None]:
    """Hold the app database's write lock: the app's next write (and every session check, which
    runs in a write transaction) waits until the block ends, well inside SQLite's 30-second busy
    timeout. Reads go on (WAL)."""
    database = make_url(dashboard.database_url).database
    assert database is not None
    connection = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        connection.close()


def wait_for_log(dashboard: Dashboard, text: str, timeout: float = WAIT_MS / 1000) -> None:
    """Wait until the app's log says ``text`` (what a handler did that the page cannot show)."""
    deadline = time.monotonic() + timeout
    while text not in dashboard.log.read_text():
        if time.monotonic() > deadline:
            pytest.fail(f"the app never logged {text!r}", pytrace=False)
        time.sleep(0.1)


def small_png(width: int = 40, height: int = 24) -> bytes:
    """A real (decodable) PNG: a green rectangle; another width gives other bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x20\xa0\x40" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class EventRelay:
    """Sits between a page and the app's event socket, to send an event the page never offers.

    Create it before the page opens the app; ``send`` then goes on the page's latest socket, with
    the router data of the page's own first event there (in the socket.io connect packet of the
    event namespace), so the app takes it for the page's: the session is the socket's.
    """

    def __init__(self, page: Page) -> None:
        self.sent: list[str] = []
        self.servers: list[WebSocketRoute] = []
        page.route_web_socket(re.compile(r".*/_event.*"), self._relay)

    def _relay(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        self.servers.append(server)

        def from_page(message: str | bytes) -> None:
            if isinstance(message, str):
                self.sent.append(message)
            server.send(message)

        ws.on_message(from_page)

    def send(self, handler: str, payload: dict[str, Any]) -> None:
        """Send ``handler`` (a state's full name, a dot, the handler's name) with ``payload``."""
        boot = json.loads(next(m for m in reversed(self.sent) if m.startswith("40/_event,{"))[10:])
        crafted = {"name": handler, "payload": payload, "router_data": boot["event"]["router_data"]}
        self.servers[-1].send("42/_event," + json.dumps(["event", crafted]))


def post_upload(
    page: Page,
    dashboard: Dashboard,
    handler: str,
    files: list[tuple[str, bytes, str]],
    args: dict[str, Any] | None = None,
) -> httpx.Response:
    """Post an upload to ``handler`` as the page's own browser session would (its token), with
    the handler's other arguments in ``args``; the answer carries the state's changes."""
    token = page.evaluate("() => window.sessionStorage.getItem('token')")
    return httpx.post(
        f"{dashboard.backend_url}/_upload",
        headers={"Reflex-Client-Token": token, "Reflex-Event-Handler": handler},
        # Reflex reads the arguments before the files: httpx sends data fields first.
        data={"__reflex_event_args": json.dumps(args)} if args else None,
        files=[("files", file) for file in files],
        timeout=30,
    )
