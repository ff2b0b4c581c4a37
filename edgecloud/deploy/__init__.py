"""Real deployment helpers: certificates, SuperLink/SuperNode processes, flwr CLI."""
