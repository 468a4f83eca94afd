"""Worker tokens (docs/workers.md, "Tokens"): `[WORKER_ID:]TOKEN [LOGIN[@SERVER] ...]` entries,
from workers.tokens_file and the environment variable workers.tokens_env, never the TOML. No
message here ever holds a token."""

from __future__ import annotations

from pathlib import Path

from gateway.config.models import ConfigError, HostableLogin, WorkerToken
from gateway.domain.peer_authentication import MIN_TOKEN_LENGTH, token_problem


def read_worker_tokens_file(path: Path) -> list[WorkerToken]:
    """The tokens of a workers.tokens_file: one entry a line, blank lines and # comments
    ignored. Raises ConfigError naming the line; the message never holds a token."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise ConfigError(f"workers.tokens_file: cannot read {path}: {error}") from None
    return [
        parse_worker_token(f"workers.tokens_file line {n}", line.strip(), from_file=True)
        for n, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def parse_worker_token(source: str, entry: str, *, from_file: bool = False) -> WorkerToken:
    """`[WORKER_ID:]TOKEN [LOGIN[@SERVER] ...]`: a token, the worker id it is bound to and the
    logins it may host, separated by white space. The message never holds the token."""
    credential, *logins = entry.split()
    worker_id, _, secret = credential.rpartition(":")
    problem = token_problem(secret)
    if problem is not None:
        raise ConfigError(
            f"{source}: a worker token must be at least {MIN_TOKEN_LENGTH} printable ASCII "
            f"characters without white space (this one {problem})"
        )
    return WorkerToken(
        secret=secret,
        worker_id=worker_id.strip(),
        logins=tuple(_hostable_login(source, n, text) for n, text in enumerate(logins, 2)),
        from_file=from_file,
    )


def _hostable_login(source: str, field_number: int, text: str) -> HostableLogin:
    login, at, server = text.partition("@")
    if not login.isdigit() or int(login) <= 0 or (at and not server):
        # Not quoted: a token holding a space would show part of itself here.
        raise ConfigError(f"{source}: field {field_number} is not a login (LOGIN or LOGIN@SERVER)")
    return HostableLogin(int(login), server)


def check_worker_tokens(tokens: list[WorkerToken]) -> None:
    """One entry per token: two entries of one secret would bind it two ways."""
    seen = [token.secret for token in tokens]
    if len(set(seen)) != len(seen):
        raise ConfigError("workers: a worker token appears in two entries; give each one line")
