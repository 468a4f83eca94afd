from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from gateway.terminals.protocol import Terminal
from tests.contract.backends import BACKENDS, Backend, FreshAccount, OpenTerminal


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.param
    return backend


@pytest.fixture
async def open_terminal(backend: Backend, tmp_path: Path) -> AsyncIterator[OpenTerminal]:
    """Opens a terminal of the backend on a fresh account; all are closed after the test."""
    async with AsyncExitStack() as stack:

        async def open_one(account: FreshAccount) -> Terminal:
            return await stack.enter_async_context(backend.open(account, tmp_path))

        yield open_one


@pytest.fixture
async def terminal(open_terminal: OpenTerminal) -> Terminal:
    """A terminal on a fresh hedging account holding the opening balance."""
    return await open_terminal(FreshAccount())
