"""Capability packages: each owns its config section, wire keys, workflow, handlers."""
