"""The policies in force in one worker, the engine built from them, and hot reload.

Every worker polls its policy paths (``--reload-interval``, default 2 s). A
poll reads every policy file (following symlinks, so a ConfigMap volume's
``..data`` swap is seen) and compares a fingerprint of the file names and
contents with the last one. On a change the new set is linted and loaded like
``nfsguard policy lint`` would: if it is clean of errors, the ``Engine``
reference is swapped (one assignment: a review in flight keeps the engine it
started with, the next one gets the new engine); if not, every problem is
logged on its own line, the last good engine stays, and
``nfsguard_policy_reload_total{result="rejected"}`` counts it. A failure to read
or load the files at all (an unreadable directory, a file the loader cannot finish)
is rejected the same way; each distinct failure is logged and counted once.

The workers of one server share the last accepted set (webhook/server/policy_state.py):
the worker that accepts a set publishes it with the next generation number, a
worker that starts while the files are broken starts from it, and one that finds a
newer generation than its own serves it. ``/readyz`` shows the generation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from webhook.api.profile import DriverProfile
from webhook.config.documents import PolicyError
from webhook.config.lint import lint, version_unchanged_warnings
from webhook.config.load import LoadResult, load
from webhook.config.schema import Schemas
from webhook.engine.engine import Engine
from webhook.files.sources import SourceError, read_policy_sources
from webhook.server import metrics
from webhook.server.policy_state import AcceptedPolicies

log = logging.getLogger("nfsguard.policy")

#: Problems kept in the /readyz reload status (all of them are logged).
_MAX_REPORTED = 20
#: Rejected contents remembered (so not logged again) between two accepted sets.
_MAX_REMEMBERED = 64


def _problems(exc: BaseException) -> list[str]:
    """What a failed read or load says, one line per problem."""
    if isinstance(exc, PolicyError):
        return [str(p) for p in exc.problems]
    if isinstance(exc, SourceError | OSError):
        return [" ".join(str(exc).split())]
    # A file the loader could not finish (RecursionError, MemoryError, ...): the file's
    # fault, said in one line; the traceback would be the same on every poll.
    text = " ".join(str(exc).split())[:200]
    return [f"policy files could not be loaded: {type(exc).__name__}{': ' + text if text else ''}"]


def _error_fingerprint(exc: BaseException) -> str:
    """The fingerprint of a failure to read the files: the same failure, the same one."""
    return "error:" + hashlib.sha256("\n".join(_problems(exc)).encode()).hexdigest()


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
        shared: AcceptedPolicies | None = None,
    ) -> None:
        """Load the policies at ``paths`` (with ``builtin_profiles`` and ``schemas``,
        read once by the caller). When they do not load, start with the last set the
        server accepted (``shared``, webhook/server/policy_state.py) or else with
        ``fallback`` (file name, text) pairs, report the problems as a rejected reload
        and keep polling; with neither, raise (PolicyError, SourceError, or what the
        files made the loader raise)."""
        self.paths = tuple(paths)
        #: False for the registration loop's own store in the gunicorn master: the reload
        #: counters are the workers' (one per serving process), never counted twice.
        self._counted = counted
        self._builtin_profiles = tuple(builtin_profiles)
        self._schemas = schemas
        self._shared = shared
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Contents rejected since the last accepted set, and their problems: each is
        #: logged and counted once, however often the poll sees it again.
        self._rejected: dict[str, tuple[str, ...]] = {}
        fp = ""
        try:
            sources = read_policy_sources(self.paths)
            fp = fingerprint(sources)
            self._engine = _engine(self._load(sources).checked())
        except Exception as exc:  # PolicyError, SourceError, or what a bad file raised
            start = self._last_accepted(fallback)
            if start is None:
                raise
            self._start_from(exc, fp or _error_fingerprint(exc), *start)
        else:
            generation = self._shared.publish(fp, sources) if self._shared else 0
            self._loaded()
            self._fingerprint = self._served = fp
            self._status = ReloadStatus("initial", _now(), fp, generation)
        self._checked = self._status.time

    def _last_accepted(
        self, fallback: Sequence[tuple[str, str]]
    ) -> tuple[int, str, Sequence[tuple[str, str]]] | None:
        """(generation, fingerprint, sources) to start from when the files do not load."""
        accepted = self._shared.read() if self._shared else None
        if accepted is not None:
            return accepted.generation, accepted.fingerprint, accepted.sources
        if fallback:
            return 0, fingerprint(fallback), fallback
        return None

    def _start_from(
        self,
        exc: BaseException,
        fp: str,
        generation: int,
        served: str,
        sources: Sequence[tuple[str, str]],
    ) -> None:
        problems = _problems(exc)
        self._engine = _engine(self._load(sources).checked())
        self._served = served
        self._loaded()
        # The broken files' fingerprint: polls stay quiet until they change.
        self._fingerprint = fp
        self._rejected[fp] = tuple(problems[:_MAX_REPORTED])
        self._status = ReloadStatus(
            "rejected", _now(), self._fingerprint, generation, tuple(problems[:_MAX_REPORTED])
        )
        self._count("rejected")
        for problem in problems:
            log.error("policy load rejected: %s", problem)
        log.error(
            "policy files do not load; this worker serves the last accepted set "
            "(generation %d): %s",
            generation,
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
        # No lock: a poll may be parsing a large file; /readyz must answer meanwhile.
        status, checked = self._status, self._checked
        return {**status.to_dict(), "checked": checked, "worker": os.getpid()}

    def check(self) -> str:
        """Poll once: ``unchanged``, ``accepted`` (engine swapped) or ``rejected``.

        Any failure to read or load the files (a missing file, an unreadable
        directory, bad encoding, a file the loader cannot finish: RecursionError,
        MemoryError) is a rejected reload: the last good set stays, and the failure is
        logged and counted once, its fingerprint remembered so the same content is not
        parsed again on the next poll."""
        with self._lock:  # one poll at a time (the thread, or a caller)
            self._checked = _now()
            try:
                sources = read_policy_sources(self.paths)
            except Exception as exc:  # SourceError, OSError, ...: the files, not a bug
                rejected = self._reject(_error_fingerprint(exc), _problems(exc))
                return self._follow() or rejected
            fp = fingerprint(sources)
            if fp == self._fingerprint:
                return self._follow() or "unchanged"
            try:
                # As start-up loads, and linted as ``policy lint`` would: warnings logged.
                result = lint(self._load(sources))
            except Exception as exc:  # the content made the loader fail: remembered
                rejected = self._reject(fp, _problems(exc))
                return self._follow() or rejected
            if result.errors:
                rejected = self._reject(fp, [str(p) for p in result.errors])
                return self._follow() or rejected
            engine = _engine(result)
            previous = {p.name: (p.version, p.digest) for p in self._engine.policies}
            generation = (
                self._shared.publish(fp, sources) if self._shared else self._status.generation + 1
            )
            self._engine = engine  # the swap: one reference assignment
            self._fingerprint = self._served = fp
            self._rejected.clear()
            self._status = ReloadStatus("accepted", _now(), fp, generation)
        self._count("accepted")
        self._loaded()
        for warning in (*result.warnings, *version_unchanged_warnings(engine.policies, previous)):
            log.warning("policy reload: %s", warning)
        log.info(
            "policy reload accepted (generation %d): %s",
            generation,
            ", ".join(f"{p.name} {p.version} ({p.digest[:19]})" for p in engine.policies),
        )
        return "accepted"

    def _follow(self) -> str | None:
        """Called with the lock held: serve the set another worker of this server
        accepted after this one's (it saw the files good where this one saw them
        broken, or before this one polled): one generation everywhere."""
        accepted = self._shared.read() if self._shared else None
        if (
            accepted is None
            or accepted.generation <= self._status.generation
            or accepted.fingerprint == self._served
        ):
            return None
        try:
            engine = _engine(self._load(accepted.sources).checked())
        except Exception:  # published by a worker that accepted it: never expected
            log.exception("policy set generation %d does not load here", accepted.generation)
            return None
        self._engine = engine
        self._served = accepted.fingerprint
        if self._status.result == "rejected":
            self._status = replace(self._status, generation=accepted.generation)
        else:
            self._fingerprint = accepted.fingerprint
            self._status = ReloadStatus(
                "accepted", _now(), accepted.fingerprint, accepted.generation
            )
        self._loaded()
        log.info(
            "policy set generation %d (accepted by another worker) now served: %s",
            accepted.generation,
            ", ".join(f"{p.name} {p.version}" for p in engine.policies),
        )
        return "accepted"

    def _reject(self, fp: str, problems: list[str]) -> str:
        # Called with the lock held. The fingerprint is remembered so one bad change is
        # reported once, not on every poll; the last good engine stays in force.
        if fp == self._fingerprint:
            return "unchanged"
        self._fingerprint = fp
        if fp in self._rejected:  # seen since the last accepted set: said already
            self._status = replace(
                self._status, result="rejected", fingerprint=fp, problems=self._rejected[fp]
            )
            return "unchanged"
        if len(self._rejected) >= _MAX_REMEMBERED:
            self._rejected.pop(next(iter(self._rejected)))
        self._rejected[fp] = tuple(problems[:_MAX_REPORTED])
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
