"""Paydesk core: the payments domain, providers, services and the `paydesk` CLI."""
