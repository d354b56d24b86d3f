"""Provider adapters; see base.py."""
