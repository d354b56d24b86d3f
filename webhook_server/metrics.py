"""Prometheus metrics for the webhook server (text format at ``GET /metrics``).

Counters live in this process: received, accepted, duplicate and rejected deliveries per
provider (rejections also per reason), and 503s. Inbox gauges (backlog, oldest unprocessed age,
dead events) are read from the database at scrape time, so they are right whichever process
did the work.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from payments_core.db import read_engine
from payments_core.services.inbox import inbox_health


class _InboxCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("paydesk_database_up", "1 when the database answered the scrape")
        try:
            with Session(read_engine()) as session:
                health = inbox_health(session=session)
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "paydesk_webhook_inbox_backlog",
            "Verified webhook events waiting to be processed (pending, processing or retrying)",
            value=health.backlog,
        )
        yield GaugeMetricFamily(
            "paydesk_webhook_inbox_oldest_unprocessed_seconds",
            "Age of the oldest webhook event not processed yet",
            value=health.oldest_unprocessed_seconds,
        )
        yield GaugeMetricFamily(
            "paydesk_webhook_inbox_dead",
            "Webhook events whose retries are exhausted (replay them by hand)",
            value=health.dead,
        )


class _LoopCounter(Collector):
    """A counter per provider kept as plain integers and exported at scrape time.

    For the counters every delivery updates: only the event loop's thread updates them, so they
    need no lock (a prometheus ``Counter`` takes one per increment). Exported like a ``Counter``:
    ``<name>_total{provider="..."}``.
    """

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.counts: dict[str, int] = {}

    def inc(self, provider: str) -> None:
        self.counts[provider] = self.counts.get(provider, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=["provider"])
        for provider, count in sorted(list(self.counts.items())):  # list(): one atomic copy
            family.add_metric([provider], count)
        yield family


class IntakeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._received = _LoopCounter("paydesk_webhooks_received", "Deliveries received")
        self._accepted = _LoopCounter("paydesk_webhooks_accepted", "Verified and stored")
        self._duplicate = _LoopCounter(
            "paydesk_webhooks_duplicate", "Verified redeliveries of an event already stored"
        )
        self._unavailable = _LoopCounter(
            "paydesk_webhooks_unavailable", "Answered 503 because the database was unavailable"
        )
        for counter in (self._received, self._accepted, self._duplicate, self._unavailable):
            self.registry.register(counter)
        # Refusals are recorded from worker threads (they write to the database): a locked one.
        self._rejected = Counter(
            "paydesk_webhooks_rejected",
            "Refused deliveries",
            ["provider", "reason"],
            registry=self.registry,
        )
        self.inbox_commits = Counter(
            "paydesk_webhook_inbox_commits",
            "Inbox transactions committed by intake (several deliveries share one under load)",
            registry=self.registry,
        )
        self.registry.register(_InboxCollector())

    def received(self, provider: str) -> None:
        self._received.inc(provider)

    def accepted(self, provider: str) -> None:
        self._accepted.inc(provider)

    def duplicate(self, provider: str) -> None:
        self._duplicate.inc(provider)

    def unavailable(self, provider: str) -> None:
        self._unavailable.inc(provider)

    def rejected(self, provider: str, reason: str) -> None:
        self._rejected.labels(provider, reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
