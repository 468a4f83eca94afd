"""A submission's answer (SubmitMasterOrder, CloseMasterPosition), and a resubmission's."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.domain.errors import AlreadyExists
from gateway.domain.orders import MasterOrder


@dataclass(frozen=True, slots=True)
class Submission:
    """A submission's answer: the stored master order, and whether it was stored before."""

    master: MasterOrder
    # True when the caller had already submitted this client_order_id with the same payload:
    # the original order is returned as it stands now, and nothing new is traded.
    replayed: bool = False
    # The call's audit record was stored with the order (in the same transaction).
    audited: bool = False


def replayed_if(same_payload: bool, existing: MasterOrder) -> Submission:
    """The original order for a resubmission of the same payload; ALREADY_EXISTS otherwise."""
    if not same_payload:
        spec = existing.spec
        raise AlreadyExists(
            f"client_order_id {spec.client_order_id!r} was used for master order "
            f"{existing.master_order_id} with a different payload; a new order needs a new "
            "client_order_id",
            reason="DUPLICATE_CLIENT_ORDER_ID",
        )
    return Submission(existing, replayed=True)
