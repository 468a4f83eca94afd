"""Where the bridge finds each login's token: the environment, then a token file.

Secrets come only from the environment or files (never the configuration itself). The file
holds one `LOGIN TOKEN` (or `LOGIN=TOKEN`) per line, `#` starting a comment; it is read again
whenever it changes, so a login can be added without restarting the gateway. A token is at least
MIN_TOKEN_LENGTH printable ASCII characters, as a worker token is: a file holding a shorter one is
refused, and the bridge refuses a login whose token (from the environment too) is shorter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from gateway.domain.peer_authentication import token_problem

log = logging.getLogger(__name__)

ENVIRONMENT_PREFIX = "MAM_MT4_TOKEN_"


class TokenFileError(Exception):
    """The token file cannot be read or a line of it makes no sense."""


def parse_tokens(text: str, *, source: str = "tokens") -> dict[int, str]:
    tokens: dict[int, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        login, separator, token = line.replace("=", " ", 1).partition(" ")
        token = token.strip()
        if not separator or not login.isdigit() or not token or " " in token:
            raise TokenFileError(f"{source}:{number}: expected 'LOGIN TOKEN'")
        if int(login) in tokens:
            raise TokenFileError(f"{source}:{number}: login {login} appears twice")
        problem = token_problem(token)
        if problem is not None:
            raise TokenFileError(f"{source}:{number}: the token of login {login} {problem}")
        tokens[int(login)] = token
    return tokens


class TokenFile:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._tokens: dict[int, str] = {}

    def reload(self) -> None:
        """Reads the file now, changed or not (SIGHUP: an edit that kept its size and time)."""
        self._stamp = None if self._stamp is None else (-1, -1)
        self.tokens()

    def tokens(self) -> dict[int, str]:
        """The file's tokens, read again if it changed. A file that became unreadable or
        invalid keeps the last good tokens (logged), so a bad edit does not lock every EA out."""
        try:
            status = self._path.stat()
            stamp = (status.st_mtime_ns, status.st_size)
            if stamp != self._stamp:
                self._tokens = parse_tokens(self._path.read_text(), source=str(self._path))
                self._stamp = stamp
        except (OSError, TokenFileError) as error:
            if self._stamp is None:
                raise TokenFileError(str(error)) from error
            log.error("MT4 token file not reloaded, the last good one stays: %s", error)
        return self._tokens


class Mt4Tokens:
    """Each login's token (a TokenLookup): MAM_MT4_TOKEN_<login> from the environment, else
    the file's."""

    def __init__(self, path: Path | None, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._file = None if path is None else TokenFile(path)
        if self._file is not None:
            self._file.tokens()  # a missing or broken file fails at start, not at the first hello

    def __call__(self, login: int) -> str | None:
        token = self._environ.get(f"{ENVIRONMENT_PREFIX}{login}")
        if token:
            return token
        return None if self._file is None else self._file.tokens().get(login)

    def reload(self) -> None:
        """Reads the token file now (the environment is the process's, fixed)."""
        if self._file is not None:
            self._file.reload()


def token_lookup(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Mt4Tokens:
    """Each login's token: MAM_MT4_TOKEN_<login> from the environment, else the file's."""
    return Mt4Tokens(path, os.environ if environ is None else environ)
