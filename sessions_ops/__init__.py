"""Operators' tooling: the `sessions-api` command, the bulk importer, the demo data."""
