"""webhook.pki: real certificates, verified by real verifiers (cryptography's X.509
path validation and the ssl module's TLS handshake)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from webhook import pki

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
SVC_NAMES = pki.service_dns_names("nfsguard", "nfsguard")


def verify_chain(
    leaf: x509.Certificate, bundle_pem: bytes, name: x509.DNSName | x509.IPAddress, at: dt.datetime
) -> None:
    store = Store(pki.load_pem_certificates(bundle_pem))
    verifier = PolicyBuilder().store(store).time(at).build_server_verifier(name)
    verifier.verify(leaf, [])


def tls_handshake(pair: pki.KeyPair, bundle_pem: bytes, server_hostname: str) -> None:
    """A full in-memory TLS handshake: server with ``pair``, client trusting only
    ``bundle_pem`` and checking ``server_hostname`` like kube-apiserver does."""
    tmp = Path(tempfile.mkdtemp())
    (tmp / "c.pem").write_bytes(pair.cert_pem)
    (tmp / "k.pem").write_bytes(pair.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp / "c.pem", tmp / "k.pem")
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cadata=bundle_pem.decode())
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    done = {"c": False, "s": False}
    for _ in range(20):
        for side, obj in (("c", client), ("s", server)):
            if done[side]:
                continue
            try:
                obj.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not complete")


@pytest.fixture(scope="module")
def ca() -> pki.KeyPair:
    return pki.generate_ca("test-ca", now=NOW)


@pytest.fixture(scope="module")
def serving(ca: pki.KeyPair) -> pki.KeyPair:
    return pki.issue_serving_cert(ca, dns_names=SVC_NAMES, ip_addresses=["127.0.0.1"], now=NOW)


def test_ca_is_a_ca(ca: pki.KeyPair) -> None:
    cert = ca.cert
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "test-ca"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc >= dt.timedelta(days=3650)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    cert.verify_directly_issued_by(cert)
    assert ca.key_matches()


def test_serving_cert_sans_usage_and_ids(ca: pki.KeyPair, serving: pki.KeyPair) -> None:
    cert = serving.cert
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == SVC_NAMES
    assert "nfsguard.nfsguard.svc" in SVC_NAMES
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert cert.issuer == ca.cert.subject
    assert serving.key_matches()


def test_serving_validity_one_year_backdated_for_skew(serving: pki.KeyPair) -> None:
    assert serving.not_before == NOW - pki.CLOCK_SKEW
    assert serving.not_after == NOW + dt.timedelta(days=365)


def test_serving_never_outlives_its_ca() -> None:
    short_ca = pki.generate_ca("short", valid_days=30, now=NOW)
    leaf = pki.issue_serving_cert(short_ca, dns_names=["x"], valid_days=365, now=NOW)
    assert leaf.not_after == short_ca.not_after


def test_chain_verifies_for_service_name_and_ip(ca: pki.KeyPair, serving: pki.KeyPair) -> None:
    verify_chain(serving.cert, ca.cert_pem, x509.DNSName("nfsguard.nfsguard.svc"), NOW)
    verify_chain(serving.cert, ca.cert_pem, x509.IPAddress(ipaddress.ip_address("127.0.0.1")), NOW)
    with pytest.raises(VerificationError):
        verify_chain(serving.cert, ca.cert_pem, x509.DNSName("other.nfsguard.svc"), NOW)
    with pytest.raises(VerificationError):  # expired
        verify_chain(
            serving.cert, ca.cert_pem, x509.DNSName("nfsguard"), NOW + dt.timedelta(days=366)
        )
    other_ca = pki.generate_ca("other", now=NOW)
    with pytest.raises(VerificationError):
        verify_chain(serving.cert, other_ca.cert_pem, x509.DNSName("nfsguard"), NOW)


def test_real_tls_handshake_checks_names() -> None:
    ca = pki.generate_ca("hs-ca")
    leaf = pki.issue_serving_cert(ca, dns_names=SVC_NAMES)
    tls_handshake(leaf, ca.cert_pem, "nfsguard.nfsguard.svc")
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_handshake(leaf, ca.cert_pem, "evil.nfsguard.svc")


def test_bad_inputs_rejected(ca: pki.KeyPair) -> None:
    with pytest.raises(ValueError):
        pki.issue_serving_cert(ca, dns_names=[])
    with pytest.raises(TypeError):
        pki.issue_serving_cert(ca, dns_names="localhost")
    with pytest.raises(ValueError):
        pki.issue_serving_cert(ca, dns_names=["x"], ip_addresses=["not-an-ip"])
    with pytest.raises(ValueError):
        pki.generate_ca("x", valid_days=0)


def test_needs_renewal_boundaries(serving: pki.KeyPair) -> None:
    cert = serving.cert
    early = dt.timedelta(days=60)
    end = cert.not_valid_after_utc
    assert not pki.needs_renewal(cert, NOW, early)
    assert not pki.needs_renewal(cert, end - early - dt.timedelta(seconds=1), early)
    assert pki.needs_renewal(cert, end - early, early)
    assert pki.needs_renewal(cert, end + dt.timedelta(days=1), early)
    assert pki.needs_renewal(cert, cert.not_valid_before_utc - dt.timedelta(hours=1), early)
    with pytest.raises(ValueError):
        pki.needs_renewal(cert, NOW.replace(tzinfo=None), early)


def fresh_bundle(now: dt.datetime = NOW) -> pki.CertBundle:
    return pki.plan(None, dns_names=SVC_NAMES, now=now)


def test_plan_creates_then_is_idempotent() -> None:
    b = fresh_bundle()
    assert b.changed and "created CA" in b.changes
    assert pki.load_pem_certificates(b.ca_bundle) == [b.ca.cert]
    again = pki.plan(b, dns_names=SVC_NAMES, now=NOW + dt.timedelta(days=100))
    assert again == b and not again.changed


def test_plan_renews_serving_cert_60_days_early_keeping_ca() -> None:
    b = fresh_bundle()
    day_304 = NOW + dt.timedelta(days=304)  # 61 days left
    assert not pki.plan(b, dns_names=SVC_NAMES, now=day_304).changed
    day_306 = NOW + dt.timedelta(days=306)  # 59 days left: renew
    r = pki.plan(b, dns_names=SVC_NAMES, now=day_306)
    assert r.changed and any("renewed serving" in c for c in r.changes)
    assert r.ca == b.ca and r.ca_bundle == b.ca_bundle
    assert r.serving.not_after == day_306 + dt.timedelta(days=365)
    verify_chain(r.serving.cert, r.ca_bundle, x509.DNSName("nfsguard.nfsguard.svc"), day_306)


def test_plan_reissues_when_names_change() -> None:
    b = fresh_bundle()
    names = pki.service_dns_names("nfsguard", "other-ns")
    r = pki.plan(b, dns_names=names, now=NOW)
    assert r.changed and r.ca == b.ca
    san = r.serving.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == names


def test_plan_replaces_mismatched_key() -> None:
    b = fresh_bundle()
    other = pki.issue_serving_cert(b.ca, dns_names=SVC_NAMES, now=NOW)
    broken = pki.CertBundle(
        ca=b.ca, serving=pki.KeyPair(b.serving.cert_pem, other.key_pem), ca_bundle=b.ca_bundle
    )
    r = pki.plan(broken, dns_names=SVC_NAMES, now=NOW)
    assert r.changed and r.serving.key_matches()


def test_ca_rotation_keeps_old_ca_trusted_until_it_expires() -> None:
    b = fresh_bundle()
    old_ca = b.ca.cert
    # 9 years and a bit: within a year of the CA's end, the serving cert renewed often.
    t = NOW + dt.timedelta(days=3650 - 364)
    serving_before = pki.issue_serving_cert(b.ca, dns_names=SVC_NAMES, now=t)
    current = pki.CertBundle(ca=b.ca, serving=serving_before, ca_bundle=b.ca_bundle)
    r = pki.plan(current, dns_names=SVC_NAMES, now=t)
    assert any("rotated CA" in c for c in r.changes)
    trusted = pki.load_pem_certificates(r.ca_bundle)
    assert trusted == [r.ca.cert, old_ca]  # new first, old still trusted
    name = x509.DNSName("nfsguard.nfsguard.svc")
    # during the switch: both the old server cert and the new one verify against the bundle
    verify_chain(serving_before.cert, r.ca_bundle, name, t)
    verify_chain(r.serving.cert, r.ca_bundle, name, t)
    r.serving.cert.verify_directly_issued_by(r.ca.cert)
    # steady afterwards
    assert not pki.plan(r, dns_names=SVC_NAMES, now=t + dt.timedelta(days=30)).changed
    # once the old CA expired it leaves the bundle
    after = NOW + dt.timedelta(days=3651)
    pruned = pki.plan(r, dns_names=SVC_NAMES, now=after)
    assert pki.load_pem_certificates(pruned.ca_bundle) == [r.ca.cert]
    assert pruned.ca == r.ca


def test_expired_ca_is_replaced_outright() -> None:
    b = fresh_bundle()
    r = pki.plan(b, dns_names=SVC_NAMES, now=NOW + dt.timedelta(days=4000))
    assert r.ca != b.ca
    assert pki.load_pem_certificates(r.ca_bundle) == [r.ca.cert]


def test_renewal_policy_validation() -> None:
    with pytest.raises(ValueError):
        pki.RenewalPolicy(serving_valid_days=30, serving_renew_before=dt.timedelta(days=60))


def test_ensure_dev_tls_writes_usable_files(tmp_path: Path) -> None:
    tls = tmp_path / "a" / "tls"
    pki.ensure_dev_tls(tls)
    for name in ("ca.crt", "ca.key", "tls.crt", "tls.key"):
        assert (tls / name).is_file()
    for name in ("ca.key", "tls.key"):
        assert stat.S_IMODE((tls / name).stat().st_mode) == 0o600
    assert not list(tls.glob(".*.tmp"))
    pair = pki.KeyPair((tls / "tls.crt").read_bytes(), (tls / "tls.key").read_bytes())
    ca_pem = (tls / "ca.crt").read_bytes()
    san = pair.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    tls_handshake(pair, ca_pem, "localhost")
    tls_handshake(pair, ca_pem, "127.0.0.1")
    # existing files are kept
    before = (tls / "tls.crt").read_bytes()
    pki.ensure_dev_tls(tls)
    assert (tls / "tls.crt").read_bytes() == before


def test_ensure_dev_tls_never_overwrites_an_operator_cert(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_bytes(b"operator cert")
    (tmp_path / "tls.key").write_bytes(b"operator key")
    pki.ensure_dev_tls(tmp_path)
    assert (tmp_path / "tls.crt").read_bytes() == b"operator cert"
    assert not (tmp_path / "ca.key").exists()


def test_tls_dir_round_trip(tmp_path: Path) -> None:
    b = fresh_bundle()
    pki.write_tls_dir(tmp_path, b)
    back = pki.read_tls_dir(tmp_path)
    assert back == b
    (tmp_path / "ca.crt").write_bytes(b"garbage")
    assert pki.read_tls_dir(tmp_path) is None


# ------------------------------------------------------------------ nfsguard certs (CLI)


def test_cli_generate_is_idempotent_and_renews_when_due(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from webhook.cli.certs import certs

    runner = CliRunner()
    tls = tmp_path / "tls"
    args = ["generate", "--tls-dir", str(tls), "--service", "nfsguard", "--namespace", "ns1"]
    first = runner.invoke(certs, [*args, "--ip", "127.0.0.1"])
    assert first.exit_code == 0, first.output
    assert "created CA" in first.output
    stored = pki.read_tls_dir(tls)
    assert stored is not None
    san = stored.serving.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "nfsguard.ns1.svc" in san.value.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE((tls / "ca.key").stat().st_mode) == 0o600

    again = runner.invoke(certs, [*args, "--ip", "127.0.0.1"])
    assert again.exit_code == 0 and "up to date" in again.output
    assert pki.read_tls_dir(tls) == stored

    # a serving certificate with 55 days left is renewed from the same CA
    now = dt.datetime.now(dt.UTC)
    old = pki.issue_serving_cert(
        stored.ca,
        dns_names=pki.service_dns_names("nfsguard", "ns1"),
        ip_addresses=["127.0.0.1"],
        now=now - dt.timedelta(days=310),
    )
    pki.write_tls_dir(tls, pki.CertBundle(stored.ca, old, stored.ca_bundle))
    due = runner.invoke(certs, ["check", str(tls / "tls.crt")])
    assert due.exit_code == 1 and "RENEW" in due.output
    renewed = runner.invoke(certs, [*args, "--ip", "127.0.0.1"])
    assert renewed.exit_code == 0 and "renewed serving certificate" in renewed.output
    after = pki.read_tls_dir(tls)
    assert after is not None and after.ca == stored.ca and after.serving != old
    ok = runner.invoke(certs, ["check", str(tls / "tls.crt")])
    assert ok.exit_code == 0 and "RENEW" not in ok.output
    assert "nfsguard.ns1.svc" in ok.output

    # dropping the IP SAN re-issues
    narrowed = runner.invoke(certs, args)
    assert narrowed.exit_code == 0 and "reissued" in narrowed.output


def test_cli_check_rejects_a_non_certificate(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from webhook.cli.certs import certs

    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    result = CliRunner().invoke(certs, ["check", str(junk)])
    assert result.exit_code == 2


def test_serving_cert_problems_say_why_a_pair_must_not_be_served_now() -> None:
    """What TLS reload and ``serve`` refuse (webhook/server/tls_reload.py)."""
    import datetime as _dt

    from webhook.pki import generate_ca, issue_serving_cert, serving_cert_problems

    now = _dt.datetime.now(_dt.UTC)
    ca = generate_ca("test-ca", now=now - _dt.timedelta(days=100))
    good = issue_serving_cert(ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"]).cert
    assert serving_cert_problems(good, now, must_name=["localhost", "127.0.0.1"]) == []
    expired = issue_serving_cert(
        ca, dns_names=["localhost"], now=now - _dt.timedelta(days=60), valid_days=30
    ).cert
    (problem,) = serving_cert_problems(expired, now)
    assert problem.startswith("expired at ")
    early = issue_serving_cert(ca, dns_names=["localhost"], now=now + _dt.timedelta(days=1)).cert
    (problem,) = serving_cert_problems(early, now)
    assert problem.startswith("not valid before ")
    (problem,) = serving_cert_problems(good, now, must_name=["localhost", "nfsguard.svc"])
    assert problem == "not valid for nfsguard.svc (the names served until now)"
