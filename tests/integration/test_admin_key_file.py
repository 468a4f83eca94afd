"""The bootstrap admin key is written readable by its owner only, whatever was at its path."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from gateway.api import fill_wire
from gateway.api.server import bootstrap_admin_key
from gateway.domain.access import parse_key
from gateway.store import Store


async def test_an_admin_key_file_left_world_readable_is_rewritten_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "var" / "admin.key"
    path.parent.mkdir()
    path.write_text("an old key\n")
    path.chmod(0o644)  # as an earlier version or an operator's copy left it
    store = await Store.open(
        f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}", fill_encoder=fill_wire.encode
    )
    try:
        key_id = await bootstrap_admin_key(store, path, datetime.now(UTC))
    finally:
        await store.close()
    assert key_id is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = parse_key(path.read_text().strip())
    assert written is not None and written[0] == key_id
    # Nothing of the writing is left beside it.
    assert os.listdir(path.parent) == ["admin.key"]
