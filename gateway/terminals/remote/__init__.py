"""Terminals on remote workers: the hosts near the broker that run MT4/MT5 terminals and connect
out to the gateway's WorkerService (docs/workers.md).

| module             | holds                                                                 |
|--------------------|-----------------------------------------------------------------------|
| commands.py        | the Terminal protocol as commands, and running one on a local backend  |
| worker_hub.py      | WorkerHub: connected workers, the logins each hosts, calls in flight   |
| remote_terminal.py | RemoteTerminal: the Terminal protocol over a worker's stream           |
| wire.py            | WorkerService messages <-> Terminal protocol values, for both ends    |

The wire form (mam.v1.WorkerService) is mapped once, in wire.py: the gateway's servicer
(gateway/api/worker_servicer.py) and the worker program (gateway/worker/) both use it.
"""

from gateway.terminals.remote.remote_terminal import RemoteTerminal
from gateway.terminals.remote.worker_hub import (
    BrokerLogin,
    DropReason,
    HostedElsewhere,
    HostedTerminal,
    HubClosed,
    WorkerHub,
    WorkerSession,
)

__all__ = [
    "BrokerLogin",
    "DropReason",
    "HostedElsewhere",
    "HostedTerminal",
    "HubClosed",
    "RemoteTerminal",
    "WorkerHub",
    "WorkerSession",
]
