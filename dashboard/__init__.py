"""The Reflex dashboard (pages, components and auth state); it talks to payments_core only."""
