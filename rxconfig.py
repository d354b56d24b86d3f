"""Reflex configuration: the dashboard app; ports come from `reflex run` (see `paydesk dev`)."""

import reflex as rx

config = rx.Config(
    app_name="dashboard",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    disable_plugins=[rx.plugins.SitemapPlugin],
)
