"""The policies in force in one worker, the engine built from them, and hot reload.

Every worker polls its policy paths (``--reload-interval``, default 2 s). A
poll reads every policy file (following symlinks, so a ConfigMap volume's
``..data`` swap is seen) and compares a fingerprint of the file names and
contents with the last one. On a change the new set is linted and loaded like
``nfsguard policy lint`` would: if it is clean of errors, the ``Engine``
reference is swapped (one assignment: a review in flight keeps the engine it
started with, the next one gets the new engine); if not, every problem is
logged on its own line, the last good engine stays, and
``nfsguard_policy_reload_total{result="rejected"}`` counts it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from webhook.api.profile import DriverProfile
from webhook.config.documents import PolicyError
from webhook.config.lint import lint, version_unchanged_warnings
from webhook.config.load import LoadResult, load
from webhook.config.schema import Schemas
from webhook.engine.engine import Engine
from webhook.files.sources import SourceError, read_policy_sources
from webhook.server import metrics

log = logging.getLogger("nfsguard.policy")

#: Problems kept in the /readyz reload status (all of them are logged).
_MAX_REPORTED = 20


def fingerprint(sources: Sequence[tuple[str, str]]) -> str:
    """A digest of the file list and every file's content, in load order."""
    digest = hashlib.sha256()
    for name, text in sources:
        for part in (name, text):
            data = part.encode()
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
    return "sha256:" + digest.hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ReloadStatus:
    result: str  # "initial" | "accepted" | "rejected"
    time: str  # when that result happened (UTC, ISO 8601)
    fingerprint: str
    generation: int  # bumped on every accepted swap
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "time": self.time,
            "fingerprint": self.fingerprint,
            "generation": self.generation,
            "problems": list(self.problems),
        }


def _engine(loaded: LoadResult) -> Engine:
    return Engine(loaded.policies, loaded.profiles)


class PolicyStore:
    """Holds the current ``Engine``; swapping is one reference assignment, so a
    review always sees one complete policy set."""

    def __init__(
        self,
        paths: Sequence[str],
        *,
        builtin_profiles: Sequence[DriverProfile],
        schemas: Schemas,
        fallback: Sequence[tuple[str, str]] = (),
        counted: bool = True,
    ) -> None:
        """Load the policies at ``paths`` (with ``builtin_profiles`` and ``schemas``,
        read once by the caller). When they do not load and ``fallback`` (file name,
        text) pairs are given (the files as the master read them at start), start
        with those instead, report the problems as a rejected reload and keep
        polling; without a fallback, raise (PolicyError, SourceError)."""
        self.paths = tuple(paths)
        #: False for the registration loop's own store in the gunicorn master: the reload
        #: counters are the workers' (one per serving process), never counted twice.
        self._counted = counted
        self._builtin_profiles = tuple(builtin_profiles)
        self._schemas = schemas
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        fp = ""
        try:
            sources = read_policy_sources(self.paths)
            fp = fingerprint(sources)
            self._engine = _engine(self._load(sources).checked())
            self._loaded()
            self._fingerprint = fp
            self._status = ReloadStatus("initial", _now(), fp, 0)
        except (PolicyError, SourceError) as exc:
            if not fallback:
                raise
            self._start_from_fallback(exc, fp or f"error:{exc}", fallback)
        self._checked = self._status.time

    def _start_from_fallback(
        self, exc: PolicyError | SourceError, fp: str, fallback: Sequence[tuple[str, str]]
    ) -> None:
        problems = [str(p) for p in exc.problems] if isinstance(exc, PolicyError) else [str(exc)]
        self._engine = _engine(self._load(fallback).checked())
        self._loaded()
        # The broken files' fingerprint: polls stay quiet until they change.
        self._fingerprint = fp
        self._status = ReloadStatus(
            "rejected", _now(), self._fingerprint, 0, tuple(problems[:_MAX_REPORTED])
        )
        self._count("rejected")
        for problem in problems:
            log.error("policy load rejected: %s", problem)
        log.error(
            "policy files do not load; this worker serves the policy read at start: %s",
            ", ".join(f"{p.name} {p.version}" for p in self._engine.policies),
        )

    def _count(self, result: str) -> None:
        if self._counted:
            metrics.POLICY_RELOADS.labels(result).inc()

    def _loaded(self) -> None:
        """What a worker serves, for nfsguard_policy_info and the rules' decision series
        (a store that does not count, the registration loop's, does not serve)."""
        if self._counted:
            metrics.policies_loaded(self._engine.policies)

    def _load(self, sources: Sequence[tuple[str, str]]) -> LoadResult:
        return load(sources, builtin_profiles=self._builtin_profiles, schemas=self._schemas)

    def engine(self) -> Engine:
        return self._engine

    def status(self) -> list[dict[str, Any]]:
        return [
            {"name": p.name, "version": p.version, "digest": p.digest, "rules": len(p.rules)}
            for p in self._engine.policies
        ]

    def reload_status(self) -> dict[str, Any]:
        with self._lock:
            return {**self._status.to_dict(), "checked": self._checked, "worker": os.getpid()}

    def check(self) -> str:
        """Poll once: ``unchanged``, ``accepted`` (engine swapped) or ``rejected``."""
        with self._lock:  # one poll at a time (the thread, or a caller)
            self._checked = _now()
            try:
                sources = read_policy_sources(self.paths)
            except SourceError as exc:
                return self._reject(f"error:{exc}", [str(exc)])
            fp = fingerprint(sources)
            if fp == self._fingerprint:
                return "unchanged"
            # As start-up loads, and linted as ``policy lint`` would: its warnings are logged.
            result = lint(self._load(sources))
            if result.errors:
                return self._reject(fp, [str(p) for p in result.errors])
            engine = _engine(result)
            previous = {p.name: (p.version, p.digest) for p in self._engine.policies}
            self._engine = engine  # the swap: one reference assignment
            self._fingerprint = fp
            self._status = ReloadStatus("accepted", _now(), fp, self._status.generation + 1)
        self._count("accepted")
        self._loaded()
        for warning in (*result.warnings, *version_unchanged_warnings(engine.policies, previous)):
            log.warning("policy reload: %s", warning)
        log.info(
            "policy reload accepted: %s",
            ", ".join(f"{p.name} {p.version} ({p.digest[:19]})" for p in engine.policies),
        )
        return "accepted"

    def _reject(self, fp: str, problems: list[str]) -> str:
        # Called with the lock held. The fingerprint is remembered so one bad change is
        # reported once, not on every poll; the last good engine stays in force.
        if fp == self._fingerprint:
            return "unchanged"
        self._fingerprint = fp
        self._status = ReloadStatus(
            "rejected",
            _now(),
            fp,
            self._status.generation,
            tuple(problems[:_MAX_REPORTED]),
        )
        self._count("rejected")
        for problem in problems:
            log.error("policy reload rejected: %s", problem)
        log.error(
            "policy reload rejected (%d problems); still serving %s",
            len(problems),
            ", ".join(f"{p.name} {p.version}" for p in self._engine.policies),
        )
        return "rejected"

    def start(self, interval: float) -> None:
        """Poll every ``interval`` seconds in a daemon thread (one per worker)."""
        if interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, args=(interval,), name="nfsguard-policy-reload", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.check()
            except Exception:  # never let the poller die: the next poll tries again
                log.exception("policy reload failed")
