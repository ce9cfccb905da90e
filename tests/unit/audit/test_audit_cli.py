"""``nfsguard audit verify/query/keygen``, in-process through click: output and exit codes
(tests/integration/test_cli_entry_points.py runs them through ``python -m webhook``)."""

from __future__ import annotations

import json
import random
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.unit.audit.audit_fixtures import (
    T0,
    StepClock,
    decision,
    request,
    run_cli,
)
from webhook.api.decision import Action, Outcome
from webhook.audit.query import Filter, parse_when, select
from webhook.audit.signing import load_signer
from webhook.audit.writer import AuditWriter


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    result = run_cli("keygen", "--private-key", str(private), "--public-key", str(public))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"wrote {private} (private, mode 0600) and {public}; keyId ")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    return private, public


@pytest.fixture
def history(tmp_path: Path, keys: tuple[Path, Path]) -> Path:
    """A week of decisions, one every 6 hours from 2026-11-20T12:00Z (28 decisions)."""
    log = tmp_path / "audit.log"
    writer = AuditWriter(
        str(log),
        signer=load_signer(str(keys[0])),
        checkpoint_every=10,
        checkpoint_interval=0,
        clock=StepClock(T0, timedelta(hours=6)),
    )
    people = ["alice", "bob", "system:serviceaccount:kube-system:csi-provisioner"]
    for i in range(28):
        if i % 4 == 3:
            dec = decision(rule="deny-old", outcome=Outcome.DENIED, action=Action.DENY)
        else:
            dec = decision(rule="pin-nfs42")
        writer.record(request(uid=f"u{i}", name=f"pv-{i:02d}", user=people[i % 3]), dec)
    writer.close()
    return log


def test_keygen_refuses_to_overwrite(keys: tuple[Path, Path]) -> None:
    private, public = keys
    before = private.read_bytes()
    result = run_cli("keygen", "--private-key", str(private), "--public-key", str(public))
    assert result.exit_code == 2
    assert result.stderr == f"{private}: exists (use --force to overwrite)\n"
    assert private.read_bytes() == before
    forced = run_cli(
        "keygen", "--private-key", str(private), "--public-key", str(public), "--force"
    )
    assert forced.exit_code == 0 and private.read_bytes() != before


