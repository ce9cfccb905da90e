"""The text log line's spelling (webhook/server/logs.py): what a log collector splits on."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from webhook.server.logs import JsonFormatter, TextFormatter

#: A value written bare: one word without whitespace, quote or '='.
BARE = re.compile(r'[^\s"=]+')

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def line_of(fields: dict[str, Any], created: float = 0.0) -> str:
    record = logging.LogRecord("nfsguard.decision", logging.INFO, __file__, 0, "decision", (), None)
    record.created = created
    record.fields = fields
    return TextFormatter().format(record)


def value_of(line: str) -> str:
    return line.split(" v=", 1)[1]


@given(json_values)
def test_a_value_is_a_bare_word_or_the_json_string_of_its_text(value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    written = value_of(line_of({"v": value}))
    if text and BARE.fullmatch(text):
        assert written == text
    else:
        assert written == json.dumps(text)  # one JSON string: spaces and quotes escaped
        assert json.loads(written) == text
    assert "\n" not in written


def test_the_scalars_of_a_decision_line_are_spelt_as_json_spells_them() -> None:
    line = line_of({"dryRun": False, "ok": True, "rule": None, "n": 3, "ms": 0.412, "ns": ""})
    assert line.endswith(' dryRun=false ok=true rule=null n=3 ms=0.412 ns=""')


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)))
def test_the_time_is_utc_to_the_millisecond_truncated(moment: datetime) -> None:
    created = moment.replace(tzinfo=UTC).timestamp()
    stamp = line_of({}, created).split(" ", 1)[0]
    exact = datetime.fromtimestamp(created, UTC)
    assert stamp == exact.strftime("%Y-%m-%dT%H:%M:%S.") + f"{exact.microsecond // 1000:03d}Z"


def test_json_lines_carry_the_same_time() -> None:
    record = logging.LogRecord("nfsguard", logging.INFO, __file__, 0, "m", (), None)
    record.created = 1_796_000_000.1239
    assert json.loads(JsonFormatter().format(record))["time"] == "2026-11-30T00:53:20.123Z"
    assert line_of({}, record.created).startswith("2026-11-30T00:53:20.123Z INFO ")
