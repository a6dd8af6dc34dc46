"""Operators' tooling: the `sessions-api` command, the bulk importer, history pruning, the demo
data."""
