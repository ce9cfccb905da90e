"""``nfsguard audit``: verify and query the tamper-evident audit trail, make signing keys.

Exit codes: 0 ok; 1 the chain is broken (verify); 2 bad input (a file that
cannot be read, a line that is not a record, a bad option; one line
``FILE:LINE: message``); 3 the chain is intact but the final line is torn
(verify; a write cut short by a crash).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from webhook.audit import query as q
from webhook.audit.record import RecordError, check_envelope, looks_like_record, parse_line
from webhook.audit.signing import generate, key_id, load_public_key
from webhook.audit.verify import Verifier, Where, iter_lines, recovers
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


@audit.command("verify")
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    metavar="FILE",
    help="Ed25519 public key (PEM) that may sign checkpoints (repeatable). "
    "Without it, signatures are not checked.",
)
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    metavar="SEQ:HASH",
    help="A record known from elsewhere (e.g. a checkpoint in shipped logs): "
    "the chain must reach it with this hash (repeatable).",
)
def verify_command(
    files: tuple[str, ...], public_keys: tuple[str, ...], anchors: tuple[str, ...]
) -> int:
    """Check sequence, hash chain and checkpoint signatures.

    FILE... are verified in order (rotated files first: `audit.log.* audit.log`);
    `-` reads stdin, where lines that are not audit records (other logs) are skipped.

    Checks sequence, hash chain and checkpoint signatures; prints one line.
    Exit 0 intact, 1 broken (first broken record by file:line and seq),
    3 intact but with a torn final line, 2 bad input.
    """
    sources = _sources(files)
    keys: dict[str, Ed25519PublicKey] | None = None
    if public_keys:
        keys = {}
        for path in public_keys:
            public = load_public_key(path)
            keys[key_id(public)] = public
    anchor_map: dict[int, str] = {}
    for text in anchors:
        seq_text, _, digest = text.partition(":")
        if not seq_text.isdigit() or len(digest) != 64:
            raise Refused(f"--anchor {text!r}: expected SEQ:HASH (a 64-digit SHA-256)")
        anchor_map[int(seq_text)] = digest.lower()
    verifier = Verifier(keys, lenient=sources == [STDIN], anchors=anchor_map)
    for name in sources:
        verifier.add_source("<stdin>" if name == STDIN else name)
    for where, raw, terminated in _lines(sources):
        verifier.feed(where, raw, terminated)
        if verifier.broken:
            break
    report = verifier.finish()
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(report.summary())
    return report.exit_code


def _records(files: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Decision, checkpoint and recovery records; torn lines skipped with a warning."""
    lenient = list(files) == [STDIN]
    pending: tuple[Where, bytes, bool] | None = None

    def parse(where: Where, raw: bytes, terminated: bool) -> dict[str, Any] | None:
        if not terminated:
            click.echo(f"{where}: torn final line skipped ({len(raw)} bytes)", err=True)
            return None
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


@audit.command("query")
@click.argument("files", nargs=-1, required=True)
@click.option("--since", metavar="TIME", help="From TIME: RFC 3339 or relative (7d, 24h, 30m).")
@click.option("--until", metavar="TIME", help="Before TIME: RFC 3339 or relative.")
@click.option("--rule", "rules", multiple=True, help="Deciding rule name (glob, repeatable).")
@click.option("--name", "names", multiple=True, help="Object name (glob, repeatable).")
@click.option("--user", "users", multiple=True, help="Username or group (glob, repeatable).")
@click.option(
    "--outcome",
    "outcomes",
    multiple=True,
    type=click.Choice(["mutated", "denied", "warned", "audited", "exempt"]),
    help="Outcome (repeatable).",
)
@click.option("--kind", "kinds", multiple=True, help="Object kind (glob, repeatable).")
@click.option(
    "--would-be",
    "would_be",
    multiple=True,
    type=click.Choice(["mutated", "denied"]),
    help="Audit enforcement: what Enforce would have done (repeatable).",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
def query_command(
    files: tuple[str, ...],
    since: str | None,
    until: str | None,
    rules: tuple[str, ...],
    names: tuple[str, ...],
    users: tuple[str, ...],
    outcomes: tuple[str, ...],
    kinds: tuple[str, ...],
    would_be: tuple[str, ...],
    output: str,
) -> None:
    """List recorded decisions that match every given filter.

    Reads FILE... in order, or `-` for stdin.

    Example: every PV pinned by rule nfs42-pin in the last 7 days, and by whom:
    `nfsguard audit query audit.log.* audit.log --rule nfs42-pin --outcome mutated
    --kind PersistentVolume --since 7d`. After a week in Audit: `--would-be denied`
    lists what Enforce would have refused. Does not verify the chain (use verify).
    """
    flt = q.Filter(
        since=_when("--since", since),
        until=_when("--until", until),
        rules=rules,
        names=names,
        users=users,
        outcomes=outcomes,
        kinds=kinds,
        would_be=would_be,
    )
    selected = q.select(_records(_sources(files)), flt)
    if output == "json":
        click.echo(json.dumps(selected, indent=2, ensure_ascii=False))
    else:
        click.echo(q.table(selected), nl=False)


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
