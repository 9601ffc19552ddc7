"""Payment callback bodies and answers."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.schemas.common import Position, Yuan, refuse_nul
from api.schemas.orders import OrderStatus


class SandboxNotification(BaseModel):
    """The sandbox provider's callback; signed over its raw bytes."""

    # Providers add fields over time; an unknown one must not bounce a real payment.
    model_config = ConfigDict(extra="ignore")

    order_id: UUID
    amount: Yuan
    txn_id: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(refuse_nul)]


class PaymentOut(BaseModel):
    """The order's status after the payment; `duplicate` when this txn id was seen before."""

    order_id: UUID
    status: OrderStatus
    duplicate: bool
    position: Position
