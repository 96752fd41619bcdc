"""spec_operations on malformed specs: wrong shapes are ignored, never a crash."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorscope.analysis.openapi_diff import spec_operations

JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=12,
)


def test_wrong_shapes_are_ignored() -> None:
    spec = {"openapi": "3.0.0", "servers": 5,
            "paths": {"/a": {"get": {"responses": 5, "parameters": 7,
                                     "requestBody": {"content": 3}}},
                      "/b": 7,
                      "/c": {"parameters": "x", "post": {"responses": {"200": {"content": []}}}}}}
    ops = {(op.method, op.path) for op in spec_operations(spec)}
    assert ops == {("GET", "/a"), ("POST", "/c")}


@settings(max_examples=300, deadline=None)
@given(paths=st.dictionaries(st.sampled_from(["/a", "/b/{id}"]), JUNK, max_size=2),
       op=JUNK, servers=JUNK)
def test_spec_operations_never_raise(paths: dict, op: object, servers: object) -> None:
    spec = {"openapi": "3.1.0", "servers": servers,
            "paths": {**paths, "/x": {"get": op, "parameters": op}}}
    spec_operations(spec)
