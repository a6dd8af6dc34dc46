"""The GraphQL over HTTP specification's reference audit (graphql-http's serverAudits, pinned in
tests/graphql_http_audit/, installed by `make test`) against the served /graphql: every audit
ok, warnings and notices included. The result is recorded in docs/COMPLIANCE.md."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

AUDIT = Path(__file__).parent.parent / "graphql_http_audit"


async def test_every_graphql_over_http_audit_is_ok(server: str) -> None:
    node = shutil.which("node")
    if node is None or not (AUDIT / "node_modules" / "graphql-http").is_dir():
        pytest.fail(
            "the audit is not installed: `make test` runs npm ci in tests/graphql_http_audit"
        )
    proc = await asyncio.create_subprocess_exec(
        node,
        str(AUDIT / "audit.mjs"),
        f"{server}/graphql",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=AUDIT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    print(f"graphql-http audit: {result['ok']} ok, {result['notice']} notices")
    assert result["failed"] == [], result
    assert result["ok"] >= 61, result
