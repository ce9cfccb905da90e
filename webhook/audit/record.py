"""The audit record: schema, canonical form and hashing (pure, no I/O).

Every line of an audit log is one JSON object carrying ``schema``
(:data:`SCHEMA`), ``type`` (``decision``, ``checkpoint`` or ``recovery``),
``chain`` (the id of the chain it belongs to: one per writer process, so the
lines of several chains mixed in one stream, a container log, can be told
apart; absent from records written before it existed), ``seq`` (0, 1, 2, ...
without gaps), ``prev`` (the ``hash`` of the record
with ``seq - 1``, or :data:`GENESIS` for ``seq`` 0) and ``hash``: the SHA-256
(hex) of the canonical JSON of the record without its ``hash`` field.

Canonical JSON is ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False, allow_nan=False)`` encoded as UTF-8 (made by orjson where
it gives the very same bytes, which is faster). Lines are written in
a readable key order; verification always recomputes the canonical form, so
key order and spacing of a line do not matter, only its content.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from webhook.api.decision import Decision, RuleRef, Target
from webhook.api.review import AdmissionRequest

SCHEMA = "nfsguard.io/audit/v1"
SCHEMA_PREFIX = "nfsguard.io/audit/"
GENESIS = "0" * 64

DECISION = "decision"
CHECKPOINT = "checkpoint"
RECOVERY = "recovery"
TYPES = frozenset({DECISION, CHECKPOINT, RECOVERY})

# Domain separation for checkpoint signatures: a signature over an audit
# checkpoint can never be mistaken for a signature over anything else.
SIGNATURE_CONTEXT = b"nfsguard.io/audit/v1 checkpoint\n"

#: The writer signs after every decision whose ``seq + 1`` is a multiple of this
#: (``checkpoint_every``); its checkpoints declare it as ``checkpointEvery``, and
#: verify assumes it for a log that declares nothing.
DEFAULT_CHECKPOINT_EVERY = 1000


#: What a ``chain`` id may be (the writer makes 16 hex digits).
CHAIN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RecordError(ValueError):
    """A line is not a well-formed audit record."""


def rfc3339(moment: datetime) -> str:
    """``2026-11-27T08:30:56.123456Z``: UTC, microseconds, ``Z`` suffix."""
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    # isoformat, not strftime("%Y-%m-%dT%H:%M:%S.%fZ"): the same text for every year
    # from 1000 on, at a tenth of the cost (one per record: docs/performance.md).
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 time; a time without offset is taken as UTC."""
    moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _json_canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _floatless(obj: Any) -> bool:
    """No float anywhere in ``obj``: orjson writes some floats unlike json (``1e-05``)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, float):
            return False
    return True


def canonical(obj: Mapping[str, Any], *, floatless: bool = False) -> bytes:
    """The canonical JSON (module docstring), by orjson where it gives the very same
    bytes (tested against json with hypothesis): anything without floats, with 64-bit
    integers, string keys and valid strings; json otherwise. ``floatless``: the
    caller knows ``obj`` holds no float (the writer: :func:`decision_floatless`),
    which spares the look."""
    if floatless or _floatless(obj):
        try:
            return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # an int beyond 64 bits, a key that is no str, a lone surrogate
            pass
    return _json_canonical(obj)


def record_hash(record: Mapping[str, Any], *, floatless: bool = False) -> str:
    """SHA-256 (hex) of the canonical JSON of ``record`` without ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body, floatless=floatless)).hexdigest()


def signing_bytes(record: Mapping[str, Any]) -> bytes:
    """What a checkpoint signature covers: the record without ``hash`` and ``signature``."""
    body = {k: v for k, v in record.items() if k not in ("hash", "signature")}
    return SIGNATURE_CONTEXT + canonical(body)


def seal(
    body: Mapping[str, Any], *, seq: int, prev: str, floatless: bool = False
) -> dict[str, Any]:
    """Place ``body`` in the chain: add ``schema``, ``seq``, ``prev`` and ``hash``.

    ``body`` must carry ``type`` and ``time`` (and ``chain`` from the writer); the
    result keeps a readable key order (schema, type, chain, seq, prev, time, ..., hash).
    """
    record: dict[str, Any] = {"schema": SCHEMA, "type": body["type"]}
    if "chain" in body:
        record["chain"] = body["chain"]
    record |= {
        "seq": seq,
        "prev": prev,
        "time": body["time"],
    }
    for key, value in body.items():
        if key not in record and key != "hash":
            record[key] = value
    record["hash"] = record_hash(record, floatless=floatless)
    return record


