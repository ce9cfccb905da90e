"""nfsguard policies as native admission: MutatingAdmissionPolicy (the pins) and
ValidatingAdmissionPolicy (the denials), admissionregistration.k8s.io/v1.

The apiserver then enforces, in process and with no outage mode, every rule CEL can
express; the webhook stays the full engine (docs/native-policies.md). Pure: the
objects are data built from an ``Engine``'s policies and profiles.

What is compiled follows the engine step by step (webhook/engine/):

- scope: the webhook's own ``matchConditions`` (webhook/registration/scope.py), the
  same rules and opt-out label; the driver profile that reads the object is named by
  the same ``_holds`` CEL (``profile_holds``), first match in the profiles' order;
- read: only profiles whose shape CEL reproduces exactly (``profile_support``);
  objects any other profile reads are left to the webhook, and so is any object
  whose text the translation could read differently (``uncertain`` below);
- match: exports (IP, CIDR with ``isIP``/``cidr().containsIP``, hostname, glob as
  anchored RE2), path globs, provisioners, StorageClass names, objectSelector;
  ``exclude``; precedence exempt > deny > pin > warn > audit then load order, one
  ``decider`` variable naming the rule that decides (engine/verdict.py);
- act: pin (JSONPatch, webhook/native/options_cel.py), deny, onExplicit: deny,
  onUnsupportedPin, immutable places on UPDATE, existing objects on UPDATE (never
  denied), Audit enforcement (nothing done), all as ``act``/``settle`` do.

A rule CEL cannot express (``nodeKernels``: admission CEL cannot look up Nodes) is
webhook-only, and so is every rule it outranks with a different effect: otherwise
the native path would act where the webhook's deciding rule does something else.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.api.decision import Action, Enforcement
from webhook.api.kube import LEGACY_ANNOTATION, PROVISIONED_BY
from webhook.api.policy import Match, OnExplicit, OnUnsupportedPin
from webhook.api.profile import ALL_VERSIONS, DriverProfile, FieldRef, KindRules, PinMode
from webhook.engine.engine import Engine
from webhook.engine.index import CompiledRule
from webhook.engine.reading import GENERIC_PV, GENERIC_SC
from webhook.native import options_cel as opt
from webhook.nfs.options import pin_option
from webhook.nfs.patterns import ExportPattern, LabelSelector, NamePattern, ServerPattern
from webhook.registration.configuration import opt_out_selector, pv_and_storage_class_rules
from webhook.registration.scope import (
    Scope,
    cel_string,
    match_conditions,
    name_test,
    profile_holds,
    re2_of,
)
from webhook.registration.scope import (
    all_of as _all,
)
from webhook.registration.scope import (
    any_of as _any,
)

Json = dict[str, Any]

API_VERSION = "admissionregistration.k8s.io/v1"
PIN_POLICY = "nfsguard-native-pin"
DENY_POLICY = "nfsguard-native-deny"
#: The driver label of an object of a driver no profile knows, named by a rule.
GENERIC = "*generic"
LABELS = {"app.kubernetes.io/name": "nfsguard", "app.kubernetes.io/component": "native-policy"}
_ANNOTATION_POINTER = "/metadata/annotations/" + LEGACY_ANNOTATION.replace("~", "~0").replace(
    "/", "~1"
)
_KINDS = ("PersistentVolume", "StorageClass")
_PV = "variables.isPV"


@dataclass(frozen=True)
class WebhookOnly:
    """A rule the native policies do not enforce, and why (one line)."""

    policy: str
    rule: str
    reason: str

    def line(self) -> str:
        return f'webhook-only: rule "{self.rule}" (policy {self.policy}): {self.reason}'


@dataclass(frozen=True)
class NativePolicies:
    """What ``compile_native`` made: the objects, the rules they enforce, the rest."""

    objects: tuple[Json, ...]
    compiled: tuple[CompiledRule, ...]
    webhook_only: tuple[WebhookOnly, ...]
    #: Driver profiles (per kind) whose objects the native path reads.
    drivers: tuple[tuple[str, str], ...]
    #: Driver profiles (per kind) left to the webhook, with why.
    drivers_left: tuple[tuple[str, str, str], ...]

    def lines(self) -> list[str]:
        """The report ``nfsguard policy compile`` prints (stderr)."""
        out = [] if self.objects else ["no native policy objects: no compiled rule pins or denies"]
        out += [
            f'compiled: rule "{c.rule.name}" (policy {c.policy.name}): {_effect_words(c)}'
            for c in self.compiled
        ]
        out += [w.line() for w in self.webhook_only]
        for kind in _KINDS:
            names = [n for k, n in self.drivers if k == kind]
            out.append(f"native drivers ({kind}): {', '.join(names) or 'none'}")
        out += [
            f"webhook-only driver: {name} ({kind}): {why}" for kind, name, why in self.drivers_left
        ]
        return out


# ------------------------------------------------------------ driver profiles


def _plain_source(rules: KindRules, kind: str) -> str | None:
    for sources in (rules.server, rules.path, rules.subdir):
        for s in sources:
            if s.template is not None or s.regex is not None or s.ref is None:
                return "its export is built from a template or a regex"
            text = s.ref.text
            if kind == "PersistentVolume":
                if text not in ("spec.nfs.server", "spec.nfs.path") and not text.startswith(
                    "spec.csi.volumeAttributes."
                ):
                    return f"its export is read from {text}"
            elif not text.startswith("parameters."):
                return f"its export is read from {text}"
    return None


def _attribute_place(rules: KindRules) -> bool | str:
    """Whether the PV shape has the csi-driver-nfs ``mountOptions`` attribute place
    (True/False), or why the places are not a shape the native path writes (str)."""
    places = rules.places
    if not places:
        return "it has no mount option place"
    first = places[0]
    if (
        tuple(f.text for f in first.fields) != ("annotation", "spec.mountOptions")
        or not first.reads
        or first.replaces_defaults
        or first.immutable is not None
    ):
        return "its first option place is not kubelet's annotation-else-spec.mountOptions"
    if len(places) == 1:
        return False
    attr = places[1]
    if (
        len(places) > 2
        or len(attr.fields) != 1
        or (attr.fields[0].key or "").lower() != "mountoptions"
        or not attr.fields[0].text.startswith("spec.csi.volumeAttributes.")
        or not attr.reads
        or attr.replaces_defaults
        or attr.immutable is False
    ):
        return "its option places are not the in-tree / csi-driver-nfs ones"
    return True


def profile_support(profile: DriverProfile, kind: str) -> tuple[bool, str]:
    """(True, "") when CEL reads ``profile``'s objects of ``kind`` exactly as the engine
    does; else (False, why). Returns (True, "attr") for a PV shape with the attribute
    place. Only the in-tree / csi-driver-nfs / subdir-provisioner shapes qualify: no
    defaults replaced, nothing appended, no helper default version, no per-object
    versions, plain export fields."""
    rules = profile.rules_for(kind)
    if rules is None:
        return False, "no such kind"
    if profile.pin is PinMode.NEVER:
        return False, "the driver sets the NFS version itself"
    if profile.appends:
        return False, "the driver appends its own options"
    if profile.default_version:
        return False, "its mount helper picks a version when none is given"
    if profile.versions_by:
        return False, "the versions its servers speak depend on the object"
    if any(p.replaces_defaults for p in rules.places):
        return False, "its options replace the driver's defaults (a complete set is needed)"
    why = _plain_source(rules, kind)
    if why is not None:
        return False, why
    if kind == "StorageClass":
        if len(rules.places) != 1 or tuple(f.text for f in rules.places[0].fields) != (
            "mountOptions",
        ):
            return False, "its option place is not the StorageClass's mountOptions"
        if not rules.places[0].reads or rules.places[0].immutable is not None:
            return False, "its option place is not the StorageClass's mountOptions"
        return True, ""
    attr = _attribute_place(rules)
    if isinstance(attr, str):
        return False, attr
    return True, "attr" if attr else ""


@dataclass(frozen=True)
class _Driver:
    name: str
    rules: KindRules
    versions: frozenset[str]
    attr_place: bool


def _drivers(
    engine: Engine, kind: str
) -> tuple[list[tuple[str, str]], list[_Driver], list[tuple[str, str]]]:
    """(the CEL chain [(condition, driver name)] in the order profiles are tried, the
    supported drivers, the drivers left to the webhook with why)."""
    chain: list[tuple[str, str]] = []
    supported: list[_Driver] = []
    left: list[tuple[str, str]] = []
    for profile in engine.profiles:
        rules = profile.rules_for(kind)
        if rules is None:
            continue
        chain.append((profile_holds(kind, rules.match), cel_string(profile.name)))
        ok, why = profile_support(profile, kind)
        if ok:
            supported.append(_Driver(profile.name, rules, profile.versions, why == "attr"))
        else:
            left.append((profile.name, why))
    generic = Scope.of(engine)
    if kind == "PersistentVolume":
        named = generic.generic("object.spec.csi.driver", kind)
        if named != "false":
            chain.append(
                (
                    "!has(object.spec.nfs) && has(object.spec.csi) && "
                    f"has(object.spec.csi.driver) && {named}",
                    cel_string(GENERIC),
                )
            )
        supported.append(_Driver(GENERIC, GENERIC_PV, ALL_VERSIONS, False))
    else:
        named = generic.generic("object.provisioner", kind)
        if named != "false":
            chain.append((f"has(object.provisioner) && {named}", cel_string(GENERIC)))
        supported.append(_Driver(GENERIC, GENERIC_SC, ALL_VERSIONS, False))
    return chain, supported, left


def _ternary(chain: Sequence[tuple[str, str]], otherwise: str) -> str:
    out = otherwise
    for cond, value in reversed(chain):
        if cond == "false":
            continue
        out = value if cond == "true" else f"{cond} ? {value} : {out}"
    return out


def _old(expression: str) -> str:
    """The same profile test on the request's oldObject. Only ``object.`` roots occur in
    the expressions given here (profile_holds and Scope.generic build them with it),
    and driver names and keys never hold a blank before ``object.``."""
    spaced = " " + expression
    return spaced.replace("(object.", "(oldObject.").replace(" object.", " oldObject.")[1:]


# ------------------------------------------------------------- object fields


def _attr(key: str) -> str:
    """A volumeAttributes / parameters value by key, ignoring case ('' when absent)."""
    k = cel_string(key.lower())
    return (
        f"(variables.attrs.exists(k, k.lowerAscii() == {k}) ? "
        f"variables.attrs[variables.attrs.filter(k, k.lowerAscii() == {k})[0]] : '')"
    )


def _field(ref: FieldRef) -> str:
    if ref.text == "spec.nfs.server":
        return "object.?spec.?nfs.?server.orValue('')"
    if ref.text == "spec.nfs.path":
        return "object.?spec.?nfs.?path.orValue('')"
    assert ref.key is not None
    return _attr(ref.key)


def _first(sources: Iterable[FieldRef]) -> str:
    """``ObjectView.resolve``: the first source with a non-empty value, else ''."""
    exprs = [_field(r) for r in sources]
    if not exprs:
        return "''"
    out = exprs[-1]
    for e in reversed(exprs[:-1]):
        out = f"({e} != '' ? {e} : {out})"
    return out


def _by_driver(drivers: Sequence[tuple[str, _Driver]], expr: Any) -> str:
    """CEL: ``expr`` of the driver that reads the object. Keyed by kind and driver: one
    profile reads its PVs and its StorageClasses from different fields (openebs-nfsrwx:
    ``spec.nfs.server`` on a PV, nothing on a StorageClass)."""
    groups: dict[str, list[str]] = {}
    for kind, d in drivers:
        groups.setdefault(expr(d), []).append(f"{kind}/{d.name}")
    chain = [
        (f"variables.kindDriver in [{', '.join(cel_string(n) for n in names)}]", e)
        for e, names in groups.items()
    ]
    return _ternary(chain, "''")


def _refs(d: _Driver, which: str) -> list[FieldRef]:
    sources = getattr(d.rules, which)
    return [s.ref for s in sources if s.ref is not None]


def _attribute_keys(drivers: Sequence[_Driver]) -> list[str]:
    keys: set[str] = set()
    for d in drivers:
        for which in ("server", "path", "subdir"):
            keys.update((r.key or "").lower() for r in _refs(d, which) if r.key)
        if d.attr_place:
            keys.add("mountoptions")
    return sorted(keys)


def _object_variables(engine: Engine) -> list[tuple[str, str]]:
    pv_chain, pv_drivers, _ = _drivers(engine, "PersistentVolume")
    sc_chain, sc_drivers, _ = _drivers(engine, "StorageClass")
    pv_driver = _ternary(pv_chain, "''")
    sc_driver = _ternary(sc_chain, "''")
    supported = [cel_string(f"PersistentVolume/{d.name}") for d in pv_drivers] + [
        cel_string(f"StorageClass/{d.name}") for d in sc_drivers
    ]
    attr_drivers = [cel_string(d.name) for d in pv_drivers if d.attr_place]
    keys = _attribute_keys([*pv_drivers, *sc_drivers])
    printable = cel_string(opt.PRINTABLE)
    legacy = cel_string(LEGACY_ANNOTATION)
    provisioned_by = cel_string(PROVISIONED_BY)
    both = [("PersistentVolume", d) for d in pv_drivers] + [("StorageClass", d) for d in sc_drivers]
    return [
        ("isPV", "request.resource.resource == 'persistentvolumes'"),
        ("driver", f"{_PV} ? ({pv_driver}) : ({sc_driver})"),
        (
            "oldDriver",
            f"oldObject == null ? '' : {_PV} ? ({_old(pv_driver)}) : ({_old(sc_driver)})",
        ),
        ("kindDriver", f"({_PV} ? 'PersistentVolume/' : 'StorageClass/') + variables.driver"),
        (
            "attrs",
            f"{_PV} ? object.spec.?csi.?volumeAttributes.orValue({{}}) : "
            "object.?parameters.orValue({})",
        ),
        ("labels", "object.metadata.?labels.orValue({})"),
        (
            "hasProvisioner",
            f"{_PV} ? (has(object.spec.nfs) ? object.metadata.?annotations[?{provisioned_by}]"
            ".hasValue() : true) : has(object.provisioner)",
        ),
        (
            "provisioner",
            f"{_PV} ? (has(object.spec.nfs) ? object.metadata.?annotations[?{provisioned_by}]"
            ".orValue('') : object.spec.?csi.?driver.orValue('')) : "
            "object.?provisioner.orValue('')",
        ),
        (
            "hasStorageClass",
            f"{_PV} ? has(object.spec.storageClassName) : true",
        ),
        (
            "storageClass",
            f"{_PV} ? object.spec.?storageClassName.orValue('') : "
            # reading._metadata: a name to be generated reads as generateName + '*'
            "object.metadata.?name.orValue('') != '' ? object.metadata.name : "
            "object.metadata.?generateName.orValue('') != '' ? "
            "object.metadata.generateName + '*' : ''",
        ),
        ("server", _by_driver(both, lambda d: _first(_refs(d, "server")))),
        ("share", _by_driver(both, lambda d: _first(_refs(d, "path")))),
        ("subdir", _by_driver(both, lambda d: _first(_refs(d, "subdir")))),
        (
            "rawPath",
            "variables.subdir == '' ? variables.share : variables.share + '/' + variables.subdir",
        ),
        ("pathParts", "variables.rawPath.split('/')"),
        ("pathKept", "variables.pathParts.filter(p, p != '' && p != '.').join('/')"),
        (
            # reading.normalise_path: posixpath.normpath drops empty and '.' segments (a
            # relative path left empty is '.'); '..' needs a stack CEL does not have,
            # so such paths are left to the webhook (see "uncertain")
            "path",
            "variables.rawPath.startsWith('/') ? '/' + variables.pathKept : "
            "variables.pathKept == '' ? '.' : variables.pathKept",
        ),
        (
            "serverHost",
            "variables.server.lowerAscii().matches('[^.]') ? "
            "variables.server.lowerAscii().find('^.*[^.]') : ''",
        ),
        (
            # nfs/patterns.parse_ip: text.strip("[]") (every leading/trailing bracket)
            "serverIP",
            "variables.server.matches('^\\\\[*[^\\\\[\\\\]]*\\\\]*$') ? "
            "variables.server.find('[^\\\\[\\\\]]+') : ''",
        ),
        ("serverIsIP", "isIP(variables.serverIP)"),
        (
            "annPresent",
            f"{_PV} && has(object.metadata.annotations) && {legacy} in object.metadata.annotations",
        ),
        ("ann", f"variables.annPresent ? object.metadata.annotations[{legacy}] : ''"),
        (
            "moPresent",
            f"{_PV} ? has(object.spec.mountOptions) : has(object.mountOptions)",
        ),
        (
            "mo",
            f"{_PV} ? object.spec.?mountOptions.orValue([]) : object.?mountOptions.orValue([])",
        ),
        (
            "attrKeys",
            f"variables.driver in [{', '.join(attr_drivers)}] ? "
            "variables.attrs.filter(k, k.lowerAscii() == 'mountoptions') : []"
            if attr_drivers
            else "[]",
        ),
        ("attrValues", "variables.attrKeys.map(k, variables.attrs[k])"),
        (
            "oldAttrOptions",
            f"oldObject != null && variables.driver in [{', '.join(attr_drivers)}] ? "
            "oldObject.spec.?csi.?volumeAttributes.orValue({})"
            ".filter(k, k.lowerAscii() == 'mountoptions')"
            ".map(k, k + '=' + oldObject.spec.csi.volumeAttributes[k]) : []"
            if attr_drivers
            else "[]",
        ),
        (
            "readEntries",
            "(variables.annPresent ? [variables.ann] : variables.mo) + variables.attrValues",
        ),
        ("nodeOptions", opt.split("variables.readEntries")),
        *opt.effective("variables.nodeOptions"),
        (
            # Text the translation could read otherwise than the engine: left to the webhook.
            "uncertain",
            " || ".join(
                [
                    # first: past this the rewrite could exceed the apiserver's CEL cost
                    # limit, an error failurePolicy Fail turns into a refusal
                    f"size(variables.mo) > {opt.MAX_ENTRIES}",
                    f"size(variables.mo.join(',')) + size(variables.ann) + "
                    f"size(variables.attrValues.join(',')) > {opt.MAX_TEXT}",
                    f"!(variables.mo + variables.readEntries).all(e, e.matches({printable}))",
                    f"!variables.server.matches({printable})",
                    "variables.server.contains('%')",
                    "(variables.server.contains(':') && variables.server.contains('.'))",
                    # IPv6 text the apiserver's ip library does not read as an IP (an
                    # IPv4-mapped ::ffff:a00:1, which Python reads as IPv6)
                    "(variables.server.contains(':') && !variables.serverIsIP)",
                    "variables.pathParts.exists(p, p == '..')",
                    *(
                        f"variables.attrs.filter(k, k.lowerAscii() == {cel_string(k)}).size() > 1"
                        for k in keys
                    ),
                ]
            ),
        ),
        (
            "native",
            f"variables.kindDriver in [{', '.join(supported)}] && !variables.uncertain",
        ),
        ("affected", opt.AFFECTED),
        ("explicit", opt.EXPLICIT),
        (
            # engine._unchanged: the same driver, every option place as it was.
            "existing",
            "request.operation == 'UPDATE' && oldObject != null && "
            "variables.oldDriver == variables.driver && "
            f"({_PV} ? (object.spec.?mountOptions == oldObject.spec.?mountOptions && "
            f"object.metadata.?annotations[?{legacy}] == "
            f"oldObject.metadata.?annotations[?{legacy}] && "
            "variables.attrKeys.map(k, k + '=' + variables.attrs[k]) == "
            "variables.oldAttrOptions) "
            ": object.?mountOptions == oldObject.?mountOptions)",
        ),
    ]


# ------------------------------------------------------------------ matching


def _glob_safe(text: str) -> bool:
    """A glob whose translation to RE2 is exact: no character class (Python and RE2
    read some class bodies, e.g. ``[[:alpha:]]``, differently)."""
    return "[" not in text


def _one_line(text: str) -> str:
    """``text`` with every run of control characters one blank: the apiserver does not
    show a validation message that holds a line break."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text)


