"""One server, several spellings: every object kind matches the rules of the plain form.

mount.nfs resolves the server with getaddrinfo(3) (nfs(5): "server" is a hostname or an
IP address, an IPv6 one in brackets), so:

- an IPv4-mapped IPv6 address (``::ffff:192.168.100.7``, also written ``::ffff:c0a8:6407``
  or in brackets) is the IPv4 host it maps (RFC 4291 section 2.5.5.2): the client
  connects to 192.168.100.7, and the rules for 192.168.100.7 (its IP, a CIDR holding
  it) must hold for it;
- a hostname with a trailing dot (``filer.example.com.``) is the absolute form of the
  same name (RFC 1034 section 3.1), and hostnames compare case-insensitively
  (RFC 4343).

Both sides are read alike: a rule written in the mapped form matches the plain one.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tests.fixtures.samples import csi_pv, csi_volume, nfs_volume, pv, storage_class, workload
from tests.unit.engine.test_engine import engine, policy, rule
from webhook.api.decision import Outcome
from webhook.nfs.patterns import ServerPattern, canonical_ip, canonical_network


def objects(server: str) -> list[tuple[str, dict[str, Any]]]:
    """Every way an object names ``server``."""
    return [
        ("in-tree PV", pv(server=server, path="/data1/a")),
        ("csi PV", csi_pv(server=server, share="/data1", subdir="a")),
        ("StorageClass", storage_class(server=server, share="/data1")),
        ("Pod inline nfs", workload("Pod", [nfs_volume("d", server, "/data1/a")])),
        (
            "Deployment csi inline",
            workload("Deployment", [csi_volume("d", server=server, share="/data1", subdir="a")]),
        ),
    ]


def _rule_engine(server: str) -> Any:
    match = f"      exports:\n      - server: '{server}'\n"
    return engine(policy("site", rule("filer", "deny", match)))


MAPPED = ["::ffff:192.168.100.7", "[::ffff:192.168.100.7]", "::FFFF:c0a8:6407", "::ffff:c0a8:6407"]


@pytest.mark.parametrize("written", ["192.168.100.7", *MAPPED])
@pytest.mark.parametrize("rule_server", ["192.168.100.7", "192.168.100.0/24", *MAPPED[:1]])
def test_an_ipv4_mapped_server_matches_the_rules_of_the_ipv4_address(
    written: str, rule_server: str
) -> None:
    eng = _rule_engine(rule_server)
    for what, obj in objects(written):
        ev = eng.evaluate(obj)
        assert ev.outcome is Outcome.DENIED, (what, written, rule_server, ev.reason)
        assert [c.rule.name for c in ev.matched] == ["filer"], what


@pytest.mark.parametrize("rule_server", ["::ffff:192.168.100.0/120", "::ffff:0:0/96"])
def test_a_mapped_network_in_a_rule_holds_the_ipv4_addresses_it_maps(rule_server: str) -> None:
    eng = _rule_engine(rule_server)
    for written in ("192.168.100.7", "::ffff:192.168.100.7"):
        for what, obj in objects(written):
            assert eng.evaluate(obj).outcome is Outcome.DENIED, (what, written)


@pytest.mark.parametrize("written", ["192.168.100.8", "::ffff:192.168.100.8", "::1", "fe80::7"])
def test_other_addresses_do_not_match(written: str) -> None:
    eng = _rule_engine("192.168.100.7")
    for what, obj in objects(written):
        assert eng.evaluate(obj).outcome is Outcome.UNMATCHED, (what, written)


def test_an_ipv6_network_does_not_take_ipv4_hosts() -> None:
    """``::/0`` is every IPv6 host: a mapped address is an IPv4 host, in neither form."""
    eng = _rule_engine("::/0")
    for written in ("192.168.100.7", "::ffff:192.168.100.7"):
        for what, obj in objects(written):
            assert eng.evaluate(obj).outcome is Outcome.UNMATCHED, (what, written)
    for what, obj in objects("2001:db8::7"):
        assert eng.evaluate(obj).outcome is Outcome.DENIED, what


@pytest.mark.parametrize(
    "written",
    ["filer.example.com", "filer.example.com.", "FILER.Example.COM.", "Filer.example.com"],
)
@pytest.mark.parametrize(
    "rule_server", ["filer.example.com", "filer.example.com.", "*.example.com", "filer.*.com."]
)
def test_a_trailing_dot_and_case_do_not_change_the_host(written: str, rule_server: str) -> None:
    eng = _rule_engine(rule_server)
    for what, obj in objects(written):
        ev = eng.evaluate(obj)
        assert ev.outcome is Outcome.DENIED, (what, written, rule_server, ev.reason)


def test_canonical_forms() -> None:
    v4 = ipaddress.ip_address("10.0.0.5")
    assert canonical_ip(ipaddress.ip_address("::ffff:10.0.0.5")) == v4
    assert canonical_ip(v4) is v4
    assert canonical_ip(ipaddress.ip_address("::10.0.0.5")) == ipaddress.ip_address("::a00:5")
    assert canonical_ip(ipaddress.ip_address("fe80::1%eth0")).version == 6  # zoned: as is
    assert canonical_network(ipaddress.ip_network("::ffff:10.0.0.0/120")) == (
        ipaddress.ip_network("10.0.0.0/24")
    )
    assert canonical_network(ipaddress.ip_network("::ffff:0:0/96")) == (
        ipaddress.ip_network("0.0.0.0/0")
    )
    wide = ipaddress.ip_network("::/64")
    assert canonical_network(wide) is wide
    # the pattern keeps what was written (messages, native compile), matches canonically
    sp = ServerPattern.parse("::ffff:10.0.0.5")
    assert sp.text == "::ffff:10.0.0.5" and sp.address == v4
    assert sp.matches("10.0.0.5", v4)
