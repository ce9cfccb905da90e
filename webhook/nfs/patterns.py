"""The small matchers a rule is made of: exports, names, label selectors.

No DNS lookups: a rule naming an IP matches objects that name that IP, a rule
naming a host matches objects that name that host (case-insensitively).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from webhook.nfs.scope import SelectorRequirement

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_GLOB_CHARS = frozenset("*?[")


def is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


@lru_cache(maxsize=4096)
def glob_regex(pattern: str, *, slash_is_special: bool, ignore_case: bool) -> re.Pattern[str]:
    """A glob as a regex. ``**`` crosses ``/``; ``*`` and ``?`` do not when
    ``slash_is_special``; ``[...]`` is a character class. Raises ValueError."""
    out: list[str] = []
    i, n = 0, len(pattern)
    any_char = "[^/]" if slash_is_special else "."
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                # "/**" at the end also matches the directory itself.
                if out and out[-1] == "/" and i == n:
                    out[-1] = "(?:/.*)?"
                    continue
                out.append(".*")
                continue
            out.append(any_char + "*")
        elif c == "?":
            out.append(any_char)
        elif c == "[":
            end = pattern.find(
                "]", i + 2 if pattern.startswith("[!", i) or pattern.startswith("[]", i) else i + 1
            )
            if end < 0:
                raise ValueError(f"unclosed '[' in glob {pattern!r}")
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    flags = re.IGNORECASE if ignore_case else 0
    return re.compile("".join(out) + r"\Z", flags)


@lru_cache(maxsize=4096)  # pure; called for the server of every reviewed object
def parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def canonical_ip(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:10.0.0.5``, RFC 4291 section 2.5.5.2) as the
    IPv4 address it stands for: mount.nfs connects to that IPv4 host, so rules for the
    plain form must hold for it. Every other address as it is."""
    if isinstance(ip, ipaddress.IPv6Address) and not ip.scope_id:
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return mapped
    return ip


def canonical_network(net: IPNetwork) -> IPNetwork:
    """A network inside ``::ffff:0:0/96`` as the IPv4 network it maps (``canonical_ip``
    of each address in it); every other network as it is."""
    if (
        isinstance(net, ipaddress.IPv6Network)
        and net.prefixlen >= 96
        and net.network_address.ipv4_mapped is not None
    ):
        return ipaddress.IPv4Network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
    return net


@lru_cache(maxsize=4096)  # pure; called for the server of every reviewed object
def server_address(text: str) -> IPAddress | None:
    """The address an object's ``server`` names, canonical (``canonical_ip``); None for
    a hostname. A hostname's trailing dot (an absolute name, RFC 1034 section 3.1) is
    dropped wherever hostnames are compared (``host_key``)."""
    ip = parse_ip(text)
    return canonical_ip(ip) if ip is not None else None


def host_key(text: str) -> str:
    """How hostnames compare: case-insensitively (RFC 4343), with no trailing root dot
    (``nfs.example.com.`` is ``nfs.example.com``, RFC 1034 section 3.1)."""
    return text.lower().rstrip(".")


_HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$", re.IGNORECASE)


def valid_hostname(text: str) -> bool:
    host = text.rstrip(".")
    return 0 < len(host) <= 253 and all(_HOST_LABEL.match(label) for label in host.split("."))