def _ip_library_reads(sp: ServerPattern) -> None:
    """Raises _Refuse for an address the apiserver's CEL ip library refuses (k8s.io/
    apiserver pkg/cel/library/ip.go: no IPv4-mapped IPv6 address, no zone). A literal it
    refuses is a compile error, and the apiserver then ignores the whole policy."""
    address = sp.ip if sp.ip is not None else sp.network.network_address if sp.network else None
    if not isinstance(address, ipaddress.IPv6Address):
        return
    if address.ipv4_mapped is not None:
        raise _Refuse(
            f"server {sp.text}: the apiserver's CEL ip library refuses IPv4-mapped IPv6 addresses"
        )
    if address.scope_id:
        raise _Refuse(f"server {sp.text}: the apiserver's CEL ip library refuses an IPv6 zone")


def _export(e: ExportPattern) -> str:
    sp = e.server
    _ip_library_reads(sp)
    if sp.ip is not None:
        server = f"(variables.serverIsIP && ip(variables.serverIP) == ip({cel_string(str(sp.ip))}))"
    elif sp.network is not None:
        server = (
            f"(variables.serverIsIP && cidr({cel_string(str(sp.network))})"
            ".containsIP(ip(variables.serverIP)))"
        )
    elif sp.glob is not None:
        server = (
            f"variables.serverHost.matches({cel_string(re2_of(NamePattern(sp.text, sp.glob)))})"
        )
    else:
        server = f"variables.serverHost == {cel_string(sp.text)}"
    if e.path is None:
        return server
    path_re = re2_of(NamePattern(e.path_text or "", e.path))
    return f"({server} && variables.share != '' && variables.path.matches({cel_string(path_re)}))"


