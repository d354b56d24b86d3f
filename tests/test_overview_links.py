"""Where the overview's attention items link to, per role."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dashboard.pages.overview import _link
from payments_core.models import Role
from payments_core.services.attention import AttentionItem, AttentionKind
from payments_core.services.permissions import Actor


def _item(kind: AttentionKind) -> AttentionItem:
    return AttentionItem(
        kind=kind, since=datetime(2026, 1, 1, tzinfo=UTC), title="t", entity_type="x",
        entity_id="1", payment_id="pay_1",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("role", "expected"),
    [(Role.MANAGER, "/review"), (Role.ADMIN, "/review"), (Role.FINANCE, "/payments/pay_1")],
)
def test_proofs_link_to_the_queue_only_for_those_who_review(role: Role, expected: str) -> None:
    actor = Actor(name="a@example.com", role=role)
    assert _link(_item(AttentionKind.PROOF_REVIEW), actor) == expected


def test_other_items_link_to_their_page_or_payment() -> None:
    finance = Actor(name="f@example.com", role=Role.FINANCE)
    assert _link(_item(AttentionKind.REFUND_APPROVAL), finance) == "/refunds"
    assert _link(_item(AttentionKind.UNMATCHED_STATEMENT_LINE), finance) == "/review"
    assert _link(_item(AttentionKind.STUCK_PAYMENT), finance) == "/payments/pay_1"
