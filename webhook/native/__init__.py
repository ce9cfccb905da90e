"""Native admission: nfsguard policies compiled to MutatingAdmissionPolicy and
ValidatingAdmissionPolicy (webhook/native/compiler.py). Pure: no I/O."""
