"""The driver profiles in force, in the order they are tried, and which of them can
read an object: operator profiles first (load order), then the built-ins (file
order). webhook/engine/reading.py tries the candidates in that order; the first
whose ``match`` holds reads the object.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from webhook.api.kube import ObjectKind
from webhook.api.profile import DriverProfile, ObjectMatch

#: A profile and its ``match`` for one kind, so a read does no ``rules_for`` per object.
Candidate = tuple[DriverProfile, ObjectMatch]

_KINDS: tuple[ObjectKind, ...] = ("PersistentVolume", "StorageClass")


class DriverProfiles:
    """Profiles in the order they are tried: operator profiles, then the built-ins."""

    def __init__(self, profiles: Iterable[DriverProfile]) -> None:
        self.profiles = tuple(profiles)
        # Candidates per object shape, so an object costs only the profiles that
        # could read it: (kind, exact driver name) and the glob/in-tree rest, in order.
        exact: dict[tuple[ObjectKind, str], list[int]] = {}
        rest: dict[ObjectKind, list[int]] = {kind: [] for kind in _KINDS}
        for i, profile in enumerate(self.profiles):
            for kind in _KINDS:
                rules = profile.rules_for(kind)
                if rules is None:
                    continue
                m = rules.match
                names = m.csi_drivers if kind == "PersistentVolume" else m.provisioners
                if m.in_tree or any(n.glob is not None for n in names):
                    rest[kind].append(i)
                for n in names:
                    if n.glob is None:
                        exact.setdefault((kind, n.text), []).append(i)

        def candidates(indexes: Iterable[int], kind: ObjectKind) -> tuple[Candidate, ...]:
            out: list[Candidate] = []
            for i in sorted(set(indexes)):
                rules = self.profiles[i].rules_for(kind)
                assert rules is not None
                out.append((self.profiles[i], rules.match))
            return tuple(out)

        self._rest = {kind: candidates(rest[kind], kind) for kind in _KINDS}
        self._exact = {
            (kind, name): candidates([*found, *rest[kind]], kind)
            for (kind, name), found in exact.items()
        }
        # A PV with spec.nfs can be read only by an inTree profile.
        self._in_tree = tuple(c for c in self._rest["PersistentVolume"] if c[1].in_tree)

    def __iter__(self) -> Iterator[DriverProfile]:
        return iter(self.profiles)

    def __len__(self) -> int:
        return len(self.profiles)

    def candidates(
        self, kind: ObjectKind, driver: str | None, *, in_tree: bool
    ) -> tuple[Candidate, ...]:
        """The profiles that could read an object of ``kind`` whose driver is named
        ``driver`` (a CSI driver or provisioner; an in-tree PV: only inTree profiles),
        in the order they are tried."""
        if in_tree:
            return self._in_tree
        rest = self._rest[kind]
        return self._exact.get((kind, driver), rest) if driver is not None else rest

    def claims(self, kind: ObjectKind, driver: str) -> bool:
        """Whether a profile names ``driver`` exactly (not by a glob): then an object of
        that driver no profile matches is not an NFS volume (e.g. Azure SMB)."""
        return (kind, driver) in self._exact
