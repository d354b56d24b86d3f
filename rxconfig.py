"""Reflex configuration: the dashboard app; ports come from `reflex run` (see `paydesk dev`)."""

import os
from pathlib import Path

import reflex as rx

# In `reflex run --env dev` the backend restarts when a watched file changes, and Reflex watches
# every top-level entry of the project except a few (it ignores *.sqlite, not *.sqlite3). The
# database, its WAL, the exports and the logs under var/ change on every request, so watching them
# restarted the backend on each sign-in or webhook. Watch the dashboard's code only.
_HERE = Path(__file__).resolve().parent
os.environ.setdefault(
    "REFLEX_HOT_RELOAD_OVERRIDE_PATHS",
    os.pathsep.join(str(_HERE / name) for name in ("dashboard", "payments_core", "rxconfig.py")),
)

config = rx.Config(
    app_name="dashboard",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    disable_plugins=[rx.plugins.SitemapPlugin],
)
