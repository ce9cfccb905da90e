"""``nfsguard serve``: the webhook over HTTPS."""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
from pathlib import Path

import click

from webhook.cli.common import load_engine, load_inventory, policy_option
from webhook.cli.errors import Refused, one_line
from webhook.cli.webhook_config import endpoint_options, webhook_settings


@click.command()
@policy_option
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="tls.crt/tls.key; created with a dev CA (ca.crt) when missing.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8443, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--audit-log", type=click.Path(dir_okay=False), help="Append decisions to this file.")
@click.option(
    "--audit-key",
    type=click.Path(dir_okay=False),
    help="Ed25519 private key (PEM) that signs audit checkpoints.",
)
@click.option(
    "--audit-stdout/--no-audit-stdout",
    default=False,
    show_default=True,
    help="Also print every audit record to stdout as one JSON line.",
)
@click.option(
    "--nodes",
    "nodes_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Static node inventory (kubectl get nodes -o yaml).",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, exists=True),
    help="Watch Nodes through this kubeconfig.",
)
@click.option("--in-cluster", is_flag=True, help="Watch Nodes with the pod's service account.")
@click.option(
    "--node-stale-after",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds a broken node watch is trusted before unknownNodes applies.",
)
@click.option(
    "--reload-interval",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds between checks for changed policy files.",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info"
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Every log line, nfsguard's and gunicorn's: text, or one JSON object per line.",
)
@click.option("--access-log", is_flag=True, help="Also log one line per HTTP request.")
@click.option(
    "--audit-compliant",
    is_flag=True,
    help="Also record compliant and unmatched reviews (coverage evidence; docs/audit.md).",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0.5, 300),
    default=5.0,
    show_default=True,
    help="Seconds for a request's TLS handshake and headers; then 408 and closed.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(0.5, 300),
    default=10.0,
    show_default=True,
    help="Seconds for a request's body once its headers are in; then 408 and closed.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(16, 100000),
    default=1000,
    show_default=True,
    help="Open connections per worker; one more is refused at once.",
)
@click.option(
    "--balance-patience",
    type=click.FloatRange(0, 10),
    default=0.02,
    show_default=True,
    help="Seconds a worker leaves a new connection to a worker holding fewer; 0: no balancing.",
)
@click.option(
    "--allow-invalid-certificate",
    is_flag=True,
    help="Serve tls.crt even when expired, not yet valid, or (on reload) missing names.",
)
@click.option("--print-example", is_flag=True, help="Print a ready-to-paste curl command.")
@click.option(
    "--register",
    is_flag=True,
    help="Keep the MutatingWebhookConfiguration from this server (one writer, by Lease).",
)
@endpoint_options
@click.option(
    "--ca-bundle",
    "register_ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --register: the CA put in caBundle (default: TLS_DIR/ca.crt).",
)
@click.option("--lease-namespace", default=None, help="With --register (default: the service's).")
@click.option("--lease-name", default="nfsguard-registration", show_default=True)
@click.option(
    "--register-interval", type=click.FloatRange(0.2, 3600), default=5.0, show_default=True
)
@click.option(
    "--lease-duration",
    type=click.IntRange(1, 3600),
    default=15,
    show_default=True,
    help="Seconds another replica waits for a silent holder before it takes over.",
)
@click.option(
    "--register-owner",
    metavar="CLUSTERROLE",
    help="With --register: owner of the configuration (deleting it removes the configuration).",
)
def serve(
    policies: tuple[str, ...],
    tls_dir: Path,
    host: str,
    port: int,
    workers: int,
    threads: int,
    audit_log: str | None,
    audit_key: str | None,
    audit_stdout: bool,
    nodes_file: str | None,
    kubeconfig: str | None,
    in_cluster: bool,
    node_stale_after: float,
    reload_interval: float,
    log_level: str,
    log_format: str,
    access_log: bool,
    audit_compliant: bool,
    header_timeout: float,
    body_timeout: float,
    max_connections: int,
    balance_patience: float,
    allow_invalid_certificate: bool,
    print_example: bool,
    register: bool,
    webhook_name: str,
    service_namespace: str,
    service_name: str,
    service_port: int,
    url: str | None,
    failure_policy: str,
    pods_policy: str,
    timeout_seconds: int,
    register_ca: Path | None,
    lease_namespace: str | None,
    lease_name: str,
    register_interval: float,
    lease_duration: int,
    register_owner: str | None,
) -> None:
    """Serve POST /mutate (AdmissionReview v1), /healthz, /readyz and /metrics."""
    if audit_stdout and not audit_log:
        # Workers share one hash chain through the file; a stdout-only trail would be
        # one interleaved chain per worker that no one could verify.
        raise click.UsageError("--audit-stdout needs --audit-log (the chain lives in the file)")
    engine = load_engine(policies)  # refuse to start on a bad policy, with every problem
    if audit_key:
        from webhook.audit.signing import AuditKeyError, load_signer

        try:
            load_signer(audit_key)  # a bad key fails here, in one line, not in every worker
        except AuditKeyError as exc:
            raise Refused(one_line(str(exc))) from None  # worded as serve's other refusals
    if audit_log:
        _check_audit_log(audit_log)
    load_inventory(nodes_file)
    from webhook.pki import ensure_dev_tls

    ensure_dev_tls(tls_dir)
    # prometheus-client picks multiprocess mode at import: set it before importing the server.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="nfsguard-metrics-"))
    from webhook.server.tls_reload import CachedServerContext, InvalidCertificate

    try:  # a bad pair fails here, in one line
        CachedServerContext(tls_dir, allow_invalid=allow_invalid_certificate).get()
    except InvalidCertificate as exc:
        raise Refused(one_line(f"{exc} (--allow-invalid-certificate serves it anyway)")) from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise Refused(
            one_line(f"{tls_dir}: tls.crt and tls.key do not load as a TLS pair: {exc}")
        ) from None
    from webhook.server.registration_loop import RegisterSettings
    from webhook.server.runner import ServeSettings, run

    registering = None
    if register:
        registering = RegisterSettings(
            webhook=webhook_settings(
                webhook_name,
                service_namespace,
                service_name,
                url,
                failure_policy,
                managed=True,
                pods_policy=pods_policy,
                service_port=service_port,
                timeout_seconds=timeout_seconds,
            ),
            ca_file=register_ca or tls_dir / "ca.crt",
            lease_namespace=lease_namespace or service_namespace,
            lease_name=lease_name,
            interval=register_interval,
            lease_duration=lease_duration,
            owner_cluster_role=register_owner,
            kubeconfig=kubeconfig,
            in_cluster=in_cluster,
        )

    _check_port(host, port)  # before saying so: a port in use is one line and exit 2
    names = ", ".join(f"{p.name} {p.version}" for p in engine.policies)
    from webhook.server.logs import announce

    announce(log_format, f"serving {names} on https://{host}:{port}/mutate")
    if print_example:
        click.echo(_example(tls_dir, host, port), err=True)
    run(
        ServeSettings(
            policies=policies,
            tls_dir=tls_dir,
            host=host,
            port=port,
            workers=workers,
            threads=threads,
            audit_log=audit_log,
            audit_key=audit_key,
            audit_stdout=audit_stdout,
            nodes_file=nodes_file,
            kubeconfig=kubeconfig,
            in_cluster=in_cluster,
            node_stale_after=node_stale_after,
            reload_interval=reload_interval,
            log_level=log_level,
            register=registering,
            log_format=log_format,
            access_log=access_log,
            audit_compliant=audit_compliant,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            max_connections=max_connections,
            balance_patience=balance_patience,
            allow_invalid_certificate=allow_invalid_certificate,
        )
    )


