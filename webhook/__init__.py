"""nfsguard: keep NFS volumes off protocol versions known to break.

The folders tell the layers (docs/architecture.md; import-linter holds them):

- ``webhook.nfs``: NFS semantics: option grammar, kernels, patterns, node scope.
- ``webhook.api``: frozen types: policy, driver profile, target, decision, review.
- ``webhook.config``: YAML documents, schemas, policies and profiles: ``load``, lint.
- ``webhook.engine``: one review of one object, step by step: ``Engine.evaluate``.
- ``webhook.admission``: AdmissionReview in and out, the handler, the recorder port.
- ``webhook.audit``: the tamper-evident decision trail.
- ``webhook.cluster``: kubernetes-client adapters (node inventory, certificates).
- ``webhook.files``: reading policy, manifest and package files.
- ``webhook.server`` and ``webhook.suites``: the served webhook; policy test suites.
- ``webhook.cli``: the ``nfsguard`` command.

``nfs``, ``api``, ``config`` and ``engine`` do no I/O.
"""

__version__ = "0.1.0"
