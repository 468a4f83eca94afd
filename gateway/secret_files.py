"""Files that hold a secret (the bootstrap admin key), written readable by their owner only.

Opening an existing file with mode 0600 keeps the mode it has: an admin.key left 0644 by an
earlier version or an operator's copy would take the new key world-readable. So the secret goes
to a new file, created 0600 beside the target, and is renamed over it: the target is replaced
whole, never seen half-written, and whoever had the old one open keeps reading the old one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_owner_only(path: Path, text: str) -> None:
    """Writes `text` to `path` with mode 0600 whatever was there (a file is replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # O_EXCL: a file planted at the temporary name (with its own mode) is not written through.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        # The mode given to open() is reduced by the umask; 0600 is what is meant.
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
