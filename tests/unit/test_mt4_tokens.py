"""Each login's bridge token comes from the environment or a token file read again on change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.terminals.mt4.tokens import TokenFile, TokenFileError, parse_tokens, token_lookup

ALPHA = "alpha-token-0123456789"
BETA = "beta-token-0123456789"


def test_a_token_file_holds_one_login_and_token_per_line() -> None:
    text = f"# MT4 bridge tokens\n5001 {ALPHA}\n\n5002={BETA}  # the second account\n"
    assert parse_tokens(text) == {5001: ALPHA, 5002: BETA}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("5001\n", "expected 'LOGIN TOKEN'"),
        ("abc token\n", "expected 'LOGIN TOKEN'"),
        ("5001 two words\n", "expected 'LOGIN TOKEN'"),
        (f"5001 {ALPHA}\n5001 {BETA}\n", "appears twice"),
        ("5001 x\n", "the token of login 5001 has fewer than 16 characters"),
        ("5001 fifteen-chars-x\n", "fewer than 16 characters"),
    ],
)
def test_a_token_file_line_that_makes_no_sense_is_refused(text: str, why: str) -> None:
    with pytest.raises(TokenFileError, match=why):
        parse_tokens(text)


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"5001 {ALPHA}\n5002 {BETA}\n")
    lookup = token_lookup(path, {"MAM_MT4_TOKEN_5001": "from-the-environment"})
    assert (lookup(5001), lookup(5002), lookup(5003)) == ("from-the-environment", BETA, None)


def test_a_changed_file_is_read_again_and_a_broken_edit_keeps_the_last_good_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"5001 {ALPHA}\n")
    file = TokenFile(path)
    assert file.tokens() == {5001: ALPHA}
    path.write_text(f"5001 {ALPHA}\n5002 {BETA}\n")
    os.utime(path, ns=(1, 2_000_000_000))  # a new stamp even on a coarse-clock file system
    assert file.tokens() == {5001: ALPHA, 5002: BETA}
    path.write_text("5001\n")
    os.utime(path, ns=(1, 3_000_000_000))
    assert file.tokens() == {5001: ALPHA, 5002: BETA}


def test_a_missing_token_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError):
        token_lookup(tmp_path / "absent", {})
