"""Auditors' routes: the ledger now or as of an instant, and the hash chain's verdict."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import Auditor
from api.errors import error_responses
from api.readside import After, pool_of, read
from api.schemas.readside import LedgerOut, VerifyOut
from consumers import chain
from domain.money import format_yuan
from projections.ledger import LedgerProjection, ledger_balances

router = APIRouter(prefix="/v1/audit", tags=["audit"])

AsOf = Annotated[
    datetime | None,
    Query(description="Balances as they stood at this instant (ISO 8601; UTC if no zone)."),
]


@router.get("/ledger", response_model=LedgerOut, responses=error_responses(401, 403, 422))
def get_ledger(_: Auditor, request: Request, as_of: AsOf = None, after: After = None) -> LedgerOut:
    """Balances per account; they always sum to zero."""
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    balances, position = read(
        request, LedgerProjection, after, lambda c: ledger_balances(c, as_of=as_of)
    )
    return LedgerOut(
        as_of=as_of,
        accounts={name: format_yuan(amount) for name, amount in balances.accounts.items()},
        total=format_yuan(balances.total),
        position=position,
    )


@router.get("/verify", response_model=VerifyOut, responses=error_responses(401, 403))
def get_verify(_: Auditor, request: Request) -> VerifyOut:
    """Recompute the hash chain over the stored events; name the first position that broke."""
    table = request.app.state.kami.shop.recorder.events_table_name
    with pool_of(request).connection() as conn:
        chain.ensure_schema(conn)
        conn.commit()
        result = chain.verify(conn, table)
    return VerifyOut(
        ok=result.ok,
        events_checked=result.events_checked,
        head=result.head,
        broken_at=result.broken_at,
        head_position=result.head_position,
    )
