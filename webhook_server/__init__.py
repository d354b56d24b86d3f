"""The ASGI side of Paydesk: provider webhooks, the host-application API, health and metrics."""
