"""Merchant requests and responses."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel

from api.schemas.common import Contact, Name, Position, RequestModel


class MerchantCreate(RequestModel):
    """Register a merchant."""

    name: Name
    contact: Contact


class MerchantCreated(BaseModel):
    """A new merchant and its API key, shown this once."""

    merchant_id: UUID
    api_key: str
    position: Position
