"""`paydesk`: the operator's command line.

Every command that changes data goes through the same services as the dashboard and the API, in
one transaction, with the audit log written alongside. Errors a person can fix (bad input, unknown
reference) print one clear line and exit with status 2; nothing is half-done.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from payments_core import migrations
from payments_core.config import get_settings
from payments_core.db import get_engine, read_engine, transaction
from payments_core.models import (
    Dispute,
    InboxStatus,
    ManualProof,
    Payment,
    PaymentEvent,
    PaymentPublic,
    Refund,
    Role,
    WebhookEvent,
)
from payments_core.money import format_amount
from payments_core.services import processing
from payments_core.services.audit import verify_chain
from payments_core.services.payments import get_payment_by_reference
from payments_core.services.permissions import Actor
from payments_core.services.seed import seed_demo_data
from payments_core.services.users import UserError, create_user, get_user_by_email

app = typer.Typer(help="Paydesk: payments operations back office.", no_args_is_help=True)
user_app = typer.Typer(help="Manage people who sign in.", no_args_is_help=True)
payments_app = typer.Typer(help="Look at payments.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(payments_app, name="payments")
app.add_typer(audit_app, name="audit")
webhooks_app = typer.Typer(help="The webhook inbox.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")

console = Console()
err_console = Console(stderr=True)

DEMO_ADMIN_EMAIL = "admin@paydesk.local"


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _engine() -> Engine:
    return get_engine()


# --- schema ------------------------------------------------------------------------------------


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema to the latest revision."""
    engine = _engine()
    migrations.upgrade(engine)
    console.print(
        f"database at revision {migrations.current_revision(engine)} "
        f"({engine.url.render_as_string(hide_password=True)})",
        highlight=False,
    )


@app.command()
def makemigration(message: str) -> None:
    """(Development) autogenerate a migration from the models."""
    migrations.make_revision(_engine(), message)


def _require_schema(engine: Engine) -> None:
    if migrations.current_revision(engine) != migrations.head_revision(engine):
        fail("the database schema is not up to date: run `paydesk migrate` first")


# --- demo data ---------------------------------------------------------------------------------


def _payment_count(engine: Engine) -> int:
    with Session(read_engine(engine)) as session:
        return session.exec(select(func.count()).select_from(Payment)).one()


