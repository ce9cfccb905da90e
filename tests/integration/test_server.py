"""The served webhook over real HTTPS: real gunicorn, real TLS, requests sent exactly as
kube-apiserver sends them, every patch decoded and applied with jsonpatch.

(Over 400 lines: the wire contract case by case against one real server.)"""

from __future__ import annotations

import base64
import copy
import dataclasses
import http.client
import json
import re
import socket
import ssl
import warnings
from collections.abc import Mapping
from typing import Any

import jsonpatch
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.samples import (
    LEGACY,
    config_map,
    csi_pv,
    decision_table,
    host_path_pv,
    pv,
    storage_class,
)
from tests.integration.conftest import (
    APISERVER_HEADERS,
    MUTATE_PATH,
    POLICIES,
    ServerHandle,
    admission_review,
    apiserver_session,
    post_review,
)
from tests.support import load_policies
from webhook.files.sources import read_policy_sources
from webhook.nfs.options import is_version_option, split_options

QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

# -- checking a response the way kube-apiserver does -------------------------------------


def verified_response(http: requests.Response, uid: str) -> dict[str, Any]:
    """The ``response`` of an answer that VerifyAdmissionResponse accepts."""
    assert http.status_code == 200, http.text
    assert http.headers["Content-Type"].startswith("application/json")
    review = http.json()
    assert review["apiVersion"] == "admission.k8s.io/v1"
    assert review["kind"] == "AdmissionReview"
    response: dict[str, Any] = review["response"]
    assert response["uid"] == uid
    assert isinstance(response["allowed"], bool)
    assert ("patch" in response) == ("patchType" in response)
    if "patchType" in response:
        assert response["patchType"] == "JSONPatch"
    for warning in response.get("warnings", []):
        assert len(warning) < 120, warning
        assert warning.isprintable(), warning
    for key, value in (response.get("auditAnnotations") or {}).items():
        assert "/" not in key and len(key) <= 63 and QUALIFIED_NAME.match(key), key
        assert isinstance(value, str)
    if not response["allowed"]:
        assert response["status"]["code"] >= 400
        assert response["status"]["message"]
    return response


