"""Tamper-evident audit trail: record schema, durable chained writer, signing, verify, query.

The server calls :func:`open_recorder` once per worker process (after fork)
and ``close()`` on the result at shutdown.
"""

from webhook.audit.record import SCHEMA
from webhook.audit.writer import (
    AuditRecorder,
    AuditWriteError,
    AuditWriter,
    NullAuditRecorder,
    open_recorder,
)

__all__ = [
    "SCHEMA",
    "AuditRecorder",
    "AuditWriteError",
    "AuditWriter",
    "NullAuditRecorder",
    "open_recorder",
]
