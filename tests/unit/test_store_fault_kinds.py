"""Which database failures the gateway waits out (transient) and which it reports."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from gateway.store.faults import is_transient


def _sqlite_error(kind: type[sqlite3.Error], message: str, code: int) -> sqlite3.Error:
    error = kind(message)
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


def _wrapped(orig: BaseException) -> sa_exc.DBAPIError:
    """As SQLAlchemy raises it: the driver's error as `orig`."""
    return sa_exc.OperationalError("INSERT INTO fills ...", {}, orig)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        _sqlite_error(sqlite3.OperationalError, "database or disk is full", 13),
        _sqlite_error(sqlite3.OperationalError, "database is locked", 5),
        _sqlite_error(sqlite3.OperationalError, "disk I/O error", 10 | (3 << 8)),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.exceptions.DiskFullError("could not extend file"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:20],
)
def test_faults_of_the_database_or_the_way_to_it_pass(error: BaseException) -> None:
    assert is_transient(error)
    assert is_transient(_wrapped(error))


@pytest.mark.parametrize(
    "error",
    [
        _sqlite_error(sqlite3.IntegrityError, "UNIQUE constraint failed: fills.fill_id", 19),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.UndefinedColumnError("column does not exist"),
        ValueError("naive datetime"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_faults_of_the_request_do_not(error: BaseException) -> None:
    assert not is_transient(error)
    assert not is_transient(_wrapped(error))


def test_a_connection_sqlalchemy_found_invalid_passes() -> None:
    error = sa_exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)  # type: ignore[arg-type]
    assert is_transient(error)


def test_an_error_raised_from_a_fault_passes() -> None:
    try:
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as lost:
            raise RuntimeError("commit failed") from lost
    except RuntimeError as error:
        assert is_transient(error)
