"""The Timestamp and Duration check run on every request: protobuf's own ranges, the path of each
bad value, and every way a message can hold one (nested, repeated, map values, recursive types)."""

from __future__ import annotations

from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    message_factory,
    struct_pb2,
    timestamp_pb2,
)
from hypothesis import given
from hypothesis import strategies as st

from gateway._proto.mam.v1 import (
    account_service_pb2,
    admin_service_pb2,
    order_pb2,
    trading_service_pb2,
)
from gateway.api.well_known_checks import (
    MAX_DURATION_SECONDS,
    MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS,
    duration_problem,
    time_violations,
    timestamp_problem,
)

FD = descriptor_pb2.FieldDescriptorProto


def _submission() -> trading_service_pb2.SubmitMasterOrderRequest:
    return trading_service_pb2.SubmitMasterOrderRequest(
        order=order_pb2.MasterOrderSpec(
            client_order_id="c-1", group_id="group-1", symbol="EURUSD", volume="1.00"
        )
    )


def _node_class() -> Any:
    """A recursive message type holding times in every shape a field can take:
    Node { Timestamp at; Duration wait; Node child; repeated Node children;
    map<string, Node> by_name; repeated Timestamp times }."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(duration_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="test/node.proto",
        package="test",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto", "google/protobuf/duration.proto"],
    )
    node = file.message_type.add(name="Node")
    entry = node.nested_type.add(name="ByNameEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=FD.TYPE_STRING, label=FD.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=FD.TYPE_MESSAGE, type_name=".test.Node", label=1)
    fields = [
        ("at", ".google.protobuf.Timestamp", FD.LABEL_OPTIONAL),
        ("wait", ".google.protobuf.Duration", FD.LABEL_OPTIONAL),
        ("child", ".test.Node", FD.LABEL_OPTIONAL),
        ("children", ".test.Node", FD.LABEL_REPEATED),
        ("by_name", ".test.Node.ByNameEntry", FD.LABEL_REPEATED),
        ("times", ".google.protobuf.Timestamp", FD.LABEL_REPEATED),
    ]
    for number, (name, type_name, label) in enumerate(fields, start=1):
        node.field.add(
            name=name, number=number, type=FD.TYPE_MESSAGE, type_name=type_name, label=label
        )
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("test.Node"))


Node = _node_class()


def _paths(message: Any) -> list[str]:
    return [v.field for v in time_violations(message)]


@given(
    seconds=st.one_of(
        st.integers(MIN_TIMESTAMP_SECONDS - 2, MIN_TIMESTAMP_SECONDS + 2),
        st.integers(MAX_TIMESTAMP_SECONDS - 2, MAX_TIMESTAMP_SECONDS + 2),
        st.integers(-(2**63), 2**63 - 1),
    ),
    nanos=st.one_of(st.integers(-2, 2), st.integers(999_999_997, 1_000_000_001), st.integers()),
)
def test_a_timestamp_is_refused_exactly_when_protobuf_cannot_convert_it(
    seconds: int, nanos: int
) -> None:
    nanos = max(-(2**31), min(nanos, 2**31 - 1))
    value = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    try:
        value.ToJsonString()
        valid = True
    except ValueError:
        valid = False
    assert (timestamp_problem(seconds, nanos) == "") is valid


@given(
    seconds=st.one_of(
        st.integers(-MAX_DURATION_SECONDS - 2, -MAX_DURATION_SECONDS + 2),
        st.integers(MAX_DURATION_SECONDS - 2, MAX_DURATION_SECONDS + 2),
        st.integers(-3, 3),
        st.integers(-(2**63), 2**63 - 1),
    ),
    nanos=st.one_of(
        st.integers(-3, 3),
        st.integers(999_999_997, 1_000_000_001),
        st.integers(-1_000_000_001, -999_999_997),
        st.integers(-(2**31), 2**31 - 1),
    ),
)
def test_a_duration_is_refused_exactly_when_protobuf_finds_it_invalid(
    seconds: int, nanos: int
) -> None:
    value = duration_pb2.Duration(seconds=seconds, nanos=nanos)
    try:
        value.ToJsonString()  # checks range and sign, as ToTimedelta does not
        valid = True
    except ValueError:
        valid = False
    assert (duration_problem(seconds, nanos) == "") is valid


def test_an_expiry_beyond_year_9999_is_named_by_its_path_in_the_submission() -> None:
    request = _submission()
    request.order.expire_time.seconds = MAX_TIMESTAMP_SECONDS + 1
    [violation] = time_violations(request)
    assert violation.field == "order.expire_time"
    assert "9999-12-31" in violation.description


def test_negative_nanos_in_a_period_start_are_named() -> None:
    request = admin_service_pb2.ListAuditRecordsRequest()
    request.start_time.nanos = -1
    request.end_time.seconds = 1_700_000_000
    assert _paths(request) == ["start_time"]


def test_valid_and_unset_times_pass() -> None:
    request = _submission()
    assert time_violations(request) == []
    request.order.expire_time.seconds = MAX_TIMESTAMP_SECONDS
    request.order.expire_time.nanos = 999_999_999
    assert time_violations(request) == []
    assert time_violations(account_service_pb2.GetAccountRequest(account_id="a")) == []


def test_times_are_found_in_nested_repeated_and_map_fields_of_a_recursive_type() -> None:
    # The type lives in a pool of its own: its times are set field by field, not copied in.
    node = Node()
    node.at.nanos = -1
    node.child.child.wait.seconds, node.child.child.wait.nanos = 1, -1
    node.children.add()  # nothing set: fine
    node.children.add().at.nanos = -1
    node.by_name["k"].child.at.nanos = -1
    node.times.add(seconds=1)
    node.times.add(seconds=MIN_TIMESTAMP_SECONDS - 1)
    assert sorted(_paths(node)) == sorted(
        [
            "at",
            "child.child.wait",
            "children[1].at",
            "by_name['k'].child.at",
            "times[1]",
        ]
    )


def test_a_recursive_type_without_times_is_not_walked() -> None:
    value = struct_pb2.Value()
    value.struct_value.fields["a"].list_value.values.add().string_value = "x"
    assert time_violations(value) == []