@dataclass(frozen=True)
class ServerPattern:
    """``server:`` of an export: an IP, a CIDR, a hostname or a hostname glob."""

    text: str
    ip: IPAddress | None = None
    network: IPNetwork | None = None
    glob: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> ServerPattern:
        """Raises ValueError with a one-line reason for an invalid pattern."""
        text = text.strip()
        if not text:
            raise ValueError("server must not be empty")
        if "/" in text:
            try:
                return cls(text, network=ipaddress.ip_network(text, strict=True))
            except ValueError as exc:
                raise ValueError(f"invalid CIDR {text!r}: {exc}") from None
        ip = parse_ip(text)
        if ip is not None:
            return cls(text, ip=ip)
        if is_glob(text):
            try:
                return cls(
                    text,
                    glob=glob_regex(host_key(text), slash_is_special=False, ignore_case=True),
                )
            except (ValueError, re.error) as exc:
                raise ValueError(f"invalid server glob {text!r}: {exc}") from None
        if text[0].isdigit() and all(c.isdigit() or c == "." for c in text):
            raise ValueError(f"invalid IP address {text!r}")
        if not valid_hostname(text):
            raise ValueError(f"invalid hostname {text!r}")
        return cls(host_key(text))

    @property
    def host(self) -> str | None:
        """The plain hostname, when this pattern is one."""
        if self.ip is None and self.network is None and self.glob is None:
            return self.text
        return None

    @property
    def address(self) -> IPAddress | None:
        """The rule's IP, canonical (an IPv4-mapped one as IPv4)."""
        return canonical_ip(self.ip) if self.ip is not None else None

    @property
    def canonical_network(self) -> IPNetwork | None:
        return canonical_network(self.network) if self.network is not None else None

    def matches(self, server: str, server_ip: IPAddress | None) -> bool:
        """Whether ``server`` (``server_ip``: its address, if it is one) is this server.
        Addresses compare canonically (``::ffff:10.0.0.5`` is ``10.0.0.5``), hostnames
        case-insensitively and without a trailing dot."""
        if server_ip is not None:
            server_ip = canonical_ip(server_ip)
        if self.ip is not None:
            return server_ip == self.address
        net = self.canonical_network
        if net is not None:
            return server_ip is not None and server_ip.version == net.version and server_ip in net
        if self.glob is not None:
            return bool(self.glob.match(host_key(server)))
        return host_key(server) == self.text


@dataclass(frozen=True)
class ExportPattern:
    server: ServerPattern
    path: re.Pattern[str] | None = None
    path_text: str | None = None

    @classmethod
    def parse(cls, server: str, path: str | None) -> ExportPattern:
        compiled = None
        if path is not None:
            if not path.startswith("/") and not path.startswith("*"):
                raise ValueError(f"export path {path!r} must be absolute (start with '/')")
            try:
                compiled = glob_regex(
                    _strip_slashes(path), slash_is_special=True, ignore_case=False
                )
            except (ValueError, re.error) as exc:
                raise ValueError(f"invalid path glob {path!r}: {exc}") from None
        return cls(ServerPattern.parse(server), compiled, path)

    def matches(self, server: str, server_ip: IPAddress | None, path: str | None) -> bool:
        if not self.server.matches(server, server_ip):
            return False
        if self.path is None:
            return True
        return path is not None and bool(self.path.match(path))


def _strip_slashes(path: str) -> str:
    # Object paths are normalised (no trailing or doubled slash); patterns too.
    path = re.sub(r"/{2,}", "/", path)
    return path.rstrip("/") if len(path) > 1 and not path.endswith("**/") else path


@dataclass(frozen=True)
class NamePattern:
    """A provisioner or CSI driver name, exact or glob (``*.nfs.csi.ceph.com``)."""

    text: str
    glob: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> NamePattern:
        if is_glob(text):
            try:
                return cls(text, glob_regex(text, slash_is_special=False, ignore_case=False))
            except (ValueError, re.error) as exc:
                raise ValueError(f"invalid glob {text!r}: {exc}") from None
        return cls(text)

    def matches(self, name: str | None) -> bool:
        if name is None:
            return False
        if self.glob is not None:
            return bool(self.glob.match(name))
        return name == self.text


@dataclass(frozen=True)
class LabelSelector:
    """metav1.LabelSelector: matchLabels and matchExpressions, all ANDed. Its
    requirements are the node selector's (webhook.nfs.scope), restricted by the
    loader to In, NotIn, Exists and DoesNotExist, so both evaluate alike."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return all(req.holds(labels.get(req.key)) for req in self.match_expressions)