def _check_audit_log(path: str) -> None:
    """Open every chain of the audit log as the workers will (directory, slot, head; a
    torn tail recovered) and close them again, so a chain that is not one (corrupt, a
    directory) or cannot be written is one line and exit 2 here, not a worker that
    can never start. Slot 0 always; the others that exist, each held while the next
    is opened, so that each opening claims the next slot."""
    import datetime as dt

    from webhook.audit.chain_file import AuditWriteError, ChainFile, slot_chains

    opened: list[ChainFile] = []
    try:
        for _chain in range(max(1, len(slot_chains(path)))):
            opened.append(
                ChainFile(path, max_bytes=0, keep_files=0, clock=lambda: dt.datetime.now(dt.UTC))
            )
    except AuditWriteError as exc:
        raise Refused(one_line(f"nfsguard: {exc}")) from None
    finally:
        for chain in opened:
            chain.close()


def _check_port(host: str, port: int) -> None:
    """Bind the address once, as gunicorn will (SO_REUSEADDR), so ``serve`` never
    announces a port it cannot listen on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Refused(f"nfsguard: cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
            probe.listen(1)
        except OSError as exc:
            raise Refused(
                f"nfsguard: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None


def _example(tls_dir: Path, host: str, port: int) -> str:
    review = (
        '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{'
        '"uid":"0df28fbd-5f5f-11e8-bc74-36e6bb280816",'
        '"kind":{"group":"","version":"v1","kind":"PersistentVolume"},'
        '"resource":{"group":"","version":"v1","resource":"persistentvolumes"},'
        '"name":"pv-nfs","operation":"CREATE","userInfo":{"username":"kubernetes-admin"},'
        '"object":{"kind":"PersistentVolume","apiVersion":"v1","metadata":{"name":"pv-nfs"},'
        '"spec":{"capacity":{"storage":"10Gi"},"accessModes":["ReadWriteMany"],'
        '"mountOptions":["nfsvers=4.2","hard"],'
        '"nfs":{"server":"192.168.100.7","path":"/data1/k8sdev/hl"}}},'
        '"oldObject":null,"dryRun":false}}'
    )
    return (
        "Try it:\n"
        f"  curl -s --cacert {tls_dir}/ca.crt -H 'Content-Type: application/json' \\\n"
        f"    https://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}/mutate "
        f"-d '{review}' \\\n"
        '    | python3 -c \'import base64,json,sys; r=json.load(sys.stdin)["response"]; '
        'print(json.dumps(r, indent=1)); print(base64.b64decode(r.get("patch", "")).decode())\''
    )
