"""The simulated broker: a faithful stand-in for MetaTrader where none can run (demo, tests)."""

from gateway.terminals.sim.broker import SimBroker, SimSymbol
from gateway.terminals.sim.quotes import QuoteFeed
from gateway.terminals.sim.terminal import SimTerminal

__all__ = ["QuoteFeed", "SimBroker", "SimSymbol", "SimTerminal"]
