"""The way out for an inline ``nfs:`` volume: the PersistentVolume to mount instead.

An inline NFS volume has no place for mount options (Kubernetes volumes docs: "you
can't specify NFS mount options in a Pod spec"; kubernetes#17226), so a denial cannot
say "add nfsvers=4.0": it shows the PersistentVolume and PersistentVolumeClaim that
carry the pin for the very export, ready for ``kubectl apply -n <its namespace> -f -``
(the PVC names that namespace too; ``<namespace>`` only for an object that names
none, as a file may), and the one-line change to the pod spec. The PVC names the PV
(``volumeName``) and both set ``storageClassName: ""`` so no default class provisions
something else. A ``readOnly: true`` inline volume stays read-only: ``ro`` in the PV's
mountOptions (what kubelet's nfs plugin adds for a read-only mount,
pkg/volume/nfs/nfs.go), ``readOnly: true`` in its nfs source and on the claim.
"""

from __future__ import annotations

import re

from webhook.api.target import NFSTarget
from webhook.nfs.options import pin_option

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def _dns_name(*parts: str) -> str:
    """A DNS-1123 name from ``parts`` (lower case, '-' for anything else, <= 63)."""
    text = _NOT_DNS.sub("-", "-".join(p.strip("-") for p in parts if p).lower())
    text = re.sub("-{2,}", "-", text).strip("-")
    return text[:63].rstrip("-") or "nfs"


def pv_way_out(target: NFSTarget, pin: str) -> str:
    """The message tail for an inline nfs volume: why it cannot be pinned, and the PV,
    PVC and volume change that mount the same export with ``nfsvers=<pin>`` (read-only
    when the inline volume was: ``ro`` in the PV's mountOptions, ReadOnlyMany, and
    ``readOnly`` on the claim in the pod spec), for the object's own namespace."""
    name = _dns_name(target.name.rstrip("*"), target.volume)
    server = target.server or "<server>"
    path = target.path or "/"
    namespace = target.namespace
    options = [pin_option(pin), *(["ro"] if target.read_only else [])]
    modes = "[ReadOnlyMany]" if target.read_only else "[ReadWriteMany]"
    claim = f"claimName: {name}" + (", readOnly: true" if target.read_only else "")
    return (
        f'volume "{target.volume}" is an inline nfs volume, which cannot carry mount '
        f"options; mount the export from a PersistentVolume with {pin_option(pin)} instead "
        f"(kubectl apply -n {namespace or '<namespace>'} -f -):\n"
        "apiVersion: v1\n"
        "kind: PersistentVolume\n"
        "metadata:\n"
        f"  name: {name}\n"
        "spec:\n"
        "  capacity: {storage: 1Gi}\n"
        f"  accessModes: {modes}\n"
        "  persistentVolumeReclaimPolicy: Retain\n"
        '  storageClassName: ""\n'
        f"  mountOptions: [{', '.join(options)}]\n"
        f"  nfs: {{server: {_yaml_scalar(server)}, path: {_yaml_scalar(path)}"
        f"{', readOnly: true' if target.read_only else ''}}}\n"
        "---\n"
        "apiVersion: v1\n"
        "kind: PersistentVolumeClaim\n"
        "metadata:\n"
        f"  name: {name}\n"
        + (f"  namespace: {_yaml_scalar(namespace)}\n" if namespace else "")
        + "spec:\n"
        f"  accessModes: {modes}\n"
        '  storageClassName: ""\n'
        f"  volumeName: {name}\n"
        "  resources: {requests: {storage: 1Gi}}\n"
        f'Then replace "nfs:" in volume "{target.volume}" with '
        f'"persistentVolumeClaim: {{{claim}}}"'
    )


_PLAIN = re.compile(r"[A-Za-z0-9_./:-]+")


def _yaml_scalar(text: str) -> str:
    """``text`` as a YAML flow scalar: plain when safe, else double-quoted."""
    if _PLAIN.fullmatch(text) and not text.startswith((":", "-")):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
