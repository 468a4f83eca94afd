"""One session per terminal: an exclusive lock on a file in the terminal's own folder.

Why: the MetaTrader5 package attaches to the terminal at a path, and initialize(login=) switches
that terminal to the account it names. Two sessions given the same terminal (two workers on one
host, or one configuration naming a path twice) would switch it under each other, and an order
meant for one account would be sent on the other. The lock file lives beside terminal64.exe, so
every process of every user on the host that can reach the terminal sees it, and the operating
system drops the lock when its process dies: a killed worker never leaves its terminal claimed.

A path that is not a folder of this file system takes no lock (mt5linux: the terminal's path
inside Wine; the emulator's made-up paths); the login and server checks before every send still
keep orders off a switched terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from gateway.terminals.protocol import TerminalError

LOCK_FILE_NAME = "mam-gateway.lock"
# The lock covers the file's first byte; who holds it is written after it (on Windows a locked
# byte cannot be read by others, the rest can).
_HOLDER_OFFSET = 1

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class TerminalInUse(TerminalError):
    """Another session holds the terminal: this one must not touch it."""


class TerminalLock:
    """The claim of one session on one terminal, held until released or its process ends."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, terminal_path: str, holder: str) -> TerminalLock | None:
        """The terminal's lock, or None when its folder is not on this file system. `holder`
        names this session in the message another one gets. Raises TerminalInUse, or
        TerminalError when the lock file cannot be opened (refused rather than unguarded)."""
        executable = Path(terminal_path)
        if not executable.is_absolute() or not executable.parent.is_dir():
            return None
        path = executable.parent / LOCK_FILE_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise TerminalError(f"{terminal_path}: cannot open its lock {path}: {error}") from None
        if not _try_lock(fd):
            other = _read_holder(fd)
            os.close(fd)
            raise TerminalInUse(
                f"the terminal {terminal_path} is in use by another session ({other}): "
                "each account needs a terminal64.exe of its own"
            )
        _write_holder(fd, f"{holder}, process {os.getpid()}")
        return cls(fd, path)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):  # closing the file drops the lock anyway
            _unlock(fd)
        os.close(fd)


def _write_holder(fd: int, holder: str) -> None:
    data = holder.encode("utf-8", "replace")
    with contextlib.suppress(OSError):  # who holds it is for messages only
        os.ftruncate(fd, _HOLDER_OFFSET)
        os.lseek(fd, _HOLDER_OFFSET, os.SEEK_SET)
        os.write(fd, data)


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, _HOLDER_OFFSET, os.SEEK_SET)
        text = os.read(fd, 200).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "holder unknown"
