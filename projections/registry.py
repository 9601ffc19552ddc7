"""Every read model, and helpers to build them: the one list runners and ops iterate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from projections import catalog
from projections.also_bought import AlsoBoughtProjection
from projections.base import Projection
from projections.dashboard import DashboardProjection
from projections.ledger import LedgerProjection
from projections.listing import ListingProjection
from projections.overview import OverviewProjection
from projections.payouts import PayoutsProjection
from projections.score_inputs import ScoreInputsProjection

PROJECTIONS: tuple[type[Projection[Any]], ...] = (
    LedgerProjection,
    DashboardProjection,
    PayoutsProjection,
    ScoreInputsProjection,
    AlsoBoughtProjection,
    OverviewProjection,
    ListingProjection,
)


def projection_class(read_model: str) -> type[Projection[Any]]:
    for cls in PROJECTIONS:
        if cls.read_model == read_model:
            return cls
    raise KeyError(f"no read model named {read_model!r}")


def build_all(versions: Mapping[str, int] | None = None) -> list[Projection[Any]]:
    """One instance of every projection, at its code version unless ``versions`` says."""
    versions = versions or {}
    return [cls(versions.get(cls.read_model)) for cls in PROJECTIONS]


def build_live(conn: psycopg.Connection[Any]) -> list[Projection[Any]]:
    """The versions queries read (the catalog's live ones), for the follower to keep
    current; a read model never built yet starts at its code version."""
    return [cls(catalog.live_version(conn, cls.read_model) or cls.VERSION) for cls in PROJECTIONS]
