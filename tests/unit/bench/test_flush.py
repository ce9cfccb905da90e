"""`python -m bench.flush` measures the durable append of the real audit writer at each gap."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import flush


def test_flush_reports_each_gap_from_real_appends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert flush.main(["--appends", "5", "--rounds", "2", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {
        m.group(1): [int(v.replace(",", "")) for v in m.groups()[1:]]
        for m in re.finditer(
            r"^\| (.+?) \| ([\d,]+) us \| ([\d,]+) us \| ([\d,]+) us \| ([\d,]+) us \|$",
            out,
            re.M,
        )
    }
    assert list(rows) == ["back to back", "1 ms apart", "1/200 s apart"]
    for append_p50, p90, p99, _fdatasync_p50 in rows.values():
        assert append_p50 <= p90 <= p99
    assert list(tmp_path.iterdir()) == []  # its log lived in a directory of its own, now gone