def test_verify_ok_broken_torn_and_bad_input(
    tmp_path: Path, history: Path, keys: tuple[Path, Path]
) -> None:
    public = str(keys[1])
    ok = run_cli("verify", str(history), "--public-key", public)
    assert ok.exit_code == 0
    assert ok.stdout == (
        "OK: 31 records (seq 0..30: 28 decisions, 3 checkpoints) in 1 file(s), chain intact; "
        "3 checkpoint signatures valid; anchored up to seq 30\n"
    )
    assert ok.stderr == ""

    lines = history.read_bytes().splitlines(keepends=True)
    tampered = tmp_path / "tampered.log"
    tampered.write_bytes(b"".join(lines[:5] + lines[6:]))
    broken = run_cli("verify", str(tampered), "--public-key", public)
    assert broken.exit_code == 1
    assert broken.stdout == (
        f"BROKEN: {tampered}:6: seq 6: seq jumps from 4 to 6: 1 record(s) missing\n"
    )

    torn = tmp_path / "torn.log"
    torn.write_bytes(b"".join(lines) + lines[0][:10])
    result = run_cli("verify", str(torn), "--public-key", public)
    assert result.exit_code == 3
    assert result.stdout.startswith(f"TORN: {torn}:32: torn final line (10 bytes without newline")

    missing = tmp_path / "missing.log"
    result = run_cli("verify", str(missing))
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"{missing}: cannot read: No such file or directory\n"

    result = run_cli("verify", str(history), "--public-key", str(history))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{history}: not a PEM Ed25519 key (")
    assert result.stderr.count("\n") == 1

    result = run_cli("verify", str(history), "--anchor", "12:abc")
    assert result.exit_code == 2
    assert result.stderr == "--anchor '12:abc': expected SEQ:HASH (a 64-digit SHA-256)\n"

    result = run_cli("verify", "-", str(history))
    assert result.exit_code == 2
    assert result.stderr == "nfsguard audit: '-' (stdin) cannot be combined with files\n"


def test_verify_anchor_catches_a_cut_tail(
    tmp_path: Path, history: Path, keys: tuple[Path, Path]
) -> None:
    lines = history.read_bytes().splitlines(keepends=True)
    last = json.loads(lines[-1])
    cut = tmp_path / "cut.log"
    cut.write_bytes(b"".join(lines[:20]))
    anchor = f"{last['seq']}:{last['hash']}"
    assert run_cli("verify", str(history), "--anchor", anchor).exit_code == 4  # unsigned
    assert run_cli("verify", str(history), "--anchor", anchor, "--allow-unsigned").exit_code == 0
    result = run_cli("verify", str(cut), "--anchor", anchor, "--public-key", str(keys[1]))
    assert result.exit_code == 1
    assert result.stdout == (
        f"BROKEN: {cut}:20: the chain ends at seq 19 but an anchor names seq 30: "
        "records were removed from the end\n"
    )


def test_verify_stdin_of_a_container_log(history: Path, keys: tuple[Path, Path]) -> None:
    mixed = b""
    for line in history.read_bytes().splitlines(keepends=True):
        mixed += b"[2026-11-20 12:00:00 +0000] [8] [INFO] GET /readyz\n" + line
    result = run_cli("verify", "-", "--public-key", str(keys[1]), stdin=mixed)
    assert result.exit_code == 0
    assert result.stdout.startswith("OK: 31 records (seq 0..30: 28 decisions, 3 checkpoints)")
    assert result.stdout.endswith("; 31 non-audit line(s) skipped\n")


def test_query_table_filters(history: Path) -> None:
    # every PV pinned by rule pin-nfs42 between 21st 00:00 and 22nd 00:00, and by whom
    result = run_cli(
        "query",
        str(history),
        "--rule",
        "pin-nfs42",
        "--outcome",
        "mutated",
        "--since",
        "2026-11-21T00:00:00Z",
        "--until",
        "2026-11-22",
    )
    assert result.exit_code == 0, result.stderr
    sa = "system:serviceaccount:kube-system:csi-provisioner"
    pad = " " * (len(sa) - 1)
    assert result.stdout == (
        f"TIME                  OUTCOME  KIND              NAME   USER{pad[1:]}"
        "RULE       VERSION          DRYRUN  SEQ\n"
        f"2026-11-21T00:00:00Z  mutated  PersistentVolume  pv-02  {sa}  "
        "pin-nfs42  negotiated->4.1  no      2\n"
        f"2026-11-21T12:00:00Z  mutated  PersistentVolume  pv-04  bob{pad}"
        "pin-nfs42  negotiated->4.1  no      4\n"
        f"2026-11-21T18:00:00Z  mutated  PersistentVolume  pv-05  {sa}  "
        "pin-nfs42  negotiated->4.1  no      5\n"
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert [line.split()[3] for line in lines[1:]] == ["pv-02", "pv-04", "pv-05"]
    assert [line.split()[4] for line in lines[1:]] == [
        "system:serviceaccount:kube-system:csi-provisioner",
        "bob",
        "system:serviceaccount:kube-system:csi-provisioner",
    ]


def test_query_json_and_globs(history: Path) -> None:
    result = run_cli(
        "query", str(history), "--user", "system:serviceaccount:*", "--name", "pv-1*", "-o", "json"
    )
    assert result.exit_code == 0
    records = json.loads(result.stdout)
    assert [r["request"]["name"] for r in records] == ["pv-11", "pv-14", "pv-17"]
    assert {r["type"] for r in records} == {"decision"}
    denied = json.loads(run_cli("query", str(history), "--outcome", "denied", "-o", "json").stdout)
    assert [r["request"]["name"] for r in denied] == [f"pv-{i:02d}" for i in range(3, 28, 4)]
    assert {r["rule"] for r in denied} == {"deny-old"}
    by_group = run_cli("query", str(history), "--user", "system:authenticated", "-o", "json")
    assert len(json.loads(by_group.stdout)) == 28


def test_query_bad_input(tmp_path: Path, history: Path) -> None:
    result = run_cli("query", str(history), "--since", "last tuesday")
    assert result.exit_code == 2
    assert result.stderr == (
        "--since: 'last tuesday' is neither an RFC 3339 time nor a relative one like 7d, 24h, 30m\n"
    )
    bad = tmp_path / "bad.log"
    bad.write_bytes(history.read_bytes().splitlines(keepends=True)[0] + b'{"a": 1}\n')
    result = run_cli("query", str(bad))
    assert result.exit_code == 2
    assert result.stderr == f"{bad}:2: not an audit record: no nfsguard.io/audit schema\n"
    assert "Traceback" not in result.stderr
    result = run_cli("query", str(history), "--outcome", "ignored")
    assert result.exit_code == 2
    assert "Invalid value for '--outcome'" in result.stderr


def test_relative_times() -> None:
    now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert parse_when("7d", now=now) == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert parse_when("24h", now=now) == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert parse_when("30m", now=now) == datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    assert parse_when("2w", now=now) == datetime(2026, 11, 13, 10, 0, tzinfo=UTC)
    assert parse_when("2026-11-20T12:00:00+02:00") == datetime(2026, 11, 20, 10, tzinfo=UTC)
    record = {"type": "decision", "time": "2026-11-20T09:59:59.000000Z"}
    assert select([record], Filter(since=parse_when("7d", now=now))) == []
    record["time"] = "2026-11-20T10:00:00.000000Z"
    assert select([record], Filter(since=parse_when("7d", now=now))) == [record]


def test_recent_decisions_with_relative_since(tmp_path: Path) -> None:
    log = tmp_path / "now.log"
    old = StepClock(datetime.now(UTC) - timedelta(days=10))
    writer = AuditWriter(str(log), checkpoint_interval=0, clock=old)
    writer.record(request(uid="old", name="pv-old"), decision())
    writer.close()
    writer = AuditWriter(str(log), checkpoint_interval=0)
    writer.record(request(uid="new", name="pv-new"), decision())
    writer.close()
    result = run_cli("query", str(log), "--since", "7d", "-o", "json")
    assert [r["request"]["name"] for r in json.loads(result.stdout)] == ["pv-new"]


def test_verify_odd_inputs_never_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    result = run_cli("verify", str(empty), "--allow-unsigned")
    assert (result.exit_code, result.stdout) == (0, "OK: 0 records in 1 file(s)\n")
    cases = {
        b'{"schema": "nfsguard.io/audit/v1", "seq": NaN}\n': "NaN is not JSON",
        b'{"schema": "nfsguard.io/audit/v1", "seq": 1e400}\n': "number 1e400 is out of range",
        b"\xff\xfe\n": "not UTF-8 (invalid start byte at byte 0)",
        b"[1, 2]\n": "not a JSON object",
        b'{"schema": "nfsguard.io/audit/v9"}\n': (
            "unknown schema 'nfsguard.io/audit/v9' (expected 'nfsguard.io/audit/v1')"
        ),
    }
    for content, reason in cases.items():
        odd = tmp_path / "odd.log"
        odd.write_bytes(content)
        result = run_cli("verify", str(odd))
        assert result.exit_code == 1
        assert result.stdout == f"BROKEN: {odd}:1: not an audit record: {reason}\n"
        assert result.stderr == ""
        result = run_cli("query", str(odd))
        assert result.exit_code == 2
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("verify", str(empty))
    assert result.exit_code == 2
    assert result.stderr == f"{empty}: no audit log in this directory\n"


def test_verify_a_binary_file_is_broken_not_torn(
    tmp_path: Path, history: Path, keys: tuple[Path, Path]
) -> None:
    """Only what the writer could have started is a torn line (exit 3); a final line
    without newline that is binary or foreign is no audit record (exit 1)."""
    rng = random.Random(17)
    junk = bytes(rng.randrange(256) for _ in range(4096)).replace(b"\n", b"")
    lines = history.read_bytes().splitlines(keepends=True)
    cut_euro = lines[0][:-1] + "€".encode()[:2]  # a multi-byte character cut by the crash
    cases = {
        "random.bin": (junk, 1, 1, "binary or foreign data?"),
        "brace.bin": (b"{" + junk, 1, 1, "binary or foreign data?"),
        "nul.log": (b"".join(lines) + b"\0" * 64, 1, 32, "binary or foreign data?"),
        "text.log": (b"".join(lines) + b"hello", 1, 32, "binary or foreign data?"),
        "cut.log": (b"".join(lines) + cut_euro, 3, 32, "torn final line"),
    }
    for name, (content, code, line, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        result = run_cli("verify", str(path), "--public-key", str(keys[1]))
        assert result.exit_code == code, (name, result.stdout)
        assert result.stdout.startswith(("BROKEN: " if code == 1 else "TORN: ") + f"{path}:{line}:")
        assert reason in result.stdout and result.stdout.count("\n") == 1
        query = run_cli("query", str(path))
        if code == 1:
            assert query.exit_code == 2
            assert query.stderr == (
                f"{path}:{line}: not an audit record: a final line without newline that is not "
                "the start of a JSON record (binary or foreign data?)\n"
            )
        else:
            assert query.exit_code == 0
            assert query.stderr == f"{path}:32: torn final line skipped ({len(cut_euro)} bytes)\n"
    # from stdin (a container log), an unterminated foreign last line is skipped as others are
    result = run_cli("verify", "-", "--public-key", str(keys[1]), stdin=history.read_bytes() + junk)
    assert result.exit_code == 0
    assert result.stdout.endswith("; 1 non-audit line(s) skipped\n")


def test_verify_deeply_nested_json_is_one_line(tmp_path: Path, history: Path) -> None:
    """Nesting past Python's recursion limit, or past the few levels a record has, is a
    one-line break (verify) or bad input (query), never a RecursionError."""
    deep = tmp_path / "deep.log"
    first = history.read_bytes().splitlines(keepends=True)[0]
    for depth in (33, 5000, 200_000):
        for opener, closer in (("[", "]"), ('{"a": ', "}")):
            deep.write_bytes(first + (opener * depth + "1" + closer * depth + "\n").encode())
            result = run_cli("verify", str(deep), "--allow-unsigned")
            assert result.exit_code == 1
            assert result.stdout == (
                f"BROKEN: {deep}:2: not an audit record: nested deeper than 32 levels\n"
            )
            result = run_cli("query", str(deep))
            assert result.exit_code == 2
            assert result.stderr == f"{deep}:2: not an audit record: nested deeper than 32 levels\n"
    anchors = tmp_path / "anchors.log"
    anchors.write_bytes(first + b"x " + b"[" * 100_000 + b"\n")
    result = run_cli("verify", str(history), "--anchors", str(anchors), "--allow-unsigned")
    assert result.exit_code == 0  # a foreign line in a collected log is skipped, not a crash


def _two_chains(tmp_path: Path, private: Path) -> tuple[Path, Path]:
    """Two writers at once on one log (two workers): audit.log and audit.1.log, with
    their stdout copies mixed in one container log."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    logs = tmp_path / "logs"
    copy = tmp_path / "container.log"
    with copy.open("wb") as out:
        writers = [
            AuditWriter(
                str(logs / "audit.log"),
                signer=load_signer(str(private)),
                stdout=True,
                stdout_fd=out.fileno(),
                checkpoint_every=4,
                checkpoint_interval=0,
                clock=StepClock(T0),
            )
            for _ in range(2)
        ]
        for i in range(10):
            writers[i % 2].record(request(uid=f"u{i}", name=f"pv-{i}"), decision())
        for writer in writers:
            writer.close()
    return logs, copy


def test_verify_and_query_a_directory_and_a_mixed_stream(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    logs, copy = _two_chains(tmp_path, private)
    result = run_cli("verify", str(logs), "--public-key", str(public), "--anchors", str(copy))
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == [
        str(logs / "audit.log"),
        str(logs / "audit.1.log"),
    ]
    assert all(": OK: " in line and "5 decisions" in line for line in lines), lines
    streamed = run_cli("verify", "-", "--public-key", str(public), stdin=copy.read_bytes())
    assert streamed.exit_code == 0, streamed.stdout
    chains = [json.loads(line)["chain"] for line in copy.read_bytes().splitlines()]
    assert [line.split(": ")[0] for line in streamed.stdout.splitlines()] == [
        f"chain {chain}" for chain in dict.fromkeys(chains)
    ]
    table = run_cli("query", str(logs))
    assert table.exit_code == 0
    rows = table.stdout.splitlines()[1:]
    assert len(rows) == 10
    assert [row.split()[3] for row in rows] == [f"pv-{i}" for i in range(10)]  # time order
    merged = run_cli("merge", str(logs), "--public-key", str(public))
    assert merged.exit_code == 0, merged.stderr
    assert len(merged.stdout.splitlines()) == 11


def test_a_removed_chain_or_an_anchor_for_no_chain_is_said(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    logs, copy = _two_chains(tmp_path, private)
    for name in logs.glob("audit.1.log*"):
        name.unlink()
    gone = json.loads(copy.read_bytes().splitlines()[1])["chain"]  # the second writer's
    result = run_cli("verify", str(logs), "--public-key", str(public), "--anchors", str(copy))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1].startswith(
        f"BROKEN: the anchors name chain {gone} (seq 0..6), which no given file holds: "
        "its files were removed"
    )
    one = run_cli(
        "verify", str(logs / "audit.log"), "--public-key", str(public), "--anchors", str(copy)
    )
    assert one.exit_code == 0, one.stdout
    assert "the anchors of 1 other chain(s) were not checked" in one.stderr
    logs2, _copy = _two_chains(tmp_path / "again", private)
    refused = run_cli("verify", str(logs2), "--anchor", f"0:{'0' * 64}")
    assert refused.exit_code == 2
    assert "--anchor SEQ:HASH names no chain, and there are 2" in refused.stderr
    mixed = run_cli("verify", str(logs2), str(logs2 / "audit.log"))
    assert mixed.exit_code == 2
    assert "give directories (every chain in them) or one chain's files, not both" in (mixed.stderr)
