"""Each login's bridge token comes from the environment or a token file read again on change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.terminals.mt4.tokens import TokenFile, TokenFileError, parse_tokens, token_lookup


def test_a_token_file_holds_one_login_and_token_per_line() -> None:
    text = "# MT4 bridge tokens\n5001 alpha-token\n\n5002=beta  # the second account\n"
    assert parse_tokens(text) == {5001: "alpha-token", 5002: "beta"}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("5001\n", "expected 'LOGIN TOKEN'"),
        ("abc token\n", "expected 'LOGIN TOKEN'"),
        ("5001 two words\n", "expected 'LOGIN TOKEN'"),
        ("5001 a\n5001 b\n", "appears twice"),
    ],
)
def test_a_token_file_line_that_makes_no_sense_is_refused(text: str, why: str) -> None:
    with pytest.raises(TokenFileError, match=why):
        parse_tokens(text)


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("5001 from-file\n5002 other\n")
    lookup = token_lookup(path, {"MAM_MT4_TOKEN_5001": "from-env"})
    assert (lookup(5001), lookup(5002), lookup(5003)) == ("from-env", "other", None)


def test_a_changed_file_is_read_again_and_a_broken_edit_keeps_the_last_good_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens"
    path.write_text("5001 first\n")
    file = TokenFile(path)
    assert file.tokens() == {5001: "first"}
    path.write_text("5001 first\n5002 added\n")
    os.utime(path, ns=(1, 2_000_000_000))  # a new stamp even on a coarse-clock file system
    assert file.tokens() == {5001: "first", 5002: "added"}
    path.write_text("5001\n")
    os.utime(path, ns=(1, 3_000_000_000))
    assert file.tokens() == {5001: "first", 5002: "added"}


def test_a_missing_token_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError):
        token_lookup(tmp_path / "absent", {})
