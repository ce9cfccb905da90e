"""Policy files -> the policies and driver profiles in force, or every problem.

The one way nfsguard loads its configuration: ``serve`` (start-up, the fallback of
a restarted worker, hot reload), ``policy lint`` (``load`` and then
webhook.config.lint), ``review``, ``policy test``, ``policy explain`` and the
benches, so none of them can accept a file another refuses. Every file is parsed
once for both kinds it may hold (YAML with positions is most of the cost of
loading a large policy). Pure: it takes (file name, text) pairs, the built-in
profiles and the schemas (webhook.files.packaged reads both).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from webhook.api.policy import Policy, Position
from webhook.api.profile import DriverProfile
from webhook.config.documents import (
    API_VERSION,
    Document,
    PolicyError,
    Problem,
    Severity,
    UnreadableSource,
    in_file_order,
    scan_documents,
)
from webhook.config.policies import POLICY_KIND, check_policy
from webhook.config.profiles import PROFILE_KIND, in_force, load_profiles
from webhook.config.schema import Schemas


@dataclass(frozen=True)
class LoadResult:
    """What a set of policy files gives; ``policies`` and ``profiles`` are usable only
    when ``errors`` is empty (``checked``). Warnings never stop loading."""

    policies: tuple[Policy, ...]
    #: The driver profiles in force, in the order they are tried: the operator's
    #: (load order), then the built-ins they do not replace by name.
    profiles: tuple[DriverProfile, ...]
    #: Every error and warning of every file, in file order.
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.WARNING)

    def checked(self) -> LoadResult:
        """This result, or PolicyError with every error."""
        errors = self.errors
        if errors:
            raise PolicyError(errors)
        return self


def load(
    sources: Iterable[tuple[str, str]],
    *,
    builtin_profiles: Iterable[DriverProfile],
    schemas: Schemas,
) -> LoadResult:
    """Every ``NFSMountPolicy`` and ``NFSDriverProfile`` of ``sources`` (file name,
    text), in load order, with the ``builtin_profiles`` they do not replace. A text that
    is an :class:`UnreadableSource` (the file could not be read) is a problem at its
    place, like a syntax error: the set does not load without that file."""
    policies: list[Policy] = []
    problems: list[Problem] = []
    names: dict[str, Position] = {}
    profile_docs: list[Document] = []
    for source, text in sources:
        if isinstance(text, UnreadableSource):
            problems.append(text.problem(source))
            continue
        documents, syntax = scan_documents(text, source)
        problems.extend(syntax)
        for doc in documents:
            problems.extend(doc.problems)
            if not isinstance(doc.data, dict):
                problems.append(Problem(doc.start, "a policy document must be a mapping"))
                continue
            kind = doc.kind()
            if kind == PROFILE_KIND:
                profile_docs.append(doc)
                continue
            if kind != POLICY_KIND:
                problems.append(
                    Problem(
                        doc.at(("kind",)),
                        f"unknown kind {kind!r} (expected {POLICY_KIND} or {PROFILE_KIND}, "
                        f"apiVersion {API_VERSION})",
                    )
                )
                continue
            policy = check_policy(doc, schemas.policy, problems)
            meta = doc.data.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            if isinstance(name, str):
                if name in names:
                    problems.append(
                        Problem(
                            doc.at(("metadata", "name")),
                            f'duplicate policy name "{name}" (first defined at {names[name]})',
                        )
                    )
                    continue
                names[name] = doc.at(("metadata", "name"))
            if policy is not None:
                policies.append(policy)
    operator: list[DriverProfile] = []
    if profile_docs:
        operator, found = load_profiles(profile_docs, schemas.profile)
        problems.extend(found)
    return LoadResult(
        tuple(policies), in_force(operator, builtin_profiles), tuple(in_file_order(problems))
    )
