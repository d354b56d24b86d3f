"""Small builders for rows tests need; they add to the session and flush, never commit."""

from __future__ import annotations

import itertools
from typing import Any

from sqlmodel import Session

from payments_core.models import Payment, new_id

_counter = itertools.count(1)


def make_payment(session: Session, **overrides: Any) -> Payment:
    n = next(_counter)
    values: dict[str, Any] = {
        "id": new_id("pay"),
        "provider": "stripe",
        "provider_reference": f"pi_test_{n:06d}",
        "host_reference": f"order-{n:06d}",
        "amount_minor": 4990,
        "currency": "CHF",
        "method": "card",
        "status": "pending",
        "customer_email": f"customer{n}@example.com",
    }
    values.update(overrides)
    payment = Payment(**values)
    session.add(payment)
    session.flush()
    return payment