def _selector(s: LabelSelector) -> str:
    parts = []
    for key, value in s.match_labels:
        k = cel_string(key)
        parts.append(f"({k} in variables.labels && variables.labels[{k}] == {cel_string(value)})")
    for req in s.match_expressions:
        k = cel_string(req.key)
        values = "[" + ", ".join(cel_string(v) for v in req.values) + "]"
        if req.operator == "In":
            parts.append(f"({k} in variables.labels && variables.labels[{k}] in {values})")
        elif req.operator == "NotIn":
            parts.append(f"(!({k} in variables.labels) || !(variables.labels[{k}] in {values}))")
        elif req.operator == "Exists":
            parts.append(f"({k} in variables.labels)")
        elif req.operator == "DoesNotExist":
            parts.append(f"!({k} in variables.labels)")
        else:
            raise _Refuse(f"objectSelector operator {req.operator} is not compiled")
    return _all(parts)


class _Refuse(Exception):
    """A rule (or part of one) CEL does not express exactly; the message says why."""


def match_cel(m: Match) -> str:
    """CEL for engine/matching.py ``_matches`` (no nodeKernels). Raises _Refuse."""
    if m.node_kernels is not None:
        raise _Refuse(
            "nodeKernels: admission CEL cannot look up Nodes, so node kernels are the webhook's"
        )
    parts: list[str] = []
    if m.exports is not None:
        for e in m.exports:
            texts = [e.server.text] if e.server.glob is not None else []
            texts += [e.path_text or ""]
            if not all(_glob_safe(t) for t in texts):
                raise _Refuse("a glob with a character class ([...]) is not compiled to RE2")
        parts.append(_all(["variables.server != ''", _any([_export(e) for e in m.exports])]))
    if m.provisioners is not None:
        if not all(_glob_safe(p.text) for p in m.provisioners):
            raise _Refuse("a glob with a character class ([...]) is not compiled to RE2")
        named = name_test("variables.provisioner", m.provisioners) if m.provisioners else "false"
        parts.append(_all(["variables.hasProvisioner", named]))
    if m.storage_class_names is not None:
        names = ", ".join(cel_string(n) for n in m.storage_class_names)
        parts.append(
            _all(["variables.hasStorageClass", f"variables.storageClass in [{names}]"])
            if m.storage_class_names
            else "false"
        )
    if m.object_selector is not None:
        parts.append(_selector(m.object_selector))
    return _all(parts)


