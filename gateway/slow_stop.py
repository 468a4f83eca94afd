"""What a stopping gateway is still waiting for, written to the log when it takes too long.

A graceful stop ends running calls and dispatches within the grace period; one that does not
finish leaves the operator a process to kill and nothing to say why. The threads' stacks show
only the event loop waiting: the awaits that do not end are in the tasks' stacks.
"""

from __future__ import annotations

import asyncio
import io
import logging

log = logging.getLogger("gateway")


def describe_tasks() -> str:
    """Every unfinished task of the running loop with where it waits, innermost frame last;
    tasks waiting at the same place (a thousand children of one order) are told once."""
    places: dict[str, list[str]] = {}
    for task in asyncio.all_tasks():
        stack = io.StringIO()
        task.print_stack(limit=20, file=stack)
        # The first line names the task itself; the rest is where it waits.
        _, _, where = stack.getvalue().partition("\n")
        places.setdefault(where, []).append(task.get_name())
    out = io.StringIO()
    out.write(f"{sum(len(names) for names in places.values())} tasks\n")
    for where, names in sorted(places.items(), key=lambda item: -len(item[1])):
        shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        out.write(f"--- {len(names)} task(s) ({shown}):\n{where}")
    return out.getvalue()


async def report_if_slow(after_s: float) -> None:
    """Logs describe_tasks() once `after_s` seconds have passed (cancel it when done)."""
    await asyncio.sleep(after_s)
    log.warning("still stopping after %.0f s; waiting on:\n%s", after_s, describe_tasks())
