"""Promoter requests and responses."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field

from api.schemas.common import Contact, Name, Position, RequestModel, Yuan


class PromoterCreate(RequestModel):
    """Join as a promoter, optionally under the promoter who referred you."""

    name: Name
    contact: Contact
    referrer_code: Annotated[str, Field(max_length=64)] | None = None


class PromoterJoined(BaseModel):
    """The new promoter, its sharing code and its token, shown this once."""

    promoter_id: UUID
    code: str
    token: str
    position: Position


class WithdrawalCreate(RequestModel):
    """Withdraw from the available commission balance."""

    amount: Yuan


class WithdrawalCreated(BaseModel):
    """The recorded withdrawal."""

    withdrawal_id: UUID
    position: Position


class PromoterPublic(BaseModel):
    """A promoter's account as the promoter or the admin sees it."""

    promoter_id: UUID
    name: str
    code: str
    referrer_id: UUID | None
    available: str
    withdrawn: str