def rule_cel(c: CompiledRule) -> str:
    """CEL: ``c``'s match holds and its exclude does not (engine/matching.py)."""
    held = match_cel(c.rule.match)
    exclude = c.rule.exclude
    if exclude is None or exclude.empty:
        return held
    excluded = match_cel(exclude)
    negated = {"true": "false", "false": "true"}.get(excluded, f"!{excluded}")
    return _all([held, negated])


# ------------------------------------------------------------------ actions


def _effect(c: CompiledRule) -> tuple[str, ...]:
    """What the rule does natively when it decides (verdict.act, then settle)."""
    action = c.rule.action
    if action not in (Action.PIN, Action.DENY):
        return ("nothing",)
    if c.policy.enforcement_of(c.rule) is Enforcement.AUDIT:
        return ("nothing",)
    if action is Action.DENY:
        return ("deny",)
    return ("pin", c.policy.pin, c.rule.on_explicit.value, c.rule.on_unsupported_pin.value)


def _effect_words(c: CompiledRule) -> str:
    effect = _effect(c)
    if effect[0] == "nothing":
        if c.rule.action is Action.EXEMPT:
            return "exempt: no native policy acts on what it matches"
        return f"{c.rule.action.value} in Audit: nothing is changed or refused"
    if effect[0] == "deny":
        return "deny: ValidatingAdmissionPolicy " + DENY_POLICY
    words = f"pin {pin_option(c.policy.pin)}: MutatingAdmissionPolicy {PIN_POLICY}"
    if c.rule.on_explicit is OnExplicit.DENY:
        words += f"; onExplicit deny: ValidatingAdmissionPolicy {DENY_POLICY}"
    return words


