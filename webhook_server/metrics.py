"""Prometheus metrics for the webhook server (text format at ``GET /metrics``).

Counters live in this process: received, accepted, duplicate and rejected deliveries per
provider (rejections also per reason), and 503s. Inbox gauges (backlog, oldest unprocessed age,
dead events) are read from the database at scrape time, so they are right whichever process
did the work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
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


class IntakeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, str], Any] = {}
        labels = ["provider"]
        self._received = Counter(
            "paydesk_webhooks_received", "Deliveries received", labels, registry=self.registry
        )
        self._accepted = Counter(
            "paydesk_webhooks_accepted", "Verified and stored", labels, registry=self.registry
        )
        self._duplicate = Counter(
            "paydesk_webhooks_duplicate",
            "Verified redeliveries of an event already stored",
            labels,
            registry=self.registry,
        )
        self._rejected = Counter(
            "paydesk_webhooks_rejected",
            "Refused deliveries",
            ["provider", "reason"],
            registry=self.registry,
        )
        self._unavailable = Counter(
            "paydesk_webhooks_unavailable",
            "Answered 503 because the database was unavailable",
            labels,
            registry=self.registry,
        )
        self.inbox_commits = Counter(
            "paydesk_webhook_inbox_commits",
            "Inbox transactions committed by intake (several deliveries share one under load)",
            registry=self.registry,
        )
        self.registry.register(_InboxCollector())

    def received(self, provider: str) -> None:
        self._child(self._received, provider).inc()

    def accepted(self, provider: str) -> None:
        self._child(self._accepted, provider).inc()

    def duplicate(self, provider: str) -> None:
        self._child(self._duplicate, provider).inc()

    def _child(self, counter: Counter, provider: str) -> Any:
        """The labelled counter, looked up once per provider (labels() is slow on a hot path)."""
        key = (id(counter), provider)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(provider)
        return child

    def rejected(self, provider: str, reason: str) -> None:
        self._rejected.labels(provider, reason).inc()

    def unavailable(self, provider: str) -> None:
        self._unavailable.labels(provider).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
