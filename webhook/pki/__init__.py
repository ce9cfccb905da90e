"""Certificates for the webhook's TLS: a private CA and a serving certificate it signs.

- :mod:`webhook.pki.certificates`: building the CA and serving certificates,
  validity and SAN checks (pure);
- :mod:`webhook.pki.renewal`: :func:`plan`, what to store next (pure);
- :mod:`webhook.pki.tls_dir`: storing a bundle in a directory (files).

The package re-exports their public names, so ``from webhook import pki`` and
``pki.plan(...)`` reach the same functions; nothing here talks to a cluster
(``webhook.cluster.certs`` keeps them in a Secret).
"""

from webhook.pki.certificates import (
    CA_VALID_DAYS,
    CLOCK_SKEW,
    SERVING_VALID_DAYS,
    KeyPair,
    ca_bundle_pem,
    generate_ca,
    issue_serving_cert,
    load_pem_certificates,
    needs_renewal,
    service_dns_names,
    serving_cert_matches,
    serving_cert_problems,
    subject_alt_names,
)
from webhook.pki.renewal import (
    CA_RENEW_BEFORE,
    SERVING_RENEW_BEFORE,
    CertBundle,
    RenewalPolicy,
    plan,
)
from webhook.pki.tls_dir import ensure_dev_tls, read_tls_dir, write_atomic, write_tls_dir

__all__ = [
    "CA_RENEW_BEFORE",
    "CA_VALID_DAYS",
    "CLOCK_SKEW",
    "SERVING_RENEW_BEFORE",
    "SERVING_VALID_DAYS",
    "CertBundle",
    "KeyPair",
    "RenewalPolicy",
    "ca_bundle_pem",
    "ensure_dev_tls",
    "generate_ca",
    "issue_serving_cert",
    "load_pem_certificates",
    "needs_renewal",
    "plan",
    "read_tls_dir",
    "service_dns_names",
    "serving_cert_matches",
    "serving_cert_problems",
    "subject_alt_names",
    "write_atomic",
    "write_tls_dir",
]
