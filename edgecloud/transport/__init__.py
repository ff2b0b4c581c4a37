"""Session transport: a TLS gRPC stream per client and round, opened with a ticket.

The data plane for protocols with one exchange per step or token (split learning,
STIP). The server announces a session per sampled client and sends its
:class:`Ticket` over the control plane (one Flower message); the client dials the
endpoint, proves it holds the ticket's single-use token and the round's messages
(already-sealed channel frames) run over the stream. No flwr import.
"""

from edgecloud.transport.client import SessionClient
from edgecloud.transport.errors import (
    EndpointUnreachable,
    SessionClosed,
    SessionRefused,
    TicketError,
    TransportError,
)
from edgecloud.transport.server import ServerSession, SessionServer
from edgecloud.transport.ticket import TICKET_KEYS, Ticket

__all__ = [
    "TICKET_KEYS",
    "EndpointUnreachable",
    "ServerSession",
    "SessionClient",
    "SessionClosed",
    "SessionRefused",
    "SessionServer",
    "Ticket",
    "TicketError",
    "TransportError",
]
