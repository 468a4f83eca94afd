"""The MT4 backend: an Expert Advisor in each MT4 terminal connects out to the gateway's bridge
endpoint and executes what the gateway asks (protocol: docs/mt4-bridge.md; the EA:
deploy/mt4/MamBridge.mq4).

| module           | holds                                                                 |
|------------------|-----------------------------------------------------------------------|
| framing.py       | length-prefixed JSON frames, strictly decoded                         |
| messages.py      | protocol versions, request builders, parsers of what the EA sends     |
| errors.py        | MT4 error codes and the MT5 retcodes (hence engine classes) they map to |
| records.py       | MT4 order records as positions, pending orders and derived deals      |
| book.py          | the trade pool an EA of protocol 2 pushes, and when it is current     |
| session.py       | one EA connection: requests by id, events, heartbeats                 |
| bridge_server.py | the TCP endpoint: hello, token check, one session per login           |
| terminal.py      | Mt4Terminal: the Terminal protocol over the login's current session   |
| tokens.py        | each login's token, from the environment or a token file              |
"""

from gateway.terminals.mt4.bridge_server import BridgeSettings, Mt4BridgeServer, TokenLookup
from gateway.terminals.mt4.session import SessionSettings
from gateway.terminals.mt4.terminal import Mt4Terminal, Mt4TerminalSettings
from gateway.terminals.mt4.tokens import TokenFile, TokenFileError, token_lookup

__all__ = [
    "BridgeSettings",
    "Mt4BridgeServer",
    "Mt4Terminal",
    "Mt4TerminalSettings",
    "SessionSettings",
    "TokenFile",
    "TokenFileError",
    "TokenLookup",
    "token_lookup",
]
