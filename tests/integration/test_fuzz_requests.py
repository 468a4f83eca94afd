"""Every RPC of mam.v1 fed random requests built from the proto descriptors, against a running
gateway: never INTERNAL, never a hang, INVALID_ARGUMENT always with a field violation, and a
failed call stores nothing.

Hypothesis builds each request field by field from its descriptor: strings (random text, decimal
look-alikes, the ids of real rows), numbers at their type's edges, enums including values the
gateway does not know, nested messages, repeated fields and well-known types. The gateway runs
in a thread of its own (its own event loop); the calls go through synchronous stubs. 120 cases
per RPC by default (MAM_FUZZ_EXAMPLES to change it). Every service of mam.v1 is covered
(tests/integration/test_access_control.py keeps the list of RPCs honest).

A second, seeded pass (MAM_FUZZ_SEED; the seed is printed) covers what Hypothesis does not reach
cheaply, on every method the server serves, grpc.health.v1 and grpc.reflection included: huge
repeated fields (thousands of ids), nesting as deep as the schema goes, every number type at its
edges, enum numbers no enum has, Timestamps and Durations in and out of their ranges, and raw
bytes that are no request at all (corrupt, truncated, invalid UTF-8, groups nested past the
parser's limit), also after a valid message of a request stream. No call may end INTERNAL,
UNKNOWN or in a hang, a mam.v1 error always carries its ErrorInfo (a status too big for the
trailers arrives without one), and the gateway serves afterwards. The totals by status code are
printed (pytest -s) and kept in SEEDED_TOTALS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import os
import pkgutil
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gateway._proto.mam.v1 as mam_v1
from gateway._proto.mam.v1 import (
    account_pb2,
    account_service_pb2,
    account_service_pb2_grpc,
    common_pb2,
    trading_service_pb2_grpc,
)
from gateway.api.server import RunningGateway, start_gateway
from tests.integration.helpers import market_order
from tests.support import ErrorDetails, error_details, make_config

FD = pb_descriptor.FieldDescriptor
CALL_TIMEOUT_S = 10.0
# Statuses that mean the gateway failed, not the request.
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
# Rows a failed call must not add (the audit log records failed state changes: not counted).
COUNTED = (
    "accounts",
    "groups",
    "group_members",
    "master_orders",
    "child_orders",
    "fills",
    "api_keys",
    "kill_switches",
    "balance_operations",
    "fee_schedules",
)

_INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
}
_DECIMAL_LOOKALIKES = [
    "", "0", "1", "1.00", "0.01", "0.005", "-1", "-0.01", "1e3", "1E-2", "NaN", "Infinity",
    " 1", "1,5", "99999999999999999999999999999999999999.99", "0.0000000001", ".5", "5.",
    "100000", "10000.01",
]  # fmt: skip


class BackgroundGateway:
    """A gateway on an event loop in its own thread, for synchronous callers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout_s: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclasses.dataclass
