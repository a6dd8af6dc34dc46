"""The README's settings table is the operators' reference: every setting is in it, nothing else
is, and each documented default is the one the service uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sessions_config.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", re.MULTILINE)
NOT_SET = {"unset", "(unset)", "empty"}


def rows() -> list[tuple[str, str]]:
    """The settings table's rows: (variable, default)."""
    text = README.read_text()
    start = text.index("\n### Settings\n")
    table = text[start : text.index("\n### ", start + 1)]
    found = [(name, default.strip()) for name, default in ROW.findall(table)]
    assert found, "no settings table under '### Settings' in README.md"
    return found


def documented() -> dict[str, str]:
    return dict(rows())


def test_every_setting_is_documented_once_and_nothing_else() -> None:
    names = [name.upper() for name in Settings.model_fields]
    assert sorted(name for name, _ in rows()) == sorted(names)


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_the_documented_default_is_the_default(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for other in Settings.model_fields:
        monkeypatch.delenv(other.upper(), raising=False)
    default = getattr(Settings(), name)
    cell = documented()[name.upper()]
    if cell in NOT_SET:
        assert default in (None, [], ""), f"{name.upper()} is documented as {cell}"
        return
    shown = re.match(r"`([^`]*)`", cell)
    assert shown, f"{name.upper()}: the default {cell!r} is not written as `value`"
    if " with " in cell:
        # A default that depends on another setting (REDIS_WAIT_REPLICAS): the first value
        # named must be accepted, and the unset default resolves as documented elsewhere.
        monkeypatch.setenv(name.upper(), shown.group(1))
        Settings()
        return
    # Read the way an operator would write it: the documented text, as the variable's value.
    monkeypatch.setenv(name.upper(), shown.group(1))
    assert getattr(Settings(), name) == default, f"{name.upper()}: {cell}"
