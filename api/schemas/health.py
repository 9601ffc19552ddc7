"""Liveness answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from api.schemas.common import Position


class HealthOut(BaseModel):
    """The API answers and its event store is reachable."""

    status: Literal["ok"] = "ok"
    position: Position
