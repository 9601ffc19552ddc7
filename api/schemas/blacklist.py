"""Buyer blacklist requests and responses."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from api.schemas.common import Position, RequestModel, UtcDatetime

BlacklistContact = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"\S",
        description="The buyer's contact as they order with it; matched trimmed and lower-cased.",
    ),
]


class BlacklistAdd(RequestModel):
    """Refuse this buyer's orders."""

    contact: BlacklistContact
    reason: Annotated[str, Field(max_length=500)] = ""


class BlacklistRemove(RequestModel):
    """Accept this buyer's orders again."""

    contact: BlacklistContact


class BlacklistChangedOut(BaseModel):
    """The buyer as listed (normalised) and whether this request changed the list."""

    contact: str
    changed: bool = Field(description="False when the list already said so: nothing was recorded.")
    position: Position


class BlacklistEntryOut(BaseModel):
    contact: str
    reason: str
    by: Literal["merchant", "admin"]
    added_at: UtcDatetime


class BlacklistOut(BaseModel):
    """A blacklist: a merchant's (for its own products) or the platform's (`merchant_id` null)."""

    merchant_id: UUID | None
    entries: list[BlacklistEntryOut]
    position: Position
