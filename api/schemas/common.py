"""Field types shared by the resources: money in yuan, UTC times, log positions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from domain.exceptions import InvalidMoney
from domain.money import parse_yuan

YUAN_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$",
    "description": "An amount in yuan with at most two decimals, greater than zero.",
    "examples": ["9.90"],
}


def _parse_yuan(value: Any) -> int:
    try:
        return parse_yuan(value)
    except InvalidMoney as error:
        # A custom error type keeps the reason (invalid_money) in the 422 body.
        raise PydanticCustomError("invalid_money", error.detail) from None


# A positive amount arriving as "9.90", held as integer fen; JSON numbers are refused.
Yuan = Annotated[int, PlainValidator(_parse_yuan), WithJsonSchema(YUAN_SCHEMA)]


def _utc_iso(moment: datetime) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Always rendered in UTC with a trailing Z, whatever zone the domain handed over.
UtcDatetime = Annotated[
    datetime,
    PlainSerializer(_utc_iso, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2026-01-01T12:00:00Z"]}),
]

Position = Annotated[int, Field(ge=0, description="Event-log position of the command's last event.")]

# Counts are JSON integers: "3" or 3.0 are malformed, not quantities.
Count = Annotated[int, Field(strict=True, ge=1)]

# Bounds that keep absurd payloads out; the domain applies its own, finer rules after.
Name = Annotated[str, Field(min_length=1, max_length=200)]
Contact = Annotated[str, Field(max_length=200)]
Text = Annotated[str, Field(max_length=2000)]


def refuse_nul(value: Any) -> Any:
    """Refuse text holding U+0000: PostgreSQL text cannot store it, so an event carrying one
    would stop every read model that copies the text (found by schemathesis)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text may not contain the NUL character (U+0000)")
    elif isinstance(value, list | tuple):
        for item in value:
            refuse_nul(item)
    return value


class RequestModel(BaseModel):
    """Every request body: unknown fields are refused, so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return refuse_nul(value)


class PositionOut(BaseModel):
    """A command that answers only with its log position."""

    position: Position
