"""What ``nfsguard scan`` and ``remediate`` share: where objects come from (files or a
live cluster), one pass over them, and the output (table, JSON, YAML, JSON lines).

Order of a pass, so memory holds the pod index and the report, never the PVs: first
pods, PVCs and FailedMount events (webhook/engine/stranded.py keeps a few fields of
each), then PVs and StorageClasses streamed page by page, each evaluated as a CREATE of
itself (``Engine.evaluate``, the admission engine) and classified
(webhook/engine/scan.py). Table and JSON lines print as rows come (the table spools
each verdict's rows to a temporary file to group them); JSON and YAML keep the rows.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol, TypeVar

import click
import yaml

from webhook.admission.errors import BadRequest
from webhook.api.kube import POD_SPEC_POINTERS, object_name
from webhook.api.target import InvalidObject
from webhook.cli.common import load_engine, nodes_option
from webhook.cli.errors import Refused
from webhook.cluster.client import make_api_client
from webhook.cluster.scan import DEFAULT_PAGE, ClusterError, ClusterObjects
from webhook.config.load import load
from webhook.engine.engine import Engine
from webhook.engine.scan import VERDICT_ORDER, Classification, classify
from webhook.engine.scan_report import Uncovered, empty_summary, row, summary_line
from webhook.engine.stranded import PodIndex, PodRef
from webhook.files import packaged
from webhook.files.sources import POLICY_SUFFIXES, load_manifests, read_text
from webhook.nfs.inventory import (
    NodeInventory,
    StaticInventory,
    UnknownInventory,
    nodes_from_objects,
)

SCANNED_KINDS = ("PersistentVolume", "StorageClass")
#: Pods and workloads with inline NFS volumes (webhook/engine/pod_volumes.py), after the
#: PVs: a live scan lists pods twice (once for the stranded index), one page at a time.
POD_KINDS = tuple(POD_SPEC_POINTERS)
#: libyaml's emitter when PyYAML has it (about 10x the pure-Python one), the same output.
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
INDEX_KINDS = ("Pod", "PersistentVolumeClaim", "Event")


class Source(Protocol):
    def objects(self, kind: str) -> Iterable[dict[str, Any]]: ...
    def inventory(self) -> NodeInventory: ...
    def label(self, obj: Mapping[str, Any]) -> str: ...


class FileSource:
    """``kubectl get pv,sc,pods,pvc -o yaml`` (plus events, nodes) output, offline."""

    def __init__(self, files: Iterable[str], nodes_file: str | None = None) -> None:
        self.by_kind: dict[str, list[dict[str, Any]]] = {}
        self.where: dict[int, str] = {}
        for source in files:
            name = "<stdin>" if source == "-" else source
            for obj in load_manifests(read_text(source), name):
                self.by_kind.setdefault(str(obj.get("kind", "")), []).append(obj)
                self.where[id(obj)] = name
        self.nodes_file = nodes_file

    def objects(self, kind: str) -> Iterable[dict[str, Any]]:
        return self.by_kind.get(kind, [])

    def inventory(self) -> NodeInventory:
        if self.nodes_file is not None:
            docs = load_manifests(read_text(self.nodes_file), self.nodes_file)
            return StaticInventory(nodes_from_objects(docs))
        nodes = self.by_kind.get("Node")
        if nodes:
            return StaticInventory(nodes_from_objects(nodes))
        return UnknownInventory("offline scan without --nodes")

    def label(self, obj: Mapping[str, Any]) -> str:
        return f"{self.where.get(id(obj), '?')}: {obj.get('kind')}/{object_name(obj) or '?'}"


class LiveSource:
    """A cluster, through paged lists (webhook/cluster/scan.py)."""

    def __init__(self, cluster: ClusterObjects) -> None:
        self.cluster = cluster

    def objects(self, kind: str) -> Iterable[dict[str, Any]]:
        if kind == "Event":
            return self.cluster.list(kind, field_selector="reason=FailedMount")
        return self.cluster.list(kind)

    def inventory(self) -> NodeInventory:
        return StaticInventory(nodes_from_objects(self.cluster.list("Node")))

    def label(self, obj: Mapping[str, Any]) -> str:
        return f"{obj.get('kind')}/{object_name(obj) or '?'}"


def connect(
    kubeconfig: str | None, in_cluster: bool, page: int, as_user: str | None = None
) -> ClusterObjects:
    """The cluster, as kubectl would reach it; ``as_user`` impersonates (kubectl --as)."""
    try:
        api = make_api_client(kubeconfig, in_cluster=in_cluster)
    except Exception as exc:  # kubernetes.config.ConfigException and file errors
        raise Refused(f"nfsguard: no usable cluster credentials: {exc}") from None
    if as_user:
        api.set_default_header("Impersonate-User", as_user)  # type: ignore[no-untyped-call]
    return ClusterObjects(api, page=page)


@dataclass(frozen=True)
class Where:
    """Where a run reads its objects and policies (the options scan and remediate share)."""

    files: tuple[str, ...]
    policies: tuple[str, ...]
    policy_configmap: str | None
    nodes_file: str | None
    kubeconfig: str | None
    in_cluster: bool
    as_user: str | None
    page_size: int

    def source(self) -> Source:
        if self.files and (self.kubeconfig or self.in_cluster or self.as_user):
            raise Refused("nfsguard: give FILES or --kubeconfig/--in-cluster/--as, not both")
        if self.files:
            return FileSource(self.files, self.nodes_file)
        cluster = connect(self.kubeconfig, self.in_cluster, self.page_size, self.as_user)
        return LiveSource(cluster)

    def engine(self, source: Source) -> Engine:
        """The policies of --policy, or of the ConfigMap the install ships (read live)."""
        if bool(self.policies) == bool(self.policy_configmap):
            raise Refused("nfsguard: give --policy PATH or --policy-configmap NAMESPACE/NAME")
        if self.policies:
            return load_engine(self.policies)
        assert self.policy_configmap is not None
        if not isinstance(source, LiveSource):
            raise Refused("nfsguard: --policy-configmap reads a cluster, not FILES")
        namespace, _, name = self.policy_configmap.partition("/")
        if not namespace or not name:
            raise Refused("nfsguard: --policy-configmap takes NAMESPACE/NAME")
        try:
            cm = source.cluster.get_namespaced("ConfigMap", namespace, name)
        except ClusterError as exc:
            raise Refused(f"nfsguard: {exc}") from None
        if cm is None:
            raise Refused(f"nfsguard: ConfigMap {namespace}/{name} not found")
        data = cm.get("data") or {}
        sources = [
            (f"configmap/{namespace}/{name}/{key}", str(text))
            for key, text in sorted(data.items())
            if key.endswith(POLICY_SUFFIXES) and not key.startswith(".")
        ]
        if not sources:
            raise Refused(f"nfsguard: ConfigMap {namespace}/{name} holds no *.yaml policy")
        builtin, schemas = packaged.builtin_profiles(), packaged.schemas()
        loaded = load(sources, builtin_profiles=builtin, schemas=schemas).checked()
        return Engine(loaded.policies, loaded.profiles)


F = TypeVar("F", bound=Callable[..., Any])

_WHERE_OPTIONS = [
    click.option(
        "--policy",
        "policies",
        multiple=True,
        help="Policy file or directory (repeatable).",
    ),
    click.option(
        "--policy-configmap",
        metavar="NAMESPACE/NAME",
        help="Read the policies from this ConfigMap (shipped: nfsguard/nfsguard-policies).",
    ),
    nodes_option,
    click.option(
        "--kubeconfig", type=click.Path(dir_okay=False, exists=True), help="Use this kubeconfig."
    ),
    click.option("--in-cluster", is_flag=True, help="Use the pod's service account."),
    click.option("--as", "as_user", metavar="USER", help="Impersonate USER (as kubectl --as)."),
    click.option(
        "--page-size",
        type=click.IntRange(1, 10000),
        default=DEFAULT_PAGE,
        show_default=True,
        help="Objects per list page (limit/continue).",
    ),
    click.argument("files", nargs=-1),
]


def where_options(f: F) -> F:
    """The options of ``Where``, in its order, and FILES."""
    for option in reversed(_WHERE_OPTIONS):
        f = option(f)
    return f


@dataclass
class Scanned:
    obj: Mapping[str, Any]
    classification: Classification
    pods: list[PodRef]
    claim: tuple[str, str] | None = None  # the PVC bound to a PV: (namespace, name)

    @property
    def namespace(self) -> str | None:
        meta = self.obj.get("metadata")
        ns = meta.get("namespace") if isinstance(meta, Mapping) else None
        return ns if isinstance(ns, str) and ns else None

    @property
    def resource_version(self) -> str:
        meta = self.obj.get("metadata")
        rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        return str(rv) if rv else ""


def evaluate_one(
    engine: Engine, obj: Mapping[str, Any], inventory: NodeInventory, label: str
) -> Classification | None:
    """The verdict on one object as it stands (a CREATE review of it)."""
    try:
        return classify(engine.evaluate(obj, operation="CREATE", inventory=inventory))
    except InvalidObject as exc:
        raise BadRequest(f"{label}: {exc}") from None


class Pass:
    """One pass over a source: index pods first, then classify PVs and StorageClasses."""

    def __init__(self, engine: Engine, source: Source) -> None:
        self.engine, self.source = engine, source
        self.index = PodIndex()
        self.ignored = 0
        try:
            for kind in INDEX_KINDS:
                for obj in source.objects(kind):
                    self.index.add(obj)
            self.inventory = source.inventory()
        except ClusterError as exc:
            raise Refused(f"nfsguard: {exc}") from None

    def __iter__(self) -> Iterator[Scanned]:
        try:
            for kind in SCANNED_KINDS:
                for obj in self.source.objects(kind):
                    c = evaluate_one(self.engine, obj, self.inventory, self.source.label(obj))
                    if c is None:
                        self.ignored += 1
                        continue
                    if kind == "PersistentVolume":
                        name = c.target.name
                        yield Scanned(obj, c, self.index.pods_of(name), self.index.claim_of(name))
                    else:
                        yield Scanned(obj, c, [])
            for kind in POD_KINDS:
                for obj in self.source.objects(kind):
                    c = evaluate_one(self.engine, obj, self.inventory, self.source.label(obj))
                    if c is None:
                        continue  # not counted as ignored: most pods name no NFS volume
                    yield Scanned(obj, c, [])
        except ClusterError as exc:
            raise Refused(f"nfsguard: {exc}") from None


# --- output -----------------------------------------------------------------------------

output_option = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "yaml", "jsonl"]),
    default="table",
    show_default=True,
    help="table (grouped by verdict), json/yaml (one document), jsonl (a row per line).",
)


class Report:
    """Counts verdicts and prints rows; memory holds counters and the uncovered exports'
    evidence, never the rows: JSON lines go out as they come, and the table, JSON and
    YAML forms spool rows to temporary files (one per verdict for the table) and write
    the document at the end, so the report can be larger than memory."""

    def __init__(
        self,
        mode: str,
        out: IO[str] | None = None,
        *,
        columns: Callable[[dict[str, Any]], list[str]] | None = None,
    ) -> None:
        self.mode = mode
        self.out = out or sys.stdout
        self.summary = empty_summary()
        self.stranded = 0
        self.uncovered = Uncovered()
        self._spool: dict[str, IO[str]] = {}
        self._columns = columns

    def _spooled(self, key: str) -> IO[str]:
        spool = self._spool.get(key)
        if spool is None:
            spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed in finish
            self._spool[key] = spool
        return spool

    def add(self, scanned: Scanned, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        c = scanned.classification
        r = row(
            c,
            scanned.pods,
            resource_version=scanned.resource_version,
            claim=scanned.claim,
            namespace=scanned.namespace,
        )
        if extra:
            r.update(extra)
        self.summary[c.verdict.value] += 1
        self.stranded += sum(1 for p in scanned.pods if p.stranded)
        if self.uncovered.note(c, scanned.pods):
            r["uncoveredStranded"] = True
        line = json.dumps(r) + "\n"
        if self.mode == "jsonl":
            self.out.write(line)
        else:
            self._spooled(r["verdict"] if self.mode == "table" else "rows").write(line)
        return r

    def _rows(self, key: str) -> Iterator[dict[str, Any]]:
        spool = self._spool.pop(key, None)
        if spool is None:
            return
        with spool:
            spool.seek(0)
            for line in spool:
                yield json.loads(line)

    def finish(self, ignored: int = 0) -> None:
        w = self.out.write
        if self.mode == "json":
            w('{\n  "objects": [')
            for n, r in enumerate(self._rows("rows")):
                w(("," if n else "") + "\n    " + json.dumps(r))
            w('\n  ],\n  "summary": ' + json.dumps(self.summary) + "\n}\n")
        elif self.mode == "yaml":
            w("objects:")
            empty = True
            for r in self._rows("rows"):
                if empty:
                    w("\n")
                    empty = False
                w(yaml.dump([r], Dumper=_DUMPER, sort_keys=False, default_flow_style=False))
            if empty:
                w(" []\n")
            w(yaml.safe_dump({"summary": self.summary}, sort_keys=False))
        elif self.mode == "jsonl":
            w(json.dumps({"summary": self.summary}) + "\n")
        else:
            self._table(ignored)

    def _table(self, ignored: int) -> None:
        w = self.out.write
        for verdict in VERDICT_ORDER:
            if verdict.value not in self._spool:
                continue
            w(f"{verdict.value.upper()} ({self.summary[verdict.value]})\n")
            for r in self._rows(verdict.value):
                for text in table_lines(r, self._columns):
                    w(text + "\n")
            w("\n")
        w(summary_line(self.summary, stranded=self.stranded, ignored=ignored) + "\n")


def table_lines(
    r: Mapping[str, Any], columns: Callable[[dict[str, Any]], list[str]] | None = None
) -> list[str]:
    """One line per object, then what to act on: the patch, the way out, stranded pods."""
    rule = r["rule"] or "-"
    # Pods and workloads are namespaced, and one may hold several NFS volumes: the
    # table says which, as the JSON rows do (PVs and StorageClasses have neither).
    where = f"  namespace={r['namespace']}  volume={r['volume']}" if r.get("volume") else ""
    lines = [
        f"  {r['kind']}/{r['name']}{where}  export={r['export'] or '-'}  "
        f"version={r['version']}  rule={rule}"
    ]
    if r.get("uncoveredStranded"):
        lines.append("    no rule covers this export, and it strands pods (see --suggest-policy)")
    if r["patch"]:
        lines.append(f"    patch: {json.dumps(r['patch'])}")
    if r.get("wayOut"):
        lines.append(f"    why: {r['reason']}")
        lines.append(f"    way out: {r['wayOut']}")
    elif r["verdict"] == "denied":
        lines.append(f"    why: {r['reason']}")
    for p in r["pods"]:
        mark = "STRANDED" if p["stranded"] else p["phase"] or "?"
        lines.append(f"    pod {p['namespace']}/{p['name']} on {p['node'] or '-'}: {mark}")
    if columns is not None:
        lines.extend(columns(dict(r)))
    return lines
