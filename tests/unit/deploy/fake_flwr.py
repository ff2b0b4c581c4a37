"""Stand-ins for flwr processes: a fake process prints the lines flwr 1.41 printed."""

from __future__ import annotations

import sys

# Log excerpts as flwr 1.41 wrote them on this machine (colour codes included).
SUPERLINK_UP = (
    "\x1b[92mINFO \x1b[0m:      Starting Flower SuperLink\n"
    "2026-11-23T12:43:13.235Z INFO [uvicorn.error] Application startup complete.\n"
    "2026-11-23T12:43:13.245Z INFO [uvicorn.error] Uvicorn running on "
    "https://0.0.0.0:39592 (Press CTRL+C to quit)\n"
)
SUPERNODE_UP = (
    "\x1b[92mINFO \x1b[0m:      Starting Flower SuperNode\n"
    "INFO:     Uvicorn running on http://127.0.0.1:9094 (Press CTRL+C to quit)\n"
    "\x1b[92mINFO \x1b[0m:      SuperNode ID: 13141801189036072404\n"
)
SUPERNODE_REFUSED = (
    "INFO:     Uvicorn running on http://127.0.0.1:9094 (Press CTRL+C to quit)\n"
    "\x1b[91mERROR \x1b[0m:     Exit Code: 305\n"
    "Failed to initialize the connection to the SuperLink.\n"
    "[code: 2004] Failed to activate SuperNode.\n"
    "The SuperNode could not establish a connection to the SuperLink.\n"
    "INFO:     Shutting down\n"
)
SUPERNODE_PORT_TAKEN = (
    "\x1b[92mINFO \x1b[0m:      Starting Flower SuperNode\n"
    "ERROR:    [Errno 98] error while attempting to bind on address "
    "('127.0.0.1', 9094): address already in use\n"
    "Traceback (most recent call last):\n"
    '  File "/venv/bin/flower-supernode", line 6, in <module>\n'
    "RuntimeError: SuperNode Runtime HTTP API failed to start.\n"
)
SUPERNODE_BAD_PATH = (
    "\x1b[92mINFO \x1b[0m:      Starting Flower SuperNode\n"
    "\x1b[91mERROR \x1b[0m:     Path argument `--root-certificates` does not point "
    "to a file.\n"
)
SUPERNODE_RETRYING = (
    "\x1b[92mINFO \x1b[0m:      Starting Flower SuperNode\n"
    "\x1b[93mWARNING \x1b[0m:   Connection attempt failed, retrying in 1.32 seconds\n"
)


def fake(log: str, *, then_sleep: float = 0.0) -> list[str]:
    """A process that prints ``log`` (flwr's lines), sleeps ``then_sleep`` s, exits."""
    code = (
        f"import sys, time; sys.stdout.write({log!r}); sys.stdout.flush(); "
        f"time.sleep({then_sleep})"
    )
    return [sys.executable, "-c", code]
