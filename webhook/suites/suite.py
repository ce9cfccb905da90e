"""What a policy test suite (``kind: NFSPolicyTest``) is made of: cases, what each
expects, and what running one found.

A suite names policy files, an optional node inventory and cases; each case is one
PersistentVolume or StorageClass and what nfsguard must do with it. The format is
documented in docs/policy-authoring.md and published as
policies/schema/nfspolicytest.schema.json; ``load`` reads it, ``run`` runs it,
``report`` words the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.api.decision import Outcome
from webhook.nfs.inventory import NodeInventory

SUITE_KIND = "NFSPolicyTest"
#: ``unchanged`` in a suite: nfsguard took no action on the object.
UNCHANGED = frozenset({Outcome.COMPLIANT, Outcome.UNMATCHED, Outcome.IGNORED})


class SuiteError(Exception):
    """Suite files that cannot be run: ``lines`` are ``FILE:LINE: message``."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = tuple(lines)
        super().__init__("\n".join(self.lines))


@dataclass(frozen=True)
class Expect:
    outcome: str
    golden: Mapping[str, Any] | None = None
    golden_source: str = ""
    mount_options: tuple[str, ...] | None = None
    node_options: tuple[str, ...] | None = None
    message: str | None = None
    warning: str | None = None
    warnings: tuple[str, ...] | None = None  # every warning, whole, in order
    would_be: str | None = None
    existing: bool | None = None
    rule: str | None = None
    policy: str | None = None


@dataclass(frozen=True)
class Case:
    suite: str
    name: str
    where: str  # FILE:LINE of the case
    obj: Mapping[str, Any]
    operation: str
    inventory: NodeInventory
    policies: tuple[str, ...]
    expect: Expect
    old: Mapping[str, Any] | None = None  # the oldObject of an UPDATE

    @property
    def id(self) -> str:
        return f"{self.suite}::{self.name}"


@dataclass
class CaseResult:
    case: Case
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures
