"""Fake payment-provider HTTP servers for tests.

Each fake is a real HTTP server on ``127.0.0.1`` (OS-assigned port) running in a background
thread, so the real provider clients (the ``postfinancecheckout`` SDK, ``httpx``) talk to it over
the wire:

* :mod:`fakes.postfinance` -- PostFinance Checkout API v2.0 (SDK 6.4.0, JWT auth, ECDSA webhooks)
* :mod:`fakes.daraja` -- Safaricom Daraja M-Pesa Express (OAuth, STK push, STK query, callbacks)
* :mod:`fakes.paystack` -- Paystack (initialize, verify, refunds, HMAC-SHA512 webhooks)
* :mod:`fakes.base` -- the shared server, fault injection and :class:`~fakes.base.CallbackReceiver`
* :mod:`fakes.fixtures` -- function-scoped pytest fixtures for the three fakes
"""
