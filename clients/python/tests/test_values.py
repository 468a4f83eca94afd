"""Pure tests of the conversions, the error parsing and the fill cursor (no gateway)."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from mam_client import MamError, RetryPolicy, Side
from mam_client._convert import decimal_to_wire, enum_from_wire, enum_to_wire, parse_decimal
from mam_client._fills import FillCursor
from mam_client._proto.mam.v1 import common_pb2, order_pb2, trading_service_pb2
from mam_client.types import AllocationReason, Heartbeat


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (Decimal("1.00"), "1.00"),
        (Decimal("1E+2"), "100"),
        (Decimal("0.0000001"), "0.0000001"),
        (Decimal("-0"), "0"),
        (Decimal("-2.50"), "-2.50"),
        (7, "7"),
        ("0.10", "0.10"),
        (None, ""),
    ],
)
def test_decimals_cross_the_wire_exactly_without_exponent(
    value: Decimal | int | str | None, wire: str
) -> None:
    assert decimal_to_wire(value) == wire
    if wire:
        assert Decimal(wire) == Decimal(value if value is not None else 0)


def test_a_float_never_becomes_a_volume() -> None:
    with pytest.raises(TypeError):
        decimal_to_wire(0.1)  # type: ignore[arg-type]
    for bad in ("NaN", "Infinity", "1,5", ""):
        with pytest.raises(ValueError):
            parse_decimal(bad)


def test_enums_map_by_name_and_unknown_values_read_as_unspecified() -> None:
    assert enum_to_wire(Side.SELL) == common_pb2.SIDE_SELL
    assert enum_to_wire(None) == 0
    assert enum_from_wire(Side, common_pb2.SIDE_BUY) is Side.BUY
    assert enum_from_wire(AllocationReason, 999) is AllocationReason.UNSPECIFIED


class FailedCall(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """A failed call as grpc raises it, carrying a google.rpc.Status."""

    def __init__(self, code: grpc.StatusCode, message: str, status: status_pb2.Status) -> None:
        self._code, self._message, self._status = code, message, status

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return (("grpc-status-details-bin", self._status.SerializeToString()),)


def test_mam_error_reads_reason_and_field_violations_from_the_status() -> None:
    message = "volume 0.001 is below the minimum 0.01"
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message)
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(reason="INVALID_VOLUME", domain="mam-gateway")
    )
    status.details.add().Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="order.volume", description="below the minimum 0.01"
                )
            ]
        )
    )
    error = MamError.from_rpc_error(FailedCall(grpc.StatusCode.INVALID_ARGUMENT, message, status))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.reason, error.domain) == ("INVALID_VOLUME", "mam-gateway")
    assert error.fields == ("order.volume",)
    assert str(error) == (
        "INVALID_ARGUMENT INVALID_VOLUME: volume 0.001 is below the minimum 0.01"
        " (order.volume: below the minimum 0.01)"
    )


def batch(*sequences: int) -> trading_service_pb2.SubscribeFillsResponse:
    return trading_service_pb2.SubscribeFillsResponse(
        batch=order_pb2.FillBatch(
            fills=[order_pb2.Fill(sequence=s, fill_id=f"f{s}", volume="0.01") for s in sequences],
            last_sequence=sequences[-1],
        )
    )


def cursor(**options: object) -> FillCursor:
    settings: dict[str, object] = {
        "after_sequence": 0,
        "account_ids": (),
        "master_order_id": "",
        "live_only": False,
        "retry": RetryPolicy(initial_backoff_s=0.1, jitter=0),
    }
    settings.update(options)
    return FillCursor(**settings)  # type: ignore[arg-type]


def test_a_resumed_stream_delivers_no_fill_twice() -> None:
    fills = cursor(after_sequence=3)
    assert [f.sequence for f in fills.accept(batch(4, 5))] == [4, 5]  # type: ignore[union-attr]
    assert fills.request().after_sequence == 5
    # A replay that overlaps what was delivered: only the new fill comes out.
    assert [f.sequence for f in fills.accept(batch(5, 6))] == [6]  # type: ignore[union-attr]


def test_a_live_only_subscription_resumes_from_its_first_heartbeat() -> None:
    fills = cursor(live_only=True)
    assert fills.request().live_only
    heartbeat = trading_service_pb2.SubscribeFillsResponse(heartbeat_sequence=41)
    assert fills.accept(heartbeat) == [Heartbeat(41)]
    resumed = fills.request()
    assert not resumed.live_only and resumed.after_sequence == 41


def test_unavailable_and_too_slow_resume_with_backoff_other_codes_raise() -> None:
    fills = cursor(retry=RetryPolicy(initial_backoff_s=0.1, jitter=0, max_attempts=2))
    too_slow = MamError(grpc.StatusCode.RESOURCE_EXHAUSTED, "", reason="RATE_LIMITED")
    assert fills.backoff_after(MamError(grpc.StatusCode.UNAVAILABLE, "")) == pytest.approx(0.1)
    assert fills.backoff_after(too_slow) == pytest.approx(0.2)
    with pytest.raises(MamError):  # the third failure in a row
        fills.backoff_after(MamError(grpc.StatusCode.UNAVAILABLE, ""))
    fills.accept(batch(1))  # a message resets the count
    assert fills.backoff_after(None) == pytest.approx(0.1)
    not_found = MamError(grpc.StatusCode.NOT_FOUND, "", reason="ACCOUNT_NOT_FOUND")
    with pytest.raises(MamError) as caught:
        fills.backoff_after(not_found)
    assert caught.value is not_found
