"""The collector's settings for a long-running gateway process.

CPython's defaults collect the youngest generation every 700 net allocations: a 1,000-account
master order allocates hundreds of thousands of short-lived objects (requests, results, rows,
protobuf messages), almost all freed by reference counting, and the default thresholds spent
about a sixth of the gateway's CPU time in the collector traversing them and, every few
seconds, the whole heap (docs/performance.md has the figures). Cycles are still collected,
in fewer, larger passes.
"""

from __future__ import annotations

import gc

# Net allocations between collections of the youngest generation (CPython's default: 700).
YOUNG_THRESHOLD = 50_000
# Young collections per middle one, and middle per full one (defaults: 10 and 10).
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 100


def tune_for_serving() -> None:
    """Called once the gateway has started: what start-up loaded (modules, configuration,
    accounts, symbol specs) stays for the process's life, so it is moved out of the collector's
    sight (gc.freeze) and full collections stop re-walking it; then the thresholds rise."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
