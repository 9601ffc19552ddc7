"""The caller as its bearer token proves it."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field


class MeOut(BaseModel):
    """The authenticated caller."""

    role: Literal["admin", "auditor", "merchant", "promoter"]
    id: UUID | None = Field(description="The merchant's or promoter's id; null for staff.")
    name: str | None = Field(description="The merchant's or promoter's name; null for staff.")
