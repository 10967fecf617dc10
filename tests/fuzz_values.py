"""Hypothesis strategies shared by the fuzz tests (issue 11 p6): nasty values for any JSON field,
and a payload mutated from a real sample one field at a time.

The mutations keep most of the payload valid, so a fuzz example gets past the outer decoding and
reaches the checks deeper down (a random byte string alone would stop at the first brace).
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

NASTY_TEXT = [
    "",
    " ",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e308",
    "1e-300",
    "-1",
    "0",
    "0.0",
    "1e400",
    "abc",
    "1,5",
    "\x00",
    "\u202e",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "2024-02-30T00:00:00Z",
    "2024-03-06T24:00:00Z",
    "2024-03-06T14:30:00.0000000000Z",
    "2024-03-06T14:30:00+99:99",
    "99999999999999",
    "EUR_USD",
    "EURUSD",
    "X" * 300,
]
NASTY_NUMBERS: list[Any] = [
    0,
    -1,
    -5,
    1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    1e38,
    1e308,
    -1e308,
    1e-300,
    0.5,
    True,
    None,
]
json_leaf = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.sampled_from(NASTY_NUMBERS),
    st.text(max_size=20),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(_paths(value, (*prefix, index)))
    return out


@st.composite
def mutated(draw: st.DrawFn, sample: Any, max_mutations: int = 3) -> Any:
    """`sample` with 0..max_mutations fields replaced by nasty values, dropped or duplicated."""
    payload = copy.deepcopy(sample)
    for _ in range(draw(st.integers(0, max_mutations))):
        paths = _paths(payload)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = payload
        for step in path[:-1]:
            parent = parent[step]
        key = path[-1]
        how = draw(st.sampled_from(["replace", "drop", "add"]))
        if how == "replace":
            parent[key] = draw(json_value)
        elif how == "drop":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_value)
        else:
            parent.append(copy.deepcopy(parent[key]))
    return payload


def readable(exc: Exception) -> None:
    """An error a person can act on: a message on one line that is not empty."""
    text = str(exc)
    assert text.strip(), repr(exc)
