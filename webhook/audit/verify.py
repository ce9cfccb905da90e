"""Verifying a sequence of audit lines (pure: lines in, a report out).

Feed lines in order with :meth:`Verifier.feed` (several files one after the
other: the chain continues across files), then call :meth:`Verifier.finish`.
Verification stops at the first break and names it by file:line and seq.

What is checked for every record: it parses (duplicate keys rejected), has the
v1 envelope, its ``hash`` matches its content, its ``seq`` is the previous one
plus one (a gap is a deletion, a step back a reordering or duplicate), and its
``prev`` is the previous record's ``hash``. Checkpoints must name their
predecessor as ``head`` and, given public keys, carry a valid Ed25519
signature by one of them. A partial line followed by a ``recovery`` record
that names its bytes is accepted (a crash the writer noticed); a partial final
line is reported as a torn final line.

Given public keys and the writer's cadence (``checkpoint_every``: it signs the
chain after every decision whose ``seq + 1`` is a multiple of it), a decision at
such a place must be followed by a checkpoint, so a chain recomputed without the
key (checkpoints dropped, renumbered, or turned into ``recovery`` records) breaks
there. A crash may tear that very checkpoint: the recovery record the next
writer appends in its place is accepted only when a checkpoint follows it at
once (the writer signs the recovered head first; webhook/audit/writer.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from webhook.audit.record import (
    CHECKPOINT,
    DECISION,
    DEFAULT_CHECKPOINT_EVERY,
    GENESIS,
    RECOVERY,
    RecordError,
    chain_of,
    check_envelope,
    looks_like_record,
    parse_line,
    record_hash,
)
from webhook.audit.signing import verify_signature

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_TORN = 3
#: The chain is intact but not proven: signatures unchecked, or records not anchored
#: by a checkpoint (``audit verify`` without ``--allow-unsigned``; docs/audit.md).
EXIT_UNVERIFIED = 4


@dataclass(frozen=True)
class Where:
    source: str
    line: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Break:
    where: Where
    seq: int | None
    message: str

    def __str__(self) -> str:
        if self.seq is None:
            return f"{self.where}: {self.message}"
        return f"{self.where}: seq {self.seq}: {self.message}"


@dataclass
class Report:
    sources: list[str] = field(default_factory=list)
    records: int = 0
    decisions: int = 0
    checkpoints: int = 0
    recoveries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None
    signatures_valid: int = 0
    signatures_unchecked: int = 0
    last_checkpoint_seq: int | None = None
    skipped: int = 0
    notes: list[str] = field(default_factory=list)
    broken: Break | None = None
    torn: Where | None = None
    torn_bytes: int = 0
    #: the chain ids its records carry ("" for records written before chain ids)
    chains: set[str] = field(default_factory=set)
    _keys_given: bool = False

    @property
    def status(self) -> str:
        if self.broken is not None:
            return "broken"
        if self.torn is not None:
            return "torn"
        return "ok"

    @property
    def exit_code(self) -> int:
        return {"ok": EXIT_OK, "broken": EXIT_BROKEN, "torn": EXIT_TORN}[self.status]

    @property
    def unanchored(self) -> int:
        """Records after the last checkpoint (all records when there is none)."""
        if self.last_seq is None:
            return 0
        if self.last_checkpoint_seq is None:
            return self.records
        return self.last_seq - self.last_checkpoint_seq

    def chain_summary(self) -> str:
        if self.records == 0:
            text = f"0 records in {len(self.sources)} file(s)"
        else:
            text = (
                f"{_n(self.records, 'record')} (seq {self.first_seq}..{self.last_seq}: "
                f"{_n(self.decisions, 'decision')}, {_n(self.checkpoints, 'checkpoint')}"
                + (f", {_n(self.recoveries, 'recovery', 'recoveries')}" if self.recoveries else "")
                + f") in {len(self.sources)} file(s), chain intact"
            )
        if self.checkpoints:
            if self.signatures_unchecked:
                text += (
                    f"; {_n(self.signatures_unchecked, 'checkpoint signature')} NOT checked"
                    " (no --public-key)"
                )
            else:
                text += f"; {_n(self.signatures_valid, 'checkpoint signature')} valid"
            text += f"; anchored up to seq {self.last_checkpoint_seq}"
            if self.unanchored:
                text += (
                    f"; {self.unanchored} record(s) after the last checkpoint are not yet anchored"
                )
        elif self.records:
            text += "; no checkpoint: no record is anchored by a signature yet"
        if self.skipped:
            text += f"; {self.skipped} non-audit line(s) skipped"
        return text

    def unproven(self, *, signatures_required: bool, within: int | None) -> list[str]:
        """Why an intact chain is not proven: signatures that could not be checked
        (``signatures_required``), more than ``within`` records after the last
        checkpoint (``within`` None: not required)."""
        reasons: list[str] = []
        if signatures_required and (self.signatures_unchecked or not self._keys_given):
            reasons.append("checkpoint signatures not checked (no --public-key)")
        unsigned = self._keys_given and self.records > 0 and not self.checkpoints
        if unsigned:
            # given a key, a log that nothing signed proves nothing (--allow-unsigned or not)
            reasons.append("no checkpoint at all: no record is signed")
        elif within is not None and self.unanchored > within:
            where = (
                f"after the last checkpoint (seq {self.last_checkpoint_seq})"
                if self.last_checkpoint_seq is not None
                else "with no checkpoint"
            )
            reasons.append(
                f"{self.unanchored} record(s) {where} not anchored by a signature "
                f"(--require-checkpoint-within {within})"
            )
        return reasons

    def verdict(self, *, signatures_required: bool, within: int | None) -> tuple[int, str]:
        """The exit code and the one line ``audit verify`` prints."""
        if self.status != "ok":
            return self.exit_code, self.summary()
        reasons = self.unproven(signatures_required=signatures_required, within=within)
        if reasons:
            return EXIT_UNVERIFIED, f"UNVERIFIED: {'; '.join(reasons)}; {self.chain_summary()}"
        return EXIT_OK, self.summary()

    def summary(self) -> str:
        """One line: the verdict."""
        if self.broken is not None:
            return f"BROKEN: {self.broken}"
        if self.torn is not None:
            return (
                f"TORN: {self.torn}: torn final line ({self.torn_bytes} bytes without newline: "
                f"a write was cut short, e.g. by a crash); before it: {self.chain_summary()}"
            )
        return f"OK: {self.chain_summary()}"


def _n(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


class Verifier:
    def __init__(
        self,
        public_keys: Mapping[str, Ed25519PublicKey] | None = None,
        *,
        lenient: bool = False,
        anchors: Mapping[int, str] | None = None,
        checkpoint_every: int | None = None,
        chain_anchors: Mapping[str, Mapping[int, str]] | None = None,
    ) -> None:
        """``lenient``: skip lines that are not audit records (a log stream from stdin).

        ``anchors``: seq -> hash known from elsewhere (e.g. a checkpoint seen in a
        shipped log copy): the chain must reach each and agree with it.
        ``chain_anchors``: chain id -> such anchors (:func:`anchors_from_lines`); those
        of the chain ids this chain's records carry apply.

        ``checkpoint_every``: the writer's cadence; with ``public_keys``, a missing
        due checkpoint is a break. None: the ``checkpointEvery`` the last valid
        checkpoint declares, :data:`DEFAULT_CHECKPOINT_EVERY` before one does; 0: not
        checked.
        """
        self._keys = dict(public_keys or {})
        self._check_signatures = public_keys is not None
        self._lenient = lenient
        self._anchors = dict(anchors or {})
        self._chain_anchors = chain_anchors or {}
        self._report = Report(_keys_given=public_keys is not None)
        self._pending: tuple[Where, bytes, bool] | None = None
        self._acknowledged_torn = False
        self._last_hash = GENESIS
        self._last_where: Where | None = None
        self._declared = checkpoint_every is None and public_keys is not None
        every = DEFAULT_CHECKPOINT_EVERY if checkpoint_every is None else checkpoint_every
        self._every = every if public_keys is not None else 0
        #: The seq where a checkpoint is due (after a decision at seq + 1 = k * every),
        #: and whether a recovery record already stands there.
        self._due: int | None = None
        self._due_recovery: Where | None = None

    @property
    def broken(self) -> bool:
        return self._report.broken is not None

    def _break(self, where: Where, seq: int | None, message: str) -> None:
        if self._report.broken is None:
            self._report.broken = Break(where, seq, message)

    def add_source(self, source: str) -> None:
        """Name a source up front (so an empty file is counted too)."""
        if source not in self._report.sources:
            self._report.sources.append(source)

    def feed(self, where: Where, raw: bytes, terminated: bool = True) -> None:
        """One line without its ``\\n``; ``terminated`` False for a final line without one."""
        if self.broken:
            return
        self.add_source(where.source)
        if self._pending is not None:
            pending_where, pending_raw, pending_terminated = self._pending
            if recovers(raw, pending_raw):
                self._report.notes.append(
                    f"{pending_where}: partial line ({len(pending_raw)} bytes) left by a crash, "
                    f"acknowledged by the recovery record at {where}"
                )
                self._acknowledged_torn = True
            else:
                self._process(pending_where, pending_raw, pending_terminated)
        self._pending = (where, raw, terminated)

    def finish(self) -> Report:
        if self._pending is not None and not self.broken:
            where, raw, terminated = self._pending
            self._pending = None
            if terminated:
                self._process(where, raw, True)
            elif could_be_torn_record(raw):
                self._report.torn = where
                self._report.torn_bytes = len(raw)
            elif self._lenient:
                self._report.skipped += int(bool(raw.strip()))
            else:
                self._break(
                    where,
                    None,
                    f"not an audit record: a final line without newline ({len(raw)} bytes) "
                    "that is not the start of a JSON record (binary or foreign data?)",
                )
        report = self._report
        if not self.broken:
            for seq, _hash in sorted(self._anchors.items()):
                if report.last_seq is None or seq > report.last_seq:
                    end = "no record" if report.last_seq is None else f"seq {report.last_seq}"
                    where = self._last_where or Where(
                        report.sources[-1] if report.sources else "-", 0
                    )
                    self._break(
                        where,
                        None,
                        f"the chain ends at {end} but an anchor names seq {seq}: "
                        "records were removed from the end",
                    )
                    break
            first = report.first_seq
            early = [s for s in self._anchors if first is not None and s < first]
            if early:
                report.notes.append(
                    f"{_n(len(early), 'anchor')} before the given files (seq {min(early)}.."
                    f"{max(early)}); not checked"
                )
        if not self.broken and self._due is not None and report.torn is None:
            self._missing_checkpoint(
                self._last_where or Where("-", 0), None, f"the log ends at seq {report.last_seq}"
            )
        return report

    def _process(self, where: Where, raw: bytes, terminated: bool) -> None:
        report = self._report
        if not terminated:
            self._break(
                where, None, "partial line (no newline) followed by more lines: not an audit record"
            )
            return
        if self._lenient and not raw.strip():
            report.skipped += 1
            return
        try:
            obj = parse_line(raw)
        except RecordError as exc:
            if self._lenient:
                report.skipped += 1
            else:
                self._break(where, None, f"not an audit record: {exc}")
            return
        if self._lenient and not looks_like_record(obj):
            report.skipped += 1
            return
        raw_seq = obj.get("seq")
        seq_hint = raw_seq if isinstance(raw_seq, int) and not isinstance(raw_seq, bool) else None
        try:
            check_envelope(obj)
        except RecordError as exc:
            self._break(where, seq_hint, f"not an audit record: {exc}")
            return
        seq: int = obj["seq"]
        if record_hash(obj) != obj["hash"]:
            self._break(where, seq, "hash mismatch: the record was changed after it was written")
            return
        if report.last_seq is None:
            if seq == 0 and obj["prev"] != GENESIS:
                self._break(where, seq, "the first record's prev is not the genesis value")
                return
            if seq > 0:
                report.notes.append(
                    f"{where}: the chain starts at seq {seq}; its link to earlier records "
                    "(not given) is unchecked"
                )
        else:
            last = report.last_seq
            if seq > last + 1:
                missing = seq - last - 1
                self._break(
                    where, seq, f"seq jumps from {last} to {seq}: {missing} record(s) missing"
                )
                return
            if seq <= last:
                self._break(
                    where, seq, f"seq {seq} follows seq {last}: records reordered or duplicated"
                )
                return
            if obj["prev"] != self._last_hash:
                self._break(
                    where,
                    seq,
                    f"prev does not match the hash of seq {last} ({self._last_where}): "
                    f"seq {last} was changed or replaced",
                )
                return
        chain = chain_of(obj)
        if chain not in report.chains:
            report.chains.add(chain)
            self._anchors.update(self._chain_anchors.get(chain, {}))
        kind = obj["type"]
        if self._due is not None and not self._due_kept(where, seq, kind):
            return
        if kind == CHECKPOINT and not self._checkpoint(where, seq, obj):
            return
        if kind == RECOVERY:
            report.recoveries += 1
            if not self._acknowledged_torn:
                report.notes.append(
                    f"{where}: recovery record, but the partial line it names is not before it"
                )
        if kind == DECISION:
            report.decisions += 1
            if self._every > 0 and (seq + 1) % self._every == 0:
                self._due = seq + 1
        self._acknowledged_torn = False
        expected = self._anchors.get(seq)
        if expected is not None and expected != obj["hash"]:
            self._break(where, seq, f"hash {obj['hash']} differs from the anchor {expected}")
            return
        report.records += 1
        if report.first_seq is None:
            report.first_seq = seq
        report.last_seq = seq
        report.head_hash = obj["hash"]
        self._last_hash = obj["hash"]
        self._last_where = where

    def _due_kept(self, where: Where, seq: int, kind: str) -> bool:
        """Whether the record at ``seq`` keeps the due checkpoint: it is that checkpoint,
        or (once) the recovery of a crash that tore it, which a checkpoint must follow."""
        if kind == CHECKPOINT:
            self._due, self._due_recovery = None, None
            return True
        if kind == RECOVERY and self._due_recovery is None and self._acknowledged_torn:
            self._due, self._due_recovery = seq + 1, where
            return True
        self._missing_checkpoint(where, seq, f"a {kind} record")
        return False

    def _missing_checkpoint(self, where: Where, seq: int | None, found: str) -> None:
        assert self._due is not None
        after = self._due - 1 if self._due_recovery is None else self._due - 2
        stands = (
            f"{found}, where a checkpoint was due"
            if seq is None and self._due_recovery is None
            else f"{found} stands where a checkpoint was due"
            if self._due_recovery is None
            else f"{found} follows the recovery record at {self._due_recovery}, which stands "
            "where a checkpoint was due, without the checkpoint the recovering writer signs"
        )
        last = self._report.last_checkpoint_seq
        proven = (
            f"nothing after the last valid checkpoint (seq {last}) is proven"
            if last is not None
            else "no record is proven"
        )
        self._break(
            where,
            seq,
            f"{stands} (after the decision at seq {after}: the writer signs every "
            f"{self._every} records, {self._cadence_source()}): checkpoints were removed or "
            f"replaced and the chain recomputed without the key; {proven}",
        )

    def _cadence_source(self) -> str:
        if not self._declared:
            return "--checkpoint-every"
        if self._report.checkpoints:
            return "as its last valid checkpoint declares"
        return "the writer's default"

    def _checkpoint(self, where: Where, seq: int, obj: Mapping[str, Any]) -> bool:
        report = self._report
        head = obj.get("head")
        if head != {"seq": seq - 1, "hash": obj["prev"]}:
            self._break(where, seq, "checkpoint head does not name the record before it")
            return False
        key = obj.get("keyId")
        if not isinstance(key, str) or not isinstance(obj.get("signature"), str):
            self._break(where, seq, "checkpoint without keyId or signature")
            return False
        if self._check_signatures:
            public = self._keys.get(key)
            if public is None:
                self._break(where, seq, f"checkpoint signed by unknown key {key}")
                return False
            if not verify_signature(public, obj):
                self._break(where, seq, "checkpoint signature is invalid")
                return False
            report.signatures_valid += 1
        else:
            report.signatures_unchecked += 1
        report.checkpoints += 1
        report.last_checkpoint_seq = seq
        declared = obj.get("checkpointEvery")
        # signed with the record it sits in: the writer's own word for the rest of the chain
        if self._declared and isinstance(declared, int) and not isinstance(declared, bool):
            self._every = max(declared, 1)
        return True


def could_be_torn_record(raw: bytes) -> bool:
    """Whether ``raw`` (a final line without newline) can be a record line the writer
    started and a crash cut short: it opens a JSON object and is UTF-8 text without
    raw control characters (JSON escapes them), save a multi-byte character cut at
    its end. Anything else (a binary file, foreign data) is no torn record."""
    if not raw.startswith(b"{"):
        return False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data":  # a bad byte, not a character cut short
            return False
        text = raw[: exc.start].decode("utf-8", errors="strict")
    return not any(ord(char) < 0x20 for char in text)


def recovers(raw: bytes, torn: bytes) -> bool:
    """True if ``raw`` is a recovery record naming exactly the bytes ``torn``."""
    if b'"recovery"' not in raw:
        return False
    try:
        obj = parse_line(raw)
    except RecordError:
        return False
    info = obj.get("torn")
    return (
        obj.get("type") == RECOVERY
        and isinstance(info, dict)
        and info.get("bytes") == len(torn)
        and info.get("sha256") == hashlib.sha256(torn).hexdigest()
    )


def iter_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes, bool]]:
    """(line number from 1, bytes without ``\\n``, terminated) for each line of ``stream``."""
    for number, chunk in enumerate(stream, start=1):
        if chunk.endswith(b"\n"):
            yield number, chunk[:-1], True
        else:
            yield number, chunk, False


class AnchorError(ValueError):
    """An anchors source that cannot be trusted as one: ``FILE:LINE: why``."""


def anchors_from_lines(
    lines: Iterable[tuple[Where, bytes, bool]],
    public_keys: Mapping[str, Ed25519PublicKey] | None,
) -> dict[str, dict[int, str]]:
    """chain id -> seq -> hash of every audit record in ``lines`` (chain id ``""`` for
    records written before chain ids): a copy of the log kept where
    the node cannot rewrite it (the ``--audit-stdout`` lines the log collector
    stored, with or without a ``TIME stdout F`` or timestamp prefix before the
    ``{``). Lines that are not audit records are skipped; a record whose hash is
    wrong, a checkpoint whose signature does not verify (given keys) or two
    different records for one seq of one chain (two old pods' chains, written before
    chain ids, in one file) raise AnchorError."""
    anchors: dict[str, dict[int, str]] = {}
    seen: dict[tuple[str, int], Where] = {}
    for where, raw, terminated in lines:
        start = raw.find(b"{")
        if start < 0 or not terminated:
            continue
        try:
            obj = parse_line(raw[start:])
        except RecordError:
            continue
        if not looks_like_record(obj):
            continue
        try:
            check_envelope(obj)
        except RecordError as exc:
            raise AnchorError(f"{where}: not an audit record: {exc}") from None
        seq, digest = obj["seq"], obj["hash"]
        if record_hash(obj) != digest:
            raise AnchorError(f"{where}: seq {seq}: hash mismatch: not a record to anchor to")
        if obj["type"] == CHECKPOINT and public_keys is not None:
            public = public_keys.get(str(obj.get("keyId")))
            if public is None or not verify_signature(public, obj):
                raise AnchorError(
                    f"{where}: seq {seq}: checkpoint signature does not verify with the "
                    "--public-key given: not a record to anchor to"
                )
        chain = chain_of(obj)
        of_chain = anchors.setdefault(chain, {})
        if seq in of_chain and of_chain[seq] != digest:
            raise AnchorError(
                f"{where}: seq {seq}: a different record than at {seen[chain, seq]} "
                "(two chains in one anchors file? give one server's log)"
            )
        of_chain[seq], seen[chain, seq] = digest, where
    return anchors
