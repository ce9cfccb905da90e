"""What auditors rely on: `audit verify` never says OK for what it could not prove,
`audit query` filters and a VERSION column that says what happened, and `audit merge`
over several replicas' chains. Real logs written by the real AuditWriter; the CLI
in-process through click.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

from tests.unit.audit.audit_fixtures import T0, StepClock, decision, request, run_cli
from webhook.api.decision import Decision, Outcome, Target
from webhook.api.review import AdmissionRequest
from webhook.audit.query import what_happened
from webhook.audit.signing import generate, load_signer
from webhook.audit.writer import AuditWriter
from webhook.nfs.options import EffectiveVersion, VersionKind


def keypair(directory: Path) -> tuple[str, str]:
    private, public = directory / "audit.key", directory / "audit.pub"
    generate(str(private), str(public))
    return str(private), str(public)


def write_log(
    path: Path,
    entries: list[tuple[AdmissionRequest, Decision]],
    *,
    key: str | None,
    every: int = 1000,
    start: timedelta = timedelta(0),
    step: timedelta = timedelta(hours=1),
    close: bool = True,
) -> Path:
    writer = AuditWriter(
        str(path),
        signer=load_signer(key) if key else None,
        checkpoint_every=every,
        checkpoint_interval=0,
        clock=StepClock(T0 + start, step),
    )
    for req, dec in entries:
        writer.record(req, dec)
    if close:
        writer.close()  # a shutdown checkpoint when signed
    return path


def entries(n: int, prefix: str = "pv") -> list[tuple[AdmissionRequest, Decision]]:
    return [(request(uid=f"{prefix}-{i}", name=f"{prefix}-{i}"), decision()) for i in range(n)]


def test_verify_proves_or_says_why_not(tmp_path: Path) -> None:
    private, public = keypair(tmp_path)
    signed = write_log(tmp_path / "signed.log", entries(5), key=private)
    ok = run_cli("verify", str(signed), "--public-key", public)
    assert ok.exit_code == 0 and ok.stdout.startswith("OK: 6 records"), ok.output
    # No key: the chain is intact, but nothing proves who wrote it.
    unkeyed = run_cli("verify", str(signed))
    assert unkeyed.exit_code == 4
    assert unkeyed.stdout.startswith(
        "UNVERIFIED: checkpoint signatures not checked (no --public-key); 6 records"
    )
    assert run_cli("verify", str(signed), "--allow-unsigned").exit_code == 0
    # A tail after the last checkpoint (cut, or not yet anchored) is not proven either.
    lines = signed.read_bytes().splitlines(keepends=True)
    extra = write_log(tmp_path / "tail.log", entries(13), key=private, every=10, close=False)
    tail = run_cli("verify", str(extra), "--public-key", public)
    assert tail.exit_code == 4, tail.output
    assert (
        "3 record(s) after the last checkpoint (seq 10) not anchored by a signature" in tail.stdout
    )
    within = run_cli(
        "verify", str(extra), "--public-key", public, "--require-checkpoint-within", "3"
    )
    assert within.exit_code == 0, within.output
    strict = run_cli(
        "verify",
        str(extra),
        "--public-key",
        public,
        "--require-checkpoint-within",
        "2",
        "--allow-unsigned",
    )
    assert strict.exit_code == 4  # an explicit bound holds even with --allow-unsigned
    assert run_cli("verify", str(extra), "--public-key", public, "--allow-unsigned").exit_code == 0
    # Unsigned logs: never OK without --allow-unsigned.
    plain = write_log(tmp_path / "plain.log", entries(2), key=None)
    result = run_cli("verify", str(plain))
    assert result.exit_code == 4
    assert "2 record(s) with no checkpoint not anchored" in result.stdout
    # Broken and torn keep their codes (1, 3): they say more than "not proven".
    cut = tmp_path / "cut.log"
    cut.write_bytes(b"".join(lines[:2]) + lines[2][:10])
    assert run_cli("verify", str(cut)).exit_code == 3
    swapped = tmp_path / "swapped.log"
    swapped.write_bytes(lines[1] + lines[0])
    assert run_cli("verify", str(swapped)).exit_code == 1


def _decision(**changes: object) -> Decision:
    return dataclasses.replace(decision(), **changes)  # type: ignore[arg-type]


def test_version_column_says_what_happened(tmp_path: Path) -> None:
    explicit = EffectiveVersion(VersionKind.EXPLICIT, "4.2", ("nfsvers=4.2",))
    safe = EffectiveVersion(VersionKind.EXPLICIT, "4.0", ("nfsvers=4.0",))
    cases = [
        (_decision(before=explicit), "4.2->4.1"),
        (_decision(), "negotiated->4.1"),
        (
            _decision(outcome=Outcome.DENIED, before=explicit, after=explicit, patch=()),
            "4.2 (denied)",
        ),
        (
            _decision(
                outcome=Outcome.WARNED,
                before=explicit,
                after=explicit,
                patch=(),
                notes=("unsupported pin: nfsvers=4.0 not applied: its servers speak 4.1",),
            ),
            "refused",
        ),
        (_decision(outcome=Outcome.EXEMPT, before=explicit, after=explicit, patch=()), "4.2"),
        (Decision(outcome=Outcome.COMPLIANT, before=safe, after=safe), "4.0"),
    ]
    log = write_log(
        tmp_path / "audit.log",
        [(request(uid=f"u{i}", name=f"pv-{i}"), dec) for i, (dec, _) in enumerate(cases)],
        key=None,
    )
    records = json.loads(run_cli("query", str(log), "-o", "json").stdout)
    assert [what_happened(r) for r in records] == [want for _, want in cases]
    table = run_cli("query", str(log)).stdout.splitlines()
    assert [line.split("  ")[0] for line in table[1:]]  # one row per record
    for line, (_, want) in zip(table[1:], cases, strict=True):
        assert f"  {want}  " in line, (line, want)


def test_query_filters_server_export_policy_version_operation_dry_run(tmp_path: Path) -> None:
    def req(uid: str, operation: str = "CREATE", dry_run: bool = False) -> AdmissionRequest:
        return dataclasses.replace(request(uid=uid, name=uid, dry_run=dry_run), operation=operation)

    other = Target("PersistentVolume", "x", "nfs", "filer2.corp", "/vol/b", None)
    log = write_log(
        tmp_path / "audit.log",
        [
            (req("a"), decision()),  # srv:/export, nfs-safety 3
            (req("b", "UPDATE"), _decision(target=other)),
            (req("c", dry_run=True), decision()),
            (
                req("d"),
                _decision(
                    deciding=dataclasses.replace(decision().deciding, policy_version="4"),  # type: ignore[type-var]
                ),
            ),
        ],
        key=None,
    )

    def uids(*args: str) -> list[str]:
        result = run_cli("query", str(log), "-o", "json", *args)
        assert result.exit_code == 0, result.output
        return [r["request"]["uid"] for r in json.loads(result.stdout)]

    assert uids("--server", "filer*") == ["b"]
    assert uids("--export", "srv:/exp*") == ["a", "c", "d"]
    assert uids("--export", "*:/vol/*", "--export", "nothing") == ["b"]
    assert uids("--policy-version", "4") == ["d"]
    assert uids("--policy-version", "nfs-safety@3") == ["a", "b", "c"]
    assert uids("--operation", "UPDATE") == ["b"]
    assert uids("--dry-run") == ["c"]
    assert uids("--no-dry-run", "--operation", "CREATE") == ["a", "d"]
    assert run_cli("query", str(log), "--operation", "DELETE").exit_code == 2


def test_merge_verifies_each_replica_and_interleaves_by_time(tmp_path: Path) -> None:
    private, public = keypair(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_log(tmp_path / "a" / "audit.log", entries(3, "a"), key=private)  # 00:00, 01:00, ...
    b = write_log(
        tmp_path / "b" / "audit.log", entries(2, "b"), key=private, start=timedelta(minutes=30)
    )
    result = run_cli("merge", str(a), str(b), "--public-key", public, "-o", "json")
    assert result.exit_code == 0, result.output
    merged = json.loads(result.stdout)
    assert [(r["replica"], r["request"]["uid"]) for r in merged] == [
        (str(a), "a-0"),
        (str(b), "b-0"),
        (str(a), "a-1"),
        (str(b), "b-1"),
        (str(a), "a-2"),
    ]
    assert result.stderr.splitlines() == [
        f"{a}: OK: 4 records (seq 0..3: 3 decisions, 1 checkpoint) in 1 file(s), chain intact; "
        "1 checkpoint signature valid; anchored up to seq 3",
        f"{b}: OK: 3 records (seq 0..2: 2 decisions, 1 checkpoint) in 1 file(s), chain intact; "
        "1 checkpoint signature valid; anchored up to seq 2",
    ]
    table = run_cli("merge", str(a), str(b), "--public-key", public, "--name", "b-*").stdout
    assert table.splitlines()[0].startswith("REPLICA")
    assert [line.split()[0] for line in table.splitlines()[1:]] == [str(b), str(b)]
    # One replica broken: merge still shows the others, and exits 1.
    lines = b.read_bytes().splitlines(keepends=True)
    b.write_bytes(lines[1] + lines[0] + b"".join(lines[2:]))
    broken = run_cli("merge", str(a), str(b), "--public-key", public)
    assert broken.exit_code == 1
    assert any(line.startswith(f"{b}: BROKEN: ") for line in broken.stderr.splitlines())
    assert broken.stdout.count("a-") == 3  # the intact replica's records are still listed
    # Without a key: not proven (4), as verify.
    assert run_cli("merge", str(a)).exit_code == 4
    assert run_cli("merge", str(a), "--allow-unsigned").exit_code == 0
    missing = run_cli("merge", str(a), str(tmp_path / "nope.log"))
    assert (missing.exit_code, missing.stderr) == (2, f"{tmp_path}/nope.log: no such file\n")
