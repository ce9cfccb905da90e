"""Tamper-evident audit trail: record schema, chained file, group commit, checkpoints,
signing, verify, query.

The server calls :func:`open_recorder` once per worker process (after fork)
and ``close()`` on the result at shutdown. This room imports the decision
types (webhook.api) and never webhook.admission.
"""

from webhook.audit.chain_file import AuditWriteError
from webhook.audit.record import SCHEMA
from webhook.audit.recorder import NullAuditRecorder, open_recorder
from webhook.audit.writer import AuditWriter

__all__ = [
    "SCHEMA",
    "AuditWriteError",
    "AuditWriter",
    "NullAuditRecorder",
    "open_recorder",
]
