"""Every ErrorInfo reason the gateway can send is documented for client authors."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_reason_in_the_code_is_in_docs_errors_md() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", (ROOT / "docs/errors.md").read_text(), re.M))
    used: set[str] = set()
    for path in (ROOT / "gateway").rglob("*.py"):
        if "_proto" in path.parts:
            continue
        used.update(re.findall(r'reason\s*=\s*"([A-Z_]+)"', path.read_text()))
    generic = {"NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION", "UNAVAILABLE", "ERROR"}
    assert used - generic - documented == set()
