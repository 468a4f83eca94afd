"""The MetaTrader 5 backend: the Terminal protocol over the MetaTrader5 Python package (or
mt5linux's client of it, or the emulator), one terminal per account. See docs/terminals-mt5.md.

| module           | holds                                                               |
|------------------|---------------------------------------------------------------------|
| terminal.py      | Mt5Terminal: the Terminal protocol; in a worker process or a thread |
| session.py       | Mt5Session: the adapter, every operation as blocking module calls   |
| requests.py      | OrderRequest -> the order_send request dict                         |
| records.py       | the module's records (floats, server times) -> exact domain values  |
| errors.py        | what a None answer means: last_error() codes (RES_*)                |
| worker.py        | the worker process and the gateway's side of it (restart, timeouts) |
| runners.py       | the runner protocol, and the in-process ThreadRunner                |
| settings.py      | Mt5Settings (account, terminal path, module), ModuleSpec            |
| terminal_lock.py | one session per terminal64.exe: a lock file in its folder           |
| sent_requests.py | what a session sent, by tag (reconciling rewritten comments)        |
| constants.py     | the MetaTrader5 package's constants                                 |
| emulator/        | a MetaTrader5 package over the simulated broker                     |
"""

from gateway.terminals.mt5.settings import ModuleSpec, Mt5Settings
from gateway.terminals.mt5.terminal import Mt5Terminal

__all__ = ["ModuleSpec", "Mt5Settings", "Mt5Terminal"]
