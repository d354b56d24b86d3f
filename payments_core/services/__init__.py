"""Use cases. Each takes a keyword-only ``session`` and never commits: the caller owns the
transaction, so a change, its timeline event and its audit entry are one unit."""
