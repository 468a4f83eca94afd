"""No garbage collection across a burst of work that must not be cut in two.

The first requests of a master order's children leave back to back once every one is built
(gateway/engine/dispatcher.py); a young collection at the gateway's serving thresholds
(gateway/garbage_collection.py) takes ~10 ms, as long as a whole burst of 1,000 requests, and
one landed inside the burst of one order in ten. It runs right after the burst instead.
"""

from __future__ import annotations

import asyncio
import gc


def none_until_ready_callbacks_ran(loop: asyncio.AbstractEventLoop) -> None:
    """No collection until the callbacks ready on `loop` now have run. A collector switched
    off elsewhere stays off."""
    if not gc.isenabled():
        return
    gc.disable()
    loop.call_soon(gc.enable)
