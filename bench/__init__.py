"""Reproducible benchmarks. Each prints its figure as a ratio against a baseline measured in the
same run on the same machine, so results compare across machines. Run with `make bench`."""
