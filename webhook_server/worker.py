"""The worker loop: process due inbox events until told to stop.

Runs in its own process (`paydesk worker`) or as a thread inside the webhook server (`paydesk
serve`, unless `--no-worker`). Several workers may run at once on PostgreSQL: each event is applied
in a transaction that holds its row (``FOR UPDATE SKIP LOCKED``), so none is applied twice. When the
database is unreachable the loop waits and tries again; nothing is lost, the events stay in the
inbox.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from payments_core.config import get_settings
from payments_core.db import get_engine, transaction
from payments_core.providers.registry import Adapters, WebhookFacts
from payments_core.services.processing import process_due
from payments_core.services.reconcile import reconcile

log = logging.getLogger("paydesk.worker")


def run_worker(stop: threading.Event, *, name: str = "worker", reconciles: bool = True) -> None:
    """Process due events in rounds; sleep when idle; back off while the database is down.
    Every RECONCILE_INTERVAL_SECONDS (when ``reconciles``), read open payments back from their
    providers (``paydesk reconcile``)."""
    settings = get_settings()
    reader = WebhookFacts(settings)
    adapters = Adapters(settings)
    outage = 0
    next_reconcile = time.monotonic() + settings.reconcile_interval_seconds
    log.info("%s started", name)
    while not stop.is_set():
        try:
            if (
                reconciles
                and settings.reconcile_interval_seconds > 0
                and time.monotonic() >= next_reconcile
            ):
                next_reconcile = time.monotonic() + settings.reconcile_interval_seconds
                _reconcile(name, adapters, settings.reconcile_after_seconds)
            result = process_due(engine=get_engine(), read_facts=reader, settings=settings)
        except SQLAlchemyError as exc:
            outage += 1
            wait = min(30.0, settings.worker_poll_seconds * 2**outage)
            log.warning("%s: database unavailable (%s); retrying in %.0f s", name, exc, wait)
            stop.wait(wait)
            continue
        outage = 0
        for outcome in result.outcomes:
            log.info(
                "%s: event %s -> %s %s", name, outcome.event_id, outcome.status, outcome.detail
            )
        if len(result) == 0:
            stop.wait(settings.worker_poll_seconds)
    log.info("%s stopped", name)


def _reconcile(name: str, adapters: Adapters, after_seconds: int) -> None:
    report = reconcile(
        transaction=transaction,
        adapters=adapters,
        older_than=timedelta(seconds=after_seconds) if after_seconds else None,
    )
    if report.lines:
        log.info("%s: %s", name, report.render())


class WorkerThread:
    """A worker inside another process (the webhook server), stopped with it."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=run_worker, args=(self._stop,), kwargs={"name": "in-process worker"}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)


def main(workers: int = 1) -> None:
    """`paydesk worker`: run ``workers`` loops in this process until SIGINT/SIGTERM."""
    import signal

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()

    def handle(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    # One loop reconciles; the others only process the inbox.
    threads = [
        threading.Thread(
            target=run_worker, args=(stop,), kwargs={"name": f"worker-{n}", "reconciles": n == 1}
        )
        for n in range(1, workers + 1)
    ]
    for thread in threads:
        thread.start()
    while not stop.is_set():
        time.sleep(0.2)
    for thread in threads:
        thread.join(30)