class Target:
    gateway: RunningGateway
    channel: grpc.Channel
    database: Path
    ids: list[str]
    background: BackgroundGateway

    def settle(self) -> None:
        """Waits for what an accepted request started (a dispatch writes its fills later)."""
        self.background.run(self.gateway.engine.wait_idle())

    def counts(self) -> tuple[int, ...]:
        with sqlite3.connect(self.database) as db:
            return tuple(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from _target(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture
def fresh_target(tmp_path: Path) -> Iterator[Target]:
    """A gateway of its own, so that a seeded run gives the same answers alone or after the
    other tests of this module."""
    yield from _target(tmp_path)


def _target(directory: Path) -> Iterator[Target]:
    background = BackgroundGateway()
    gateway: RunningGateway = background.run(start_gateway(make_config(directory)))
    channel = grpc.insecure_channel(gateway.address)
    try:
        yield Target(
            gateway,
            channel,
            directory / "gateway.db",
            _seed(channel, gateway, background),
            background,
        )
    finally:
        channel.close()
        background.run(gateway.stop(0.5))
        background.close()


def _seed(
    channel: grpc.Channel, gateway: RunningGateway, background: BackgroundGateway
) -> list[str]:
    """Real rows, so that random requests also reach the code behind the id lookups."""
    accounts = account_service_pb2_grpc.AccountServiceStub(channel)
    trading = trading_service_pb2_grpc.TradingServiceStub(channel)
    ids = []
    for n in range(2):
        created = accounts.CreateAccount(
            account_service_pb2.CreateAccountRequest(account=_account(f"fuzz-{n}", 80_000 + n))
        ).account
        ids.append(created.account_id)
    group = accounts.CreateGroup(
        account_service_pb2.CreateGroupRequest(group=_group("fuzz", ids))
    ).group
    ids.append(group.group_id)
    order = trading.SubmitMasterOrder(market_order(group.group_id, "0.20")).master_order
    ids.append(order.master_order_id)
    background.run(gateway.engine.wait_idle())
    return ids


def _account(name: str, login: int) -> Any:
    return account_pb2.Account(
        name=name,
        platform=common_pb2.PLATFORM_SIMULATED,
        login=login,
        server="mam-sim",
        currency="USD",
        simulated=account_pb2.SimulatedAccount(initial_balance="10000"),
    )


def _group(name: str, account_ids: list[str]) -> Any:
    return account_pb2.Group(
        name=name,
        allocation=account_pb2.AllocationSettings(method=account_pb2.ALLOCATION_METHOD_EQUITY),
        members=[account_pb2.GroupMember(account_id=a) for a in account_ids],
    )


def _strings(field: pb_descriptor.FieldDescriptor, ids: list[str]) -> st.SearchStrategy[str]:
    choices: list[st.SearchStrategy[str]] = [
        st.text(max_size=40),
        st.text(min_size=90, max_size=300),
        st.sampled_from(_DECIMAL_LOOKALIKES),
    ]
    if field.name.endswith(("_id", "_ids", "_token")):
        choices.append(st.sampled_from(ids))
    return st.one_of(*choices)


def _value(field: pb_descriptor.FieldDescriptor, ids: list[str], depth: int) -> Any:
    kind = field.type
    if kind == FD.TYPE_STRING:
        return _strings(field, ids)
    if kind == FD.TYPE_BYTES:
        return st.binary(max_size=40)
    if kind == FD.TYPE_BOOL:
        return st.booleans()
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        return st.one_of(
            st.integers(low, high), st.sampled_from([low, high, 0, 1, -1 if low else 2])
        )
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(allow_nan=True, width=32 if kind == FD.TYPE_FLOAT else 64)
    if kind == FD.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-5, 50))
    assert kind == FD.TYPE_MESSAGE
    return _message(field.message_type, ids, depth + 1)


def _message(
    descriptor: pb_descriptor.Descriptor, ids: list[str], depth: int = 0
) -> st.SearchStrategy[Any]:
    cls = message_factory.GetMessageClass(descriptor)
    if descriptor.full_name == "google.protobuf.Timestamp":
        return st.builds(
            lambda s, n: cls(seconds=s, nanos=n),
            st.one_of(
                st.integers(-62_135_596_800, 253_402_300_799),
                st.integers(-(2**63), 2**63 - 1),
            ),
            st.one_of(st.integers(0, 999_999_999), st.integers(-(2**31), 2**31 - 1)),
        )
    if descriptor.full_name == "google.protobuf.Duration":
        return st.builds(
            lambda s, n: cls(seconds=s, nanos=n),
            st.one_of(
                st.integers(-315_576_000_000, 315_576_000_000),
                st.integers(-(2**63), 2**63 - 1),
            ),
            st.one_of(st.integers(-999_999_999, 999_999_999), st.integers(-(2**31), 2**31 - 1)),
        )
    if descriptor.full_name == "google.protobuf.FieldMask":
        return st.builds(
            lambda paths: cls(paths=paths),
            st.lists(
                st.one_of(
                    st.text(max_size=20),
                    st.sampled_from(
                        ["name", "members", "allocation", "allocation.method", "magic"]
                    ),
                ),
                max_size=4,
            ),
        )
    if depth > 3:
        return st.just(cls())
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _value(field, ids, depth)
        if field.is_repeated:
            fields[field.name] = st.lists(value, max_size=3)
        else:
            fields[field.name] = st.one_of(st.none(), value)

    def build(values: dict[str, Any]) -> Any:
        message = cls()
        for name, value in values.items():
            if value is None:
                continue
            field = descriptor.fields_by_name[name]
            if field.is_repeated:
                getattr(message, name).extend(value)
            elif field.type == FD.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries(fields).map(build)


