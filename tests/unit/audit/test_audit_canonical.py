"""The canonical form made by orjson is byte for byte the json one the hashes are defined by.

``record.canonical`` and ``record.to_line`` take orjson where it gives the very
same bytes as ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False, allow_nan=False)`` and fall back to json otherwise (floats,
integers beyond 64 bits, keys that are not strings, lone surrogates). Checked on
arbitrary JSON values, every string Python can hold included, and on real
records: a hash computed either way is the same, so logs written before verify
after, and the other way round.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.audit.audit_fixtures import decision, request, verify_files
from webhook.api.patch import PatchOperation
from webhook.audit.record import (
    _floatless,
    canonical,
    decision_body,
    decision_floatless,
    parse_line,
    seal,
    to_line,
)
from webhook.audit.writer import AuditWriter

#: every code point, surrogates included (st.text() leaves them out by default)
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | ANY_TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(ANY_TEXT, inner, max_size=5),
    max_leaves=30,
)


def _json(obj: Any) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _outcome(make: Any, obj: Any) -> tuple[str, Any]:
    try:
        return "ok", make(obj)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        return "error", type(exc).__name__


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(ANY_TEXT, VALUES, max_size=6))
def test_canonical_is_the_json_canonical_form(obj: dict[str, Any]) -> None:
    assert _outcome(canonical, obj) == _outcome(_json, obj)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(ANY_TEXT, VALUES, max_size=6))
def test_a_line_reads_back_as_the_record_it_was_made_of(obj: dict[str, Any]) -> None:
    made = _outcome(to_line, obj)
    if made[0] == "error":  # only what json cannot write either (a lone surrogate)
        assert _outcome(_json, obj)[0] == "error"
        return
    line = made[1]
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    # duplicate keys cannot arise from a dict; the parse is the verifier's own
    assert canonical(parse_line(line[:-1])) == _json(obj)


@pytest.mark.parametrize("value", [1e-05, 1e16, 0.1, -0.0, 5e-324, 2**64, 2**100])
def test_numbers_orjson_writes_differently_take_the_json_form(value: object) -> None:
    obj = {"v": value, "w": [value, {"x": value}]}
    assert canonical(obj) == _json(obj)


def test_a_real_record_hashes_alike_both_ways() -> None:
    record = seal(
        {
            **decision_body(request(name="pv-é-😀"), decision(), time="2026-12-07T00:00:00Z"),
            "chain": "0123456789abcdef",
        },
        seq=7,
        prev="ab" * 32,
    )
    body = {k: v for k, v in record.items() if k != "hash"}
    assert canonical(body) == _json(body)
    assert parse_line(to_line(record)[:-1]) == record


@settings(max_examples=100, deadline=None)
@given(VALUES)
def test_a_decision_knows_whether_it_holds_a_float(value: Any) -> None:
    """The writer skips the look for floats when ``decision_floatless`` says there is
    none: only the patches carry values from the object, the rest is typed."""
    base = decision()
    patch = (PatchOperation(op="add", path="/spec/x", value=value),)
    body = decision_body(request(), replace(base, patch=patch, would_patch=patch), time="t")
    assert decision_floatless(body) is _floatless(body)


@pytest.mark.parametrize("value", [[1e-05, 2.5], {"a": 1e-07}, ["nfsvers=4.0"], 2**70])
def test_recorded_patch_values_of_any_kind_verify(tmp_path: Path, value: object) -> None:
    log = tmp_path / "audit.log"
    writer = AuditWriter(str(log), checkpoint_interval=0)
    patch = (PatchOperation(op="replace", path="/spec/mountOptions", value=value),)
    writer.record(request(), replace(decision(), patch=patch))
    writer.close()
    report = verify_files([log])
    assert (report.exit_code, report.decisions) == (0, 1), report.summary()
    (line,) = log.read_bytes().splitlines()
    assert parse_line(line)["patch"][0]["value"] == value
