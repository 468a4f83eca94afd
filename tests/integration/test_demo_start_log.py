"""The demo's start-up line counts every terminal attached, the demo accounts seeded at the
first start as well as those found stored at later ones."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from tests.support import make_config, running


async def test_the_first_start_counts_the_demo_terminals_it_attached(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, demo=True)
    assert config.demo is not None and config.demo.source is not None
    demo_accounts = len(config.demo.accounts) + 1  # and the group's source account

    counts = []
    for _ in range(2):  # the first start seeds the accounts; the second finds them stored
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="gateway.api.server"):
            async with running(config):
                pass
        found = [re.search(r"attached (\d+) terminals", r.getMessage()) for r in caplog.records]
        counts += [int(m.group(1)) for m in found if m is not None]
    assert counts == [demo_accounts, demo_accounts]
