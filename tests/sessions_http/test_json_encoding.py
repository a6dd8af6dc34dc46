"""Answers are encoded by orjson where it writes what Starlette's JSONResponse (json.dumps,
compact, not ASCII-escaped) wrote before, byte for byte, and by json itself where it would not:
clients see the same bytes either way."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessions_http.responses import encode_json


def starlette_bytes(content: Any) -> bytes:
    """What Starlette's JSONResponse writes."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


TRICKY = [
    {"lat": 37.7749, "lon": -122.4194, "city": "São Paulo", "org": None, "is_mobile": False},
    {"created_at": "2026-03-01T10:00:00Z", "history": [], "sessions": [{}]},
    {"z": 1, "a": 2, "m": {"b": 1, "a": 2}},  # key order as given, not sorted
    [1e16, 1e15, 9999999999999998.0, 1.2345678901234568e17, 1e22, 1e308, -1e16],
    [1e-4, 1e-5, 1.5e-5, 1e-6, 2.5e-7, 1e-9, 1e-10, 1e-11, 5e-324, -1e-5, 0.00012345],
    [0.0, -0.0, 1.0, 100.0, 0.1, 1 / 3, -90.0, 180.0, 51.5072, -0.1278],
    [0, -1, 2**53, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 10**30],
    ["\x00\x01\x08\t\n\x0b\x0c\r\x1f\x7f\x80\x9f", "\u2028\u2029", '/"\\', "é日本🎉", ""],
    {"user_agent": "Mozilla/5.0 (Windows; U; de-DE) 3e-5 0.00001 1e-06"},
    {1: "int key", "b": True},
    {True: 1, None: 2, 2.5: 3},
    {"nested": [[[[{"deep": [None, True, False]}]]]]},
]


@pytest.mark.parametrize("content", TRICKY, ids=range(len(TRICKY)))
def test_the_same_bytes_as_starlette(content: Any) -> None:
    assert encode_json(content) == starlette_bytes(content)


def test_what_json_refuses_is_still_refused() -> None:
    @dataclass
    class Record:
        x: int

    class Text(str):
        pass

    for content in ({"a": Record(1)}, {"at": datetime(2026, 1, 1, tzinfo=UTC)}, {1.5j: 1}):
        with pytest.raises(TypeError):
            starlette_bytes(content)
        with pytest.raises(TypeError):
            encode_json(content)
    with pytest.raises(UnicodeEncodeError):
        encode_json({"text": "lone \ud800 surrogate"})
    assert encode_json({"k": Text("v")}) == starlette_bytes({"k": Text("v")})


@settings(max_examples=3000, deadline=None)
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_every_finite_float(bits: int) -> None:
    value = struct.unpack("<d", struct.pack("<Q", bits))[0]
    if math.isfinite(value):
        assert encode_json({"lat": value, "v": [value]}) == starlette_bytes(
            {"lat": value, "v": [value]}
        )


@settings(max_examples=3000, deadline=None)
@given(st.floats(min_value=-1e-3, max_value=1e-3, allow_nan=False))
def test_small_floats(value: float) -> None:
    assert encode_json([value]) == starlette_bytes([value])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None)
@given(json_values)
def test_any_json_value(content: Any) -> None:
    try:
        expected = starlette_bytes(content)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            encode_json(content)
        return
    assert encode_json(content) == expected
