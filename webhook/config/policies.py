"""``NFSMountPolicy`` documents -> ``Policy`` objects, or every problem with its position.

Structure is checked by the published JSON Schema (nfsmountpolicy, also shipped as
policies/schema/ for editors); what a schema cannot say (valid CIDRs and globs,
non-empty kernel ranges, unique rule names) is checked here. Pure: it takes parsed
documents (webhook.config.documents) and the validator.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import jsonschema

from webhook.api.decision import Action
from webhook.api.policy import (
    Enforcement,
    Match,
    OnExplicit,
    OnInline,
    OnUnsupportedPin,
    Policy,
    Position,
    Rule,
    UnknownNodes,
)
from webhook.config.documents import Document, Path, Problem, Severity
from webhook.config.schema import Wording, schema_problems
from webhook.nfs.kernels import KernelRange
from webhook.nfs.patterns import (
    ExportPattern,
    LabelSelector,
    NamePattern,
)
from webhook.nfs.scope import SelectorRequirement

POLICY_KIND = "NFSMountPolicy"


def _context(data: Any, path: Path) -> str:
    """'rule "name": ' when ``path`` is inside a rule, so every message names it."""
    if len(path) >= 3 and path[0] == "spec" and path[1] == "rules" and isinstance(path[2], int):
        try:
            name = data["spec"]["rules"][path[2]].get("name")
        except (KeyError, IndexError, TypeError, AttributeError):
            name = None
        label = f'rule "{name}"' if isinstance(name, str) else f"rule #{path[2] + 1}"
        return label + ": "
    return ""


WORDING = Wording(
    context=_context,
    enums={
        ("spec", "pin"): "{where}: {value!r} is not a version nfsguard can pin "
        "(supported: {choices})"
    },
)


def _coerce_pin(data: Any) -> None:
    # `pin: 4.0` unquoted is YAML's float 4.0; accept what can only mean one version.
    spec = data.get("spec") if isinstance(data, dict) else None
    if isinstance(spec, dict) and isinstance(spec.get("pin"), int | float):
        value = spec["pin"]
        if not isinstance(value, bool):
            # str(4.0) is "4.0"; a bare `pin: 4` stays "4", which the schema rejects.
            spec["pin"] = str(value)


def digest_of(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _build_match(
    doc: Document, raw: Mapping[str, Any], path: Path, problems: list[Problem]
) -> Match:
    ctx = _context(doc.data, path)

    def attempt(sub: Path, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ValueError as exc:
            problems.append(Problem(doc.at(sub), f"{ctx}{exc}"))
            return None

    exports = None
    if "exports" in raw:
        built = [
            attempt((*path, "exports", i), ExportPattern.parse, e["server"], e.get("path"))
            for i, e in enumerate(raw["exports"])
        ]
        exports = tuple(e for e in built if e is not None)
    provisioners = None
    if "provisioners" in raw:
        names = [
            attempt((*path, "provisioners", i), NamePattern.parse, p)
            for i, p in enumerate(raw["provisioners"])
        ]
        provisioners = tuple(n for n in names if n is not None)
    storage_classes = tuple(raw["storageClassNames"]) if "storageClassNames" in raw else None
    kernels = None
    if "nodeKernels" in raw:
        ranges = []
        for i, item in enumerate(raw["nodeKernels"]):
            rng = KernelRange(
                family=item.get("family"), min=item.get("min"), below=item.get("below")
            )
            try:
                rng.validate()
            except ValueError as exc:
                problems.append(Problem(doc.at((*path, "nodeKernels", i)), f"{ctx}{exc}"))
                continue
            ranges.append(rng)
        kernels = tuple(ranges)
    selector = None
    if "objectSelector" in raw:
        sel = raw["objectSelector"]
        exprs = []
        for i, e in enumerate(sel.get("matchExpressions") or []):
            values = frozenset(e.get("values") or [])
            op = e["operator"]
            if op in ("In", "NotIn") and not values:
                problems.append(
                    Problem(
                        doc.at((*path, "objectSelector", "matchExpressions", i)),
                        f"{ctx}operator {op} needs at least one value",
                    )
                )
            if op in ("Exists", "DoesNotExist") and values:
                problems.append(
                    Problem(
                        doc.at((*path, "objectSelector", "matchExpressions", i)),
                        f"{ctx}operator {op} takes no values",
                    )
                )
            exprs.append(SelectorRequirement(e["key"], op, tuple(sorted(values))))
        selector = LabelSelector(
            tuple(sorted((sel.get("matchLabels") or {}).items())), tuple(exprs)
        )
    return Match(exports, provisioners, storage_classes, kernels, selector)


def _broken_rules(data: Any, validator: jsonschema.Draft202012Validator) -> set[int]:
    """Indexes of rules the schema rejects: their semantics cannot be checked."""
    broken: set[int] = set()
    for error in validator.iter_errors(data):
        path = tuple(error.absolute_path)
        if len(path) >= 3 and path[:2] == ("spec", "rules") and isinstance(path[2], int):
            broken.add(path[2])
    return broken


#: Rule keys that only a pin rule reads, and the lint code of the warning elsewhere.
_PIN_ONLY_KEYS = (
    ("onExplicit", "unused-on-explicit"),
    ("onUnsupportedPin", "unused-on-unsupported-pin"),
    ("onInline", "unused-on-inline"),
)


def check_policy(
    doc: Document, validator: jsonschema.Draft202012Validator, problems: list[Problem]
) -> Policy | None:
    """Append every problem of one policy document to ``problems`` (schema errors, then
    semantic errors and warnings of every rule the schema accepts); the ``Policy``, or
    None when any error was found."""
    _coerce_pin(doc.data)
    errors_before = sum(1 for p in problems if p.severity is Severity.ERROR)
    schema = schema_problems(doc, validator, WORDING)
    problems.extend(schema)
    data = doc.data
    spec = data.get("spec") if isinstance(data, dict) else None
    raw_rules = spec.get("rules") if isinstance(spec, dict) else None
    if not isinstance(raw_rules, list):
        return None
    broken = _broken_rules(data, validator) if schema else set()
    rules: list[Rule] = []
    seen: dict[str, Position] = {}
    for i, raw in enumerate(raw_rules):
        if i in broken:
            continue
        path: Path = ("spec", "rules", i)
        rule_start = len(problems)
        name = raw["name"]
        if name in seen:
            problems.append(
                Problem(
                    doc.at((*path, "name")),
                    f'rule "{name}": duplicate rule name (first defined at {seen[name]})',
                )
            )
        seen.setdefault(name, doc.at((*path, "name")))
        match = _build_match(doc, raw.get("match") or {}, (*path, "match"), problems)
        exclude = (
            _build_match(doc, raw["exclude"], (*path, "exclude"), problems)
            if "exclude" in raw
            else None
        )
        action = Action(raw["action"])
        if match.empty:
            where = doc.at((*path, "match"), key=True) if "match" in raw else doc.at(path)
            problems.append(
                Problem(
                    where,
                    f'rule "{name}": match is empty, so this {action.value} rule applies to '
                    "every NFS object in scope",
                    Severity.WARNING,
                    code="empty-match",
                )
            )
        if exclude is not None and exclude.empty:
            problems.append(
                Problem(
                    doc.at((*path, "exclude"), key=True),
                    f'rule "{name}": exclude is empty and excludes nothing',
                    Severity.WARNING,
                    code="empty-exclude",
                )
            )
        for key, code in _PIN_ONLY_KEYS:
            if key in raw and action is not Action.PIN:
                problems.append(
                    Problem(
                        doc.at((*path, key), key=True),
                        f'rule "{name}": {key} applies only to action pin '
                        f"(ignored for {action.value})",
                        Severity.WARNING,
                        code=code,
                    )
                )
        if "enforcement" in raw and action not in (Action.PIN, Action.DENY):
            problems.append(
                Problem(
                    doc.at((*path, "enforcement"), key=True),
                    f'rule "{name}": enforcement changes only what pin and deny do '
                    f"(a {action.value} rule never changes or refuses an object)",
                    Severity.WARNING,
                    code="unused-enforcement",
                )
            )
        ignored = frozenset((raw.get("lint") or {}).get("ignore") or ())
        if ignored:  # acknowledged warnings of this rule are dropped here (lint's: in lint)
            problems[rule_start:] = [
                p
                for p in problems[rule_start:]
                if p.severity is not Severity.WARNING or p.code not in ignored
            ]
        rules.append(
            Rule(
                name=name,
                action=action,
                match=match,
                exclude=exclude,
                on_explicit=OnExplicit(raw.get("onExplicit", "rewrite"))
                if action is Action.PIN
                else OnExplicit.REWRITE,
                on_unsupported_pin=OnUnsupportedPin(raw.get("onUnsupportedPin", "warn")),
                on_inline=OnInline(raw["onInline"]) if "onInline" in raw else None,
                enforcement=Enforcement(raw["enforcement"]) if "enforcement" in raw else None,
                description=raw.get("description", ""),
                references=tuple(raw.get("references") or ()),
                position=doc.at(path),
                lint_ignore=ignored,
            )
        )
    if sum(1 for p in problems if p.severity is Severity.ERROR) > errors_before or not isinstance(
        spec, dict
    ):
        return None
    return Policy(
        name=data["metadata"]["name"],
        version=spec["version"],
        digest=digest_of(data),
        pin=spec.get("pin", "4.0"),
        unknown_nodes=UnknownNodes(spec.get("unknownNodes", "assumeAffected")),
        enforcement=Enforcement(spec.get("enforcement", "Enforce")),
        rules=tuple(rules),
        on_inline=OnInline(spec.get("onInline", "deny")),
        source=doc.source,
        position=doc.start,
    )