def _key(c: CompiledRule) -> str:
    return f"{c.policy.name}/{c.rule.name}"


def _select(
    engine: Engine,
) -> tuple[list[tuple[CompiledRule, str]], list[WebhookOnly]]:
    """The rules compiled (with their CEL), in rank order, and the rest with why."""
    compiled: list[tuple[CompiledRule, str]] = []
    left: list[WebhookOnly] = []
    blockers: list[tuple[CompiledRule, str]] = []  # uncompilable, outranking, acting
    for c in sorted(engine.rules, key=lambda c: c.rank):
        rule = c.rule
        if rule.action in (Action.WARN, Action.AUDIT):
            left.append(
                WebhookOnly(
                    c.policy.name,
                    rule.name,
                    f"action {rule.action.value} changes and refuses nothing: its warning "
                    "and audit record are the webhook's",
                )
            )
            continue
        try:
            cel = rule_cel(c)
            if (
                rule.action is Action.PIN
                and rule.on_explicit is OnExplicit.DENY
                and c.policy.pin == "4.1"
                and _effect(c)[0] == "pin"
            ):
                raise _Refuse(
                    "pin 4.1 with onExplicit: deny: the validating step sees the pinned "
                    "object, and nfsvers=4.1 is itself an explicit 4.1"
                )
        except _Refuse as exc:
            blockers.append((c, str(exc)))
            left.append(WebhookOnly(c.policy.name, rule.name, str(exc)))
            continue
        effect = _effect(c)
        blocked = [b for b, _ in blockers if _effect(b) != effect]
        if blocked:
            b = blocked[0]
            left.append(
                WebhookOnly(
                    c.policy.name,
                    rule.name,
                    f'outranked by webhook-only rule "{b.rule.name}" (policy {b.policy.name}), '
                    "which does something else where both match",
                )
            )
            # It decides nothing natively, and so blocks what it outranks like its blocker.
            blockers.append((c, "outranked"))
            continue
        compiled.append((c, cel))
    return compiled, left


