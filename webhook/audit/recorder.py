"""The server's audit recorder: :func:`open_recorder` composes the writer from the settings.

The recorder port (``record(request, decision)``, ``close()``) is declared in
webhook/admission/recorder.py; the audit trail satisfies it structurally and
never imports admission, so it stays a leaf over the decision types.
"""

from __future__ import annotations

import atexit
import sys

from webhook.api.decision import Decision
from webhook.api.review import AdmissionRequest
from webhook.audit.chain_file import AuditWriteError
from webhook.audit.signing import load_signer
from webhook.audit.writer import (
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_MAX_BYTES,
    AuditWriter,
)

DEFAULT_KEEP_FILES = 8  # with the live file at most 9 x 64 MiB: fits the manifests' 1 GiB emptyDir


class NullAuditRecorder:
    """No audit log configured: records nothing."""

    def record(self, request: AdmissionRequest, decision: Decision) -> None:
        return None

    def close(self) -> None:
        return None


def open_recorder(
    path: str | None,
    *,
    key_file: str | None = None,
    stdout: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    keep_files: int = DEFAULT_KEEP_FILES,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
) -> AuditWriter | NullAuditRecorder:
    """The server's recorder; call once per worker process, after fork.

    ``path`` None: no audit trail (a :class:`NullAuditRecorder`); asking for a
    stdout copy without a file is an error, since the worker processes can only
    share one chain through the file. ``max_bytes``/``keep_files``: rotate at
    this size, keep this many rotated files (0: all; the stdout copy is the
    long-term store). ``key_file``: Ed25519 PEM private key for
    signed checkpoints (every ``checkpoint_every`` records, every
    ``checkpoint_interval`` seconds when there is something new, at rotation
    and at ``close()``). Raises :class:`AuditWriteError` or ``ValueError``
    with a one-line message when the log or key cannot be used.
    """
    if path is None:
        if stdout:
            raise ValueError("audit: a stdout copy needs an audit log file (--audit-log)")
        return NullAuditRecorder()
    signer = load_signer(key_file) if key_file is not None else None
    writer = AuditWriter(
        path,
        signer=signer,
        stdout=stdout,
        max_bytes=max_bytes,
        keep_files=keep_files,
        checkpoint_every=checkpoint_every,
        checkpoint_interval=checkpoint_interval,
    )
    atexit.register(_close_quietly, writer)
    return writer


def _close_quietly(writer: AuditWriter) -> None:
    try:
        writer.close()
    except AuditWriteError as exc:
        print(f"nfsguard audit: {exc}", file=sys.stderr)
