"""The simulated broker: a faithful stand-in for MetaTrader where none can run (demo, tests).

| module         | holds                                                                   |
|----------------|-------------------------------------------------------------------------|
| broker.py      | SimBroker: the trade server; how each request is answered               |
| book.py        | SimAccount: balance, positions, orders, deals; hedging/netting booking  |
| price_rules.py | where pending prices and SL/TP may lie; when a pending order triggers   |
| money.py       | profit and margin                                                       |
| symbol.py      | SimSymbol, its trade mode and sessions                                  |
| sessions.py    | trading sessions per UTC weekday (MARKET_CLOSED outside them)           |
| quotes.py      | the seeded quote walk, with a bounded history of recent quotes          |
| state_file.py  | the books in a SQLite file, one commit per request                      |
| terminal.py    | SimTerminal: the Terminal protocol with latency, faults, disconnects    |
| latency.py     | fixed, normal and lognormal latency, seeded per terminal                |
| faults.py      | injected faults and their probabilities, seeded per terminal            |

A request sent at time t with a latency d is executed as of its arrival, t + d: priced at the
quote of t + d, stamped t + d, within market hours at t + d, however late the event loop (which
the simulated brokers share with the gateway) runs it, as a trade server elsewhere would.
"""

from gateway.terminals.sim.broker import SimBroker
from gateway.terminals.sim.faults import Fault, FaultSettings
from gateway.terminals.sim.latency import LatencyDistribution, LatencySettings
from gateway.terminals.sim.quotes import QuoteFeed, QuoteSettings
from gateway.terminals.sim.sessions import TradingSessions
from gateway.terminals.sim.state_file import BrokerStateError
from gateway.terminals.sim.symbol import SimSymbol, SymbolRules, SymbolTradeMode
from gateway.terminals.sim.terminal import SimTerminal

__all__ = [
    "BrokerStateError",
    "Fault",
    "FaultSettings",
    "LatencyDistribution",
    "LatencySettings",
    "QuoteFeed",
    "QuoteSettings",
    "SimBroker",
    "SimSymbol",
    "SimTerminal",
    "SymbolRules",
    "SymbolTradeMode",
    "TradingSessions",
]
