"""`paydesk` as operators run it: a real subprocess against a real database, on both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from payments_core import migrations
from payments_core.models import AppUser, Payment

PASSWORD = "s3cret-Passw0rd-for-tests"


def paydesk(
    db_url: str, tmp_path: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"DATABASE_URL": db_url, "VAR_DIR": str(tmp_path / "var"), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "payments_core.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_migrate_reports_revision(db_url: str, engine: Engine, tmp_path: Path) -> None:
    result = paydesk(db_url, tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    assert f"database at revision {migrations.head_revision(engine)}" in result.stdout


def test_user_create_reads_password_from_stdin_and_never_prints_it(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    result = paydesk(
        db_url,
        tmp_path,
        "user",
        "create",
        "--email",
        "Fin@Example.com",
        "--role",
        "finance",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert "created finance fin@example.com" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    with Session(engine) as session:
        user = session.exec(select(AppUser)).one()
    assert user.email == "fin@example.com" and PASSWORD not in user.password_hash


def test_user_create_refuses_bad_role_with_a_clear_message(db_url: str, tmp_path: Path) -> None:
    result = paydesk(
        db_url,
        tmp_path,
        "user",
        "create",
        "--email",
        "a@example.com",
        "--role",
        "boss",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert result.returncode == 2
    assert "unknown role 'boss'" in result.stderr and "Traceback" not in result.stderr


def test_seed_then_show_by_any_reference(db_url: str, engine: Engine, tmp_path: Path) -> None:
    result = paydesk(
        db_url,
        tmp_path,
        "seed",
        "--payments",
        "300",
        "--days",
        "30",
        "--seed",
        "7",
        "--until",
        "2026-11-20",
    )
    assert result.returncode == 0, result.stderr
    assert "seeded 300 payments" in result.stdout
    with Session(engine) as session:
        payment = (
            session.exec(
                select(Payment).where(Payment.status == "succeeded", Payment.currency == "JPY")
            ).first()
            or session.exec(select(Payment).where(Payment.status == "succeeded")).first()
        )
        assert payment is not None
    for reference in (payment.id, payment.provider_reference, payment.host_reference):
        assert reference
        shown = paydesk(db_url, tmp_path, "payments", "show", reference, "--json")
        if shown.returncode == 2 and "matches 2 payments" in shown.stderr:
            continue  # a host reference reused by a retry: the error lists both payments
        assert shown.returncode == 0, shown.stderr
        details = json.loads(shown.stdout)
        assert details["payment"]["id"] == payment.id
        assert details["payment"]["amount_minor"] == payment.amount_minor
        assert details["timeline"], "every seeded payment has a timeline"
    table = paydesk(db_url, tmp_path, "payments", "show", payment.id)
    assert table.returncode == 0 and payment.id in table.stdout and "Timeline" in table.stdout


def test_seed_if_empty_does_not_add_twice(db_url: str, engine: Engine, tmp_path: Path) -> None:
    for _ in range(2):
        result = paydesk(db_url, tmp_path, "seed", "--payments", "50", "--if-empty")
        assert result.returncode == 0, result.stderr
    with Session(engine) as session:
        assert len(session.exec(select(Payment.id)).all()) == 50


def test_show_unknown_reference(db_url: str, tmp_path: Path) -> None:
    result = paydesk(db_url, tmp_path, "payments", "show", "pi_nothing")
    assert result.returncode == 2 and "no payment matches 'pi_nothing'" in result.stderr


def test_audit_verify_finds_an_altered_row(db_url: str, engine: Engine, tmp_path: Path) -> None:
    for n in range(3):
        created = paydesk(
            db_url,
            tmp_path,
            "user",
            "create",
            "--email",
            f"u{n}@example.com",
            "--role",
            "analyst",
            "--password-stdin",
            stdin=PASSWORD,
        )
        assert created.returncode == 0, created.stderr
    ok = paydesk(db_url, tmp_path, "audit", "verify")
    assert ok.returncode == 0 and "audit chain intact: 3 entries" in ok.stdout
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_entry DISABLE TRIGGER USER"))
        else:
            connection.execute(text("DROP TRIGGER audit_entry_no_update"))
        connection.execute(text("UPDATE audit_entry SET actor = 'cli:mallory' WHERE seq = 2"))
    broken = paydesk(db_url, tmp_path, "audit", "verify")
    assert broken.returncode == 1
    assert "audit chain broken at entry seq=2" in broken.stderr
    assert "altered" in broken.stderr


def test_commands_refuse_an_unmigrated_database(tmp_path: Path) -> None:
    result = paydesk(f"sqlite:///{tmp_path / 'empty.sqlite3'}", tmp_path, "payments", "show", "x")
    assert result.returncode == 2 and "run `paydesk migrate` first" in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["user", "--help"], ["payments", "show", "--help"]])
def test_help(args: list[str], tmp_path: Path) -> None:
    result = paydesk("sqlite://", tmp_path, *args)
    assert result.returncode == 0 and "Usage" in result.stdout


def test_apikey_create_prints_the_key_once_and_stores_its_hash(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    from payments_core.models import ApiKey
    from payments_core.services.apikeys import hash_key

    result = paydesk(db_url, tmp_path, "apikey", "create", "--name", "shop")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("pdk_")
    with Session(engine) as session:
        row = session.exec(select(ApiKey)).one()
    assert row.name == "shop" and row.key_hash == hash_key(key)
    again = paydesk(db_url, tmp_path, "apikey", "create", "--name", "shop")
    assert again.returncode == 2
    assert "already exists" in again.stderr
    listed = paydesk(db_url, tmp_path, "apikey", "list")
    assert row.prefix in listed.stdout and key not in listed.stdout
    revoked = paydesk(db_url, tmp_path, "apikey", "revoke", "--name", "shop")
    assert revoked.returncode == 0, revoked.stderr


def test_reconcile_reports_and_refuses_a_bad_duration(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    bad = paydesk(db_url, tmp_path, "reconcile", "--older-than", "soon")
    assert bad.returncode == 2
    assert "not a duration" in bad.stderr
    ok = paydesk(db_url, tmp_path, "reconcile", "--older-than", "15m")
    assert ok.returncode == 0, ok.stderr
    assert "reconciled 0 payment(s)" in ok.stdout
