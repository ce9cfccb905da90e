"""Warnings people can read: the advice first, then the object, whole, under 120 characters.

kubectl prints each admission warning as ``Warning: <text>``; the apiserver keeps a
warning whole up to 256 characters, but kubectl's guidance (and a terminal line) is
120 (apiserver endpoints/filters/warning.go; docs/policy-authoring.md, "Warnings").
A warning here is built to fit, never cut:

    <advice>: <Kind>/<name> (nfsguard rule <rule>)

e.g. ``add nfsvers=4.0 to the manifest (pinned, was 4.2): PersistentVolume/pv-a
(nfsguard rule incident)``.

- ``advice`` is what to do, in fixed words with bounded values (a pin option, a
  version): at most ``MAX_ADVICE`` characters, checked when it is built, so no
  object or policy field can push it off the line;
- the object is always named by kind and name; a name too long for what is left
  (object names may be 253 characters) keeps its first and last characters around
  ``...``: enough to tell ``pvc-<uid>`` names apart, and the full name is in the
  request, the decision message, the audit record and ``explain``;
- then ``(nfsguard rule <rule>)`` when it fits, else ``(nfsguard)``, else (a name that
  fits whole only without it) nothing: the rule, policy, version and export are always
  in the decision message, the audit record and ``explain``.

Control characters (dropped silently by the apiserver with the whole warning) are
replaced by spaces.
"""

from __future__ import annotations

from webhook.nfs.options import EffectiveVersion, VersionKind

#: kubectl shows a warning whole under 120 characters.
MAX_WARNING = 119
#: The longest advice any warning may carry: with it, a ``PersistentVolume/`` name of up
#: to 40 characters (``pvc-<uid>``, what provisioners name PVs) always fits whole.
MAX_ADVICE = 60
#: Characters of a shortened name kept on each side of "...".
_KEEP_MIN = 6


def printable(text: str) -> str:
    """``text`` with every control character replaced by a space."""
    return text if text.isprintable() else "".join(c if c.isprintable() else " " for c in text)


def short_version(ev: EffectiveVersion) -> str:
    """The version in a few bounded words (``4.2``, ``negotiated 4.2``)."""
    if ev.kind is VersionKind.NEGOTIATED:
        return f"negotiated {ev.version}"
    if ev.kind is VersionKind.CONFLICTING:
        return "conflicting"
    if ev.kind is VersionKind.INVALID:
        return "invalid"
    return f"{ev.version}"


def nfs_words(ev: EffectiveVersion) -> str:
    """The version as a noun (``NFS 4.1``, ``negotiated NFS 4.2``)."""
    if ev.kind is VersionKind.NEGOTIATED:
        return f"negotiated NFS {ev.version}"
    if ev.kind is VersionKind.CONFLICTING:
        return "a conflicting NFS version"
    if ev.kind is VersionKind.INVALID:
        return "an invalid NFS version"
    return f"NFS {ev.version}"


def shorten_name(name: str, room: int) -> str:
    """``name`` whole when it fits in ``room`` characters, else its head and tail
    around ``...`` (never fewer than ``_KEEP_MIN`` characters each side)."""
    if len(name) <= room:
        return name
    keep = max(room - 3, 2 * _KEEP_MIN)
    head = (keep + 1) // 2
    return f"{name[:head]}...{name[len(name) - (keep - head) :]}"


def warning(advice: str, kind: str, name: str, rule: str) -> str:
    """One warning: ``advice`` first, the object named, the rule when it fits whole.

    Raises ValueError when ``advice`` is longer than ``MAX_ADVICE``: a wording bug the
    tests catch (tests/unit/engine/test_warnings.py builds every warning)."""
    advice = printable(advice)
    if len(advice) > MAX_ADVICE:
        raise ValueError(f"advice over {MAX_ADVICE} characters: {advice!r}")
    name = printable(name) or "?"
    head = f"{advice}: {kind}/"
    tail = " (nfsguard)"
    for text in (f"{head}{name} (nfsguard rule {printable(rule)})", f"{head}{name}{tail}"):
        if len(text) <= MAX_WARNING:
            return text
    if len(head) + len(name) <= MAX_WARNING:
        return f"{head}{name}"
    return f"{head}{shorten_name(name, MAX_WARNING - len(head) - len(tail))}{tail}"