def _literal_map(entries: dict[str, str]) -> str:
    return "{" + ", ".join(f"{cel_string(k)}: {v}" for k, v in entries.items()) + "}"


def _in(keys: Iterable[str]) -> str:
    return "[" + ", ".join(cel_string(k) for k in keys) + "]"


def compile_native(engine: Engine, *, failure_policy: str = "Fail") -> NativePolicies:
    """The native policies for ``engine``'s policies and profiles (see the module doc)."""
    chosen, left = _select(engine)
    variables = _object_variables(engine)
    for i, (_c, cel) in enumerate(chosen):
        variables.append((f"rule{i}", cel))
    decider = _ternary(
        [(f"variables.rule{i}", cel_string(_key(c))) for i, (c, _cel) in enumerate(chosen)], "''"
    )
    variables.append(("decider", decider))

    pinners = [c for c, _ in chosen if _effect(c)[0] == "pin"]
    deniers = [c for c, _ in chosen if _effect(c)[0] == "deny"]
    pv_drivers = _drivers(engine, "PersistentVolume")[1]
    sc_drivers = _drivers(engine, "StorageClass")[1]

    def takers(pin: str) -> str:
        names = [f"PersistentVolume/{d.name}" for d in pv_drivers if pin in d.versions] + [
            f"StorageClass/{d.name}" for d in sc_drivers if pin in d.versions
        ]
        return _in(names)

    pin_vars: list[tuple[str, str]] = []
    if pinners:
        pin_vars = [
            ("pinning", f"variables.decider in {_in(_key(c) for c in pinners)}"),
            (
                "pinOption",
                _literal_map({_key(c): cel_string(pin_option(c.policy.pin)) for c in pinners})
                + "[variables.decider]",
            ),
            (
                "canTake",
                "variables.pinning && variables.kindDriver in "
                + _literal_map({_key(c): takers(c.policy.pin) for c in pinners})
                + "[variables.decider]",
            ),
            (
                "explicitDeny",
                "variables.decider in "
                + _in(_key(c) for c in pinners if c.rule.on_explicit is OnExplicit.DENY),
            ),
            (
                "unsupportedDeny",
                "variables.decider in "
                + _in(
                    _key(c) for c in pinners if c.rule.on_unsupported_pin is OnUnsupportedPin.DENY
                ),
            ),
        ]
    objects: list[Json] = []
    if pinners:
        objects += _pin_policy(engine, [*variables, *pin_vars], failure_policy)
    deny_rules = deniers + [
        c
        for c in pinners
        if c.rule.on_explicit is OnExplicit.DENY
        or c.rule.on_unsupported_pin is OnUnsupportedPin.DENY
    ]
    if deny_rules:
        objects += _deny_policy(engine, [*variables, *pin_vars], deniers, pinners, failure_policy)

    drivers: list[tuple[str, str]] = []
    drivers_left: list[tuple[str, str, str]] = []
    for kind in _KINDS:
        chain, ok, bad = _drivers(engine, kind)
        drivers += [(kind, d.name) for d in ok if d.name != GENERIC]
        if any(value == cel_string(GENERIC) for _, value in chain):
            drivers.append((kind, "drivers named in rules that no profile knows"))
        drivers_left += [(kind, name, why) for name, why in bad]
    return NativePolicies(
        tuple(objects),
        tuple(c for c, _ in chosen),
        tuple(left),
        tuple(drivers),
        tuple(drivers_left),
    )


