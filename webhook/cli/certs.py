"""``nfsguard certs``: create, renew and inspect the webhook's TLS certificates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from webhook import pki
from webhook.cli.errors import ExitCode, Group, Refused

__all__ = ["certs"]


def _policy(serving_days: int, serving_renew_days: int) -> pki.RenewalPolicy:
    try:
        return pki.RenewalPolicy(
            serving_valid_days=serving_days,
            serving_renew_before=dt.timedelta(days=serving_renew_days),
        )
    except ValueError as e:
        raise click.BadParameter(str(e)) from e


_serving_days = click.option(
    "--serving-days",
    type=click.IntRange(min=2),
    default=pki.SERVING_VALID_DAYS,
    show_default=True,
    help="Validity of a new serving certificate.",
)
_renew_days = click.option(
    "--renew-before-days",
    type=click.IntRange(min=1),
    default=pki.SERVING_RENEW_BEFORE.days,
    show_default=True,
    help="Renew the serving certificate this many days before it expires.",
)


@click.group(cls=Group)
def certs() -> None:
    """Certificates: a private CA (10 y, rotated 1 y early) and a serving
    certificate (1 y, renewed 60 d early). Every command is idempotent."""


@certs.command()
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for ca.crt, ca.key, ca-bundle.crt, tls.crt, tls.key.",
)
@click.option("--service", default="nfsguard", show_default=True, help="Service name.")
@click.option("--namespace", default="nfsguard", show_default=True, help="Service namespace.")
@click.option("--dns-name", "dns_names", multiple=True, help="Extra DNS SAN (repeatable).")
@click.option("--ip", "ips", multiple=True, help="IP SAN (repeatable), e.g. 127.0.0.1.")
@_serving_days
@_renew_days
def generate(
    tls_dir: Path,
    service: str,
    namespace: str,
    dns_names: tuple[str, ...],
    ips: tuple[str, ...],
    serving_days: int,
    renew_before_days: int,
) -> None:
    """Create (or renew when due) certificates in a directory.

    The serving certificate names <service>, <service>.<namespace>,
    <service>.<namespace>.svc and ...svc.cluster.local, plus --dns-name/--ip.
    Files are replaced atomically; keys are mode 0600. Prints the caBundle file to use.
    """
    names = [*pki.service_dns_names(service, namespace), *dns_names]
    try:
        result = pki.plan(
            pki.read_tls_dir(tls_dir),
            dns_names=names,
            ip_addresses=ips,
            policy=_policy(serving_days, renew_before_days),
        )
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    if result.changed:
        pki.write_tls_dir(tls_dir, result)
        for change in result.changes:
            click.echo(f"{tls_dir}: {change}")
    else:
        click.echo(f"{tls_dir}: up to date")
    click.echo(f"serving certificate valid until {result.serving.not_after:%Y-%m-%d}")
    click.echo(f"CA valid until {result.ca.not_after:%Y-%m-%d}")
    click.echo(f"caBundle: {tls_dir / 'ca-bundle.crt'}")


@certs.command()
@click.option("--namespace", default="nfsguard", show_default=True)
@click.option("--secret", "secret_name", default="nfsguard-tls", show_default=True)
@click.option(
    "--webhook",
    "webhook_config",
    default="nfsguard",
    show_default=True,
    help="MutatingWebhookConfiguration whose caBundle is set.",
)
@click.option("--service", default="nfsguard", show_default=True)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Default: in-cluster config inside a pod, else ~/.kube/config.",
)
@click.option("--in-cluster", is_flag=True, help="Use the pod's service account.")
@click.option("--dns-name", "dns_names", multiple=True, help="Extra DNS SAN (repeatable).")
@click.option("--ip", "ips", multiple=True, help="IP SAN (repeatable), for url webhooks.")
@click.option(
    "--webhook-optional",
    is_flag=True,
    help="A missing webhook configuration is not a failure (serve --register writes it, "
    "with the CA, once a replica is ready).",
)
@_serving_days
@_renew_days
def sync(
    namespace: str,
    secret_name: str,
    webhook_config: str,
    service: str,
    kubeconfig: Path | None,
    in_cluster: bool,
    dns_names: tuple[str, ...],
    ips: tuple[str, ...],
    webhook_optional: bool,
    serving_days: int,
    renew_before_days: int,
) -> ExitCode:
    """Create or renew the TLS Secret and inject the CA bundle into the webhook
    configuration. Safe to run any time (CronJob, by hand, concurrently)."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    from webhook.cluster.certs import sync_certificates
    from webhook.cluster.client import make_api_client

    policy = _policy(serving_days, renew_before_days)
    try:
        api = make_api_client(kubeconfig, in_cluster=in_cluster)
        result = sync_certificates(
            api,
            namespace=namespace,
            secret_name=secret_name,
            webhook_config=webhook_config,
            service=service,
            extra_dns_names=dns_names,
            ip_addresses=ips,
            policy=policy,
        )
    except ApiException as e:
        # exit 1, as for a missing webhook configuration: worth retrying (the Job does)
        raise Refused(
            f"nfsguard certs sync: API error {e.status} {e.reason}: {e.body}",
            code=ExitCode.FINDING,
        ) from None
    except ConfigException as e:
        raise Refused(f"nfsguard certs sync: no cluster credentials: {e}") from None
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.secret_changes:
        verb = "created" if result.secret_created else "updated"
        click.echo(f"secret {namespace}/{secret_name} {verb}: {'; '.join(result.secret_changes)}")
    else:
        click.echo(f"secret {namespace}/{secret_name} up to date")
    if result.webhook_missing and webhook_optional:
        click.echo(
            f"caBundle not injected: MutatingWebhookConfiguration {webhook_config} not "
            "registered yet (serve --register writes it with the CA)"
        )
    elif result.webhook_missing:
        click.echo(
            f"caBundle NOT injected: MutatingWebhookConfiguration {webhook_config} not found "
            "(apply manifests/gitops/90-webhook.yaml, then run again)",
            err=True,
        )
    elif result.webhooks_patched:
        click.echo(f"caBundle injected into {webhook_config}: {', '.join(result.webhooks_patched)}")
    else:
        click.echo(f"caBundle of {webhook_config} up to date")
    click.echo(
        f"serving certificate valid until {result.serving_not_after:%Y-%m-%d}; "
        f"CA until {result.ca_not_after:%Y-%m-%d}; {result.trusted_cas} CA(s) trusted"
    )
    return ExitCode.FINDING if result.webhook_missing and not webhook_optional else ExitCode.OK