def decoded_patch(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "patch" not in response:
        return []
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"], validate=True))
    assert isinstance(ops, list) and ops
    return ops


def applied(obj: Mapping[str, Any], response: Mapping[str, Any]) -> dict[str, Any]:
    """The object as the apiserver stores it after the patch."""
    patched: dict[str, Any] = jsonpatch.JsonPatch(decoded_patch(response)).apply(
        copy.deepcopy(dict(obj))
    )
    return patched


def node_options(obj: Mapping[str, Any]) -> list[str]:
    """What the node mounts with: annotation if present, else mountOptions, + CSI attribute."""
    if obj["kind"] == "StorageClass":
        return split_options(obj.get("mountOptions") or [])
    annotations = obj["metadata"].get("annotations") or {}
    entries = (
        [annotations[LEGACY]] if LEGACY in annotations else obj["spec"].get("mountOptions") or []
    )
    attrs = (obj["spec"].get("csi") or {}).get("volumeAttributes") or {}
    entries += [v for k, v in attrs.items() if k.lower() == "mountoptions"]
    return split_options(entries)


def assert_pinned(obj: Mapping[str, Any], pin: str = "4.0") -> None:
    assert [o for o in node_options(obj) if is_version_option(o)] == [f"nfsvers={pin}"]
    if obj["kind"] == "PersistentVolume" and LEGACY in (obj["metadata"].get("annotations") or {}):
        assert not any(
            is_version_option(o) for o in split_options(obj["spec"].get("mountOptions") or [])
        )


def review_of(
    server: ServerHandle, obj: Mapping[str, Any] | None, **kwargs: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    review = admission_review(obj, **kwargs)
    response = verified_response(post_review(server, review), review["request"]["uid"])
    return review, response


def assert_error(http: requests.Response, *codes: int) -> None:
    """A refused request: a 4xx with a one-line JSON error, never a 500."""
    assert 400 <= http.status_code < 500, (http.status_code, http.text[:300])
    if codes:
        assert http.status_code in codes, (http.status_code, http.text[:300])
    assert http.headers["Content-Type"].startswith("application/json")
    body = http.json()
    assert isinstance(body["error"], str) and body["error"]
    assert "\n" not in body["error"]
    assert body["code"] == http.status_code
    assert http.text.count("\n") <= 1


def assert_still_serving(server: ServerHandle) -> None:
    _review, response = review_of(server, pv("after-error"))
    assert response["allowed"] and "patch" in response
    assert server.alive()


# -- reviews -------------------------------------------------------------------------------


def test_pin_over_https(nfsguard_server: ServerHandle) -> None:
    obj = pv(mount_options=["vers=4.2", "hard"])
    _review, response = review_of(nfsguard_server, obj, uid="0df28fbd-5f5f-11e8-bc74-36e6bb280816")
    assert response["uid"] == "0df28fbd-5f5f-11e8-bc74-36e6bb280816"
    assert response["allowed"] is True
    patched = applied(obj, response)
    assert patched["spec"]["mountOptions"] == ["nfsvers=4.0", "hard"]
    assert_pinned(patched)
    (warning,) = response["warnings"]
    assert "incident-node003-hang" in warning and "nfsvers=4.0" in warning
    annotations = response["auditAnnotations"]
    assert annotations["outcome"] == "mutated"
    assert annotations["policy"] == "site-rules"
    assert annotations["policy-version"] == "2026.11.27-1"
    assert annotations["rule"] == "incident-node003-hang"
    # reinvocation with the patched object: no further patch
    _, again = review_of(nfsguard_server, patched)
    assert again["allowed"] and "patch" not in again and "warnings" not in again


def test_pin_when_mount_options_are_absent(nfsguard_server: ServerHandle) -> None:
    obj = pv()
    assert "mountOptions" not in obj["spec"]
    _, response = review_of(nfsguard_server, obj)
    ops = decoded_patch(response)
    assert ops == [{"op": "add", "path": "/spec/mountOptions", "value": ["nfsvers=4.0"]}]
    patched = applied(obj, response)
    assert_pinned(patched)
    sc = storage_class("nfs-ssd", server="10.99.0.2", share="/ssd")
    _, response = review_of(nfsguard_server, sc)
    assert decoded_patch(response)[0]["op"] == "add"
    assert_pinned(applied(sc, response))


@pytest.mark.parametrize(("label", "obj"), decision_table(), ids=[t[0] for t in decision_table()])
def test_every_answer_applies_and_reinvocation_is_quiet(
    nfsguard_server: ServerHandle, label: str, obj: dict[str, Any]
) -> None:
    _, response = review_of(nfsguard_server, obj)
    if "patch" in response:
        patched = applied(obj, response)
        assert_pinned(patched)
        _, again = review_of(nfsguard_server, patched)
        assert again["allowed"] and "patch" not in again, label
    # dryRun gives the same answer
    _, dry = review_of(nfsguard_server, obj, dry_run=True)
    assert dry["allowed"] == response["allowed"]
    assert decoded_patch(dry) == decoded_patch(response)
    assert dry.get("warnings") == response.get("warnings")


def test_legacy_annotation_and_csi_attribute(nfsguard_server: ServerHandle) -> None:
    obj = pv(annotations={LEGACY: "vers=4.1,hard"}, mount_options=["nfsvers=4.2", "timeo=600"])
    _, response = review_of(nfsguard_server, obj)
    patched = applied(obj, response)
    assert patched["metadata"]["annotations"][LEGACY] == "nfsvers=4.0,hard"
    assert patched["spec"]["mountOptions"] == ["timeo=600"]
    assert_pinned(patched)
    csi = csi_pv(attrs={"MountOptions": "nfsvers=4.2,hard"})
    _, response = review_of(nfsguard_server, csi)
    patched = applied(csi, response)
    assert patched["spec"]["csi"]["volumeAttributes"]["MountOptions"] == "hard"
    assert_pinned(patched)
    # UPDATE cannot touch the immutable attribute: allowed unchanged, with a warning
    _, response = review_of(nfsguard_server, csi, operation="UPDATE", old=csi)
    assert response["allowed"] and "patch" not in response
    assert response["warnings"]


def test_denial(nfsguard_server: ServerHandle) -> None:
    obj = pv("pv-legacy-filer", server="filer9.legacy.corp", path="/vol")
    _, response = review_of(nfsguard_server, obj)
    assert response["allowed"] is False
    assert "patch" not in response
    status = response["status"]
    assert status["code"] >= 400
    message = status["message"]
    assert "legacy-filers-deny" in message and "2026.11.27-1" in message
    assert "nfsvers=4.0" in message
    assert response["auditAnnotations"]["outcome"] == "denied"
    _, dry = review_of(nfsguard_server, obj, dry_run=True)
    assert dry["allowed"] is False and dry["status"]["message"] == message


@pytest.mark.parametrize(
    ("obj", "kwargs"),
    [
        (host_path_pv(), {}),
        (storage_class("gp3", provisioner="ebs.csi.aws.com"), {}),
        (config_map(), {}),
        (None, {"operation": "DELETE", "old": pv()}),
        (pv(), {"operation": "CONNECT"}),
        (pv(), {"sub_resource": "status", "operation": "UPDATE"}),
    ],
    ids=["hostpath-pv", "ebs-sc", "configmap", "delete", "connect", "status-subresource"],
)
def test_out_of_scope_passes_untouched(
    nfsguard_server: ServerHandle, obj: dict[str, Any] | None, kwargs: dict[str, Any]
) -> None:
    _, response = review_of(nfsguard_server, obj, **kwargs)
    assert response["allowed"] is True
    assert "patch" not in response and "warnings" not in response
    assert "auditAnnotations" not in response


def test_generate_name_on_create(nfsguard_server: ServerHandle) -> None:
    obj = pv()
    del obj["metadata"]["name"]
    obj["metadata"]["generateName"] = "pv-nfs-"
    review = admission_review(obj)
    assert review["request"]["name"] == ""
    response = verified_response(post_review(nfsguard_server, review), review["request"]["uid"])
    assert_pinned(applied(obj, response))


# -- bad input -------------------------------------------------------------------------


def _body(review: Mapping[str, Any]) -> bytes:
    return json.dumps(review).encode()


def _with(change: Any) -> bytes:
    review = admission_review(pv())
    change(review)
    return _body(review)


BAD_BODIES: list[tuple[str, bytes]] = [
    ("malformed-json", b'{"apiVersion": "admission.k8s.io/v1", "kind":'),
    ("empty", b""),
    ("not-utf8", b"\xff\xfe\x00{"),
    ("array", b"[1, 2, 3]"),
    ("string", b'"AdmissionReview"'),
    ("null", b"null"),
    ("number", b"42"),
    ("wrong-api-version", _with(lambda r: r.__setitem__("apiVersion", "admission.k8s.io/v1beta1"))),
    ("missing-request", _with(lambda r: r.pop("request"))),
    ("request-not-object", _with(lambda r: r.__setitem__("request", [1]))),
    ("missing-uid", _with(lambda r: r["request"].pop("uid"))),
    ("uid-not-string", _with(lambda r: r["request"].__setitem__("uid", 12))),
    ("missing-kind", _with(lambda r: r["request"].pop("kind"))),
    ("missing-operation", _with(lambda r: r["request"].pop("operation"))),
    ("missing-object", _with(lambda r: r["request"].pop("object"))),
    ("object-not-object", _with(lambda r: r["request"].__setitem__("object", "pv"))),
    ("dry-run-not-bool", _with(lambda r: r["request"].__setitem__("dryRun", "yes"))),
    ("groups-not-list", _with(lambda r: r["request"]["userInfo"].__setitem__("groups", "x"))),
    ("deep-arrays", b"[" * 100_000 + b"]" * 100_000),
    (
        "deep-object",
        _body(admission_review(pv()))[:-3]
        + b', "deep": '
        + b'{"a":' * 50_000
        + b"1"
        + b"}" * 50_000
        + b"}}}",
    ),
]


@pytest.mark.parametrize(("label", "body"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_input_is_a_4xx_never_a_500(
    nfsguard_server: ServerHandle, label: str, body: bytes
) -> None:
    assert_error(post_review(nfsguard_server, None, raw=body), 400)
    assert_still_serving(nfsguard_server)


#: AdmissionReviews whose object no apiserver sends: answered in band, not with an HTTP error.
UNREVIEWABLE: list[tuple[str, Any]] = [
    (
        "mount-options-string",
        lambda r: r["request"]["object"]["spec"].__setitem__("mountOptions", "vers=4.1"),
    ),
    (
        "mount-options-numbers",
        lambda r: r["request"]["object"]["spec"].__setitem__("mountOptions", [4.1]),
    ),
    ("spec-list", lambda r: r["request"]["object"].__setitem__("spec", ["nfs"])),
    ("nfs-list", lambda r: r["request"]["object"]["spec"].__setitem__("nfs", [1])),
    ("metadata-string", lambda r: r["request"]["object"].__setitem__("metadata", "x")),
    (
        "annotations-list",
        lambda r: r["request"]["object"]["metadata"].__setitem__("annotations", ["a"]),
    ),
    (
        "labels-not-strings",
        lambda r: r["request"]["object"]["metadata"].__setitem__("labels", {"a": 1}),
    ),
    ("kind-mismatch", lambda r: r["request"]["object"].__setitem__("kind", "StorageClass")),
]


@pytest.mark.parametrize(("label", "change"), UNREVIEWABLE, ids=[u[0] for u in UNREVIEWABLE])
def test_an_object_that_cannot_be_reviewed_is_refused_in_band(
    nfsguard_server: ServerHandle, label: str, change: Any
) -> None:
    """HTTP 200, ``allowed: false``, code 400: a refusal failurePolicy does not apply to, so
    even ``failurePolicy: Ignore`` cannot admit the object unreviewed."""
    review = admission_review(pv())
    change(review)
    response = verified_response(
        post_review(nfsguard_server, None, raw=_body(review)), review["request"]["uid"]
    )
    assert response["allowed"] is False
    assert "patch" not in response and "patchType" not in response
    assert response["status"]["code"] == 400
    assert "\n" not in response["status"]["message"]
    assert_still_serving(nfsguard_server)


def test_wrong_content_type_is_415(nfsguard_server: ServerHandle) -> None:
    body = _body(admission_review(pv()))
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/yaml"):
        response = post_review(nfsguard_server, None, raw=body, headers={"Content-Type": ctype})
        assert_error(response, 415)
    assert_still_serving(nfsguard_server)


def test_body_over_the_limit_is_413(nfsguard_server: ServerHandle) -> None:
    limit = 6 * 1024 * 1024 + 64 * 1024
    review = admission_review(pv())
    review["request"]["object"]["metadata"]["annotations"] = {"big": ""}
    head = _body(review)
    filler = limit + 1 - len(head)
    review["request"]["object"]["metadata"]["annotations"]["big"] = "x" * filler
    body = _body(review)
    assert len(body) == limit + 1
    assert_error(post_review(nfsguard_server, None, raw=body), 413)
    assert_still_serving(nfsguard_server)


def test_a_6_mib_review_is_accepted(nfsguard_server: ServerHandle) -> None:
    # an UPDATE carries object and oldObject, each up to the apiserver's 3 MiB
    obj = pv(mount_options=["vers=4.1"])
    obj["metadata"]["annotations"] = {"example.com/blob": "y" * (3 * 1024 * 1024 - 4096)}
    review = admission_review(obj, operation="UPDATE", old=obj)
    body = _body(review)
    assert 6 * 1024 * 1024 - 16 * 1024 < len(body) <= 6 * 1024 * 1024
    response = verified_response(
        post_review(nfsguard_server, None, raw=body), review["request"]["uid"]
    )
    assert_pinned(applied(obj, response))


# -- TLS and connections ---------------------------------------------------------------


def _tls_handshake(server: ServerHandle, version: ssl.TLSVersion) -> str | None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(server.ca_crt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old versions at all
    ctx.set_alpn_protocols(["http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.selected_alpn_protocol() in (None, "http/1.1")
        return tls.version()


def test_tls_11_is_refused_by_the_server(nfsguard_server: ServerHandle) -> None:
    with pytest.raises(ssl.SSLError) as info:
        _tls_handshake(nfsguard_server, ssl.TLSVersion.TLSv1_1)
    # the server's alert, not a client-side refusal
    assert "PROTOCOL_VERSION" in str(info.value).upper()
    assert_still_serving(nfsguard_server)


def test_tls_12_and_13_are_accepted(nfsguard_server: ServerHandle) -> None:
    assert _tls_handshake(nfsguard_server, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _tls_handshake(nfsguard_server, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


def test_serving_certificate_has_san(nfsguard_server: ServerHandle) -> None:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((nfsguard_server.tls_dir / "tls.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    # and hostname verification against ca.crt succeeds through the usual client
    assert nfsguard_server.get("/healthz").status_code == 200


def test_several_reviews_over_one_connection(nfsguard_server: ServerHandle) -> None:
    ctx = ssl.create_default_context(cafile=str(nfsguard_server.ca_crt))
    ctx.set_alpn_protocols(["http/1.1"])
    conn = http.client.HTTPSConnection("127.0.0.1", nfsguard_server.port, context=ctx, timeout=15)
    try:
        conn.connect()
        first_socket = conn.sock
        for i in range(6):
            obj = pv(f"pv-keepalive-{i}", mount_options=["vers=4.2"])
            review = admission_review(obj)
            conn.request("POST", MUTATE_PATH, body=_body(review), headers=APISERVER_HEADERS)
            http_response = conn.getresponse()
            payload = http_response.read()
            assert http_response.status == 200
            assert not http_response.will_close
            body = json.loads(payload)
            assert body["response"]["uid"] == review["request"]["uid"]
            assert_pinned(applied(obj, body["response"]))
            assert conn.sock is first_socket  # the same TLS connection every time
        # a refused request keeps the connection too
        conn.request("POST", MUTATE_PATH, body=b"{", headers=APISERVER_HEADERS)
        refused = conn.getresponse()
        refused.read()
        assert refused.status == 400 and not refused.will_close
        conn.request("GET", "/healthz")
        ok = conn.getresponse()
        ok.read()
        assert ok.status == 200 and conn.sock is first_socket
    finally:
        conn.close()


def test_requests_session_reuses_its_connection(nfsguard_server: ServerHandle) -> None:
    session = apiserver_session(nfsguard_server.ca_crt)
    fresh = dataclasses.replace(nfsguard_server, session=session)
    try:
        for i in range(4):
            _, response = review_of(fresh, pv(f"pv-session-{i}"))
            assert "patch" in response
        adapter = session.get_adapter(fresh.base_url)
        assert isinstance(adapter, requests.adapters.HTTPAdapter)
        pool = adapter.poolmanager
        (key,) = pool.pools.keys()
        assert pool.pools[key].num_connections == 1
    finally:
        session.close()


# -- health, readiness, metrics ----------------------------------------------------------


def test_healthz(nfsguard_server: ServerHandle) -> None:
    response = nfsguard_server.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_names_policies_versions_and_digests(nfsguard_server: ServerHandle) -> None:
    response = nfsguard_server.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    expected = load_policies(read_policy_sources([str(POLICIES)]))
    served = body["policies"]
    assert [p["name"] for p in served] == [p.name for p in expected]
    assert [p["version"] for p in served] == [p.version for p in expected]
    assert [p["digest"] for p in served] == [p.digest for p in expected]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _total(samples: Mapping[tuple[str, Any], float], name: str, **labels: str) -> float:
    return sum(
        value
        for (sample_name, sample_labels), value in samples.items()
        if sample_name == name and all((k, v) in sample_labels for k, v in labels.items())
    )


def test_metrics_after_reviews(server_factory: Any) -> None:
    server = server_factory([POLICIES])
    for i in range(3):
        review_of(server, pv(f"pv-metrics-{i}"))
    review_of(server, pv("pv-metrics-deny", server="filer9.legacy.corp", path="/v"))
    review_of(server, host_path_pv())
    post_review(server, None, raw=b"{")
    response = server.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = _samples(response.text)
    assert _total(samples, "nfsguard_reviews_total", outcome="mutated") == 3
    assert _total(samples, "nfsguard_reviews_total", outcome="denied") == 1
    assert _total(samples, "nfsguard_reviews_total", outcome="ignored") == 1
    assert _total(samples, "nfsguard_review_errors_total", code="400") == 1
    assert _total(samples, "nfsguard_review_duration_seconds_count") == 5
    buckets = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "nfsguard_review_duration_seconds_bucket"
    }
    assert buckets and max(buckets.values()) == 5  # +Inf holds every review
    # the audit trail got the recorded decisions (mutated x3, denied x1)
    records = server.audit_records()
    decisions = [r for r in records if r.get("type") == "decision"]
    assert len(decisions) == 4


def test_json_content_type_with_charset_is_accepted(nfsguard_server: ServerHandle) -> None:
    review = admission_review(pv("pv-charset"))
    http = post_review(
        nfsguard_server, review, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert "patch" in verified_response(http, review["request"]["uid"])


def test_chunked_bodies(nfsguard_server: ServerHandle) -> None:
    """Without Content-Length (chunked), the same limits and answers hold."""
    review = admission_review(pv("pv-chunked"))
    body = _body(review)

    def chunks(data: bytes, size: int = 64 * 1024) -> Any:
        for i in range(0, len(data), size):
            yield data[i : i + size]

    url = nfsguard_server.url(MUTATE_PATH)
    http = nfsguard_server.session.post(url, data=chunks(body), timeout=30)
    assert http.request.headers.get("Transfer-Encoding") == "chunked"
    assert "patch" in verified_response(http, review["request"]["uid"])
    limit = 6 * 1024 * 1024 + 64 * 1024
    exact = body[:-3] + b', "pad": "' + b"p" * (limit - len(body) - 11) + b'"}}}'
    assert len(exact) == limit
    http = nfsguard_server.session.post(url, data=chunks(exact), timeout=30)
    assert "patch" in verified_response(http, review["request"]["uid"])
    big = b" " * limit + body
    http = nfsguard_server.session.post(url, data=chunks(big), timeout=30)
    assert_error(http, 413)
    assert_still_serving(nfsguard_server)


def test_other_methods_and_paths_answer_json(nfsguard_server: ServerHandle) -> None:
    for method, path, code in (("GET", "/mutate", 405), ("POST", "/validate", 404)):
        http = nfsguard_server.session.request(method, nfsguard_server.url(path), timeout=15)
        assert_error(http, code)
        if code == 405:
            assert http.headers["Allow"] == "POST"


def test_concurrent_reviews_each_get_their_own_answer(nfsguard_server: ServerHandle) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> tuple[str, str, dict[str, Any]]:
        obj = pv(f"pv-concurrent-{i}", mount_options=[f"timeo={600 + i}", "vers=4.1"])
        review = admission_review(obj)
        with apiserver_session(nfsguard_server.ca_crt) as session:
            http = session.post(nfsguard_server.url(MUTATE_PATH), data=_body(review), timeout=30)
        response = verified_response(http, review["request"]["uid"])
        return review["request"]["uid"], response["uid"], applied(obj, response)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(48)))
    for i, (sent_uid, got_uid, patched) in enumerate(results):
        assert sent_uid == got_uid
        assert patched["spec"]["mountOptions"] == [f"timeo={600 + i}", "nfsvers=4.0"]
