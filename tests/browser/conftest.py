"""Browser fixtures: one Reflex app and one Chromium per test session (see browser_support)."""

from browser_support import browser, dashboard, page

__all__ = ["browser", "dashboard", "page"]
