"""How mamctl ends a failed command: one line on stderr, worded for the person at the shell,
and exit code 1."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from mam_client.errors import MamError

# What to do about a refused key, in the CLI's terms rather than the gRPC metadata the
# gateway's message speaks of.
_KEY_HINTS = {
    "API_KEY_MISSING": "no API key: set MAM_API_KEY or pass --api-key"
    " (the demo's admin key: export MAM_API_KEY=$(cat var/admin.key))",
    "API_KEY_INVALID": "check the key of MAM_API_KEY or --api-key",
    "API_KEY_REVOKED": "the key of MAM_API_KEY or --api-key is revoked",
}


def error_text(error: BaseException) -> str:
    """The failure as one line: `CODE REASON: message (field: description)`."""
    if isinstance(error, MamError) and error.reason in _KEY_HINTS:
        hint = _KEY_HINTS[error.reason]
        if error.reason == "API_KEY_MISSING":
            return f"{error.code.name} {error.reason}: {hint}"
        return f"{error} ({hint})"
    return str(error)


def fail(err: Console, error: BaseException) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(error_text(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
