"""Dashboard queries on a million payments, each against the plain SQL it wraps.

On 1,000,000 seeded payments (``BENCH_DASHBOARD_PAYMENTS``) over 90 days, on SQLite and on
PostgreSQL, this measures what the dashboard's pages call:

* filtered searches (one page of 50, as the payments page asks): by provider and status, by
  currency and amount range sorted by amount, by the prefix of a customer's email, refunded
  payments of the last 30 days; p50 and p95 of ``search_payments``;
* the deepest page keyset pagination reaches (the cursor of the oldest page, newest first);
* ``analytics_report`` for 90 days (every chart's numbers) and ``overview_summary``;
* on SQLite, the time until the payments page shows its first rows in Chromium, signed in, in
  the app as ``make run`` serves it.

The baseline of each is the plain SQL it wraps, measured in the same run: the service's own
statements are captured once and replayed with the bare database driver (no ORM, no objects,
no formatting), so each ratio is the price of the service layer. For the browser, the baseline
is the page's first-page query and, as the framework's floor, the sign-in page (no data).
Targets (issue: dashboard): search p95 under 50 ms, analytics under 300 ms, first rows under
1.5 s.

Seeding a million payments takes a few minutes per database; the seeded databases are kept
(``var/bench/``, PostgreSQL database ``paydesk_bench``) and reused while the payment count and
the schema revision stay the same.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from payments_core import migrations
from payments_core.config import get_settings
from payments_core.db import make_engine, read_engine
from payments_core.models import Role
from payments_core.services.analytics import analytics_report, overview_summary
from payments_core.services.permissions import Actor
from payments_core.services.search import encode_cursor, search_payments
from payments_core.services.seed import seed_demo_data
from payments_core.services.users import create_user, get_user_by_email, login

ROOT = Path(__file__).resolve().parent.parent
UNTIL = date(2026, 11, 25)
DAYS = 90
ADMIN = Actor(name="bench@paydesk.local", role=Role.ADMIN)
BENCH_PASSWORD = "bench-password-1234"  # noqa: S105 - a benchmark-only local user
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SEARCH_TARGET_MS, ANALYTICS_TARGET_MS, FIRST_ROWS_TARGET_MS = 50.0, 300.0, 1500.0


@dataclass(frozen=True)
class Timing:
    samples: list[float]  # milliseconds

    def p(self, percent: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]


def timed(call: Callable[[], object], repeat: int, warmup: int = 3) -> Timing:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return Timing(samples)


# --- Seeded databases ----------------------------------------------------------------------------


def _head() -> str:
    return migrations.head_revision(make_engine("sqlite://")) or "none"


def _seed(engine: Engine, payments: int, what: str) -> None:
    print(f"  seeding {payments:,} payments on {what} (kept for the next run) ...", flush=True)
    started = time.perf_counter()
    migrations.upgrade(engine)
    seed_demo_data(engine=engine, payments=payments, days=DAYS, seed=1, until=UNTIL)
    print(f"  seeded in {time.perf_counter() - started:.0f} s", flush=True)


def sqlite_database(payments: int) -> str:
    folder = ROOT / "var" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"dashboard-{payments}-{_head()}.sqlite3"
    if not path.exists():
        for old in folder.glob(f"dashboard-{payments}-*.sqlite3*"):
            old.unlink()
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        engine = make_engine(f"sqlite:///{partial}")
        _seed(engine, payments, "SQLite")
        engine.dispose()
        for suffix in ("-wal", "-shm"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)
        partial.rename(path)
    return f"sqlite:///{path}"


def postgres_database(payments: int) -> str | None:
    admin_url = os.environ.get("PAYDESK_TEST_POSTGRES_URL", POSTGRES_ADMIN)
    marker = f"paydesk bench: {payments} payments, schema {_head()}, seed 1, until {UNTIL}"
    admin = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            found = connection.execute(
                text(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                    "WHERE datname = 'paydesk_bench'"
                )
            ).first()
            if found is None or found[0] != marker:
                connection.execute(text("DROP DATABASE IF EXISTS paydesk_bench"))
                connection.execute(text("CREATE DATABASE paydesk_bench"))
                fresh = True
            else:
                fresh = False
    except Exception as exc:
        print(f"  PostgreSQL unavailable ({type(exc).__name__}: {exc}); skipped")
        return None
    url = make_url(admin_url).set(database="paydesk_bench").render_as_string(hide_password=False)
    if fresh:
        engine = make_engine(url)
        _seed(engine, payments, "PostgreSQL")
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f"COMMENT ON DATABASE paydesk_bench IS '{marker}'"))
    admin.dispose()
    return url


# --- Service calls against the SQL they run ------------------------------------------------------


@contextlib.contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def plain_sql(engine: Engine, call: Callable[[Session], object]) -> Callable[[], None]:
    """A function replaying, with the bare driver, the SELECTs ``call`` made."""
    with captured(engine) as statements, Session(engine) as session:
        call(session)
    raw = engine.raw_connection()

    def replay() -> None:
        cursor = raw.cursor()
        for statement, parameters in statements:
            cursor.execute(statement, parameters)
            cursor.fetchall()
        cursor.close()
        raw.rollback()

    return replay


def compare(
    engine: Engine, label: str, call: Callable[[Session], object], repeat: int, target: float
) -> None:
    session = Session(engine)
    service = timed(lambda: call(session), repeat)
    session.close()
    sql = timed(plain_sql(engine, call), repeat)
    verdict = "OK" if service.p(95) < target else "MISSED"
    print(
        f"  {label:<34} p50 {service.p(50):6.1f} ms  p95 {service.p(95):6.1f} ms"
        f"  | plain SQL p50 {sql.p(50):6.1f} ms  p95 {sql.p(95):6.1f} ms"
        f"  = {service.p(50) / sql.p(50):4.1f}x  (target p95 < {target:.0f} ms: {verdict})"
    )


def _oldest_page_cursor(session: Session) -> str:
    """The cursor whose page is the last one, newest first (the deepest keyset page)."""
    row = session.execute(
        text("SELECT created_at, id FROM payment ORDER BY created_at, id LIMIT 1 OFFSET 50")
    ).one()
    created = row[0] if isinstance(row[0], datetime) else datetime.fromisoformat(row[0])
    return encode_cursor("newest", created.replace(tzinfo=created.tzinfo or UTC), row[1])


def queries(url: str, what: str, repeat: int) -> None:
    engine = read_engine(make_engine(url))
    print(f"{what}:")
    with Session(engine) as session:
        email = session.execute(
            text("SELECT customer_email FROM payment WHERE customer_email IS NOT NULL LIMIT 1")
        ).scalar_one()
        deepest = _oldest_page_cursor(session)
    prefix = email.split("@")[0][:-1]  # a few payments of one customer
    now = datetime(UNTIL.year, UNTIL.month, UNTIL.day, tzinfo=UTC) + timedelta(days=1)
    month_ago = now - timedelta(days=30)
    searches: dict[str, Callable[[Session], object]] = {
        "search: provider + status": lambda s: search_payments(
            session=s, actor=ADMIN, provider="stripe", status="succeeded"
        ),
        "search: currency + amounts by amount": lambda s: search_payments(
            session=s,
            actor=ADMIN,
            currency="CHF",
            amount_min=5000,
            amount_max=20000,
            sort="amount_desc",
        ),
        f"search: text {prefix!r}": lambda s: search_payments(session=s, actor=ADMIN, text=prefix),
        "search: refunded, last 30 days": lambda s: search_payments(
            session=s, actor=ADMIN, refunded=True, created_from=month_ago
        ),
        "deepest keyset page (newest first)": lambda s: search_payments(
            session=s, actor=ADMIN, after=deepest
        ),
    }
    for label, call in searches.items():
        compare(engine, label, call, repeat, SEARCH_TARGET_MS)
    start = now - timedelta(days=DAYS)
    compare(
        engine,
        "analytics: 90 days, every chart",
        lambda s: analytics_report(session=s, actor=ADMIN, start=start, end=now),
        max(repeat // 5, 10),
        ANALYTICS_TARGET_MS,
    )
    compare(
        engine,
        "overview: today / 7 / 30 days",
        lambda s: overview_summary(session=s, actor=ADMIN, now=now),
        max(repeat // 5, 10),
        ANALYTICS_TARGET_MS,
    )
    engine.dispose()


# --- First rows in Chromium ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _session_token(url: str) -> str:
    engine = make_engine(url)
    with Session(engine) as session, session.begin():
        if get_user_by_email(session=session, email=ADMIN.name) is None:
            create_user(
                session=session, email=ADMIN.name, role=Role.ADMIN, password=BENCH_PASSWORD,
                actor="bench",
            )  # fmt: skip
        _, token = login(
            session=session, email=ADMIN.name, password=BENCH_PASSWORD, settings=get_settings()
        )
    engine.dispose()
    return token


@contextlib.contextmanager
def running_dashboard(url: str) -> Iterator[str]:
    """The Reflex app as ``make run`` serves it, on free ports, against ``url``."""
    import fcntl

    lock = (ROOT / ".web-build.lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # the browser tests build the same .web folder
    port, backend = _free_port(), _free_port()
    bin_dir = ROOT / ".tools" / "node_modules" / ".bin"
    env = os.environ | {
        "DATABASE_URL": url,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "REFLEX_USE_SYSTEM_BUN": "1",
        "REFLEX_CHECK_LATEST_VERSION": "false",
    }
    log = ROOT / "var" / "bench" / "reflex.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "reflex", "run", "--env", "dev", "--frontend-port", str(port),
             "--backend-port", str(backend), "--backend-host", "127.0.0.1"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if (
                    httpx.get(f"http://127.0.0.1:{backend}/ping", timeout=2).is_success
                    and httpx.get(f"http://127.0.0.1:{port}/login", timeout=5).is_success
                ):
                    break
            time.sleep(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        lock.close()


def first_rows(url: str, repeat: int) -> None:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        print(f"  first rows in Chromium: skipped ({CHROMIUM} missing; `make install` as root)")
        return
    token = _session_token(url)
    engine = read_engine(make_engine(url))
    first_page = timed(plain_sql(engine, lambda s: search_payments(session=s, actor=ADMIN)), repeat)
    engine.dispose()
    with running_dashboard(url) as app, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.add_cookies(
            [{"name": "paydesk_session", "value": token, "url": app, "sameSite": "Strict"}]
        )
        page = context.new_page()

        def until(selector: str, path: str) -> float:
            start = time.perf_counter()
            page.goto(f"{app}{path}")
            page.wait_for_selector(selector, timeout=60_000)
            return (time.perf_counter() - start) * 1000

        until(".payment-row", "/payments")  # compiles the page once, warms the browser cache
        rows = Timing([until(".payment-row", "/payments") for _ in range(repeat)])
        # The sign-in page, which reads nothing: the framework's own time to a page.
        context.clear_cookies()
        floor = Timing([until("#sign-in", "/login") for _ in range(repeat)])
        browser.close()
    verdict = "OK" if rows.p(50) < FIRST_ROWS_TARGET_MS else "MISSED"
    print(
        f"  {'first rows in Chromium (/payments)':<34} p50 {rows.p(50):6.0f} ms  "
        f"max {max(rows.samples):6.0f} ms  | plain SQL of the page {first_page.p(50):5.1f} ms; "
        f"sign-in page p50 {floor.p(50):5.0f} ms "
        f"(target under {FIRST_ROWS_TARGET_MS:.0f} ms: {verdict})"
    )


def main() -> None:
    payments = int(os.environ.get("BENCH_DASHBOARD_PAYMENTS", "1000000"))
    repeat = int(os.environ.get("BENCH_DASHBOARD_REPEAT", "100"))
    print(f"dashboard on {payments:,} seeded payments ({DAYS} days), {repeat} runs per query")
    sqlite_url = sqlite_database(payments)
    queries(sqlite_url, "SQLite", repeat)
    postgres_url = postgres_database(payments)
    if postgres_url:
        queries(postgres_url, "PostgreSQL", repeat)
    print("browser (SQLite):")
    first_rows(sqlite_url, max(repeat // 10, 5))
