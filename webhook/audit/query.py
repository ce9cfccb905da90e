"""Selecting decision records and showing them (pure: records in, rows out).

``query`` does not verify the chain (``verify`` does); it reads decision
records and skips checkpoints and recovery records.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from webhook.audit.record import DECISION, parse_rfc3339

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """RFC 3339 (``2026-11-20T00:00:00Z``, a date ``2026-11-20`` is midnight UTC) or
    relative to now: ``30m``, ``24h``, ``7d``, ``2w``. Raises ValueError."""
    match = _RELATIVE.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        try:
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
        except OverflowError:  # timedelta(days=99999999) or a date before year 1
            raise ValueError(f"{text!r} reaches back before the year 1") from None
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an RFC 3339 time nor a relative one like 7d, 24h, 30m"
        ) from None


@dataclass(frozen=True)
class Filter:
    since: datetime | None = None
    until: datetime | None = None
    rules: tuple[str, ...] = ()  # deciding rule name (glob)
    names: tuple[str, ...] = ()  # object name (glob)
    users: tuple[str, ...] = ()  # username or group (glob)
    outcomes: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    would_be: tuple[str, ...] = ()  # Audit enforcement: what Enforce would have done
    servers: tuple[str, ...] = ()  # NFS server of the target (glob)
    exports: tuple[str, ...] = ()  # server:path of the target (glob)
    policy_versions: tuple[str, ...] = ()  # the deciding policy's version, or NAME@VERSION (glob)
    operations: tuple[str, ...] = ()
    dry_run: bool | None = None

    def matches(self, record: Mapping[str, Any]) -> bool:
        if record.get("type") != DECISION:
            return False
        if self.since is not None or self.until is not None:
            try:
                moment = parse_rfc3339(str(record.get("time", "")))
            except ValueError:
                return False
            if self.since is not None and moment < self.since:
                return False
            if self.until is not None and moment >= self.until:
                return False
        request = _mapping(record.get("request"))
        user = _mapping(record.get("user"))
        if self.rules and not _any_glob(self.rules, [str(record.get("rule") or "")]):
            return False
        if self.names and not _any_glob(self.names, [str(request.get("name") or "")]):
            return False
        if self.users:
            who = [str(user.get("username") or "")]
            who += [str(g) for g in user.get("groups") or []]
            if not _any_glob(self.users, who):
                return False
        if self.outcomes and record.get("outcome") not in self.outcomes:
            return False
        if self.would_be and record.get("wouldBe") not in self.would_be:
            return False
        if self.kinds and not _any_glob(self.kinds, [str(request.get("kind") or "")]):
            return False
        target = _mapping(record.get("target"))
        if self.servers and not _any_glob(self.servers, [str(target.get("server") or "")]):
            return False
        if self.exports and not _any_glob(self.exports, [str(target.get("export") or "")]):
            return False
        if self.policy_versions:
            policy = _mapping(record.get("policy"))
            version = str(policy.get("version") or "")
            named = f"{policy.get('name') or ''}@{version}"
            if not policy or not _any_glob(self.policy_versions, [version, named]):
                return False
        if self.operations and request.get("operation") not in self.operations:
            return False
        return self.dry_run is None or bool(request.get("dryRun")) is self.dry_run


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _any_glob(patterns: Sequence[str], values: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(v, p) for p in patterns for v in values)


def sort_time(text: str) -> datetime:
    """A record's time for ordering; a time that does not parse sorts first."""
    try:
        return parse_rfc3339(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def select(records: Iterable[Mapping[str, Any]], flt: Filter) -> list[Mapping[str, Any]]:
    return [r for r in records if flt.matches(r)]


def _version(state: Any) -> str:
    """One effective version as the VERSION column names it: ``4.2``, ``negotiated``
    (no version option: starts at 4.2), ``conflicting``, ``invalid``, ``3``; ``-``
    when not known."""
    state = _mapping(state)
    kind = state.get("kind")
    if kind in ("negotiated", "conflicting", "invalid"):
        return str(kind)
    version = state.get("version")
    return str(version) if version else "-"


def what_happened(record: Mapping[str, Any]) -> str:
    """The VERSION column: ``4.2->4.0`` or ``negotiated->4.0`` (pinned), ``4.2 (denied)``,
    ``refused`` (a pin the driver cannot take was not written: warned or denied,
    onUnsupportedPin), else the version left as it was (``4.2``, ``4.0``)."""
    outcome = record.get("outcome")
    before = _version(record.get("before"))
    notes = record.get("notes") or []
    if any(str(note).startswith("unsupported pin") for note in notes):
        return "refused"
    if outcome == "denied":
        return f"{before} (denied)" if before != "-" else "denied"
    if outcome == "mutated":
        return f"{before}->{_version(record.get('after'))}"
    return before


COLUMNS = ("TIME", "OUTCOME", "KIND", "NAME", "USER", "RULE", "VERSION", "DRYRUN", "SEQ")


def row(record: Mapping[str, Any]) -> tuple[str, ...]:
    request = _mapping(record.get("request"))
    user = _mapping(record.get("user"))
    namespace = request.get("namespace") or ""
    name = str(request.get("name") or "")
    time = str(record.get("time", ""))
    return (
        time[:19] + "Z" if len(time) > 19 else time,
        outcome_cell(record),
        str(request.get("kind", "")),
        f"{namespace}/{name}" if namespace else name,
        str(user.get("username", "")),
        str(record.get("rule") or "-"),
        what_happened(record),
        "yes" if request.get("dryRun") else "no",
        str(record.get("seq", "")),
    )


def outcome_cell(record: Mapping[str, Any]) -> str:
    """The outcome, and why a pin or denial was only a warning: ``warned(audit:denied)``
    for Audit enforcement (what Enforce would have done), ``warned(existing)`` for an
    UPDATE that kept an existing object's NFS options. Records written before these
    fields existed show their outcome alone."""
    outcome = str(record.get("outcome", ""))
    would = record.get("wouldBe")
    if isinstance(would, str) and would:
        return f"{outcome}(audit:{would})"
    if record.get("existing") is True:
        return f"{outcome}(existing)"
    return outcome


def table(records: Sequence[Mapping[str, Any]], *, replicas: Sequence[str] | None = None) -> str:
    """The table ``audit query`` prints; with ``replicas`` (one per record, from
    ``audit merge``) a REPLICA column comes first."""
    rows = [COLUMNS, *(row(r) for r in records)]
    if replicas is not None:
        rows = [("REPLICA", *rows[0]), *((n, *r) for n, r in zip(replicas, rows[1:], strict=True))]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join(lines) + "\n"
