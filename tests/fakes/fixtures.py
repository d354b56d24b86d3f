"""Function-scoped pytest fixtures for the fake provider servers.

Each fixture starts a fresh fake on an OS-assigned loopback port before the test and stops it
afterwards. Use them by importing (``from fakes.fixtures import postfinance_fake``) or by
registering the module as a plugin (``pytest_plugins = ["fakes.fixtures"]`` in the root
conftest).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.base import CallbackReceiver
from fakes.daraja import DarajaFake
from fakes.paystack import PaystackFake
from fakes.postfinance import PostFinanceFake
from fakes.stripe import StripeFake


@pytest.fixture
def postfinance_fake() -> Iterator[PostFinanceFake]:
    """A running :class:`~fakes.postfinance.PostFinanceFake` (``fake.configuration()`` for SDK)."""
    with PostFinanceFake() as fake:
        yield fake


@pytest.fixture
def daraja_fake() -> Iterator[DarajaFake]:
    """A running :class:`~fakes.daraja.DarajaFake`."""
    with DarajaFake() as fake:
        yield fake


@pytest.fixture
def paystack_fake() -> Iterator[PaystackFake]:
    """A running :class:`~fakes.paystack.PaystackFake`."""
    with PaystackFake() as fake:
        yield fake


@pytest.fixture
def stripe_fake() -> Iterator[StripeFake]:
    """A running :class:`~fakes.stripe.StripeFake` (``fake.base_url`` is the API base)."""
    with StripeFake() as fake:
        yield fake


@pytest.fixture
def callback_receiver() -> Iterator[CallbackReceiver]:
    """A running catch-all :class:`~fakes.base.CallbackReceiver` for webhooks/callbacks."""
    with CallbackReceiver() as receiver:
        yield receiver
