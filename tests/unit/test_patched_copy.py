"""The engine proves a patch applies on a copy that shares untouched subtrees with the
object: the result must be what applying to a deep copy gives, and the object given
must not change."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from webhook.core.policy.engine import _patched_copy


def _pv() -> dict[str, Any]:
    return {
        "kind": "PersistentVolume",
        "metadata": {
            "name": "pv",
            "annotations": {"volume.beta.kubernetes.io/mount-options": "vers=4.1"},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {
            "mountOptions": ["nfsvers=4.1", "hard"],
            "nfs": {"server": "10.0.0.1", "path": "/x"},
            "csi": {"driver": "nfs.csi.k8s.io", "volumeAttributes": {"mountOptions": "v4.2"}},
        },
    }


PATCHES: list[list[dict[str, Any]]] = [
    [{"op": "replace", "path": "/spec/mountOptions", "value": ["nfsvers=4.0", "hard"]}],
    [{"op": "add", "path": "/spec/mountOptions/-", "value": "nfsvers=4.0"}],
    [{"op": "remove", "path": "/spec/mountOptions/0"}],
    [{"op": "remove", "path": "/metadata/annotations/volume.beta.kubernetes.io~1mount-options"}],
    [
        {"op": "replace", "path": "/spec/csi/volumeAttributes/mountOptions", "value": "v4.0"},
        {"op": "replace", "path": "/spec/mountOptions/1", "value": "soft"},
        {"op": "test", "path": "/spec/nfs/server", "value": "10.0.0.1"},
    ],
    [
        {"op": "add", "path": "/spec/extra", "value": {}},
        {"op": "add", "path": "/spec/extra/mountOptions", "value": ["nfsvers=4.0"]},
    ],
    [{"op": "add", "path": "/spec/mountOptions/0", "value": "nfsvers=4.0"}],
    [{"op": "add", "path": "/spec/mountOptions/2", "value": "nfsvers=4.0"}],  # == len: append
    [{"op": "add", "path": "/metadata/managedFields/0/fieldsV1/f:x", "value": {"a": [1]}}],
    [{"op": "add", "path": "/metadata/annotations/-", "value": "a dict key named -"}],
    [{"op": "add", "path": "/spec/nfs/server", "value": "10.0.0.2"}],  # add overwrites
    [{"op": "remove", "path": "/spec/csi/volumeAttributes"}],
    [
        {"op": "remove", "path": "/spec/mountOptions/0"},
        {"op": "remove", "path": "/spec/mountOptions/0"},
        {"op": "add", "path": "/spec/mountOptions/-", "value": "nfsvers=4.0"},
    ],
    [{"op": "copy", "from": "/spec/nfs", "path": "/spec/nfs2"}],  # not a path-only op
    [{"op": "test", "path": "/spec/nfs/server", "value": "10.0.0.1"}],
]


@pytest.mark.parametrize("ops", PATCHES)
def test_same_result_as_a_deep_copy_and_object_untouched(ops: list[dict[str, Any]]) -> None:
    obj = _pv()
    before = copy.deepcopy(obj)
    expected = jsonpatch.apply_patch(copy.deepcopy(obj), ops)
    assert _patched_copy(obj, ops) == expected
    assert obj == before


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "replace", "path": "/spec/missing/mountOptions", "value": []}],
        [{"op": "remove", "path": "/spec/mountOptions/7"}],
        [{"op": "add", "path": "/spec/mountOptions/3", "value": "x"}],  # > len
        [{"op": "replace", "path": "/spec/mountOptions/01", "value": "x"}],  # leading zero
        [{"op": "replace", "path": "/spec/nfs/missing", "value": "x"}],
        [{"op": "remove", "path": "/metadata/labels"}],
        [{"op": "add", "path": "/spec/mountOptions/0/x", "value": "x"}],  # into a string
        [{"op": "replace", "path": "/spec/mountOptions/0"}],  # no value
        [
            {"op": "add", "path": "/spec/mountOptions/-", "value": "x"},
            {"op": "test", "path": "/spec/mountOptions/0", "value": "wrong"},
        ],
        [
            {"op": "replace", "path": "/spec/mountOptions/0", "value": "x"},
            {"op": "remove", "path": "/spec/nfs/server/deeper"},
        ],
    ],
)
def test_a_patch_that_does_not_apply_fails_the_same_way(ops: list[dict[str, Any]]) -> None:
    obj = _pv()
    before = copy.deepcopy(obj)
    with pytest.raises((jsonpatch.JsonPatchException, jsonpatch.JsonPointerException)) as deep:
        jsonpatch.apply_patch(copy.deepcopy(obj), ops)
    with pytest.raises(type(deep.value)):
        _patched_copy(obj, ops)
    assert obj == before
