"""What the speed benchmark sends and loads: a PV CREATE review and N-rule policies.

The review is a PersistentVolume CREATE as kube-apiserver sends it (defaults applied,
managedFields set before admission, ``oldObject`` null), asking for ``nfsvers=4.1`` on
an export that one ``pin`` rule names: the most expensive path (match, decide, build a
patch and prove it applies). Only a handful of the generated rules can match it; every
other rule names another export, CIDR, host, provisioner or StorageClass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

#: The export the review mounts, and which generated rules can match it.
SERVER = "10.0.0.1"
SHARE = "/exports/vol0/db"
STORAGE_CLASS = "nfs-bench"
ACTIONS = ("pin", "warn", "audit", "deny", "exempt")
#: Glob rules are not indexed by key (any host may match them): a fixed few, whatever N.
GLOB_RULES = 2


def pv_object(name: str = "pv-bench-0001") -> dict[str, Any]:
    return {
        "kind": "PersistentVolume",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": "6f1d9a53-3f2e-4c55-9d7e-2b8f1c0e4a11",
            "creationTimestamp": "2026-11-27T09:00:00Z",
            "labels": {"app.kubernetes.io/part-of": "db", "tier": "storage"},
            "annotations": {"pv.kubernetes.io/provisioned-by": "manual"},
            "managedFields": [
                {
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2026-11-27T09:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {
                            "f:annotations": {".": {}, "f:pv.kubernetes.io/provisioned-by": {}},
                            "f:labels": {".": {}, "f:app.kubernetes.io/part-of": {}, "f:tier": {}},
                        },
                        "f:spec": {
                            "f:accessModes": {},
                            "f:capacity": {".": {}, "f:storage": {}},
                            "f:mountOptions": {},
                            "f:nfs": {".": {}, "f:path": {}, "f:server": {}},
                            "f:persistentVolumeReclaimPolicy": {},
                            "f:storageClassName": {},
                            "f:volumeMode": {},
                        },
                    },
                }
            ],
        },
        "spec": {
            "capacity": {"storage": "100Gi"},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": STORAGE_CLASS,
            "mountOptions": ["nfsvers=4.1", "hard", "timeo=600", "retrans=2"],
            "volumeMode": "Filesystem",
            "nfs": {"server": SERVER, "path": SHARE},
        },
        "status": {"phase": "Pending"},
    }


def review(uid: str = "0df28fbd-5f5f-11e8-bc74-36e6bb280816") -> dict[str, Any]:
    gvk = {"group": "", "version": "v1", "kind": "PersistentVolume"}
    gvr = {"group": "", "version": "v1", "resource": "persistentvolumes"}
    obj = pv_object()
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": obj["metadata"]["name"],
            "operation": "CREATE",
            "userInfo": {
                "username": "kubernetes-admin",
                "groups": ["system:masters", "system:authenticated"],
            },
            "object": obj,
            "oldObject": None,
            "dryRun": False,
            "options": {
                "kind": "CreateOptions",
                "apiVersion": "meta.k8s.io/v1",
                "fieldManager": "kubectl-client-side-apply",
            },
        },
    }


def review_body() -> bytes:
    return json.dumps(review(), separators=(",", ":")).encode()


def _rule(i: int) -> dict[str, Any]:
    """Rule i of a generated policy; rules 0-2 (and the globs) can match the review."""
    action = ("pin", "audit", "warn")[i] if i < 3 else ACTIONS[i % len(ACTIONS)]
    name = f"r{i:05d}-{action}"
    if i == 0:  # the deciding rule: pin the review's export
        return {
            "name": name,
            "action": action,
            "match": {"exports": [{"server": SERVER, "path": "/exports/vol0/**"}]},
        }
    if i == 1:  # the subnet the export lives in: audit
        return {"name": name, "action": action, "match": {"exports": [{"server": "10.0.0.0/16"}]}}
    if i == 2:  # the review's StorageClass, excluded for one label value
        return {
            "name": name,
            "action": action,
            "match": {"storageClassNames": [STORAGE_CLASS]},
            "exclude": {"objectSelector": {"matchLabels": {"tier": "scratch"}}},
        }
    if 3 <= i < 3 + GLOB_RULES:
        return {
            "name": name,
            "action": action,
            "match": {"exports": [{"server": f"*.glob{i}.example.test"}]},
        }
    kind = i % 5
    a, b = (i // 250) % 250, i % 250
    if kind == 0:  # another IP, another path
        match: dict[str, Any] = {
            "exports": [{"server": f"10.{1 + i // 62500}.{a}.{b}", "path": f"/exports/vol{i}/**"}]
        }
    elif kind == 1:  # another subnet
        match = {"exports": [{"server": f"172.{16 + (i // 62500) % 16}.{a}.{b}/32"}]}
    elif kind == 2:  # another host
        match = {"exports": [{"server": f"filer-{i}.storage.example.test"}]}
    elif kind == 3:  # another provisioner
        match = {"provisioners": [f"nfs-{i}.csi.example.test"]}
    else:  # another StorageClass
        match = {"storageClassNames": [f"sc-{i}"]}
    return {"name": name, "action": action, "match": match}


def policy(rules: int) -> dict[str, Any]:
    return {
        "apiVersion": "nfsguard.io/v1alpha1",
        "kind": "NFSMountPolicy",
        "metadata": {"name": f"bench-{rules}"},
        "spec": {
            "version": f"bench-{rules}",
            "pin": "4.0",
            "rules": [_rule(i) for i in range(rules)],
        },
    }


def policy_yaml(rules: int) -> str:
    """The N-rule policy as an operator would write it (block-style YAML)."""
    return str(yaml.safe_dump(policy(rules), sort_keys=False))


def write_policy(directory: Path, rules: int) -> Path:
    """The N-rule policy as a file, for ``nfsguard serve --policy``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"bench-{rules}.yaml"
    path.write_text(policy_yaml(rules))
    return path
