"""FillBatch responses assembled from stored fill messages are the ones protobuf would build."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from gateway._proto.mam.v1 import order_pb2
from gateway._proto.mam.v1 import trading_service_pb2 as pb
from gateway.api import fill_wire
from gateway.api.mapping import fill_to_proto
from gateway.domain.fills import Fill
from gateway.domain.orders import Side
from gateway.store.store import CommittedFill

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def fill(sequence: int, symbol: str = "EURUSD", account_id: str = "acc_1") -> Fill:
    return Fill(
        sequence, f"fl_{sequence}", "mo_1", f"ch_{sequence}", account_id, symbol, Side.SELL,
        Decimal("0.01"), Decimal("1.08500"), Decimal("1.08490"), Decimal("-1.0"),
        20_000 + sequence % 1_000, 10_000 + sequence % 1_000, 30_000 + sequence % 1_000,
        T0 + timedelta(microseconds=sequence % 1_000_000),
    )  # fmt: skip


def built(fills: list[Fill]) -> pb.SubscribeFillsResponse:
    """The response as it was built before messages were stored: a proto per fill."""
    return pb.SubscribeFillsResponse(
        batch=order_pb2.FillBatch(
            fills=[fill_to_proto(f) for f in fills], last_sequence=fills[-1].sequence
        )
    )


@given(
    sequences=st.lists(
        st.integers(min_value=1, max_value=2**63 - 1), min_size=1, max_size=40, unique=True
    ),
    symbol_length=st.sampled_from([1, 6, 40, 200, 20_000]),
)
def test_a_batch_of_stored_messages_is_the_batch_built_from_the_fills(
    sequences: list[int], symbol_length: int
) -> None:
    # Message lengths of one, two and three varint bytes (the last past the ready headers).
    fills = [fill(s, symbol="X" * symbol_length) for s in sorted(sequences)]
    response = fill_wire.batch([fill_wire.encode(f) for f in fills], fills[-1].sequence)
    assert response == built(fills)
    assert response.SerializeToString() == built(fills).SerializeToString()


def test_stored_pages_encode_the_fills_stored_without_a_message_in_their_place() -> None:
    fills = [fill(n) for n in range(1, 6)]
    page: list[tuple[int, bytes | Fill]] = [
        (f.sequence, f if f.sequence % 2 else fill_wire.encode(f)) for f in fills
    ]
    assert fill_wire.stored_batch(page) == built(fills)


def test_live_fills_are_sent_as_the_messages_they_were_stored_with() -> None:
    fills = [fill(n) for n in range(1, 4)]
    committed = [
        CommittedFill(fills[0], fill_wire.encode(fills[0])),
        CommittedFill(fills[1], None),  # a store without an encoder: encoded when sent
        # The bytes as stored win over the fill: nothing is encoded again.
        CommittedFill(fills[2], fill_wire.encode(fill(3, account_id="acc_as_stored"))),
    ]
    response = fill_wire.committed_batch(committed)
    assert list(response.batch.fills) == [
        fill_to_proto(fills[0]),
        fill_to_proto(fills[1]),
        fill_to_proto(fill(3, account_id="acc_as_stored")),
    ]
    assert response.batch.last_sequence == 3