def _methods() -> list[pb_descriptor.MethodDescriptor]:
    """Every RPC of every mam.v1 service (a new service is fuzzed without an edit here)."""
    methods = []
    for module_info in pkgutil.iter_modules(mam_v1.__path__):
        if module_info.name.endswith("_pb2"):
            module = importlib.import_module(f"{mam_v1.__name__}.{module_info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                methods.extend(service.methods)
    return sorted(methods, key=lambda m: m.full_name)


def _call(channel: grpc.Channel, method: pb_descriptor.MethodDescriptor, request: Any) -> None:
    """One call to its first answer; raises the call's RpcError."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_class = message_factory.GetMessageClass(method.output_type)
    kwargs: dict[str, Any] = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": response_class.FromString,
    }
    if not method.client_streaming and not method.server_streaming:
        channel.unary_unary(path, **kwargs)(request, timeout=CALL_TIMEOUT_S)
        return
    if method.client_streaming:
        call = channel.stream_stream(path, **kwargs)(iter([request]), timeout=CALL_TIMEOUT_S)
    else:
        call = channel.unary_stream(path, **kwargs)(request, timeout=CALL_TIMEOUT_S)
    try:
        next(call, None)  # the first answer (or the end) is enough
    finally:
        call.cancel()


@pytest.mark.parametrize("method", _methods(), ids=lambda m: m.name)
def test_random_requests_get_a_clear_answer_and_failures_store_nothing(
    target: Target, method: pb_descriptor.MethodDescriptor
) -> None:
    @settings(
        max_examples=int(os.environ.get("MAM_FUZZ_EXAMPLES", "120")),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
        # The same cases on every run, so a failure in CI reproduces; MAM_FUZZ_EXAMPLES=600
        # (or more) explores further.
        derandomize=True,
    )
    @given(request=_message(method.input_type, target.ids))
    def check(request: Any) -> None:
        before = target.counts()
        try:
            _call(target.channel, method, request)
            target.settle()
        except grpc.RpcError as error:
            if error.code() is grpc.StatusCode.CANCELLED:
                return  # our own cancel of a stream after its first answer
            details = error_details(error)  # type: ignore[arg-type]
            assert details.code not in NEVER, (method.name, request, details)
            assert details.reason, (method.name, request, details)
            if details.code is grpc.StatusCode.INVALID_ARGUMENT:
                assert details.field_violations, (method.name, request, details)
            assert target.counts() == before, (method.name, request, details)

    check()


# The seeded pass.

SEEDED_TOTALS: Counter[str] = Counter()
# Statuses whose message or field violations were cut to fit the trailers, by status code.
SEEDED_CUT: Counter[str] = Counter()
DEFAULT_SEED = 20_240_518
REQUESTS_PER_METHOD = 14
# A repeated field filled this full in the "huge" requests (far below the message size limit).
HUGE_REPEATED = 3_000
TIMESTAMP_EDGES = [
    (-62_135_596_800, 0), (253_402_300_799, 999_999_999), (0, 0), (1_700_000_000, 5),
    (-62_135_596_801, 0), (253_402_300_800, 0), (0, -1), (0, 1_000_000_000),
    (-(2**63), 0), (2**63 - 1, 2**31 - 1),
]  # fmt: skip
DURATION_EDGES = [
    (315_576_000_000, 999_999_999), (-315_576_000_000, -999_999_999), (0, -5), (5, 0),
    (315_576_000_001, 0), (1, -1), (-1, 1), (0, 1_000_000_000), (2**63 - 1, 0),
]  # fmt: skip
_TEXT_PIECES = [
    "a", "Z", "0", "9", ".", "-", " ", "é", "中", "😀", "\x00", "\n", "'", '"', "%", "\\",
    "DROP TABLE accounts;", "EURUSD", "1.00",
]  # fmt: skip
_FLOAT_EDGES = [0.0, -0.0, 1.0, -1.0, 5e-324, 1.7976931348623157e308, float("inf"),
                float("-inf"), float("nan")]  # fmt: skip


def _served_services() -> list[pb_descriptor.ServiceDescriptor]:
    """Every service the gateway registers: mam.v1's, health and reflection."""
    services = {m.containing_service.full_name: m.containing_service for m in _methods()}
    for module in (health_pb2, reflection_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            services[service.full_name] = service
    return [services[name] for name in sorted(services)]


class RequestGenerator:
    """Requests built field by field from their descriptors, from one seeded random source.

    Modes: "typical" (a few fields set, sensible sizes), "extreme" (every field, values at
    their type's edges), "huge" (a typical request with one repeated field thousands of
    elements long), "deep" (every message field set, as deep as the schema goes)."""

    MODES = ("typical", "extreme", "huge", "deep")

    def __init__(self, rng: random.Random, ids: list[str]) -> None:
        self.rng = rng
        self.ids = ids

    def request(self, descriptor: pb_descriptor.Descriptor, mode: str) -> Any:
        if mode == "huge":  # on a typical request, so that the size is what gets refused
            message = self._message(descriptor, "typical", depth=0)
            self._make_huge(message)
            return message
        return self._message(descriptor, mode, depth=0)

    def _message(self, descriptor: pb_descriptor.Descriptor, mode: str, depth: int) -> Any:
        cls = message_factory.GetMessageClass(descriptor)
        if descriptor.full_name == "google.protobuf.Timestamp":
            seconds, nanos = self.rng.choice(TIMESTAMP_EDGES)
            return cls(seconds=seconds, nanos=nanos)
        if descriptor.full_name == "google.protobuf.Duration":
            seconds, nanos = self.rng.choice(DURATION_EDGES)
            return cls(seconds=seconds, nanos=nanos)
        message = cls()
        limit = 8 if mode == "deep" else 4
        if depth > limit:
            return message
        for field in descriptor.fields:
            chance = 0.4 if mode == "typical" else 1.0
            if self.rng.random() >= chance:
                continue
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                self._fill_map(message, field, mode, depth)
            elif field.is_repeated:
                count = self.rng.randint(0, 3 if mode == "typical" else 8)
                values = [self._value(field, mode, depth) for _ in range(count)]
                getattr(message, field.name).extend(values)
            elif field.message_type is not None:
                getattr(message, field.name).CopyFrom(self._value(field, mode, depth))
            else:
                setattr(message, field.name, self._value(field, mode, depth))
        return message

    def _fill_map(
        self, message: Any, field: pb_descriptor.FieldDescriptor, mode: str, depth: int
    ) -> None:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        target = getattr(message, field.name)
        for _ in range(self.rng.randint(0, 4)):
            key = self._value(key_field, mode, depth)
            value = self._value(value_field, mode, depth)
            if value_field.message_type is not None:
                target[key].CopyFrom(value)
            else:
                target[key] = value

    def _value(self, field: pb_descriptor.FieldDescriptor, mode: str, depth: int) -> Any:
        rng = self.rng
        kind = field.type
        extreme = mode != "typical"
        if kind in (FD.TYPE_MESSAGE, FD.TYPE_GROUP):
            return self._message(field.message_type, mode, depth + 1)
        if kind == FD.TYPE_STRING:
            return self._text(field, extreme)
        if kind == FD.TYPE_BYTES:
            return rng.randbytes(rng.choice([0, 1, 16, 300] if extreme else [0, 8]))
        if kind == FD.TYPE_BOOL:
            return rng.random() < 0.5
        if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
            return rng.choice(_FLOAT_EDGES)
        if kind == FD.TYPE_ENUM:
            known = [v.number for v in field.enum_type.values]
            return rng.choice(
                [rng.choice(known), rng.randint(-5, 60), rng.choice([-(2**31), 2**31 - 1])]
            )
        low, high = _FIXED_RANGES.get(kind) or _INT_RANGES[kind]
        if extreme:
            return rng.choice([low, high, 0, -1 if low else 1, low + 1, high - 1])
        return rng.randint(max(low, -1000), min(high, 100_000))

    def _text(self, field: pb_descriptor.FieldDescriptor, extreme: bool) -> str:
        rng = self.rng
        if field.name.endswith(("_id", "_ids")) and rng.random() < 0.5:
            return rng.choice(self.ids)
        if rng.random() < 0.3:
            return rng.choice(_DECIMAL_LOOKALIKES)
        length = rng.choice([0, 1, 40, 2_000] if extreme else [0, 5, 20])
        return "".join(rng.choice(_TEXT_PIECES) for _ in range(length))

    def _make_huge(self, message: Any) -> None:
        """One repeated field of the request (or of a message in it) made thousands long."""
        candidates = [
            f
            for f in message.DESCRIPTOR.fields
            if f.is_repeated
            and not (f.message_type is not None and f.message_type.GetOptions().map_entry)
        ]
        if not candidates:
            nested = [f for f in message.DESCRIPTOR.fields if f.message_type and not f.is_repeated]
            if nested:
                field = self.rng.choice(nested)
                inner = getattr(message, field.name)
                self._make_huge(inner)
                if not inner.ListFields():
                    message.ClearField(field.name)
            return
        field = self.rng.choice(candidates)
        target = getattr(message, field.name)
        del target[:]
        if field.message_type is not None:
            element = self._message(field.message_type, "typical", depth=2)
            for _ in range(HUGE_REPEATED):
                target.add().CopyFrom(element)
        elif field.type == FD.TYPE_STRING:
            # Distinct unknown ids, as a caller listing many accounts would send.
            target.extend(f"fuzz-{self.rng.getrandbits(40):010x}" for _ in range(HUGE_REPEATED))
        else:
            target.extend(self._value(field, "typical", 0) for _ in range(HUGE_REPEATED))


_FIXED_RANGES = {
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
}


def _garbage(descriptor: pb_descriptor.Descriptor, rng: random.Random) -> list[bytes]:
    """Bytes that do not parse as the request message (the first also as no message at all)."""
    payloads = [
        b"\xff" * 20,
        rng.randbytes(rng.randint(1, 64)) + b"\xff",  # ends inside a varint, whatever precedes
        b"\x08" + b"\xff" * 10 + b"\x01",  # a varint longer than 64 bits
        b"\x0a\xff\xff\xff\xff\x0f",  # a length beyond the message
        b"\x0e",  # wire type 6 does not exist
        b"\x0b" * 200 + b"\x0c" * 200,  # groups nested past the parser's depth limit
    ]
    strings = [f for f in descriptor.fields if f.type == FD.TYPE_STRING and not f.is_repeated]
    if strings:
        tag = bytes([(strings[0].number << 3) | 2]) if strings[0].number < 16 else None
        if tag is not None:
            payloads.append(tag + b"\x03\xff\xfe\xfd")  # a string that is not UTF-8
    return payloads


def _kind_of(method: pb_descriptor.MethodDescriptor) -> str:
    return ("stream" if method.client_streaming else "unary") + (
        "_stream" if method.server_streaming else "_unary"
    )


def _send(
    channel: grpc.Channel, path: str, kind: str, payloads: list[bytes]
) -> ErrorDetails | None:
    """The raw payloads on one call (a request stream takes them all); the call's error, or None
    once its first answer (or its end) arrived."""
    call: Any
    try:
        if kind == "unary_unary":
            channel.unary_unary(path)(payloads[0], timeout=CALL_TIMEOUT_S)
            return None
        if kind == "stream_unary":
            channel.stream_unary(path)(iter(payloads), timeout=CALL_TIMEOUT_S)
            return None
        if kind == "unary_stream":
            call = channel.unary_stream(path)(payloads[0], timeout=CALL_TIMEOUT_S)
        else:
            call = channel.stream_stream(path)(iter(payloads), timeout=CALL_TIMEOUT_S)
        try:
            next(call, None)
        finally:
            call.cancel()
        return None
    except grpc.RpcError as error:
        if error.code() is grpc.StatusCode.CANCELLED:
            return None  # our own cancel of a stream after its first answer
        return error_details(error)  # type: ignore[arg-type]


def test_seeded_requests_and_raw_bytes_never_fail_the_gateway(fresh_target: Target) -> None:
    target = fresh_target
    seed = int(os.environ.get("MAM_FUZZ_SEED", DEFAULT_SEED))
    print(f"\nseeded fuzz: MAM_FUZZ_SEED={seed}")
    rng = random.Random(seed)
    generator = RequestGenerator(rng, target.ids)
    failures: list[str] = []

    def record(path: str, what: str, outcome: ErrorDetails | None) -> None:
        if outcome is None:
            SEEDED_TOTALS["OK"] += 1
            return
        SEEDED_TOTALS[outcome.code.name] += 1
        if "omitted_violations" in outcome.metadata or "… " in outcome.message:
            SEEDED_CUT[outcome.code.name] += 1
        if outcome.code in NEVER:
            failures.append(f"{path} {what}: {outcome}")
        elif path.startswith("/mam.v1.") and not outcome.reason:
            failures.append(f"{path} {what}: no ErrorInfo: {outcome}")

    for service in _served_services():
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            kind = _kind_of(method)
            for n in range(REQUESTS_PER_METHOD):
                mode = RequestGenerator.MODES[n % len(RequestGenerator.MODES)]
                request = generator.request(method.input_type, mode).SerializeToString()
                record(path, f"{mode} request #{n}", _send(target.channel, path, kind, [request]))
            valid = generator.request(method.input_type, "typical").SerializeToString()
            for i, garbage in enumerate(_garbage(method.input_type, rng)):
                record(path, f"garbage #{i}", _send(target.channel, path, kind, [garbage]))
                if method.client_streaming:
                    record(
                        path,
                        f"valid then garbage #{i}",
                        _send(target.channel, path, kind, [valid, garbage]),
                    )
            target.settle()

    # Still serving.
    health = health_pb2_grpc.HealthStub(target.channel)
    check = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT_S)
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    accounts = account_service_pb2_grpc.AccountServiceStub(target.channel)
    accounts.GetAccount(account_service_pb2.GetAccountRequest(account_id=target.ids[0]))
    print(f"seeded fuzz totals by status code (seed {seed}): {dict(SEEDED_TOTALS.most_common())}")
    print(f"of which cut to fit the trailers: {dict(SEEDED_CUT.most_common())}")
    assert failures == [], "\n".join(failures[:20])
