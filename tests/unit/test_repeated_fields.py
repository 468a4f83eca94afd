"""Repeated fields of mam.v1 requests are counted at any depth, and named by their path."""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2

from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    trading_service_pb2,
    worker_service_pb2,
)
from gateway.api.repeated_fields import RepeatedFieldLimit
from gateway.domain.errors import FieldViolation


def test_a_field_above_the_limit_is_named_with_its_count() -> None:
    limit = RepeatedFieldLimit(3)
    request = trading_service_pb2.SubscribeFillsRequest(account_ids=["a", "b", "c", "d"])
    assert limit.violations(request) == [FieldViolation("account_ids", "at most 3 items, got 4")]
    del request.account_ids[3]
    assert limit.violations(request) == []


def test_repeated_fields_inside_repeated_messages_are_counted_one_by_one() -> None:
    limit = RepeatedFieldLimit(2)
    members = [
        account_pb2.GroupMember(account_id="a"),
        account_pb2.GroupMember(
            account_id="b",
            risk_limits=account_pb2.RiskLimits(allowed_symbols=["EURUSD", "XAUUSD", "US500"]),
        ),
    ]
    request = account_service_pb2.CreateGroupRequest(
        group=account_pb2.Group(
            name="g",
            members=members,
            risk_limits=account_pb2.RiskLimits(denied_symbols=["X", "Y", "Z"]),
        )
    )
    assert [v.field for v in limit.violations(request)] == [
        "group.members[1].risk_limits.allowed_symbols",
        "group.risk_limits.denied_symbols",
    ]
    request.group.members.add(account_id="c")
    assert [v.field for v in limit.violations(request)] == [
        "group.members",
        "group.risk_limits.denied_symbols",
    ]


@pytest.mark.parametrize(
    "request_message",
    [
        # A worker reports what its terminal holds, not what a caller chose to send.
        worker_service_pb2.ConnectRequest(
            hello=worker_service_pb2.WorkerHello(
                terminals=[worker_service_pb2.HostedTerminal() for _ in range(5)]
            )
        ),
        health_pb2.HealthCheckRequest(service="x"),
    ],
)
def test_messages_outside_the_clients_api_are_not_counted(request_message: object) -> None:
    assert RepeatedFieldLimit(1).violations(request_message) == []
