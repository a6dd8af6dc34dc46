"""Imports go one way: each package may import the packages below it, never those above
(pyproject.toml's import-linter contract, top floor first). Checked on the real tree, and on a
copy of it with one import going up, to show the check can fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.packages import OUR_PACKAGES, PYPROJECT

ROOT = PYPROJECT.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        # The packages of `root` come first, before the installed (editable) ones.
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_packages_import_only_downwards() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_import_going_up_breaks_the_contract(tmp_path: Path) -> None:
    for package in OUR_PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("static", "__pycache__"),
        )
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    # The storage layer reaching up for the GraphQL schema.
    models = tmp_path / "store" / "models.py"
    models.write_text(models.read_text("utf-8") + "\nimport graph.schema  # noqa: E402\n", "utf-8")

    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 1 broken" in result.stdout
    assert "store is not allowed to import graph" in result.stdout
    assert "store.models -> graph.schema" in result.stdout
