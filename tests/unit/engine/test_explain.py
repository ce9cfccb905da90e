"""`nfsguard policy explain`: what is read, which rules match, which decides and why.

Real policy and manifest files, the real command; the decision explained is the
one `nfsguard review` (and the server) makes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from tests.support import nfsguard

POLICIES = {
    "10-site.yaml": """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: site
spec:
  version: "7"
  rules:
  - name: incident
    description: 4.2 mounts hang against this CentOS 7 server
    references:
    - https://bugzilla.redhat.com/show_bug.cgi?id=1552037
    match:
      exports:
      - server: 192.168.100.7
        path: /data1/k8sdev/**
    action: pin
  - name: warn-subnet
    match:
      exports: [{server: 192.168.100.0/24}]
    action: warn
  - name: exempt-labelled
    match:
      objectSelector: {matchLabels: {exempt: "yes"}}
    action: exempt
""",
    "20-kernels.yaml": """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: kernels
spec:
  version: "3"
  unknownNodes: assumeUnaffected
  rules:
  - name: el7-862
    match:
      nodeKernels: [{family: el7, min: 3.10.0-862, below: 3.10.0-957}]
    action: pin
""",
}

PV = """\
apiVersion: v1
kind: PersistentVolume
metadata:
  name: code-data
spec:
  storageClassName: nfs-ssd
  mountOptions: [hard, "nfsvers=4.2,timeo=600"]
  nfs: {server: 192.168.100.7, path: /data1/k8sdev/hl}
"""

LEGACY = """\
apiVersion: v1
kind: PersistentVolume
metadata:
  name: legacy
  labels: {exempt: "no"}
  annotations: {volume.beta.kubernetes.io/mount-options: "vers=4.1,hard"}
spec:
  mountOptions: [soft]
  nfs: {server: 192.168.100.7, path: /data1/k8sdev/old}
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: exempted
  labels: {exempt: "yes"}
spec:
  nfs: {server: 192.168.100.7, path: /data1/k8sdev/x}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: safe}
spec:
  mountOptions: [nfsvers=4.0]
  nfs: {server: 192.168.100.7, path: /data1/k8sdev/x}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: elsewhere}
spec:
  nfs: {server: 10.9.9.9, path: /x}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: not-nfs}
"""

NODES = """\
apiVersion: v1
kind: List
items:
- kind: Node
  metadata: {name: node003}
  status: {nodeInfo: {kernelVersion: 3.10.0-862.14.4.el7.x86_64}}
- kind: Node
  metadata: {name: node004}
  status: {nodeInfo: {kernelVersion: 3.10.0-1160.el7.x86_64}}
"""


def files(tmp_path: Path) -> Path:
    pol = tmp_path / "policies"
    pol.mkdir()
    for name, text in POLICIES.items():
        (pol / name).write_text(text)
    (tmp_path / "pv.yaml").write_text(PV)
    (tmp_path / "legacy.yaml").write_text(LEGACY)
    (tmp_path / "nodes.yaml").write_text(NODES)
    return pol


def explain(*args: str) -> tuple[int, str]:
    result = nfsguard("policy", "explain", *args)
    return result.exit_code, result.stdout


def in_order(text: str, expected: list[str]) -> None:
    """Every expected line appears, in this order (other lines may sit between)."""
    lines = text.splitlines()
    at = 0
    for line in expected:
        assert line in lines[at:], f"{line!r} not found after line {at}:\n{text}"
        at = lines.index(line, at) + 1


def test_text_for_the_incident_pv(tmp_path: Path) -> None:
    pol = files(tmp_path)
    code, out = explain("--policy", str(pol), str(tmp_path / "pv.yaml"))
    assert code == 0
    in_order(
        out,
        [
            f"PersistentVolume/code-data ({tmp_path}/pv.yaml)",
            "  driver:      in-tree-nfs",
            "  export:      192.168.100.7:/data1/k8sdev/hl",
            "  class:       nfs-ssd",
            "  options:",
            "    annotation                               (absent)",
            "    spec.mountOptions                        hard,nfsvers=4.2,timeo=600  "
            "[node reads, pin goes here]",
            "  node mounts: hard,nfsvers=4.2,timeo=600",
            "  version:     4.2 (explicit): affected",
            "  node scope:  all nodes",
            "  nodes:       unknown (offline review without --nodes): assumeUnaffected",
            "  matched (2):",
            "    site 7 / incident: pin  <- decides",
            "    site 7 / warn-subnet: warn",
            "  decided by:  site/incident (pin): pin outranks warn "
            "(precedence exempt > deny > pin > warn > audit)",
            "  outcome:     mutated",
            '  message:     rule "incident" (policy site version 7) pinned nfsvers=4.0 for '
            "192.168.100.7:/data1/k8sdev/hl (was NFS 4.2 (explicit))",
            "  warning:     add nfsvers=4.0 to the manifest (pinned, was 4.2): "
            "PersistentVolume/code-data (nfsguard rule incident)",
            "  after:       4.0 (explicit): safe",
            "  patch:",
            '    replace /spec/mountOptions ["hard", "nfsvers=4.0,timeo=600"]',
        ],
    )


def test_node_kernels_and_load_order_among_equals(tmp_path: Path) -> None:
    pol = files(tmp_path)
    args = ["--policy", str(pol), "--nodes", str(tmp_path / "nodes.yaml")]
    code, out = explain(*args, str(tmp_path / "pv.yaml"))
    assert code == 0
    in_order(
        out,
        [
            "  nodes:       kernels in scope: 3.10.0-1160.el7.x86_64, 3.10.0-862.14.4.el7.x86_64",
            "  matched (3):",
            "    site 7 / incident: pin  <- decides",
            "    site 7 / warn-subnet: warn",
            "    kernels 3 / el7-862: pin",
            "  decided by:  site/incident (pin): pin outranks warn (precedence exempt > deny > "
            "pin > warn > audit); first of 2 matching pin rules in load order (policy file name "
            "order, then rule order)",
        ],
    )


def test_legacy_annotation_exempt_compliant_unmatched_ignored(tmp_path: Path) -> None:
    pol = files(tmp_path)
    code, out = explain("--policy", str(pol), str(tmp_path / "legacy.yaml"))
    assert code == 0
    blocks = out.split("\n\n")
    assert len(blocks) == 5
    in_order(
        blocks[0],
        [
            "    annotation                               vers=4.1,hard  "
            "[node reads, pin goes here]",
            "    spec.mountOptions                        soft",
            "  node mounts: vers=4.1,hard",
            "  version:     4.1 (explicit): affected",
            "    replace /metadata/annotations/volume.beta.kubernetes.io~1mount-options "
            '"nfsvers=4.0,hard"',
        ],
    )
    in_order(
        blocks[1],
        [
            "    site 7 / incident: pin",
            "    site 7 / warn-subnet: warn",
            "    site 7 / exempt-labelled: exempt  <- decides",
            "  decided by:  site/exempt-labelled (exempt): exempt outranks pin, warn "
            "(precedence exempt > deny > pin > warn > audit)",
            "  outcome:     exempt",
        ],
    )
    in_order(
        blocks[2],
        [
            "  version:     4.0 (explicit): safe",
            "  why:         the effective version is safe: the object is compliant and no "
            "rule acts",
            "  outcome:     compliant",
        ],
    )
    in_order(
        blocks[3],
        [
            "  matched:     no rule",
            "  why:         no rule matches: nfsguard leaves the object alone",
            "  outcome:     unmatched",
        ],
    )
    assert blocks[4] == (
        f"ConfigMap/not-nfs ({tmp_path}/legacy.yaml)\n"
        "  outcome:     ignored (not an NFS object in scope)\n"
    )


KEYS = {
    "source",
    "kind",
    "name",
    "operation",
    "inScope",
    "driver",
    "provisioner",
    "server",
    "path",
    "storageClass",
    "optionPlaces",
    "pinPlace",
    "nodeOptions",
    "effectiveVersion",
    "nodeScope",
    "nodes",
    "matched",
    "deciding",
    "reason",
    "outcome",
    "allowed",
    "message",
    "warnings",
    "after",
    "patch",
}


def test_json_output_has_stable_keys_and_the_review_decision(tmp_path: Path) -> None:
    pol = files(tmp_path)
    args = ["--policy", str(pol), "--nodes", str(tmp_path / "nodes.yaml")]
    code, out = explain(
        *args, "-o", "json", str(tmp_path / "pv.yaml"), str(tmp_path / "legacy.yaml")
    )
    assert code == 0
    items: list[dict[str, Any]] = json.loads(out)
    assert [(i["name"], i["outcome"]) for i in items] == [
        ("code-data", "mutated"),
        ("legacy", "mutated"),
        ("exempted", "exempt"),
        ("safe", "compliant"),
        ("elsewhere", "mutated"),  # the el7-862 rule: node003 runs 3.10.0-862
        ("not-nfs", "ignored"),
    ]
    for item in items:
        assert set(item) >= KEYS, KEYS - set(item)
    pv = items[0]
    assert pv["optionPlaces"][1] == {
        "place": "spec.mountOptions",
        "pointer": "/spec/mountOptions",
        "present": True,
        "nodeReads": True,
        "mutable": True,
        "entries": ["hard", "nfsvers=4.2,timeo=600"],
        "versionOptions": ["nfsvers=4.2"],
    }
    assert pv["effectiveVersion"] == {
        "version": "4.2",
        "kind": "explicit",
        "affected": True,
        "options": ["nfsvers=4.2"],
        "description": "4.2 (explicit)",
    }
    assert [(m["policy"], m["rule"], m["action"], m["deciding"]) for m in pv["matched"]] == [
        ("site", "incident", "pin", True),
        ("site", "warn-subnet", "warn", False),
        ("kernels", "el7-862", "pin", False),
    ]
    deciding = pv["deciding"]
    assert deciding["rule"] == "incident" and deciding["policyVersion"] == "7"
    assert deciding["policyDigest"].startswith("sha256:")
    assert deciding["description"] == "4.2 mounts hang against this CentOS 7 server"
    assert deciding["references"] == ["https://bugzilla.redhat.com/show_bug.cgi?id=1552037"]
    assert deciding["defined"] == f"{pol}/10-site.yaml:8:5"
    assert deciding["reason"].startswith("pin outranks warn")
    assert pv["after"] == {
        "version": "4.0",
        "kind": "explicit",
        "affected": False,
        "options": ["nfsvers=4.0"],
    }
    # the patch is the one `nfsguard review` applies
    reviewed = nfsguard(
        "review",
        "--policy",
        str(pol),
        "--nodes",
        str(tmp_path / "nodes.yaml"),
        str(tmp_path / "pv.yaml"),
    )
    assert reviewed.exit_code == 0
    patched = jsonpatch.apply_patch(yaml.safe_load(PV), pv["patch"])
    assert patched == yaml.safe_load(reviewed.stdout)
    ignored = items[-1]
    assert ignored["inScope"] is False and ignored["matched"] == [] and ignored["deciding"] is None


def test_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    pol = files(tmp_path)
    proc = nfsguard("policy", "explain", "--policy", str(pol), str(tmp_path / "nope.yaml"))
    assert (proc.exit_code, proc.stdout) == (2, "")
    assert proc.stderr == f"{tmp_path}/nope.yaml: no such file or directory\n"
    assert len(proc.stderr.splitlines()) == 1
