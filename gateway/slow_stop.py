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
    """Every unfinished task of the running loop with the chain of awaits it is suspended in,
    innermost last; tasks waiting at the same place (a thousand children of one order) are
    told once."""
    places: dict[str, list[str]] = {}
    for task in asyncio.all_tasks():
        places.setdefault(_awaits(task.get_coro()), []).append(task.get_name())
    out = io.StringIO()
    out.write(f"{sum(len(names) for names in places.values())} tasks\n")
    for where, names in sorted(places.items(), key=lambda item: -len(item[1])):
        shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        out.write(f"--- {len(names)} task(s) ({shown}):\n{where}")
    return out.getvalue()


def _awaits(awaitable: object) -> str:
    """The frames of a suspended coroutine and of each it awaits in turn (Task.print_stack
    shows the outermost only: a suspended coroutine's frame has no f_back)."""
    lines = []
    for _ in range(50):
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            if awaitable is not None:
                # Its type only: a future's repr differs per task and would part the groups.
                lines.append(f"  awaiting {type(awaitable).__name__}")
            break
        code = frame.f_code
        lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_qualname}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return "\n".join(lines) + "\n"


async def report_if_slow(after_s: float) -> None:
    """Logs describe_tasks() once `after_s` seconds have passed (cancel it when done)."""
    await asyncio.sleep(after_s)
    log.warning("still stopping after %.0f s; waiting on:\n%s", after_s, describe_tasks())
