"""``nfsguard audit``: verify and query the tamper-evident audit trail, make signing keys.

Exit codes: 0 ok; 1 the chain is broken (verify, merge); 2 bad input (a file
that cannot be read, a line that is not a record, a bad option; one line
``FILE:LINE: message``); 3 the chain is intact but the final line is torn
(verify; a write cut short by a crash); 4 the chain is intact but not proven:
checkpoint signatures not checked (no ``--public-key``) or records after the last
checkpoint not anchored (verify, merge; ``--allow-unsigned`` accepts it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from webhook.audit import query as q
from webhook.audit.chain_file import chain_files_in, rotated_files
from webhook.audit.record import (
    DEFAULT_CHECKPOINT_EVERY,
    RecordError,
    chain_of,
    check_envelope,
    looks_like_record,
    parse_line,
)
from webhook.audit.signing import generate, key_id, load_public_key
from webhook.audit.verify import (
    EXIT_BROKEN,
    EXIT_TORN,
    EXIT_UNVERIFIED,
    AnchorError,
    Report,
    Verifier,
    Where,
    anchors_from_lines,
    could_be_torn_record,
    iter_lines,
    recovers,
)
from webhook.cli.errors import Group, Refused

__all__ = ["audit"]

STDIN = "-"


def _sources(files: Sequence[str]) -> list[str]:
    if STDIN in files and len(files) > 1:
        raise Refused("nfsguard audit: '-' (stdin) cannot be combined with files")
    return list(files)


def _lines(files: Sequence[str]) -> Iterator[tuple[Where, bytes, bool]]:
    for name in files:
        if name == STDIN:
            yield from _lines_of("<stdin>", sys.stdin.buffer)
            continue
        try:
            handle = open(name, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise Refused(f"{name}: cannot read: {exc.strerror}") from None
        with handle:
            try:
                yield from _lines_of(name, handle)
            except OSError as exc:
                raise Refused(f"{name}: cannot read: {exc.strerror}") from None


def _lines_of(name: str, stream: IO[bytes]) -> Iterator[tuple[Where, bytes, bool]]:
    for number, raw, terminated in iter_lines(stream):
        yield Where(name, number), raw, terminated


@click.group("audit", cls=Group)
def audit() -> None:
    """The audit trail: one chained, fsync'ed JSON line per recorded decision,
    with Ed25519-signed checkpoints. See docs/audit.md."""


def proof_options(command: Any) -> Any:
    """The options of verify and merge that say what a chain must prove."""
    for option in reversed(
        [
            click.option(
                "--public-key",
                "public_keys",
                multiple=True,
                metavar="FILE",
                help="Ed25519 public key (PEM) that may sign checkpoints (repeatable). "
                "Without it, signatures are not checked (exit 4 unless --allow-unsigned).",
            ),
            click.option(
                "--anchor",
                "anchors",
                multiple=True,
                metavar="SEQ:HASH",
                help="A record known from elsewhere (e.g. a checkpoint in shipped logs): "
                "the chain must reach it with this hash (repeatable).",
            ),
            click.option(
                "--anchors",
                "anchor_files",
                multiple=True,
                metavar="FILE",
                help="A copy of the log kept off the node (the collected --audit-stdout "
                "lines, e.g. `kubectl logs` output): every audit record in it is an anchor "
                "(repeatable; other lines skipped; checkpoints must verify with --public-key).",
            ),
            click.option(
                "--checkpoint-every",
                "checkpoint_every",
                type=click.IntRange(min=0),
                metavar="N",
                help="The writer's cadence: with --public-key, a decision at seq kN-1 must "
                "be followed by a checkpoint [default: what the log's signed checkpoints "
                f"declare, {DEFAULT_CHECKPOINT_EVERY} before the first; 0: not checked].",
            ),
            click.option(
                "--allow-unsigned",
                is_flag=True,
                help="Exit 0 on an intact chain whose signatures were not checked or "
                "whose last records are not yet anchored by a checkpoint.",
            ),
            click.option(
                "--require-checkpoint-within",
                "within",
                type=click.IntRange(min=0),
                metavar="N",
                help="At most N records after the last checkpoint (default 0, "
                "or any with --allow-unsigned).",
            ),
        ]
    ):
        command = option(command)
    return command


@audit.command("verify")
@click.argument("files", nargs=-1, required=True)
@proof_options
def verify_command(
    files: tuple[str, ...],
    public_keys: tuple[str, ...],
    anchors: tuple[str, ...],
    anchor_files: tuple[str, ...],
    checkpoint_every: int | None,
    allow_unsigned: bool,
    within: int | None,
) -> int:
    """Check sequence, hash chain and checkpoint signatures.

    FILE... are verified in order as one chain (rotated files first:
    `audit.log.* audit.log`); DIR... verifies every chain in the directories
    (one per worker process: audit.log, audit.1.log, ..., each with its rotated
    files); `-` reads stdin, where the lines of several chains are told apart by
    their chain id and lines that are not audit records (other logs) are skipped.

    Prints one line per chain (prefixed with the chain when there are several).
    Exit 0 intact and proven, 1 broken (first broken record by file:line and
    seq), 3 intact but with a torn final line, 4 intact but not proven
    (signatures not checked, or records after the last checkpoint; see
    --allow-unsigned, --require-checkpoint-within), 2 bad input; with several
    chains, the worst of them.
    """
    keys = _keys(public_keys)
    anchor_map, chain_anchors = _anchors(anchors, anchor_files, keys)
    sources = _sources(files)
    proof = _proof(allow_unsigned, within)
    if sources == [STDIN]:
        reports = _verify_stream(keys, anchor_map, chain_anchors, checkpoint_every)
        if anchor_map and len(reports) > 1:
            raise Refused(
                "nfsguard audit verify: --anchor SEQ:HASH names no chain, and stdin holds "
                f"{len(reports)}: use --anchors"
            )
        named = [(f"chain {chain or '-'}", r) for chain, r in reports]
        dirs = False
    else:
        chains, dirs = _chains(sources)
        if anchor_map and len(chains) > 1:
            raise Refused(
                "nfsguard audit verify: --anchor SEQ:HASH names no chain, and there are "
                f"{len(chains)}: verify one chain's files, or use --anchors"
            )
        named = [
            (name, _verify(chain, keys, anchor_map, checkpoint_every, chain_anchors))
            for name, chain in chains
        ]
    codes = []
    several = len(named) > 1
    for name, report in named:
        for note in report.notes:
            click.echo(f"note: {name}: {note}" if several else f"note: {note}", err=True)
        code, line = report.verdict(**proof)
        codes.append(code)
        click.echo(f"{name}: {line}" if several else line)
    seen = set().union(*(r.chains for _n, r in named)) if named else set()
    missing = {c: a for c, a in chain_anchors.items() if c not in seen}
    if missing and (dirs or sources == [STDIN]):
        for chain, of_chain in sorted(missing.items()):
            click.echo(
                f"BROKEN: the anchors name chain {chain or '-'} (seq {min(of_chain)}.."
                f"{max(of_chain)}), which no given file holds: its files were removed"
            )
        codes.append(EXIT_BROKEN)
    elif missing:
        click.echo(
            f"note: the anchors of {len(missing)} other chain(s) were not checked "
            "(verify the directory to check every chain)",
            err=True,
        )
    return _worst(codes)


def _worst(codes: Sequence[int]) -> int:
    for worst in (EXIT_BROKEN, EXIT_TORN, EXIT_UNVERIFIED):
        if worst in codes:
            return worst
    return 0


def _chains(sources: Sequence[str]) -> tuple[list[tuple[str, list[str]]], bool]:
    """(name, files in chain order) of each chain, and whether directories were given:
    files are one chain, in the order given; each directory holds a chain per slot."""
    dirs = [name for name in sources if Path(name).is_dir()]
    if not dirs:
        return [(sources[-1], list(sources))], False
    if len(dirs) != len(sources):
        raise Refused(
            "nfsguard audit: give directories (every chain in them) or one chain's files, not both"
        )
    chains: list[tuple[str, list[str]]] = []
    for directory in dirs:
        found = chain_files_in(directory)
        if not found:
            raise Refused(f"{directory}: no audit log in this directory")
        chains.extend(found)
    return chains, True


def _verify_stream(
    keys: dict[str, Ed25519PublicKey] | None,
    anchors: dict[int, str],
    chain_anchors: dict[str, dict[int, str]],
    checkpoint_every: int | None,
) -> list[tuple[str, Report]]:
    """Stdin: the lines of each chain (by the chain id of its records) to a verifier
    of its own; other lines are skipped and counted."""
    verifiers: dict[str, Verifier] = {}
    skipped = 0
    last: str | None = None

    def verifier(chain: str) -> Verifier:
        if chain not in verifiers:
            verifiers[chain] = Verifier(
                keys,
                lenient=True,
                anchors=anchors,
                checkpoint_every=checkpoint_every,
                chain_anchors=chain_anchors,
            )
            verifiers[chain].add_source("<stdin>")
        return verifiers[chain]

    for where, raw, terminated in _lines([STDIN]):
        chain: str | None = None
        if terminated:
            try:
                obj = parse_line(raw) if raw.startswith(b"{") else None
            except RecordError:
                obj = None
            if obj is not None and looks_like_record(obj):
                chain = chain_of(obj)
        elif could_be_torn_record(raw):
            chain = last if last is not None else ""
        if chain is None:
            skipped += int(bool(raw.strip()))
            continue
        last = chain
        verifier(chain).feed(where, raw, terminated)
    if not verifiers:
        verifier("")
    reports = [(chain, v.finish()) for chain, v in verifiers.items()]
    reports[0][1].skipped += skipped
    return reports


def _keys(public_keys: Sequence[str]) -> dict[str, Ed25519PublicKey] | None:
    if not public_keys:
        return None
    keys: dict[str, Ed25519PublicKey] = {}
    for path in public_keys:
        public = load_public_key(path)
        keys[key_id(public)] = public
    return keys


def _anchors(
    anchors: Sequence[str],
    anchor_files: Sequence[str] = (),
    keys: dict[str, Ed25519PublicKey] | None = None,
) -> tuple[dict[int, str], dict[str, dict[int, str]]]:
    """(--anchor SEQ:HASH, for the one chain verified; chain id -> seq -> hash from
    the --anchors files)."""
    anchor_map: dict[int, str] = {}
    chain_anchors: dict[str, dict[int, str]] = {}
    for name in anchor_files:
        try:
            found = anchors_from_lines(_lines([name]), keys)
        except AnchorError as exc:
            raise Refused(f"--anchors {exc}") from None
        if not found:
            raise Refused(f"--anchors {name}: no audit record in this file")
        for chain, of_chain in found.items():
            chain_anchors.setdefault(chain, {}).update(of_chain)
    for text in anchors:
        seq_text, _, digest = text.partition(":")
        if not seq_text.isdigit() or len(digest) != 64:
            raise Refused(f"--anchor {text!r}: expected SEQ:HASH (a 64-digit SHA-256)")
        anchor_map[int(seq_text)] = digest.lower()
    return anchor_map, chain_anchors


def _proof(allow_unsigned: bool, within: int | None) -> dict[str, Any]:
    """What an intact chain must also show: signatures checked and every record
    anchored (default), unless --allow-unsigned; --require-checkpoint-within N
    always holds when given."""
    if within is None and not allow_unsigned:
        within = 0
    return {"signatures_required": not allow_unsigned, "within": within}


def _verify(
    sources: Sequence[str],
    keys: dict[str, Ed25519PublicKey] | None,
    anchors: dict[int, str],
    checkpoint_every: int | None = None,
    chain_anchors: dict[str, dict[int, str]] | None = None,
) -> Report:
    verifier = Verifier(
        keys,
        lenient=list(sources) == [STDIN],
        anchors=anchors,
        checkpoint_every=checkpoint_every,
        chain_anchors=chain_anchors,
    )
    for name in sources:
        verifier.add_source("<stdin>" if name == STDIN else name)
    for where, raw, terminated in _lines(sources):
        verifier.feed(where, raw, terminated)
        if verifier.broken:
            break
    return verifier.finish()


def _records(files: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Decision, checkpoint and recovery records; torn lines skipped with a warning."""
    lenient = list(files) == [STDIN]
    pending: tuple[Where, bytes, bool] | None = None

    def parse(where: Where, raw: bytes, terminated: bool) -> dict[str, Any] | None:
        if not terminated:
            if could_be_torn_record(raw):
                click.echo(f"{where}: torn final line skipped ({len(raw)} bytes)", err=True)
                return None
            if lenient:
                return None
            raise Refused(
                f"{where}: not an audit record: a final line without newline that is not "
                "the start of a JSON record (binary or foreign data?)"
            )
        try:
            obj = parse_line(raw)
        except RecordError as exc:
            if lenient:
                return None
            raise Refused(f"{where}: not an audit record: {exc}") from None
        if not looks_like_record(obj):
            if lenient:
                return None
            raise Refused(f"{where}: not an audit record: no nfsguard.io/audit schema")
        try:
            check_envelope(obj)
        except RecordError as exc:
            raise Refused(f"{where}: not an audit record: {exc}") from None
        return obj

    for where, raw, terminated in _lines(files):
        if pending is not None:
            if recovers(raw, pending[1]):
                click.echo(f"{pending[0]}: partial line from a crash skipped", err=True)
            else:
                obj = parse(*pending)
                if obj is not None:
                    yield obj
        pending = (where, raw, terminated)
    if pending is not None:
        obj = parse(*pending)
        if obj is not None:
            yield obj


