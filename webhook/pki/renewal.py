"""When to replace the webhook's certificates: :func:`plan`, a pure decision.

Given what is stored and the clock, :func:`plan` says what to store next.
``webhook.cluster.certs`` applies it to a Secret and the
MutatingWebhookConfiguration; ``nfsguard certs generate`` applies it to a
directory (:mod:`webhook.pki.tls_dir`).

- the CA is replaced 1 year before it expires; the serving certificate 60
  days before it expires;
- while a CA is being replaced the trust bundle holds the new CA *and* the old one,
  so a server still presenting a certificate from the old CA stays trusted until
  it has picked up the new one; an old CA leaves the bundle once it has expired.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from webhook.pki.certificates import (
    CA_VALID_DAYS,
    SERVING_VALID_DAYS,
    KeyPair,
    ca_bundle_pem,
    generate_ca,
    issue_serving_cert,
    load_pem_certificates,
    needs_renewal,
    serving_cert_matches,
)

CA_RENEW_BEFORE = dt.timedelta(days=365)
SERVING_RENEW_BEFORE = dt.timedelta(days=60)


@dataclass(frozen=True)
class RenewalPolicy:
    ca_valid_days: int = CA_VALID_DAYS
    ca_renew_before: dt.timedelta = CA_RENEW_BEFORE
    serving_valid_days: int = SERVING_VALID_DAYS
    serving_renew_before: dt.timedelta = SERVING_RENEW_BEFORE

    def __post_init__(self) -> None:
        if self.ca_renew_before >= dt.timedelta(days=self.ca_valid_days):
            raise ValueError("ca_renew_before must be shorter than the CA's validity")
        if self.serving_renew_before >= dt.timedelta(days=self.serving_valid_days):
            raise ValueError("serving_renew_before must be shorter than the serving validity")


@dataclass(frozen=True)
class CertBundle:
    """Everything the webhook's TLS needs, as stored (Secret or directory).

    ``ca_bundle`` is what clients trust (the caBundle of the webhook configuration):
    the current CA first, then any previous CA still within its validity.
    """

    ca: KeyPair
    serving: KeyPair
    ca_bundle: bytes
    changes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def plan(
    current: CertBundle | None,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    now: dt.datetime | None = None,
    policy: RenewalPolicy = RenewalPolicy(),
    ca_common_name: str = "nfsguard-webhook-ca",
) -> CertBundle:
    """What to store next. Returns ``current`` (with ``changes == ()``) when
    nothing needs doing, so a caller can write only if ``result.changed``.

    - nothing stored, or the stored CA unusable -> new CA and serving cert;
    - CA within ``ca_renew_before`` of its end -> new CA; the old CA stays in the
      bundle (until it expires) so the switch never leaves a served chain untrusted;
    - serving cert within ``serving_renew_before`` of its end, issued by another CA,
      with other SANs, or not matching its key -> new serving cert from the current CA;
    - expired CAs leave the bundle; the current CA is always in it.
    """
    now = now or dt.datetime.now(dt.UTC)
    changes: list[str] = []
    ca: KeyPair
    previous: list[x509.Certificate] = []
    if current is None:
        ca = generate_ca(ca_common_name, valid_days=policy.ca_valid_days, now=now)
        changes.append("created CA")
    else:
        ca = current.ca
        previous = load_pem_certificates(current.ca_bundle)
        if not ca.key_matches() or now >= ca.not_after:
            ca = generate_ca(ca_common_name, valid_days=policy.ca_valid_days, now=now)
            changes.append("replaced unusable or expired CA")
        elif needs_renewal(ca.cert, now, policy.ca_renew_before):
            previous.insert(0, ca.cert)
            ca = generate_ca(ca_common_name, valid_days=policy.ca_valid_days, now=now)
            changes.append(f"rotated CA (old one expires {current.ca.not_after:%Y-%m-%d})")

    serving: KeyPair | None = current.serving if current is not None else None
    if serving is None:
        reason = "issued serving certificate"
    elif not serving_cert_matches(serving, ca, dns_names=dns_names, ip_addresses=ip_addresses):
        reason = "reissued serving certificate (issuer, names or key changed)"
    elif needs_renewal(serving.cert, now, policy.serving_renew_before):
        reason = f"renewed serving certificate (expires {serving.not_after:%Y-%m-%d})"
    else:
        reason = ""
    if reason:
        serving = issue_serving_cert(
            ca,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            valid_days=policy.serving_valid_days,
            now=now,
        )
        changes.append(reason)
    assert serving is not None

    ca_der = ca.cert.public_bytes(serialization.Encoding.DER)
    still_valid = [
        c
        for c in previous
        if c.not_valid_after_utc > now and c.public_bytes(serialization.Encoding.DER) != ca_der
    ]
    bundle = ca_bundle_pem([ca.cert, *still_valid])
    if current is not None and bundle != current.ca_bundle and not changes:
        changes.append("pruned expired CAs from the trust bundle")

    if not changes and current is not None:
        return current if not current.changes else dataclasses.replace(current, changes=())
    return CertBundle(ca=ca, serving=serving, ca_bundle=bundle, changes=tuple(changes))
