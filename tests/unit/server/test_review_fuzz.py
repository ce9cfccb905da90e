"""Property tests over the AdmissionReview parser and /mutate (hypothesis, bounded and
derandomized): whatever body arrives, the answer is a review answered in band (HTTP
200, the uid echoed, a patch that applies) or a one-line JSON 4xx, never a 500; and
``parse_review`` raises nothing but the project's own 4xx errors.

Bodies are raw bytes, arbitrary JSON, and AdmissionReviews of the shapes nfsguard
reviews (PV, CSI PV, StorageClass, Pod, Deployment) with junk put in at any level:
values replaced by other types, keys removed or added. The WSGI app is the served
one (webhook/server/app.py) over Werkzeug's test client; tests/integration runs it
under gunicorn over TLS.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import jsonpatch
from hypothesis import event, given
from hypothesis import strategies as st
from werkzeug.test import Client

from tests.fixtures.samples import csi_pv, csi_volume, nfs_volume, pv, storage_class, workload
from tests.integration.conftest import admission_review
from tests.support import fuzzing
from tests.unit.server.test_app import ENGINE, ready
from webhook.admission.errors import AdmissionError
from webhook.admission.handler import ReviewHandler
from webhook.admission.review import parse_review
from webhook.server.app import MUTATE_PATH, WebhookApp

APP = Client(WebhookApp(ReviewHandler(lambda: ENGINE), ready))

#: Objects in every shape nfsguard decides: pinned, denied, compliant, and Pods.
OBJECTS: list[dict[str, Any]] = [
    pv("pv-incident", server="192.168.100.7", path="/data1/k8sdev/a", mount_options=["hard"]),
    pv("pv-legacy", server="filer9.legacy.corp", path="/vol"),
    pv("pv-safe", mount_options=["nfsvers=4.0", "hard"]),
    csi_pv("pv-csi", mount_options=["vers=4.2"]),
    storage_class("nfs-ssd", mount_options=["nfsvers=4.1"]),
    workload("Pod", [nfs_volume(), csi_volume(mount_options="vers=4.2,hard")]),
    workload("Deployment", [csi_volume()]),
]

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=16),
    st.sampled_from(["", "nfsvers=4.1", "vers=4.2,hard", "192.168.100.7", "CREATE", "v1"]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def mutated_review(draw: st.DrawFn) -> dict[str, Any]:
    """An AdmissionReview of one of OBJECTS (any operation, the object as oldObject too),
    then 1-3 edits, each at a random depth, mostly inside the object: a value replaced
    by junk, a key removed, or a junk key added."""
    obj = copy.deepcopy(draw(st.sampled_from(OBJECTS)))
    operation = draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]))
    review = admission_review(obj, operation=operation, uid="fuzz-uid", old=copy.deepcopy(obj))
    for _ in range(draw(st.integers(1, 3))):
        # mostly inside the object (what users write), sometimes the envelope
        request = review.get("request")
        inside = request.get("object") if isinstance(request, dict) else None
        node: Any = inside if isinstance(inside, dict) and draw(st.integers(0, 9)) < 7 else review
        while True:
            children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
            if not children:
                break
            key, child = draw(st.sampled_from(children))
            if isinstance(child, dict | list) and child and draw(st.integers(0, 3)) > 0:
                node = child
                continue
            action = draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "replace" or not isinstance(node, dict):
                node[key] = draw(JSON)
            elif action == "remove":
                del node[key]
            else:
                node[draw(st.text(max_size=8))] = draw(JSON)
            break
    return review


REVIEWS = mutated_review().map(lambda review: json.dumps(review).encode())
BODIES = st.one_of(
    st.binary(max_size=256), JSON.map(lambda value: json.dumps(value).encode()), REVIEWS, REVIEWS
)


def _post(body: bytes) -> Any:
    return APP.post(MUTATE_PATH, data=body, headers={"Content-Type": "application/json"})


def _check_answer(body: bytes, http: Any) -> None:
    assert http.status_code in (200, 400), (http.status_code, http.data)
    assert http.headers["Content-Type"] == "application/json"
    data = json.loads(http.data)
    response = data.get("response") or {}
    event(
        "patched"
        if "patch" in response
        else "denied"
        if response.get("allowed") is False
        else "allowed"
        if response
        else "400"
    )
    if http.status_code == 400:
        assert http.data.count(b"\n") == 0
        assert data["code"] == 400 and isinstance(data["error"], str) and data["error"]
        return
    review = json.loads(body)
    request = review["request"]
    assert (data["apiVersion"], data["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert response["uid"] == request["uid"]
    assert isinstance(response["allowed"], bool)
    if not response["allowed"]:
        assert "patch" not in response
        assert isinstance(response["status"]["message"], str)
        return
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(response["patch"])))
        admitted = patch.apply(request["object"])  # applies to what the apiserver holds
        # reinvoked on what it admitted, the webhook has nothing more to change
        again = copy.deepcopy(review)
        again["request"]["object"] = admitted
        second = json.loads(_post(json.dumps(again).encode()).data)["response"]
        assert second["allowed"] is True and "patch" not in second, second


@fuzzing(300)
@given(body=BODIES)
def test_mutate_answers_any_body_in_band_or_with_a_one_line_4xx(body: bytes) -> None:
    _check_answer(body, _post(body))


@fuzzing(300)
@given(body=BODIES)
def test_parse_review_raises_only_the_projects_4xx_errors(body: bytes) -> None:
    try:
        request = parse_review(body)
    except AdmissionError as exc:
        assert 400 <= exc.status < 500 and exc.message and "\n" not in exc.message
    else:
        assert request.uid
