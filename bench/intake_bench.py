"""Webhook intake throughput and latency against a bare endpoint of the same server stack.

One uvicorn process serves the real app (no worker) plus ``/_bench/bare``, which only reads the
body and answers 200. A load generator in this process (asyncio, raw HTTP/1.1 keep-alive, C
connections) posts N requests to each: signed Stripe events (every one new, so each is verified
and committed to the inbox) and the same bodies to the bare endpoint. Rounds alternate
bare/intake to share the machine's noise; the best round of each is compared. On a shared virtual
machine the host takes CPU time away in bursts of seconds (steal): many short rounds give both
endpoints the same chances of a quiet one, and the steal seen during the run is printed.

Target (issue: webhook server): intake throughput at least 0.75 of the bare endpoint's, on SQLite
and on PostgreSQL. Concurrent deliveries share commits (webhook_server/inbox_writer.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from payments_core import migrations
from payments_core.db import make_engine
from payments_core.models import WebhookEvent
from payments_core.providers import stripe as stripe_provider

SECRET = "whsec_bench_secret"  # noqa: S105 - a benchmark-only signing secret
POSTGRES_URL = os.environ.get(
    "PAYDESK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def stripe_body(n: int, run: str) -> bytes:
    event = {
        "id": f"evt_bench_{run}_{n:07d}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "type": "payment_intent.succeeded",
        "livemode": False,
        "created": int(time.time()),
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {
            "object": {
                "id": f"pi_bench_{run}_{n:07d}",
                "object": "payment_intent",
                "amount": 4990,
                "amount_received": 4990,
                "currency": "chf",
                "status": "succeeded",
                "created": int(time.time()),
                "livemode": False,
                "metadata": {"order_id": str(n)},
                "payment_method_types": ["card"],
                "receipt_email": "buyer@example.com",
                "description": "Benchmark order",
                "last_payment_error": None,
            }
        },
    }
    return json.dumps(event).encode()


def request_bytes(path: str, body: bytes, signature: str | None) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if signature:
        head += f"Stripe-Signature: {signature}\r\n"
    return head.encode() + b"\r\n" + body


async def _connection(port: int, requests: list[bytes], latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    try:
        for request in requests:
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if int(status_line.split()[1]) != 200:
                errors += 1
    finally:
        writer.close()
    return errors


def load(port: int, requests: list[bytes], concurrency: int) -> Run:
    latencies: list[float] = []
    shares = [requests[i::concurrency] for i in range(concurrency)]

    async def main() -> int:
        results = await asyncio.gather(*(_connection(port, s, latencies) for s in shares))
        return sum(results)

    started = time.perf_counter()
    errors = asyncio.run(main())
    return Run(len(requests), time.perf_counter() - started, latencies, errors)


def start_server(database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "DATABASE_URL": database_url,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "PAYDESK_IN_PROCESS_WORKER": "0",
        "PAYDESK_ENV": "development",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.intake_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("benchmark server did not start")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _commits(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("paydesk_webhook_inbox_commits_total "):
            return float(line.split()[1])
    return 0.0


def _cpu_times() -> list[int]:
    """The machine's CPU counters (user, nice, system, idle, iowait, irq, softirq, steal)."""
    try:
        with open("/proc/stat") as stat:
            return [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return [0] * 8


def _steal_share(before: list[int], after: list[int]) -> float:
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return spent[7] / sum(spent) if sum(spent) else 0.0


def _process_cpu(pid: int) -> float:
    """CPU seconds a process has used (user + system; time the host stole is not in it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def measure(label: str, database_url: str, n: int, concurrency: int, rounds: int) -> bool:
    cpu_before = _cpu_times()
    port = free_port()
    server = start_server(database_url, port)
    try:
        bodies = [stripe_body(i, "warm") for i in range(300)]
        load(port, [request_bytes("/_bench/bare", b, None) for b in bodies], concurrency)
        now = int(time.time())
        load(
            port,
            [
                request_bytes("/webhooks/stripe", b, stripe_provider.sign_payload(b, SECRET, now))
                for b in bodies
            ],
            concurrency,
        )
        bare_runs: list[Run] = []
        intake_runs: list[Run] = []
        server_cpu: dict[str, list[float]] = {"bare": [], "intake": []}  # seconds per round

        def timed(kind: str, requests: list[bytes]) -> Run:
            before = _process_cpu(server.pid)
            run = load(port, requests, concurrency)
            server_cpu[kind].append(_process_cpu(server.pid) - before)
            return run

        for r in range(rounds):
            bodies = [stripe_body(i, f"r{r}") for i in range(n)]
            bare_runs.append(
                timed("bare", [request_bytes("/_bench/bare", b, None) for b in bodies])
            )
            now = int(time.time())
            signed = [
                request_bytes("/webhooks/stripe", b, stripe_provider.sign_payload(b, SECRET, now))
                for b in bodies
            ]
            intake_runs.append(timed("intake", signed))
        commits = _commits(port)
    finally:
        server.terminate()
        server.wait(20)
    engine = make_engine(database_url)
    with engine.connect() as connection:
        stored = connection.execute(select(func.count()).select_from(WebhookEvent)).scalar_one()
    engine.dispose()
    bare = max(bare_runs, key=lambda run: run.throughput)
    intake = max(intake_runs, key=lambda run: run.throughput)
    ratio = intake.throughput / bare.throughput
    errors = sum(run.errors for run in intake_runs + bare_runs)
    expected = 300 + rounds * n
    ok = ratio >= 0.75 and errors == 0 and stored == expected
    print(
        f"webhook intake ({label}, {n:,} signed Stripe events x {rounds} rounds, "
        f"{concurrency} connections): {intake.throughput:,.0f} req/s, "
        f"p50 {intake.percentile(50):.1f} ms, p99 {intake.percentile(99):.1f} ms | bare endpoint "
        f"{bare.throughput:,.0f} req/s, p50 {bare.percentile(50):.1f} ms, "
        f"p99 {bare.percentile(99):.1f} ms | ratio {ratio:.2f} (target >= 0.75) | "
        f"{stored:,}/{expected:,} stored, {errors} errors -> {'OK' if ok else 'MISSED'}"
    )
    print(
        f"  inbox commits: {commits:,.0f} for {expected:,} deliveries "
        f"({expected / max(commits, 1):.1f} per commit)"
    )
    # Diagnostics, not the target: the server's CPU per request (the host's steal is not in it)
    # and the share of each round's wall time the server was busy. A bare endpoint that was not
    # busy nearly all the time means the machine, not the server, set that round's pace.
    cost = {kind: min(spent) / n * 1e6 for kind, spent in server_cpu.items()}
    busy = {
        kind: statistics.median(
            spent / run.seconds for spent, run in zip(server_cpu[kind], runs, strict=True)
        )
        for kind, runs in (("bare", bare_runs), ("intake", intake_runs))
    }
    print(
        f"  server CPU per request (lowest round): intake {cost['intake']:.0f} us, bare "
        f"{cost['bare']:.0f} us (bare/intake {cost['bare'] / max(cost['intake'], 1e-9):.2f}); "
        f"server busy (median round): intake {busy['intake']:.0%}, bare {busy['bare']:.0%}"
    )
    paired = [i.throughput / b.throughput for i, b in zip(intake_runs, bare_runs, strict=True)]
    print(
        f"  median of rounds: intake {statistics.median(r.throughput for r in intake_runs):,.0f}"
        f" req/s, bare {statistics.median(r.throughput for r in bare_runs):,.0f} req/s; "
        f"round by round ratio {' '.join(f'{p:.2f}' for p in paired)}; "
        f"CPU steal {_steal_share(cpu_before, _cpu_times()):.0%} (the host's share: noise)"
    )
    return ok


def main() -> None:
    n = int(os.environ.get("BENCH_INTAKE_REQUESTS", "3000"))
    concurrency = int(os.environ.get("BENCH_INTAKE_CONCURRENCY", "32"))
    rounds = int(os.environ.get("BENCH_INTAKE_ROUNDS", "6"))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'intake.sqlite3'}"
        engine = make_engine(url)
        migrations.upgrade(engine)
        engine.dispose()
        measure("SQLite", url, n, concurrency, rounds)

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        print(f"webhook intake (PostgreSQL): skipped, {POSTGRES_URL} unreachable ({exc})")
        return
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    pg_url = url.render_as_string(hide_password=False)
    try:
        engine = make_engine(pg_url)
        migrations.upgrade(engine)
        engine.dispose()
        measure("PostgreSQL", pg_url, n, concurrency, rounds)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
