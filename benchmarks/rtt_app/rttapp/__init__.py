"""Round-trip probe app."""
