"""The policy model: frozen dataclasses, built only by the loader.

``Enforcement`` lives with the decision types (a decision carries it) and is
re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from webhook.api.decision import Action, Enforcement, RuleRef
from webhook.nfs.kernels import KernelRange
from webhook.nfs.patterns import ExportPattern, LabelSelector, NamePattern

__all__ = [
    "Action",
    "Enforcement",
    "Match",
    "OnExplicit",
    "OnInline",
    "OnUnsupportedPin",
    "Policy",
    "Position",
    "Rule",
    "RuleRef",
    "UnknownNodes",
]


class UnknownNodes(StrEnum):
    ASSUME_AFFECTED = "assumeAffected"
    ASSUME_UNAFFECTED = "assumeUnaffected"


class OnExplicit(StrEnum):
    REWRITE = "rewrite"
    DENY = "deny"


class OnUnsupportedPin(StrEnum):
    """What a pin rule does to an object whose driver cannot take its pin (the
    server does not speak that version, or the driver sets the version itself):
    never write the pin; allow with a warning (default) or deny."""

    WARN = "warn"
    DENY = "deny"


class OnInline(StrEnum):
    """What a pin rule does to an inline ``nfs:`` volume of a Pod or workload, which has
    no place for mount options (Kubernetes volumes docs: "you can't specify NFS mount
    options in a Pod spec"), so it can never be pinned: deny (default), warn or audit."""

    DENY = "deny"
    WARN = "warn"
    AUDIT = "audit"


@dataclass(frozen=True)
class Position:
    file: str
    line: int
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Match:
    """Every key given must match (AND); items of a list are alternatives (OR).
    ``None`` means the key was not given."""

    exports: tuple[ExportPattern, ...] | None = None
    provisioners: tuple[NamePattern, ...] | None = None
    storage_class_names: tuple[str, ...] | None = None
    node_kernels: tuple[KernelRange, ...] | None = None
    object_selector: LabelSelector | None = None

    @property
    def empty(self) -> bool:
        return (
            self.exports is None
            and self.provisioners is None
            and self.storage_class_names is None
            and self.node_kernels is None
            and self.object_selector is None
        )


@dataclass(frozen=True)
class Rule:
    name: str
    action: Action
    match: Match
    exclude: Match | None = None
    on_explicit: OnExplicit = OnExplicit.REWRITE
    on_unsupported_pin: OnUnsupportedPin = OnUnsupportedPin.WARN
    #: None: the policy's ``on_inline`` applies.
    on_inline: OnInline | None = None
    #: None: the policy's ``enforcement`` applies.
    enforcement: Enforcement | None = None
    description: str = ""
    references: tuple[str, ...] = ()
    position: Position | None = None
    #: Lint warnings acknowledged on this rule (``lint: {ignore: [unsafe-pin]}``).
    lint_ignore: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    digest: str  # "sha256:<hex>" of the document's canonical JSON
    pin: str = "4.0"
    unknown_nodes: UnknownNodes = UnknownNodes.ASSUME_AFFECTED
    enforcement: Enforcement = Enforcement.ENFORCE
    rules: tuple[Rule, ...] = ()
    on_inline: OnInline = OnInline.DENY
    source: str = ""
    position: Position | None = None

    def enforcement_of(self, rule: Rule) -> Enforcement:
        """The rule's own ``enforcement``, else the policy's."""
        return rule.enforcement or self.enforcement

    def on_inline_of(self, rule: Rule) -> OnInline:
        """The rule's own ``onInline``, else the policy's."""
        return rule.on_inline or self.on_inline

    def ref(self, rule: Rule) -> RuleRef:
        return RuleRef(self.name, self.version, self.digest, rule.name, rule.action)