def _when(option: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return q.parse_when(text)
    except ValueError as exc:
        raise Refused(f"{option}: {exc}") from None


#: Every outcome a record can carry (compliant and unmatched with --audit-compliant).
OUTCOMES = ["mutated", "denied", "warned", "audited", "exempt", "compliant", "unmatched"]


def filter_options(command: Any) -> Any:
    """The record filters of query and merge."""
    for option in reversed(
        [
            click.option(
                "--since", metavar="TIME", help="From TIME: RFC 3339 or relative (7d, 24h, 30m)."
            ),
            click.option("--until", metavar="TIME", help="Before TIME: RFC 3339 or relative."),
            click.option(
                "--rule", "rules", multiple=True, help="Deciding rule name (glob, repeatable)."
            ),
            click.option("--name", "names", multiple=True, help="Object name (glob, repeatable)."),
            click.option(
                "--user", "users", multiple=True, help="Username or group (glob, repeatable)."
            ),
            click.option(
                "--outcome",
                "outcomes",
                multiple=True,
                type=click.Choice(OUTCOMES),
                help="Outcome (repeatable).",
            ),
            click.option("--kind", "kinds", multiple=True, help="Object kind (glob, repeatable)."),
            click.option(
                "--would-be",
                "would_be",
                multiple=True,
                type=click.Choice(["mutated", "denied"]),
                help="Audit enforcement: what Enforce would have done (repeatable).",
            ),
            click.option(
                "--server", "servers", multiple=True, help="NFS server (glob, repeatable)."
            ),
            click.option(
                "--export",
                "exports",
                multiple=True,
                help="NFS export SERVER:PATH (glob, repeatable; /data/* or 10.0.0.7:/*).",
            ),
            click.option(
                "--policy-version",
                "policy_versions",
                multiple=True,
                help="The deciding policy's spec.version, or NAME@VERSION (glob, repeatable).",
            ),
            click.option(
                "--operation",
                "operations",
                multiple=True,
                type=click.Choice(["CREATE", "UPDATE"]),
                help="Request operation (repeatable).",
            ),
            click.option(
                "--dry-run/--no-dry-run",
                "dry_run",
                default=None,
                help="Only dry-run requests, or only real ones (default: both).",
            ),
            click.option(
                "-o",
                "--output",
                type=click.Choice(["table", "json"]),
                default="table",
                show_default=True,
            ),
        ]
    ):
        command = option(command)
    return command


def _filter(options: dict[str, Any]) -> q.Filter:
    return q.Filter(
        since=_when("--since", options.pop("since")),
        until=_when("--until", options.pop("until")),
        **{key: options.pop(key) for key in _FILTER_KEYS},
    )


_FILTER_KEYS = (
    "would_be",
    "rules",
    "names",
    "users",
    "outcomes",
    "kinds",
    "servers",
    "exports",
    "policy_versions",
    "operations",
    "dry_run",
)


@audit.command("query")
@click.argument("files", nargs=-1, required=True)
@filter_options
def query_command(files: tuple[str, ...], output: str, **options: Any) -> None:
    """List recorded decisions that match every given filter.

    Reads FILE... in order (one chain: rotated files first), DIR... (every chain
    in them, in time order), or `-` for stdin; for several replicas use `audit merge`.

    Example: every PV pinned by rule nfs42-pin in the last 7 days, and by whom:
    `nfsguard audit query audit.log.* audit.log --rule nfs42-pin --outcome mutated
    --kind PersistentVolume --since 7d`. After a week in Audit: `--would-be denied`
    lists what Enforce would have refused. Does not verify the chain (use verify).
    VERSION says what happened: 4.2->4.0 and negotiated->4.0 (pinned), 4.2 (denied),
    refused (a pin the driver cannot take), or the version left as it was.
    """
    sources, flt = _sources(files), _filter(options)
    if sources == [STDIN]:
        selected = q.select(_records(sources), flt)
    else:
        chains, _dirs = _chains(sources)
        selected = (
            [
                record
                for _t, _i, _s, record in sorted(
                    (
                        (
                            q.sort_time(str(record.get("time", ""))),
                            index,
                            int(record.get("seq", 0)),
                            record,
                        )
                        for index, (_name, chain) in enumerate(chains)
                        for record in q.select(_records(chain), flt)
                    ),
                    key=lambda r: r[:3],
                )
            ]
            if len(chains) > 1
            else q.select(_records(chains[0][1]), flt)
        )
    if output == "json":
        click.echo(json.dumps(selected, indent=2, ensure_ascii=False))
    else:
        click.echo(q.table(selected), nl=False)


def _replica_files(spec: str) -> tuple[str, list[str]]:
    """One replica: ``FILE`` (its rotated files ``FILE.<seq>`` first, as the writer
    names them), or ``FILE1,FILE2,...`` in chain order. Named by its first path."""
    parts = [p for p in spec.split(",") if p]
    if not parts:
        raise Refused(f"nfsguard audit merge: {spec!r}: no file")
    if len(parts) == 1:
        return parts[0], [*rotated_files(parts[0]), parts[0]]
    return parts[-1], parts


@audit.command("merge")
@click.argument("replicas", nargs=-1, required=True)
@proof_options
@filter_options
def merge_command(
    replicas: tuple[str, ...],
    public_keys: tuple[str, ...],
    anchors: tuple[str, ...],
    anchor_files: tuple[str, ...],
    checkpoint_every: int | None,
    allow_unsigned: bool,
    within: int | None,
    output: str,
    **options: Any,
) -> int:
    """Verify each replica's chain, then list their decisions interleaved by time.

    Each REPLICA is one chain: FILE (its rotated FILE.<seq> files are read
    first), FILE1,FILE2,... in chain order, or DIR (each chain in it: one per
    worker process). Every replica is verified as
    `audit verify` would (one `REPLICA: OK|UNVERIFIED|TORN|BROKEN: ...` line on
    stderr); the records that match the filters (as for query) are printed in
    time order with the replica they come from. Exit: the worst of the
    replicas' verify codes (1 broken, 3 torn, 4 not proven, 0 all proven).
    """
    if STDIN in replicas:
        raise Refused("nfsguard audit merge: each REPLICA is a file; stdin cannot be merged")
    keys, proof = _keys(public_keys), _proof(allow_unsigned, within)
    anchor_map, chain_anchors = _anchors(anchors, anchor_files, keys)
    flt = _filter(options)
    rows: list[tuple[str, str, int, int, dict[str, Any]]] = []
    codes: list[int] = []
    chains = [
        chain
        for spec in replicas
        for chain in (chain_files_in(spec) if Path(spec).is_dir() else [_replica_files(spec)])
    ]
    for _name, files in chains:  # every input exists before anything is said
        for path in files:
            if not Path(path).is_file():
                raise Refused(f"{path}: no such file")
    for index, (name, files) in enumerate(chains):
        report = _verify(files, keys, anchor_map, checkpoint_every, chain_anchors)
        for note in report.notes:
            click.echo(f"note: {name}: {note}", err=True)
        code, line = report.verdict(**proof)
        codes.append(code)
        click.echo(f"{name}: {line}", err=True)
        for record in q.select(_records(files), flt):
            moment = str(record.get("time", ""))
            rows.append((moment, name, index, int(record.get("seq", 0)), dict(record)))
    rows.sort(key=lambda r: (q.sort_time(r[0]), r[2], r[3]))
    if output == "json":
        merged = [{"replica": name, **record} for _t, name, _i, _s, record in rows]
        click.echo(json.dumps(merged, indent=2, ensure_ascii=False))
    else:
        click.echo(
            q.table([r[4] for r in rows], replicas=[r[1] for r in rows]),
            nl=False,
        )
    return _worst(codes)


@audit.command("key-secret")
@click.option("--namespace", default="nfsguard", show_default=True)
@click.option("--name", default="nfsguard-audit-key", show_default=True, help="Secret name.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, exists=True))
@click.option("--in-cluster", is_flag=True, help="Use the pod's service account.")
def key_secret_command(namespace: str, name: str, kubeconfig: str | None, in_cluster: bool) -> None:
    """Create the signing key Secret (audit.key, audit.pub) once; never rotate it.

    Idempotent: an existing Secret is left as it is and its keyId printed.
    Give auditors audit.pub for `nfsguard audit verify --public-key`.
    """
    from kubernetes.client.exceptions import ApiException

    from webhook.cluster.audit_key import ensure_audit_key_secret
    from webhook.cluster.client import make_api_client

    try:
        api = make_api_client(kubeconfig, in_cluster=in_cluster)
        created, kid = ensure_audit_key_secret(api, namespace, name)
    except ApiException as exc:
        raise Refused(f"secret {namespace}/{name}: {exc.status} {exc.reason}") from None
    except ValueError as exc:
        raise Refused(str(exc)) from None
    state = "created" if created else "exists"
    click.echo(f"secret {namespace}/{name} {state}: keyId {kid}")


@audit.command("keygen")
@click.option("--private-key", required=True, metavar="FILE", help="Where to write the key.")
@click.option("--public-key", required=True, metavar="FILE", help="Where to write the public key.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def keygen_command(private_key: str, public_key: str, force: bool) -> None:
    """Create an Ed25519 keypair for signed checkpoints (private key mode 0600).

    Mount the private key into the server (e.g. from a Secret:
    `kubectl create secret generic nfsguard-audit-key --from-file=audit.key=FILE`) and
    give auditors the public key.
    """
    kid = generate(private_key, public_key, force=force)
    click.echo(f"wrote {private_key} (private, mode 0600) and {public_key}; keyId {kid}")
