"""NFS mount option semantics: which options select a version, what a node will
really mount with, and how to pin a version without ever adding a second one.

Sources (see docs/nfs-semantics.md for the full table):
- nfs(5) and fs/nfs/fs_context.c: ``vers=`` and ``nfsvers=`` are one option;
  flags ``v2``..``v4.2`` select a version too; ``minorversion=`` sets the v4 minor.
- nfs-utils mount.nfs: with no version it starts at 4.2 and steps down only on
  EPROTONOSUPPORT/EINVAL/EACCES (never on a hang); a bare ``vers=4`` also starts
  at 4.2; ``minorversion=N`` only counts after a bare ``4``; since 2.5.3 more than
  one version option is refused ("multiple version options not permitted").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

#: Versions a mount option may name (fs/nfs/fs_context.c nfs_vers_tokens).
KNOWN_VERSIONS = frozenset({"2", "3", "4", "4.0", "4.1", "4.2"})
#: Versions a policy may pin.
PINNABLE_VERSIONS = ("3", "4.0", "4.1")
#: What mount.nfs tries first when nothing (or a bare 4) is asked for.
NEGOTIATED_START = "4.2"


class VersionKind(StrEnum):
    EXPLICIT = "explicit"  # one version option names the version
    NEGOTIATED = "negotiated"  # none, a bare 4, or minorversion alone: starts at 4.2
    CONFLICTING = "conflicting"  # several different version options: refused by mount.nfs
    NOT_V4 = "not-v4"  # v2 or v3: untouched by NFSv4.1/4.2 bugs
    INVALID = "invalid"  # a version value the kernel does not know


@dataclass(frozen=True)
class EffectiveVersion:
    """The version a node would mount with, and how that was decided.

    ``version`` is what mount.nfs tries first (``"4.2"`` for a negotiated mount),
    ``kind`` how it was chosen, ``options`` the version-selecting options found. A
    ``Decision`` carries one before and one after its patch; ``to_dict`` is their
    form in audit records and ``policy explain -o json``.
    """

    kind: VersionKind
    version: str | None  # "4.0", "4.1", "4.2", "3", "2"; None when conflicting/invalid
    options: tuple[str, ...] = ()  # the version-selecting options found, in order

    @property
    def affected(self) -> bool:
        """Whether NFSv4.1/4.2 bugs can reach this mount (anything but 4.0, 3 or 2)."""
        if self.kind is VersionKind.NOT_V4:
            return False
        return not (self.kind is VersionKind.EXPLICIT and self.version == "4.0")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "kind": self.kind.value,
            "affected": self.affected,
            "options": list(self.options),
        }

    def describe(self) -> str:
        if self.kind is VersionKind.NEGOTIATED:
            return f"negotiated (starts at {self.version})"
        if self.kind is VersionKind.CONFLICTING:
            return "conflicting (" + ",".join(self.options) + ")"
        if self.kind is VersionKind.INVALID:
            return "invalid (" + ",".join(self.options) + ")"
        return f"{self.version} ({self.kind.value})"


def split_options(entries: Iterable[str]) -> list[str]:
    """Every option of a mountOptions-style list; one entry may hold several, comma-joined."""
    out: list[str] = []
    for entry in entries:
        out.extend(opt for opt in entry.split(",") if opt.strip())
    return out


@lru_cache(maxsize=4096)  # pure, and called for every option of every review
def _parse(option: str) -> tuple[str, str | None]:
    name, sep, value = option.strip().partition("=")
    return name.strip().lower(), (value.strip() if sep else None)


@lru_cache(maxsize=4096)  # pure, and called for every option of every review
def selected_version(option: str) -> str | None:
    """The version an option selects (``vers=4.1`` -> ``"4.1"``, ``v3`` -> ``"3"``), else None.

    ``minorversion=`` is not a version option here (mount.nfs does not count it).
    """
    name, value = _parse(option)
    if name in ("vers", "nfsvers"):
        # Spelling kept as written: an unknown value ("4.00") is reported as invalid.
        return value or ""
    if value is None and len(name) > 1 and name[0] == "v" and name[1].isdigit():
        # v2, v3, v4, v4.0, v4.1, v4.2 (older kernels accept any "v%s")
        return name[1:]
    return None


@lru_cache(maxsize=4096)  # pure, and called for every option of every review
def minor_version(option: str) -> str | None:
    name, value = _parse(option)
    if name == "minorversion":
        return value or ""
    return None


@lru_cache(maxsize=4096)  # pure, and called for every option of every review
def is_version_option(option: str) -> bool:
    """Whether ``option`` selects a version in any way (including ``minorversion=``)."""
    return selected_version(option) is not None or minor_version(option) is not None


def _exactly_spelled(option: str) -> bool:
    """Whether a version option is spelled as mount.nfs and the kernel read it: lower
    case, no blanks. They match names exactly, so ``NFSVERS=4.0`` or ``hard, nfsvers=4.0``
    select nothing on a node (mount.nfs negotiates from 4.2, the kernel then refuses the
    unknown name); such an option is recognised only so that a pin removes it."""
    name, value = _parse(option)
    return option == (name if value is None else f"{name}={value}")


def effective_version(options: Sequence[str]) -> EffectiveVersion:
    """What mount.nfs would try first for this option list (already split on commas)."""
    return _effective_version(tuple(options))


# Pure, and asked twice per review (before and after a pin); a fleet has few distinct
# option lists, so the answer for one is usually already known.
@lru_cache(maxsize=4096)
def _effective_version(options: tuple[str, ...]) -> EffectiveVersion:
    found = tuple(o for o in options if is_version_option(o))
    if not all(_exactly_spelled(o) for o in found):
        # A stray spelling cannot be shown safe: invalid (affected), and a pin rewrites it.
        return EffectiveVersion(VersionKind.INVALID, None, found)
    versions = [v for o in options if (v := selected_version(o)) is not None]
    minors = [m for o in options if (m := minor_version(o)) is not None]
    if len(set(versions)) > 1:
        return EffectiveVersion(VersionKind.CONFLICTING, None, found)
    if not versions:
        # No version (minorversion alone included): negotiation from 4.2 (nfs(5)).
        return EffectiveVersion(VersionKind.NEGOTIATED, NEGOTIATED_START, found)
    version = versions[0]
    if version not in KNOWN_VERSIONS:
        return EffectiveVersion(VersionKind.INVALID, None, found)
    if version in ("2", "3"):
        return EffectiveVersion(VersionKind.NOT_V4, version, found)
    if version == "4":
        if minors:
            # mount.nfs turns "vers=4,minorversion=N" into vers=4.N (last minorversion wins).
            minor = minors[-1]
            if minor in ("0", "1", "2"):
                return EffectiveVersion(VersionKind.EXPLICIT, f"4.{minor}", found)
            return EffectiveVersion(VersionKind.INVALID, None, found)
        return EffectiveVersion(VersionKind.NEGOTIATED, NEGOTIATED_START, found)
    # An explicit minor wins over minorversion= (vers=4.2,minorversion=0 mounts 4.2).
    return EffectiveVersion(VersionKind.EXPLICIT, version, found)


def pin_option(pin: str) -> str:
    return f"nfsvers={pin}"


def strip_entry(entry: str) -> str | None:
    """``entry`` without its version-selecting options; None when nothing is left."""
    kept = [opt for opt in entry.split(",") if not is_version_option(opt)]
    if not any(opt.strip() for opt in kept):
        return None
    return ",".join(kept)


def strip_entries(entries: Sequence[str]) -> list[str]:
    """Every entry without version-selecting options; emptied entries disappear."""
    return [kept for e in entries if (kept := strip_entry(e)) is not None]


def pin_entries(entries: Sequence[str], pin: str) -> list[str]:
    """Exactly one ``nfsvers=<pin>``: it takes the place of the first version option
    (so a reader sees the edit where the old version was), or is appended as its own
    entry; every other option keeps its place and order."""
    out: list[str] = []
    placed = False
    for entry in entries:
        kept: list[str] = []
        for opt in entry.split(","):
            if is_version_option(opt):
                if not placed and selected_version(opt) is not None:
                    kept.append(pin_option(pin))
                    placed = True
                continue
            kept.append(opt)
        if any(opt.strip() for opt in kept):
            out.append(",".join(kept))
    if not placed:
        out.append(pin_option(pin))
    return out


def pin_string(options: str, pin: str) -> str:
    """Like ``pin_entries`` for a single comma-joined string (the legacy annotation)."""
    return ",".join(pin_entries([options], pin) if options.strip() else [pin_option(pin)])
