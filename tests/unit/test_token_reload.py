"""SIGHUP reads the MT4 token file even when an edit left its size and time as they were (a
`cp -p`, a restore from backup), which the check for a change cannot see."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.terminals.mt4.tokens import token_lookup

OLD = "5001 old-token-0123456789abcdef\n"
NEW = "5001 new-token-0123456789abcdef\n"


def rewrite_keeping_size_and_time(path: Path, text: str) -> None:
    before = path.stat()
    assert len(text) == before.st_size
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_reload_reads_an_edit_the_change_check_cannot_see(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(OLD)
    lookup = token_lookup(path, {})
    assert lookup(5001) == "old-token-0123456789abcdef"
    rewrite_keeping_size_and_time(path, NEW)
    assert lookup(5001) == "old-token-0123456789abcdef"  # unseen without a reload
    lookup.reload()
    assert lookup(5001) == "new-token-0123456789abcdef"


def test_a_reload_of_a_broken_file_keeps_the_tokens_read_before(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(OLD)
    lookup = token_lookup(path, {})
    path.write_text("5001\n")
    lookup.reload()
    assert lookup(5001) == "old-token-0123456789abcdef"
