"""Candidate rules: every loaded rule compiled once, and filed by what an object can have.

Each rule is filed under the most selective key of its ``match`` (export IP,
CIDR by prefix length, hostname, server glob, then provisioner, then
StorageClass name) or under ``always``; a review looks up only the keys its
object has, so rules about other exports cost nothing: a 10,000-rule policy
hands the matcher as few candidates as a 10-rule one (bench/engine_scaling.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from webhook.api.decision import RuleRef
from webhook.api.policy import Policy, Rule
from webhook.api.target import NFSTarget
from webhook.nfs.patterns import IPAddress, NamePattern, host_key


@dataclass(frozen=True)
class CompiledRule:
    order: int  # load order: policy file name order, then rule order
    policy: Policy
    rule: Rule
    ref: RuleRef
    #: (action precedence, load order): the lowest decides.
    rank: tuple[int, int]
    #: How messages name the rule: 'rule "r" (policy p version v)'.
    who: str

    @classmethod
    def of(cls, order: int, policy: Policy, rule: Rule) -> CompiledRule:
        who = f'rule "{rule.name}" (policy {policy.name} version {policy.version})'
        return cls(order, policy, rule, policy.ref(rule), (rule.action.precedence, order), who)


def compile_rules(policies: Iterable[Policy]) -> tuple[CompiledRule, ...]:
    """Every rule of ``policies``, numbered in load order."""
    compiled: list[CompiledRule] = []
    for policy in policies:
        for rule in policy.rules:
            compiled.append(CompiledRule.of(len(compiled), policy, rule))
    return tuple(compiled)


class NamedProvisioners:
    """Provisioners and CSI drivers named by rules: they bring objects of a driver no
    profile knows into scope (webhook/engine/reading.py)."""

    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        patterns = tuple(p for c in rules for p in (c.rule.match.provisioners or ()))
        self._exact = frozenset(p.text for p in patterns if p.glob is None)
        self._globs: tuple[NamePattern, ...] = tuple(p for p in patterns if p.glob is not None)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self._exact or any(p.matches(name) for p in self._globs)


class RuleIndex:
    """Candidate rules per object attribute (see the module docstring)."""

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.by_ip: dict[IPAddress, list[CompiledRule]] = defaultdict(list)
        self.by_host: dict[str, list[CompiledRule]] = defaultdict(list)
        self.by_net: dict[tuple[int, int], dict[int, list[CompiledRule]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.server_globs: list[CompiledRule] = []
        self.by_provisioner: dict[str, list[CompiledRule]] = defaultdict(list)
        self.provisioner_globs: list[CompiledRule] = []
        self.by_storage_class: dict[str, list[CompiledRule]] = defaultdict(list)
        self.always: list[CompiledRule] = []
        for compiled in rules:
            self._file(compiled)

    def _file(self, compiled: CompiledRule) -> None:
        match = compiled.rule.match
        if match.exports:
            for export in match.exports:
                server = export.server
                if server.address is not None:
                    self.by_ip[server.address].append(compiled)
                elif server.canonical_network is not None:
                    net = server.canonical_network
                    key = (net.version, net.prefixlen)
                    self.by_net[key][int(net.network_address)].append(compiled)
                elif server.glob is not None:
                    self.server_globs.append(compiled)
                elif server.host is not None:
                    self.by_host[server.host].append(compiled)
        elif match.provisioners:
            for pattern in match.provisioners:
                if pattern.glob is None:
                    self.by_provisioner[pattern.text].append(compiled)
                else:
                    self.provisioner_globs.append(compiled)
        elif match.storage_class_names:
            for name in match.storage_class_names:
                self.by_storage_class[name].append(compiled)
        else:
            self.always.append(compiled)

    def candidates(self, target: NFSTarget, server_ip: IPAddress | None) -> list[CompiledRule]:
        """The rules ``target`` could match, in load order, each once."""
        found: dict[int, CompiledRule] = {c.order: c for c in self.always}
        if target.server:
            if server_ip is not None:
                for c in self.by_ip.get(server_ip, ()):
                    found[c.order] = c
                # ipaddress properties are Python code: read them once, not per table.
                ip, ip_version, ip_bits = int(server_ip), server_ip.version, server_ip.max_prefixlen
                for (version, prefixlen), table in self.by_net.items():
                    if version != ip_version:
                        continue
                    bits = ip_bits - prefixlen
                    for c in table.get((ip >> bits) << bits, ()):
                        found[c.order] = c
            for c in self.by_host.get(host_key(target.server), ()):
                found[c.order] = c
            for c in self.server_globs:
                found[c.order] = c
        if target.provisioner:
            for c in self.by_provisioner.get(target.provisioner, ()):
                found[c.order] = c
        for c in self.provisioner_globs:
            found[c.order] = c
        if target.storage_class:
            for c in self.by_storage_class.get(target.storage_class, ()):
                found[c.order] = c
        return [found[k] for k in sorted(found)]
