"""Shared helpers of the audit tests: real requests, decisions, files and processes."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.support import nfsguard
from webhook.api.decision import Action, Decision, Outcome, RuleRef, Target
from webhook.api.review import AdmissionRequest, UserInfo
from webhook.audit.chain_file import rotated_files
from webhook.audit.signing import generate, key_id, load_public_key
from webhook.audit.verify import Report, Verifier, Where, iter_lines
from webhook.nfs.options import EffectiveVersion, VersionKind

REPO = Path(__file__).resolve().parents[3]
PYTHON = sys.executable
CHILD = Path(__file__).with_name("audit_child.py")


def request(
    uid: str = "uid-1",
    name: str = "pv-nfs",
    user: str = "alice",
    groups: Sequence[str] = ("system:authenticated",),
    dry_run: bool = False,
    kind: str = "PersistentVolume",
) -> AdmissionRequest:
    return AdmissionRequest(
        uid=uid,
        kind=kind,
        resource="persistentvolumes",
        operation="CREATE",
        name=name,
        object={"metadata": {"name": name}},
        user=UserInfo(username=user, uid="u-" + user, groups=tuple(groups)),
        dry_run=dry_run,
    )


def decision(
    rule: str = "pin-nfs42",
    outcome: Outcome = Outcome.MUTATED,
    action: Action = Action.PIN,
    name: str = "pv-nfs",
) -> Decision:
    ref = RuleRef("nfs-safety", "3", "sha256:" + "ab" * 32, rule, action)
    other = RuleRef("nfs-safety", "3", "sha256:" + "ab" * 32, "warn-all", Action.WARN)
    return Decision(
        outcome=outcome,
        target=Target("PersistentVolume", name, "nfs.csi.k8s.io", "srv", "/export", "nfs-csi"),
        deciding=ref,
        matched=(ref, other),
        before=EffectiveVersion(VersionKind.NEGOTIATED, "4.2"),
        after=EffectiveVersion(VersionKind.EXPLICIT, "4.1", ("nfsvers=4.1",)),
        patch=({"op": "add", "path": "/spec/mountOptions", "value": ["nfsvers=4.1"]},),
        message=f"pinned to NFS 4.1 by {rule}",
        warnings=("pinned",),
        nodes="inventory: 3 nodes",
        notes=("pin written as a complete option set for the driver",),
    )


def keypair(directory: Path) -> tuple[Path, Path, dict[str, Ed25519PublicKey]]:
    private, public = directory / "audit.key", directory / "audit.pub"
    generate(str(private), str(public))
    pk = load_public_key(str(public))
    return private, public, {key_id(pk): pk}


def log_files(path: Path) -> list[str]:
    """Rotated files oldest first, then the live file."""
    files = rotated_files(str(path))
    if path.exists():
        files.append(str(path))
    return files


def verify_files(
    files: Sequence[str | Path],
    keys: dict[str, Ed25519PublicKey] | None = None,
    anchors: dict[int, str] | None = None,
) -> Report:
    verifier = Verifier(keys, anchors=anchors)
    for name in files:
        with open(name, "rb") as handle:
            for number, raw, terminated in iter_lines(handle):
                verifier.feed(Where(str(name), number), raw, terminated)
    return verifier.finish()


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


class StepClock:
    """A clock that starts at ``start`` and advances ``step`` per call."""

    def __init__(self, start: datetime, step: timedelta = timedelta(seconds=1)) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        value = self.now
        self.now += self.step
        return value


T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


def run_cli(*args: str, stdin: bytes | None = None) -> Result:
    """``nfsguard audit ARGS``, in-process through click."""
    return nfsguard("audit", *args, stdin=stdin)


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}
