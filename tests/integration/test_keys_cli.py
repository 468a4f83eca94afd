"""`mam-gateway keys`: the first admin key (and recovery) straight in the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.domain.access import parse_key, verify_secret
from gateway.store import Store
from tests.support import DEMO_CONFIG


def keys(*args: str) -> list[str]:
    return ["--config", str(DEMO_CONFIG), "keys", *args]


def test_create_list_and_revoke_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    monkeypatch.setenv("MAM__DATABASE__URL", url)
    assert main(keys("create", "--role", "admin", "--name", "ops")) == 0
    key = capsys.readouterr().out.strip()
    parsed = parse_key(key)
    assert parsed is not None
    key_id, secret = parsed

    async def stored_hash() -> tuple[str, bool]:
        store = await Store.open(url)
        try:
            stored = await store.access.get_api_key(key_id)
            assert stored is not None
            return stored.secret_hash, stored.is_revoked
        finally:
            await store.close()

    secret_hash, revoked = asyncio.run(stored_hash())
    assert not revoked and secret not in secret_hash and verify_secret(secret, secret_hash)
    assert main(keys("list")) == 0
    assert f"{key_id}  admin" in capsys.readouterr().out
    assert main(keys("revoke", key_id)) == 0
    assert asyncio.run(stored_hash())[1]
    assert main(keys("revoke", "0000000000000000")) == 1
    # A manager key must name groups that exist.
    assert main(keys("create", "--role", "manager", "--name", "desk")) == 2
    assert main(keys("create", "--role", "manager", "--name", "desk", "--group", "grp_x")) == 2
