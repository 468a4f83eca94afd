"""The authentication throttles: by connection and address, and the gateway's scrypt budget."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.api import authenticator
from gateway.api.authenticator import Authenticator
from gateway.api.peer_throttle import AuthenticationLimits, AuthenticationThrottle, address_of
from gateway.domain.access import ApiKey, Role, issue_key
from gateway.domain.errors import ResourceExhausted, Unauthenticated


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_address_of_a_peer_leaves_out_its_port() -> None:
    assert address_of("ipv4:10.0.0.7:53211") == "ipv4:10.0.0.7"
    assert address_of("ipv6:[::1]:50051") == "ipv6:[::1]"
    assert address_of("unix:/run/mam.sock") == "unix:/run/mam.sock"


def test_a_connection_is_throttled_after_its_failures_and_its_address_after_more() -> None:
    clock = Clock()
    throttle = AuthenticationThrottle(
        AuthenticationLimits(
            failures_per_connection=2,
            connection_failure_refill_s=10.0,
            failures_per_address=3,
            address_failure_refill_s=10.0,
        ),
        clock=clock,
    )
    first, second, third = (f"ipv4:10.0.0.7:{port}" for port in (1001, 1002, 1003))
    throttle.failed(first)
    throttle.admit(first)
    throttle.failed(first)
    with pytest.raises(ResourceExhausted, match="this connection") as refused:
        throttle.admit(first)
    assert refused.value.reason == "AUTHENTICATION_THROTTLED"
    assert refused.value.retry_after_s == pytest.approx(10.0)
    throttle.admit(second)  # the address has one failure left
    throttle.failed(second)
    with pytest.raises(ResourceExhausted, match="this address"):
        throttle.admit(third)
    throttle.admit("ipv4:10.0.0.8:1001")  # another address
    clock.now += 10.0
    throttle.admit(first)
    throttle.admit(third)


def test_the_gateway_verifies_at_most_its_burst_then_its_rate() -> None:
    clock = Clock()
    throttle = AuthenticationThrottle(
        AuthenticationLimits(verifications_per_second=2.0, verification_burst=3), clock=clock
    )
    for _ in range(3):
        throttle.spend_verification()
    with pytest.raises(ResourceExhausted) as refused:
        throttle.spend_verification()
    assert refused.value.reason == "AUTHENTICATION_THROTTLED"
    assert refused.value.retry_after_s == pytest.approx(0.5)
    clock.now += 0.5
    throttle.spend_verification()


@pytest.mark.parametrize(
    "bad",
    [
        {"failures_per_connection": 0},
        {"address_failure_refill_s": 0.0},
        {"verifications_per_second": -1.0},
        {"verification_burst": 0},
    ],
)
def test_limits_that_cannot_work_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        AuthenticationLimits(**bad)  # type: ignore[arg-type]


class OneKey:
    """The store's key table, holding one key."""

    def __init__(self, key: ApiKey) -> None:
        self.key = key
        self.reads = 0

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        self.reads += 1
        return self.key if key_id == self.key.key_id else None


async def test_guesses_from_many_addresses_run_scrypt_no_more_than_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issued = issue_key()
    store = OneKey(
        ApiKey(
            key_id=issued.key_id,
            name="holder",
            role=Role.ADMIN,
            secret_hash=issued.secret_hash,
            created_at=datetime.now(UTC),
            created_by="test",
        )
    )
    verified: list[str] = []

    def wrong(secret: str, secret_hash: str) -> bool:
        verified.append(secret)
        return False

    monkeypatch.setattr(authenticator, "verify_secret", wrong)
    keys = Authenticator(
        store,  # type: ignore[arg-type]
        throttle=AuthenticationThrottle(
            AuthenticationLimits(verifications_per_second=0.001, verification_burst=4),
            clock=Clock(),
        ),
    )
    reasons = []
    for n in range(20):
        guess = f"mam_{issued.key_id}_{n:043d}"
        with pytest.raises((Unauthenticated, ResourceExhausted)) as refused:
            await keys.principal_of(f"Bearer {guess}", peer=f"ipv4:10.0.{n}.1:4000")
        reasons.append(refused.value.reason)
    assert len(verified) == 4
    assert reasons == ["API_KEY_INVALID"] * 4 + ["AUTHENTICATION_THROTTLED"] * 16
    assert store.reads == 20  # each unverified key costs a store read, throttled or not