def _meta(engine: Engine, name: str) -> Json:
    return {
        "name": name,
        "labels": dict(LABELS),
        "annotations": {
            "nfsguard.io/policies": ", ".join(
                f"{p.name}@{p.version}={p.digest}" for p in engine.policies
            )
        },
    }


def _constraints() -> Json:
    # The webhook's rules and opt-out label (webhook/registration/configuration.py).
    return {
        "matchPolicy": "Equivalent",
        "resourceRules": pv_and_storage_class_rules(),
        "objectSelector": opt_out_selector(),
    }


def _variables(pairs: Sequence[tuple[str, str]]) -> list[Json]:
    return [{"name": n, "expression": e} for n, e in pairs]


def _patch(op: str, path: str, value: str | None = None) -> str:
    fields = f"op: {cel_string(op)}, path: {path}"
    if value is not None:
        fields += f", value: {value}"
    return f"JSONPatch{{{fields}}}"


def _pin_ops() -> tuple[list[tuple[str, str]], str]:
    """engine/pin.py ``pin_plan`` in CEL: the variables, and the mutation expression
    (JSONPatch values exist only there, not in variables)."""
    ann_path = cel_string(_ANNOTATION_POINTER)
    mo_path = f"({_PV} ? '/spec/mountOptions' : '/mountOptions')"
    spec_mo = "'/spec/mountOptions'"
    one = "[variables.attrs[k]]"
    attr_path = "'/spec/csi/volumeAttributes/' + jsonpatch.escapeKey(c[0])"
    variables = [
        ("pinnedAnn", opt.pin_entries("[variables.ann]", "variables.pinOption") + ".join(',')"),
        ("pinnedMo", opt.pin_entries("variables.mo", "variables.pinOption")),
        ("strippedMo", opt.strip_entries("variables.mo")),
        ("moHasVersion", f"variables.moPresent && {opt.has_version_option('variables.mo')}"),
        (
            # every attribute place holding a version option, and what it keeps
            "attrChanges",
            f"variables.attrKeys.filter(k, {opt.has_version_option(one)})"
            f".map(k, [string(k), {opt.strip_entries(one)}.join(',')])",
        ),
        (
            # pin_plan raises PinRefused: an immutable place would have to change on UPDATE.
            "refused",
            "request.operation != 'CREATE' && size(variables.attrChanges) > 0",
        ),
        (
            "pins",
            "variables.native && variables.affected && variables.pinning && "
            "variables.canTake && !(variables.explicitDeny && variables.explicit) && "
            "!variables.refused",
        ),
    ]
    ann_ops = (
        f"(variables.pinnedAnn != variables.ann ? "
        f"[{_patch('replace', ann_path, 'variables.pinnedAnn')}] : []) + "
        f"(variables.moHasVersion ? (size(variables.strippedMo) == 0 ? "
        f"[{_patch('remove', spec_mo)}] : "
        f"[{_patch('replace', spec_mo, 'variables.strippedMo')}]) : [])"
    )
    mo_ops = (
        f"(!variables.moPresent ? [{_patch('add', mo_path, 'variables.pinnedMo')}] : "
        f"variables.pinnedMo != variables.mo ? "
        f"[{_patch('replace', mo_path, 'variables.pinnedMo')}] : [])"
    )
    attr_ops = (
        f"variables.attrChanges.map(c, c[1] == '' ? {_patch('remove', attr_path)} : "
        f"{_patch('replace', attr_path, 'c[1]')})"
    )
    ops = f"variables.pins ? ((variables.annPresent ? {ann_ops} : {mo_ops}) + {attr_ops}) : []"
    return variables, ops


