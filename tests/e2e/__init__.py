"""End-to-end tests against a real kube-apiserver and etcd (see docs/e2e.md)."""