@app.command()
def seed(
    payments: Annotated[int, typer.Option(min=0, help="How many payments to create.")] = 20_000,
    days: Annotated[int, typer.Option(min=1, help="Spread over this many days.")] = 90,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data.")] = 1,
    until: Annotated[
        str | None, typer.Option(help="Last day (YYYY-MM-DD, UTC); default today.")
    ] = None,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing when payments exist.")
    ] = False,
) -> None:
    """Fill the database with realistic, deterministic demo data."""
    engine = _engine()
    _require_schema(engine)
    if if_empty and (existing := _payment_count(engine)):
        console.print(f"{existing} payments already present: not seeding")
        return
    try:
        until_date = date.fromisoformat(until) if until else None
    except ValueError:
        fail(f"--until must be a date like 2026-11-25, got {until!r}")
    with Progress(
        TextColumn("seeding"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("payments", total=payments)
        report = seed_demo_data(
            engine=engine,
            payments=payments,
            days=days,
            seed=seed,
            until=until_date,
            progress=lambda n: progress.advance(task, n),
        )
    console.print(
        f"seeded {report.payments} payments, {report.refunds} refunds, {report.disputes} "
        f"disputes, {report.proofs} proofs, {report.webhook_events} webhook events "
        f"in {report.seconds:.1f} s"
    )


# --- users -------------------------------------------------------------------------------------


def _read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("no password on standard input")
        return password
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        fail("the two passwords differ")
    return first


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="Sign-in email address.")],
    role: Annotated[str, typer.Option(help="analyst, finance, manager or admin.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user; the password is prompted (never echoed) or read from stdin."""
    engine = _engine()
    _require_schema(engine)
    password = _read_password(password_stdin)
    try:
        with transaction(engine) as session:
            user = create_user(
                session=session,
                email=email,
                role=role,
                password=password,
                display_name=name,
                actor=cli_actor(),
            )
            console.print(f"created {user.role} {user.email}", highlight=False)
    except UserError as exc:
        fail(str(exc))


def ensure_demo_admin(engine: Engine, credentials_file: Path) -> tuple[str, str]:
    """The demo admin's email and password, creating the user on first use (development only)."""
    if credentials_file.exists():
        email, password = credentials_file.read_text().split("\n")[:2]
    else:
        email, password = DEMO_ADMIN_EMAIL, secrets.token_urlsafe(12)
    with transaction(engine) as session:
        if get_user_by_email(session=session, email=email) is None:
            create_user(
                session=session,
                email=email,
                role=Role.ADMIN,
                password=password,
                display_name="Demo admin",
                actor="system:dev",
            )
    credentials_file.parent.mkdir(parents=True, exist_ok=True)
    credentials_file.write_text(f"{email}\n{password}\n")
    credentials_file.chmod(0o600)
    return email, password


def ensure_demo_api_key(engine: Engine, key_file: Path) -> str:
    """A host API key for demos (development only), kept in ``key_file`` between runs."""
    from payments_core.services.apikeys import authenticate, create_api_key

    if key_file.exists():
        key = key_file.read_text().strip()
        with transaction(engine) as session:
            if authenticate(session=session, key=key) is not None:
                return key
    with transaction(engine) as session:
        name = f"demo-{secrets.token_hex(3)}"
        _, key = create_api_key(session=session, name=name, actor="system:dev")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(f"{key}\n")
    key_file.chmod(0o600)
    return key


# --- payments ----------------------------------------------------------------------------------


def payment_details(session: Session, payment: Payment) -> dict[str, Any]:
    """Everything `payments show` prints, as JSON-ready data (amounts in minor units + currency)."""

    def rows(model: Any, *order: Any) -> list[dict[str, Any]]:
        statement = select(model).where(model.payment_id == payment.id).order_by(*order)
        return [r.model_dump(mode="json") for r in session.exec(statement)]

    public = PaymentPublic.model_validate(payment, from_attributes=True).model_dump(mode="json")
    public["amount_display"] = format_amount(payment.amount_minor, payment.currency)
    return {
        "payment": public,
        "refunds": rows(Refund, col(Refund.created_at)),
        "disputes": rows(Dispute, col(Dispute.created_at)),
        "proofs": rows(ManualProof, col(ManualProof.created_at)),
        "timeline": rows(PaymentEvent, col(PaymentEvent.at), col(PaymentEvent.id)),
    }


@payments_app.command("show")
def payments_show(
    reference: Annotated[str, typer.Argument(help="Payment id, provider or host reference.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one payment with its refunds, disputes, proofs and timeline."""
    engine = _engine()
    _require_schema(engine)
    with Session(read_engine(engine)) as session:
        try:
            payment = get_payment_by_reference(session=session, reference=reference)
        except LookupError as exc:
            fail(str(exc.args[0]))
        details = payment_details(session, payment)
    if as_json:
        sys.stdout.write(json.dumps(details, indent=2, ensure_ascii=False) + "\n")
        return
    _print_payment(details)


def _money(minor: int, currency: str) -> str:
    return format_amount(minor, currency)


def _print_payment(details: dict[str, Any]) -> None:
    p = details["payment"]
    cur = p["currency"]
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    for label, value in [
        ("Payment", p["id"]),
        (
            "Status",
            p["status"] + (f"  (review: {p['review_reason']})" if p["review_reason"] else ""),
        ),
        ("Amount", _money(p["amount_minor"], cur)),
        ("Captured", _money(p["captured_minor"], cur)),
        (
            "Refunded",
            _money(p["refunded_minor"], cur)
            + (
                f" (+{_money(p['refund_pending_minor'], cur)} in flight)"
                if p["refund_pending_minor"]
                else ""
            ),
        ),
        ("Disputed", _money(p["disputed_minor"], cur)),
        ("Provider", f"{p['provider']} {p['provider_reference'] or ''}".strip()),
        ("Method", p["method"]),
        ("Host reference", p["host_reference"] or "-"),
        (
            "Customer",
            " ".join(x for x in (p["customer_name"], p["customer_email"], p["customer_phone"]) if x)
            or "-",
        ),
        ("Created", p["created_at"]),
        ("Paid", p["paid_at"] or "-"),
        ("Failure", p["failure_reason"] or "-"),
    ]:
        summary.add_row(label, str(value))
    console.print(summary, highlight=False)
    for title, key, columns in [
        ("Refunds", "refunds", ("id", "status", "amount_minor", "reason", "requested_by")),
        ("Disputes", "disputes", ("id", "status", "amount_minor", "reason", "evidence_due_at")),
        ("Proofs", "proofs", ("id", "status", "amount_minor", "kind", "reference")),
    ]:
        if details[key]:
            table = Table(title=title, title_justify="left")
            for column in columns:
                table.add_column(column.replace("_minor", ""))
            for row in details[key]:
                table.add_row(
                    *[
                        _money(row[c], row["currency"])
                        if c.endswith("_minor")
                        else str(row[c] or "")
                        for c in columns
                    ]
                )
            console.print(table)
    timeline = Table(title="Timeline", title_justify="left")
    for column in ("at", "kind", "actor", "summary"):
        timeline.add_column(column)
    for event in details["timeline"]:
        timeline.add_row(event["at"], event["kind"], event["actor"], event["summary"])
    console.print(timeline, highlight=False)


# --- audit -------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit hash chain; report the first entry that was altered or deleted."""
    engine = _engine()
    _require_schema(engine)
    with Session(read_engine(engine)) as session:
        report = verify_chain(session=session)
    if report.ok:
        console.print(
            f"audit chain intact: {report.checked} entries, head {report.head_hash}",
            highlight=False,
        )
        return
    err_console.print(
        f"[bold red]audit chain broken[/] at entry seq={report.broken_seq} "
        f"(id={report.broken_id}): {report.problem}. "
        f"{report.checked} entries before it are intact.",
        highlight=False,
    )
    raise typer.Exit(1)


# --- services ----------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not process events in this process.")
    ] = False,
) -> None:
    """Run the webhook server (ASGI, uvicorn), with an in-process worker unless --no-worker."""
    import uvicorn

    settings = get_settings()
    os.environ["PAYDESK_IN_PROCESS_WORKER"] = "0" if no_worker else "1"
    # By import string: payments_core does not import the webhook server package.
    uvicorn.run(
        "webhook_server.app:app",
        host=host or settings.webhook_host,
        port=port or settings.webhook_port,
        log_level="info",
    )


@app.command()
def worker(
    workers: Annotated[int, typer.Option(min=1, max=32, help="Worker loops in this process.")] = 1,
) -> None:
    """Process webhook events from the inbox until stopped (Ctrl-C)."""
    _require_schema(_engine())
    # By module name, like `serve`: payments_core does not import the webhook server package.
    importlib.import_module("webhook_server.worker").main(workers)


@webhooks_app.command("replay")
def webhooks_replay(
    event_id: Annotated[
        list[int] | None, typer.Option("--id", help="Inbox event id (repeatable).")
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed or dead event.")] = False,
    actor: Annotated[
        str | None, typer.Option(help="The user asking (email): checked as finance or above.")
    ] = None,
) -> None:
    """Make events due again; a running worker (or `paydesk serve`) processes them."""
    if bool(event_id) == failed:
        fail("give --id ID (one or more) or --failed")
    engine = _engine()
    _require_schema(engine)
    who = _actor(actor) if actor else None

    def run() -> list[int]:
        with transaction(engine) as session:
            if who is not None:  # a person: finance and up may replay
                return processing.replay_as(
                    session=session, actor=who, event_ids=event_id or None, failed=failed
                )
            return processing.replay(
                session=session, actor=cli_actor(), event_ids=event_id or None, failed=failed
            )

    replayed = _guarded_call(run)
    if not replayed:
        console.print("nothing to replay")
        return
    console.print(
        f"replaying {len(replayed)} event(s): {', '.join(map(str, replayed[:20]))}"
        + (" ..." if len(replayed) > 20 else ""),
        highlight=False,
    )


@webhooks_app.command("list")
def webhooks_list(
    status: Annotated[
        str | None, typer.Option(help="pending, failed, dead, unmatched, ignored, processed.")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="stripe, postfinance, ...")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The webhook inbox, newest first: state, attempts and last error."""
    if status is not None and status not in {s.value for s in InboxStatus}:
        fail(f"unknown status {status!r}; one of: {', '.join(s.value for s in InboxStatus)}")
    engine = _engine()
    _require_schema(engine)
    statement = select(WebhookEvent).order_by(col(WebhookEvent.id).desc()).limit(limit)
    if status is not None:
        statement = statement.where(col(WebhookEvent.status) == status)
    if provider is not None:
        statement = statement.where(col(WebhookEvent.provider) == provider)
    with Session(read_engine(engine)) as session:
        events = list(session.exec(statement))
    rows = [
        {
            "id": e.id,
            "provider": e.provider,
            "event_id": e.event_id,
            "type": e.event_type,
            "received_at": e.received_at.isoformat(),
            "status": e.status,
            "attempts": e.attempts,
            "payment_id": e.payment_id,
            "last_error": e.last_error,
        }
        for e in events
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("id", "provider", "type", "received", "status", "attempts", "payment", "error")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["provider"]),
            str(row["type"]),
            str(row["received_at"])[:19],
            str(row["status"]),
            str(row["attempts"]),
            str(row["payment_id"] or ""),
            str(row["last_error"] or "")[:80],
        )
    console.print(table)


@webhooks_app.command("process")
def webhooks_process(
    limit: Annotated[int, typer.Option(min=1, help="At most this many events.")] = 1000,
) -> None:
    """Process due events once, here and now, and print what happened (no loop)."""
    from payments_core.providers.registry import WebhookFacts

    engine = _engine()
    _require_schema(engine)
    result = processing.process_due(engine=engine, read_facts=WebhookFacts(), limit=limit)
    for outcome in result.outcomes:
        console.print(
            f"{outcome.event_id}: {outcome.status} {outcome.detail}".rstrip(), highlight=False
        )
    console.print(f"{len(result)} event(s) processed")


# --- API keys and reconciliation ------------------------------------------------------------------

apikey_app = typer.Typer(help="API keys of host applications.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="Which host application uses it.")],
    actor: Annotated[str, typer.Option(help="Who creates it (for the audit log).")] = "cli",
) -> None:
    """Create an API key and print it once: only its hash is stored."""
    from payments_core.services.apikeys import ApiKeyError, create_api_key

    _require_schema(_engine())
    try:
        with transaction() as session:
            row, key = create_api_key(session=session, name=name, actor=f"cli:{actor}")
    except ApiKeyError as exc:
        fail(str(exc))
    console.print(f"API key {row.name!r} (prefix {row.prefix}) created. It is shown only now:")
    print(key)


@apikey_app.command("list")
def apikey_list() -> None:
    """Keys by name and prefix (never the keys themselves)."""
    from payments_core.services.apikeys import list_api_keys

    with Session(read_engine()) as session:
        rows = list_api_keys(session=session)
    table = Table("name", "prefix", "created", "last used", "revoked")
    for row in rows:
        table.add_row(
            row.name,
            row.prefix,
            f"{row.created_at:%Y-%m-%d %H:%M}",
            f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "-",
            f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "-",
        )
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(
    name: Annotated[str, typer.Option(help="The key's name.")],
    actor: Annotated[str, typer.Option(help="Who revokes it (for the audit log).")] = "cli",
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from payments_core.services.apikeys import ApiKeyError, revoke_api_key

    try:
        with transaction() as session:
            revoke_api_key(session=session, name=name, actor=f"cli:{actor}")
    except ApiKeyError as exc:
        fail(str(exc))
    console.print(f"API key {name!r} revoked")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d`` (or plain seconds) as a timedelta."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    if not number.isdigit():
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 15m, 2h or 1d")
    return timedelta(seconds=int(number) * units[unit])


@app.command()
def reconcile(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Open for longer than this (15m, 2h, 1d); default: each provider's expected time.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many payments.")] = 500,
) -> None:
    """Read open payments back from their providers, advance them, and report disagreements."""
    from payments_core.providers.registry import Adapters
    from payments_core.services.reconcile import reconcile as run_reconcile

    age = parse_duration(older_than) if older_than else None
    _require_schema(_engine())
    report = run_reconcile(
        transaction=transaction, adapters=Adapters(), older_than=age, limit=limit
    )
    console.print(report.render(), highlight=False)


@user_app.command("disable")
def user_disable(email: str, actor: ActorOption) -> None:
    """Disable a user (an admin acting): their sessions end at once."""
    from payments_core.services.users import disable_user

    user = _in_transaction(disable_user, actor=_actor(actor), email=email)
    console.print(f"disabled {user.email}", highlight=False)


@user_app.command("enable")
def user_enable(email: str, actor: ActorOption) -> None:
    """Enable a disabled or locked-out user again (an admin acting)."""
    from payments_core.services.users import enable_user

    user = _in_transaction(enable_user, actor=_actor(actor), email=email)
    console.print(f"enabled {user.email}", highlight=False)


@user_app.command("set-role")
def user_set_role(email: str, role: str, actor: ActorOption) -> None:
    """Change a user's role: analyst, finance, manager or admin (an admin acting)."""
    from payments_core.services.users import set_role

    user = _in_transaction(set_role, actor=_actor(actor), email=email, role=role)
    console.print(f"{user.email} is now {user.role}", highlight=False)


# --- operations: the same services the dashboard calls, with the same permission checks ----------

refunds_app = typer.Typer(help="Refund approvals.", no_args_is_help=True)
proofs_app = typer.Typer(help="Manual payment proofs.", no_args_is_help=True)
statements_app = typer.Typer(help="Bank statements.", no_args_is_help=True)
app.add_typer(refunds_app, name="refunds")
app.add_typer(proofs_app, name="proofs")
app.add_typer(statements_app, name="statements")

ActorOption = Annotated[str, typer.Option("--actor", help="The user acting (email).")]
_T = TypeVar("_T")


def _actor(email: str) -> Actor:
    from payments_core.services.permissions import UnknownActor, actor_for

    _require_schema(_engine())
    try:
        with Session(read_engine()) as session:
            return actor_for(session=session, email=email)
    except UnknownActor as exc:
        fail(str(exc))


def _refused(exc: Exception) -> NoReturn:
    fail(str(exc))


def _guarded_call(call: Callable[[], _T]) -> _T:
    """Run a service call; a permission refusal or a business refusal becomes a one-line error."""
    from payments_core.providers.base import ProviderError
    from payments_core.services.permissions import PermissionDenied

    refusals = (PermissionDenied, ProviderError, ValueError, LookupError)
    try:
        return call()
    except refusals as exc:
        _refused(exc)


def _in_transaction(service: Callable[..., _T], **kwargs: Any) -> _T:
    """``service(session=..., **kwargs)`` in one transaction, refusals as one-line errors."""

    def run() -> _T:
        with transaction() as session:
            return service(session=session, **kwargs)

    return _guarded_call(run)


def _refund_line(refund: Refund) -> str:
    amount = format_amount(refund.amount_minor, refund.currency)
    extra = f" ({refund.failure_reason})" if refund.failure_reason else ""
    return f"refund {refund.id} of {amount} on {refund.payment_id}: {refund.status}{extra}"


@app.command("refund")
def refund_command(
    reference: Annotated[str, typer.Argument(help="Payment id, provider or host reference.")],
    amount: Annotated[str, typer.Option(help="In major units of the payment's currency: 5.00")],
    reason: Annotated[str, typer.Option(help="Why (shown to approvers and in the audit log).")],
    actor: ActorOption,
    note: Annotated[str | None, typer.Option(help="A longer note.")] = None,
    offline_reference: Annotated[
        str | None, typer.Option(help="Manual payments: the reference of the offline refund.")
    ] = None,
) -> None:
    """Request a refund; below the approval threshold it goes to the provider at once."""
    from payments_core.money import MoneyError, parse_amount
    from payments_core.providers.registry import Adapters
    from payments_core.services.refunds import request_and_execute

    who = _actor(actor)
    with Session(read_engine()) as session:
        try:
            payment = get_payment_by_reference(session=session, reference=reference)
        except LookupError as exc:
            fail(str(exc))
    try:
        minor = parse_amount(amount, payment.currency)
    except MoneyError as exc:
        fail(f"--amount: {exc}")
    refund = _guarded_call(
        lambda: request_and_execute(
            transaction=transaction,
            adapters=Adapters(),
            actor=who,
            payment_id=payment.id,
            amount_minor=minor,
            currency=payment.currency,
            reason=reason,
            note=note,
            offline_reference=offline_reference,
        )
    )
    console.print(_refund_line(refund), highlight=False)


@refunds_app.command("approve")
def refunds_approve(refund_id: str, actor: ActorOption) -> None:
    """Approve a refund waiting for a manager (never your own request); it then executes."""
    from payments_core.providers.registry import Adapters
    from payments_core.services.refunds import approve_and_execute

    who = _actor(actor)
    refund = _guarded_call(
        lambda: approve_and_execute(
            transaction=transaction, adapters=Adapters(), actor=who, refund_id=refund_id
        )
    )
    console.print(_refund_line(refund), highlight=False)


@refunds_app.command("reject")
def refunds_reject(
    refund_id: str,
    actor: ActorOption,
    reason: Annotated[str, typer.Option(help="Why (required).")] = "",
) -> None:
    """Reject a refund waiting for a manager; the reason is required."""
    from payments_core.services.refunds import reject_refund

    refund = _in_transaction(reject_refund, actor=_actor(actor), refund_id=refund_id, reason=reason)
    console.print(_refund_line(refund), highlight=False)


@refunds_app.command("pending")
def refunds_pending() -> None:
    """Refunds waiting for a manager's approval, oldest first."""
    from payments_core.services.refunds import refunds_awaiting_approval

    with Session(read_engine()) as session:
        refunds = refunds_awaiting_approval(session=session)
    for refund in refunds:
        console.print(
            f"{_refund_line(refund)} requested by {refund.requested_by}: {refund.reason}",
            highlight=False,
        )
    console.print(f"{len(refunds)} refund(s) awaiting approval")


@proofs_app.command("approve")
def proofs_approve(proof_id: str, actor: ActorOption) -> None:
    """Approve a proof (never one you recorded): the payment succeeds."""
    from payments_core.services.proofs import approve_proof

    proof = _in_transaction(approve_proof, actor=_actor(actor), proof_id=proof_id)
    console.print(f"proof {proof.id} approved: payment {proof.payment_id}", highlight=False)


@proofs_app.command("reject")
def proofs_reject(
    proof_id: str,
    actor: ActorOption,
    reason: Annotated[str, typer.Option(help="Why (required).")] = "",
) -> None:
    """Reject a proof; the reason is required and the payment stays pending."""
    from payments_core.services.proofs import reject_proof

    proof = _in_transaction(reject_proof, actor=_actor(actor), proof_id=proof_id, reason=reason)
    console.print(f"proof {proof.id} rejected: {proof.review_reason}", highlight=False)


@statements_app.command("import")
def statements_import(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    actor: ActorOption,
) -> None:
    """Import a bank statement (CSV or CAMT.053): exact matches become proofs awaiting review."""
    from payments_core.services.statements import import_statement

    result = _in_transaction(
        import_statement,
        settings=get_settings(),
        actor=_actor(actor),
        content=path.read_bytes(),
        filename=path.name,
    )
    console.print(
        f"{result.format}: {result.credits} credit(s), {result.imported} new, "
        f"{result.already_imported} already imported, {len(result.matched)} matched, "
        f"{len(result.unmatched)} unmatched, {len(result.errors)} error(s)",
        highlight=False,
    )
    for line in result.matched:
        console.print(
            f"  line {line.line}: {line.amount} -> "
            f"{line.payment_id} (proof {line.proof_id})",
            highlight=False,
        )
    for line in result.unmatched:
        near = ", ".join(f"{c.payment_id} ({c.reason})" for c in line.candidates) or "none"
        console.print(
            f"  line {line.line}: {line.amount} "
            f"{line.reference or ''} unmatched; nearest: {near}",
            highlight=False,
        )
    for error in result.errors:
        err_console.print(f"  line {error.line}: {error.message}", highlight=False)


@app.command()
def attention(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Read as this user (default: an analyst view).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many items.")] = 200,
) -> None:
    """What needs a person, oldest first: approvals, reviews, disputes due, stuck payments, ..."""
    from payments_core.services.attention import attention_queue

    who = _actor(actor) if actor else Actor(name="cli", role=Role.ANALYST)
    _require_schema(_engine())
    with Session(read_engine()) as session:
        items = _guarded_call(lambda: attention_queue(session=session, actor=who, limit=limit))
    if as_json:
        print(json.dumps([item.to_json() for item in items], indent=2))
        return
    for item in items:
        console.print(
            f"{item.since:%Y-%m-%d %H:%M}  {item.kind.value:<22} {item.title}", highlight=False
        )
    console.print(f"{len(items)} item(s) need attention")


@dataclass(frozen=True)
class Service:
    name: str
    command: Sequence[str]
    url: str
    cwd: Path | None = None


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def dev_services(*, dashboard: bool = True) -> list[Service]:
    """What `make run` starts next to each other: the webhook server (with its in-process
    worker) and the Reflex dashboard (settings DASHBOARD_PORT, DASHBOARD_BACKEND_PORT)."""
    settings = get_settings()
    paydesk = [sys.executable, "-m", "payments_core.cli"]
    base = f"http://{settings.webhook_host}:{settings.webhook_port}"
    services = [Service("webhook server", [*paydesk, "serve"], f"{base}/healthz")]
    if dashboard:
        port, backend_port = settings.dashboard_port, settings.dashboard_backend_port
        reflex = [sys.executable, "-m", "reflex", "run", "--env", "dev"]
        # The backend on loopback only (Reflex's default is every interface).
        ports = [
            "--frontend-port", str(port), "--backend-port", str(backend_port),
            "--backend-host", "127.0.0.1",
        ]  # fmt: skip
        # Run where rxconfig.py is, whatever the current directory.
        services.append(
            Service("dashboard", [*reflex, *ports], f"http://127.0.0.1:{port}", cwd=PROJECT_ROOT)
        )
    return services


@app.command()
def dev(
    seed_payments: Annotated[
        int, typer.Option(help="Demo payments to seed when the database is empty.")
    ] = 20_000,
    no_services: Annotated[
        bool, typer.Option("--no-services", help="Prepare the database, start nothing.")
    ] = False,
    no_dashboard: Annotated[
        bool, typer.Option("--no-dashboard", help="Start the webhook server only.")
    ] = False,
) -> None:
    """Prepare a development database (migrate, seed, demo admin) and run every service."""
    settings = get_settings()
    if not settings.is_development:
        fail("`paydesk dev` is for PAYDESK_ENV=development (it creates a demo admin)")
    engine = _engine()
    migrations.upgrade(engine)
    console.print(f"database: {engine.url.render_as_string(hide_password=True)}", highlight=False)
    if _payment_count(engine) == 0:
        seed(payments=seed_payments, days=90, seed=1, until=None, if_empty=True)
    email, password = ensure_demo_admin(engine, settings.var_dir / "demo-admin.txt")
    console.print(
        f"demo admin: [bold]{email}[/] / [bold]{password}[/] (development only)", highlight=False
    )
    key = ensure_demo_api_key(engine, settings.var_dir / "demo-api-key.txt")
    console.print(f"demo API key: {key} (development only)", highlight=False)
    if no_services:
        return
    # The demo provider must work out of the box; its services inherit this environment.
    if not settings.dummy_webhook_secret.get_secret_value():
        os.environ["DUMMY_WEBHOOK_SECRET"] = f"dev-{secrets.token_hex(16)}"
    if "PUBLIC_BASE_URL" not in os.environ:
        os.environ["PUBLIC_BASE_URL"] = f"http://{settings.webhook_host}:{settings.webhook_port}"
    run_services(dev_services(dashboard=not no_dashboard))


def run_services(services: Sequence[Service]) -> None:
    """Start every service, print where it is, stop them all on Ctrl-C or when one exits."""
    processes: list[tuple[Service, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for service in services:
            # Each service leads its own process group: Reflex starts children of its own (the
            # frontend dev server), and stopping a service must stop all of them.
            process = subprocess.Popen(
                service.command, env=os.environ.copy(), cwd=service.cwd, start_new_session=True
            )
            processes.append((service, process))
        for service in services:
            console.print(f"  {service.name}: {service.url}", highlight=False)
        console.print("press Ctrl-C to stop")
        while not stopping:
            for service, process in processes:
                if process.poll() is not None:
                    err_console.print(f"{service.name} exited with {process.returncode}")
                    stopping = True
            time.sleep(0.2)
    finally:
        for _, process in processes:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
            # Whatever the leader left behind in its group goes too.
            _signal_group(process, signal.SIGKILL)
        console.print("stopped")


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
