"""nfsguard: keep NFS volumes off protocol versions known to break.

Layout (the folders tell the architecture):

- ``webhook.core``: pure logic, no I/O: NFS option semantics, kernels, targets,
  the policy model and engine, decisions.
- ``webhook.admission``: the AdmissionReview v1 wire format and the review handler.
- ``webhook.server``: Flask app, gunicorn runner, metrics, policy hot reload.
- ``webhook.cluster``: kubernetes-client adapters (node inventory, certificates).
- ``webhook.audit``: the tamper-evident decision trail.
- ``webhook.cli``: the ``nfsguard`` command.
"""

__version__ = "0.1.0"
