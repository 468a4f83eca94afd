"""A MetaTrader5 package backed by the simulated broker, importable in its place:

    import gateway.terminals.mt5.emulator as mt5

    mt5.emulator_attach(broker, login=1001, password="secret")  # or emulator_from_config(...)
    if not mt5.initialize(login=1001, password="secret", server="MAM-Simulated"):
        print(mt5.last_error())

The module-level functions and constants are the package's (names, signatures, named tuples,
values, None plus last_error() on failure; see terminal.py for what is kept). Like the package,
the module is one terminal per process; `MetaTrader5Emulator()` makes further independent
terminals with the same functions as methods.

Only `emulator_*` functions are not in the package: they install the terminal and inject faults.
"""

from __future__ import annotations

import sys
from types import ModuleType

from gateway.terminals.mt5.constants import *  # noqa: F403 (the package exports every constant)
from gateway.terminals.mt5.emulator.config import EmptyAnswer as EmptyAnswer
from gateway.terminals.mt5.emulator.config import EmulatorAccount as EmulatorAccount
from gateway.terminals.mt5.emulator.config import EmulatorConfig as EmulatorConfig
from gateway.terminals.mt5.emulator.config import SymbolTradeModes as SymbolTradeModes
from gateway.terminals.mt5.emulator.config import TerminalBehaviour as TerminalBehaviour
from gateway.terminals.mt5.emulator.terminal import MetaTrader5Emulator as MetaTrader5Emulator

# The package version whose API this module follows.
__version__ = "5.0.6231"
__author__ = "mam-gateway"

_terminal = MetaTrader5Emulator()

initialize = _terminal.initialize
login = _terminal.login
shutdown = _terminal.shutdown
version = _terminal.version
last_error = _terminal.last_error
terminal_info = _terminal.terminal_info
account_info = _terminal.account_info
symbols_total = _terminal.symbols_total
symbols_get = _terminal.symbols_get
symbol_info = _terminal.symbol_info
symbol_info_tick = _terminal.symbol_info_tick
symbol_select = _terminal.symbol_select
order_check = _terminal.order_check
order_calc_margin = _terminal.order_calc_margin
order_calc_profit = _terminal.order_calc_profit
order_send = _terminal.order_send
positions_total = _terminal.positions_total
positions_get = _terminal.positions_get
orders_total = _terminal.orders_total
orders_get = _terminal.orders_get
history_orders_total = _terminal.history_orders_total
history_orders_get = _terminal.history_orders_get
history_deals_total = _terminal.history_deals_total
history_deals_get = _terminal.history_deals_get

emulator_attach = _terminal.emulator_attach
emulator_configure = _terminal.emulator_configure
emulator_add_login = _terminal.emulator_add_login
emulator_set_behaviour = _terminal.emulator_set_behaviour
emulator_fail_next = _terminal.emulator_fail_next
emulator_ipc_error_next = _terminal.emulator_ipc_error_next
emulator_hang_next_call = _terminal.emulator_hang_next_call
emulator_set_trade_server_connected = _terminal.emulator_set_trade_server_connected
emulator_set_algo_trading = _terminal.emulator_set_algo_trading
emulator_set_trade_api_disabled = _terminal.emulator_set_trade_api_disabled
emulator_set_expert_trading = _terminal.emulator_set_expert_trading
emulator_close_terminal = _terminal.emulator_close_terminal


def emulator_from_config(config: EmulatorConfig) -> ModuleType:
    """Installs this module's terminal from `config` and returns the module: the factory a
    worker process names to get an emulated MetaTrader5 module (see ModuleSpec.emulator)."""
    _terminal.emulator_configure(config)
    return sys.modules[__name__]