def _pin_policy(engine: Engine, variables: Sequence[tuple[str, str]], failure: str) -> list[Json]:
    pin_variables, ops = _pin_ops()
    policy = {
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicy",
        "metadata": _meta(engine, PIN_POLICY),
        "spec": {
            "failurePolicy": failure,
            # A pinned object is compliant: reinvoked, the policy writes nothing.
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": _constraints(),
            "matchConditions": match_conditions(Scope.of(engine)),
            "variables": _variables([*variables, *pin_variables]),
            # spec.mountOptions is an atomic list: JSONPatch, not ApplyConfiguration.
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": ops}}],
        },
    }
    binding = {
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": PIN_POLICY, "labels": dict(LABELS)},
        "spec": {"policyName": PIN_POLICY},
    }
    return [policy, binding]


def _deny_policy(
    engine: Engine,
    variables: Sequence[tuple[str, str]],
    deniers: Sequence[CompiledRule],
    pinners: Sequence[CompiledRule],
    failure: str,
) -> list[Json]:
    who = {
        _key(c): cel_string(
            _one_line(f'rule "{c.rule.name}" (policy {c.policy.name} version {c.policy.version})')
        )
        for c in [*deniers, *pinners]
    }
    deny_vars = [
        ("denying", f"variables.decider in {_in(_key(c) for c in deniers)}"),
    ]
    pin_deny = "false"
    if pinners:
        pin_deny = (
            "(variables.pinning && (!variables.canTake ? variables.unsupportedDeny : "
            "(variables.explicitDeny && variables.explicit)))"
        )
    deny_vars.append(
        (
            "denies",
            f"variables.native && variables.affected && !variables.existing && "
            f"(variables.denying || {pin_deny})",
        )
    )
    words = "(variables.denying ? ' does not allow NFS ' : "
    if pinners:
        words += "variables.pinning && variables.canTake ? ' does not allow the explicit NFS ' : "
    words += "' would pin a version the driver cannot take, for NFS ')"
    pins = _literal_map(
        {_key(c): cel_string(pin_option(c.policy.pin)) for c in [*deniers, *pinners]}
    )
    message = (
        f"'nfsguard (native): ' + {_literal_map(who)}[variables.decider] + {words} + "
        "variables.effective + ' for ' + "
        "(variables.server == '' ? 'this object' : variables.server + ':' + variables.path) + "
        f"': set ' + {pins}[variables.decider] + "
        "' in mountOptions and remove every other version option'"
    )
    policy = {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(engine, DENY_POLICY),
        "spec": {
            "failurePolicy": failure,
            "matchConstraints": _constraints(),
            "matchConditions": match_conditions(Scope.of(engine)),
            "variables": _variables([*variables, *deny_vars]),
            "validations": [
                {
                    "expression": "!variables.denies",
                    "messageExpression": message,
                    "reason": "Forbidden",
                }
            ],
        },
    }
    binding = {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": DENY_POLICY, "labels": dict(LABELS)},
        "spec": {"policyName": DENY_POLICY, "validationActions": ["Deny"]},
    }
    return [policy, binding]
