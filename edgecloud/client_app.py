"""Flower ClientApp glue: every capability registers its handlers (and their mods)."""

from __future__ import annotations

from flwr.clientapp import ClientApp

from edgecloud.capability import CAPABILITIES

app = ClientApp()
for _capability in CAPABILITIES.values():
    _capability.register(app)
