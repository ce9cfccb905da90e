"""The policy language (docs/policy-language.md): model, loading, engine."""
