"""Flower-side machinery shared by the capabilities.

The lock-step exchange driver over per-node conversations (:mod:`.exchange`), node
waiting and sampling (:mod:`.nodes`), traffic counting (:mod:`.traffic`), derived
seeds (:mod:`.seeds`), record conversion and typed reply reads (:mod:`.records`),
shared record names (:mod:`.keys`), a node's local data (:mod:`.client_data`) and
the setup of task-based runs (:mod:`.run_setup`).
"""