@certs.command()
@click.argument("cert_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--renew-before-days",
    type=click.IntRange(min=0),
    default=pki.SERVING_RENEW_BEFORE.days,
    show_default=True,
)
def check(cert_file: Path, renew_before_days: int) -> ExitCode:
    """Print a certificate's names and validity; exit 1 if it is due for renewal
    (for monitoring, e.g. `nfsguard certs check /etc/nfsguard/tls/tls.crt`)."""
    from cryptography import x509

    try:
        certs_in = pki.load_pem_certificates(cert_file.read_bytes())
    except ValueError as e:
        raise click.BadParameter(f"{cert_file}: {e}") from e
    if not certs_in:
        raise click.BadParameter(f"{cert_file}: no certificate")
    now = dt.datetime.now(dt.UTC)
    due = False
    for cert in certs_in:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [*san.get_values_for_type(x509.DNSName)]
            names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            names = []
        left = cert.not_valid_after_utc - now
        renew = pki.needs_renewal(cert, now, dt.timedelta(days=renew_before_days))
        due = due or renew
        click.echo(
            f"{cert.subject.rfc4514_string()}: valid until {cert.not_valid_after_utc:%Y-%m-%d} "
            f"({left.days} days left){' RENEW' if renew else ''}"
            + (f"; names {', '.join(names)}" if names else "")
        )
    return ExitCode.FINDING if due else ExitCode.OK
