"""Who may connect as a worker, and how fast a peer may fail (issue 28): the rules of
WorkerService.Connect's tokens without a stream, and the per-peer failure throttle both the
worker service and the MT4 bridge use."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.api.worker_servicer import WorkerTokens, authorize, logins_refused
from gateway.api.worker_servicer import _digest as digest_of
from gateway.config import HostableLogin, WorkersConfig, WorkerToken
from gateway.domain.peer_authentication import FailedAuthentications, FailurePolicy, token_problem
from gateway.terminals.remote import BrokerLogin

ONE, NINE, ANY = "token-of-worker-one-0001", "token-of-worker-nine-009", "token-of-any-worker-0000"
S = "Broker-Live"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def entries(*tokens: WorkerToken) -> WorkerTokens:
    return WorkerTokens(WorkersConfig(enabled=True, tokens=tokens))


# -- the throttle -----------------------------------------------------------------------------


def test_a_peer_may_fail_its_burst_then_waits_one_refill_per_failure() -> None:
    clock = Clock()
    failures = FailedAuthentications(FailurePolicy(burst=3, refill_s=10.0), clock=clock)
    assert [failures.record_failure("a") for _ in range(3)] == [False, False, True]
    assert failures.retry_after_s("a") == pytest.approx(10.0)
    assert failures.retry_after_s("b") == 0.0  # another address is not slowed
    clock.now += 4.0
    assert failures.retry_after_s("a") == pytest.approx(6.0)
    clock.now += 6.0
    assert failures.retry_after_s("a") == 0.0
    assert failures.record_failure("a")  # one more allowed, and spent
    assert failures.retry_after_s("a") == pytest.approx(10.0)


def test_the_throttle_remembers_a_bounded_number_of_peers() -> None:
    clock = Clock()
    failures = FailedAuthentications(
        FailurePolicy(burst=2, refill_s=10.0, max_peers=3), clock=clock
    )
    for peer in ("a", "a", "b", "c", "d"):
        failures.record_failure(peer)
    # "a", the oldest, was forgotten to make room for "d".
    assert [failures.retry_after_s(p) > 0 for p in "abcd"] == [False, False, False, False]
    failures.record_failure("d")
    assert failures.retry_after_s("d") > 0


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("x", "has fewer than 16 characters"),
        ("fifteen-chars-x", "has fewer than 16 characters"),
        ("sixteen-chars-xy", None),
        ("sixteen chars xyz", "has white space in it"),
        ("sixteen-chars-\u00e9yz", "has characters that are not printable ASCII"),
    ],
)
def test_a_token_is_sixteen_printable_ascii_characters_at_least(
    token: str, problem: str | None
) -> None:
    assert token_problem(token) == problem


# -- worker ids and logins ----------------------------------------------------------------------


def test_a_token_bound_to_a_worker_id_serves_that_id_only_and_the_id_only_it() -> None:
    tokens = entries(WorkerToken(ONE, "w-1"), WorkerToken(ANY)).current()
    assert authorize(tokens, "w-1", digest_of(ONE)) is not None
    assert authorize(tokens, "w-2", digest_of(ONE)) is None
    assert authorize(tokens, "w-2", digest_of(ANY)) is not None
    # An unbound token may not take an id a bound token claims (it would displace that worker).
    assert authorize(tokens, "w-1", digest_of(ANY)) is None
    assert authorize(tokens, "w-1", digest_of("not-a-token-of-this-gateway")) is None


def test_a_token_hosts_the_logins_it_lists_and_no_token_hosts_another_tokens_logins() -> None:
    one = WorkerToken(ONE, "w-1", (HostableLogin(91001),))
    nine = WorkerToken(NINE, "w-9", (HostableLogin(80009, S),))
    tokens = entries(one, nine, WorkerToken(ANY)).current()
    assert logins_refused(tokens, one, [BrokerLogin(91001, S)]) == []
    assert logins_refused(tokens, one, [BrokerLogin(91001, S), BrokerLogin(80009, S)]) == [
        BrokerLogin(80009, S)
    ]
    unbound = WorkerToken(ANY)
    assert logins_refused(tokens, unbound, [BrokerLogin(80009, S), BrokerLogin(91001, S)]) == [
        BrokerLogin(80009, S),
        BrokerLogin(91001, S),
    ]
    # Login 80009 of another server is not the one w-9 owns.
    assert logins_refused(tokens, unbound, [BrokerLogin(80009, "Broker-Demo")]) == []


def test_tokens_removed_from_the_file_are_out_at_the_next_look(tmp_path: Path) -> None:
    path = tmp_path / "worker-tokens"
    path.write_text(f"w-1:{ONE}\nw-9:{NINE}\n")
    tokens = WorkerTokens(
        WorkersConfig(
            enabled=True,
            tokens=(WorkerToken(ANY), WorkerToken(ONE, "w-1", from_file=True)),
            tokens_file=path,
        )
    )
    path.write_text(f"w-9:{NINE}\n")
    current = tokens.current()
    assert authorize(current, "w-1", digest_of(ONE)) is None
    assert authorize(current, "w-9", digest_of(NINE)) is not None
    assert authorize(current, "w-3", digest_of(ANY)) is not None  # the environment's stay
    path.write_text("w-9:short\n")  # a bad edit keeps the tokens last read
    assert authorize(tokens.current(), "w-9", digest_of(NINE)) is not None