def to_line(record: Mapping[str, Any], *, floatless: bool = False) -> bytes:
    """One record as one line (UTF-8, ``\\n``-terminated, no other newline; compact)."""
    if floatless or _floatless(record):
        try:
            return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:
            pass
    return json.dumps(record, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise RecordError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise RecordError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise RecordError(f"number {text} is out of range")
    return value


#: How deeply a line may nest objects and arrays. A record nests four levels (a
#: decision's ``volumes[].before``); a deeper line is no record, and refusing it
#: keeps hashing and reading it off Python's recursion limit.
MAX_DEPTH = 32


def _depth_within(value: Any, limit: int) -> bool:
    """True if ``value`` nests objects/arrays at most ``limit`` levels (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def parse_line(line: bytes | str) -> dict[str, Any]:
    """Parse one line as a JSON object (duplicate keys rejected, nesting bounded).

    Raises :class:`RecordError` with a short reason.
    """
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        obj = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except RecordError:
        raise
    except RecursionError:
        raise RecordError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise RecordError(f"not JSON ({exc})") from None
    if not _depth_within(obj, MAX_DEPTH):
        raise RecordError(f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(obj, dict):
        raise RecordError("not a JSON object")
    return obj


def looks_like_record(obj: Mapping[str, Any]) -> bool:
    """True if ``obj`` claims to be an nfsguard audit record (any version)."""
    schema = obj.get("schema")
    return isinstance(schema, str) and schema.startswith(SCHEMA_PREFIX)


def check_envelope(obj: Mapping[str, Any]) -> None:
    """Check the fields every record has; raise :class:`RecordError` otherwise."""
    if obj.get("schema") != SCHEMA:
        raise RecordError(f"unknown schema {obj.get('schema')!r} (expected {SCHEMA!r})")
    kind = obj.get("type")
    if kind not in TYPES:
        raise RecordError(f"unknown record type {kind!r}")
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise RecordError("seq is not a non-negative integer")
    for key in ("prev", "hash"):
        value = obj.get(key)
        if not isinstance(value, str) or len(value) != 64:
            raise RecordError(f"{key} is not a 64-digit hex SHA-256")
    if not isinstance(obj.get("time"), str):
        raise RecordError("time is missing")
    chain = obj.get("chain", "-")
    if not isinstance(chain, str) or not CHAIN_ID.fullmatch(chain):
        raise RecordError("chain is not a chain id (1 to 64 letters, digits, '-', '_', '.')")


def chain_of(obj: Mapping[str, Any]) -> str:
    """The chain a record belongs to; ``""`` for records written before chain ids."""
    chain = obj.get("chain")
    return chain if isinstance(chain, str) else ""


# --- decision records -------------------------------------------------------


def _target(target: Target | None) -> dict[str, Any] | None:
    if target is None:
        return None
    out: dict[str, Any] = {
        "kind": target.kind,
        "name": target.name,
        "driver": target.driver,
        "export": target.export,
        "server": target.server,
        "path": target.path,
        "storageClass": target.storage_class,
    }
    if target.volume is not None:  # a Pod's or workload's volume (absent for PV and SC)
        out["volume"] = target.volume
    return out


def _policy(rule: RuleRef | None) -> dict[str, str] | None:
    if rule is None:
        return None
    return {"name": rule.policy, "version": rule.policy_version, "digest": rule.policy_digest}


def decision_body(request: AdmissionRequest, decision: Decision, *, time: str) -> dict[str, Any]:
    """The content of a ``decision`` record (everything but the chain fields)."""
    deciding = decision.deciding
    body: dict[str, Any] = {
        "type": DECISION,
        "time": time,
        "request": {
            "uid": request.uid,
            "operation": request.operation,
            "kind": request.kind,
            "resource": request.resource,
            "subResource": request.sub_resource,
            "namespace": request.namespace,
            "name": request.display_name,
            "dryRun": request.dry_run,
        },
        "user": {
            "username": request.user.username,
            "uid": request.user.uid,
            "groups": list(request.user.groups),
        },
        "policy": _policy(deciding),
        "rule": deciding.rule if deciding is not None else None,
        "action": deciding.action.value if deciding is not None else None,
        "matched": [ref.to_dict() for ref in decision.matched],
        "outcome": decision.outcome.value,
        "before": decision.before.to_dict() if decision.before is not None else None,
        "after": decision.after.to_dict() if decision.after is not None else None,
        "patch": [dict(op) for op in decision.patch],
        "message": decision.message,
        "warnings": list(decision.warnings),
        "target": _target(decision.target),
        "nodes": decision.nodes,
        "notes": list(decision.notes),
        "enforcement": decision.enforcement.value if decision.enforcement is not None else None,
        "wouldBe": decision.would_be.value if decision.would_be is not None else None,
        "wouldPatch": [dict(op) for op in decision.would_patch],
        "existing": decision.existing,
    }
    if decision.volumes:  # Pods and workloads: every inline NFS volume's outcome
        body["volumes"] = [v.to_dict() for v in decision.volumes]
    return body


def decision_floatless(body: Mapping[str, Any]) -> bool:
    """Whether a :func:`decision_body` holds no float: only its patches carry values
    taken from the object (any JSON); every other field is typed (str, int, bool,
    None and lists and mappings of them: webhook/api/decision.py)."""
    return _floatless(body.get("patch")) and _floatless(body.get("wouldPatch"))


def checkpoint_body(
    *, time: str, head_seq: int, head_hash: str, reason: str, key_id: str, every: int = 0
) -> dict[str, Any]:
    """A checkpoint before signing: it anchors the chain head ``head_seq``/``head_hash``
    and, signed with it, declares the writer's cadence ``every`` (when it has one), so
    verify knows where the next checkpoint is due."""
    body: dict[str, Any] = {
        "type": CHECKPOINT,
        "time": time,
        "head": {"seq": head_seq, "hash": head_hash},
        "reason": reason,
        "keyId": key_id,
    }
    if every > 0:
        body["checkpointEvery"] = every
    return body


def recovery_body(*, time: str, torn: bytes, offset: int) -> dict[str, Any]:
    """Written after a crash left a partial line: names the torn bytes so verify can skip them."""
    return {
        "type": RECOVERY,
        "time": time,
        "torn": {
            "offset": offset,
            "bytes": len(torn),
            "sha256": hashlib.sha256(torn).hexdigest(),
        },
    }
