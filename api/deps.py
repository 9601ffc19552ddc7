"""Dependencies: the Shop, the payment keys, and who is calling (bearer tokens).

The dependencies that only look things up are ``async``: FastAPI runs a plain ``def``
dependency in the thread pool, and each such hop (a queue, a thread wake-up, the GIL
handed over twice) cost more CPU than the lookup itself, several times per request.
Only ``get_caller`` stays a ``def``: a merchant's or promoter's token is checked against
the database, which must not block the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Annotated, Literal
from uuid import UUID

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.settings import ApiSettings
from domain.exceptions import Forbidden, Unauthorized
from domain.shop import Shop

Role = Literal["admin", "auditor", "merchant", "promoter"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller; `id` is the merchant's or promoter's id."""

    role: Role
    id: UUID | None = None


@dataclass(frozen=True)
class PaymentKeys:
    """The callback signing keys; HMAC and MD5 need them in the clear."""

    sandbox: str = field(repr=False)
    epay: str = field(repr=False)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Authenticator:
    """Resolves a bearer token to a Principal; keeps only digests of the staff tokens."""

    def __init__(self, shop: Shop, settings: ApiSettings) -> None:
        self._shop = shop
        self._admin = _digest(settings.admin_token)
        self._auditor = _digest(settings.auditor_token)

    def identify(self, token: str) -> Principal:
        """The caller this token proves, or Unauthorized."""
        digest = _digest(token)
        # Both comparisons always run, so timing tells nothing about which one matched.
        is_admin = hmac.compare_digest(digest, self._admin)
        is_auditor = hmac.compare_digest(digest, self._auditor)
        if is_admin:
            return Principal("admin")
        if is_auditor:
            return Principal("auditor")
        if token.startswith("mk_"):
            return Principal("merchant", self._shop.authenticate_merchant(token))
        if token.startswith("pt_"):
            return Principal("promoter", self._shop.authenticate_promoter(token))
        raise Unauthorized("unknown bearer token")


bearer = HTTPBearer(
    auto_error=False,
    description="Admin or auditor token, a merchant's api_key, or a promoter's token.",
)


async def get_shop(request: Request) -> Shop:
    """The Shop the app was built with."""
    shop: Shop = request.app.state.kami.shop
    return shop


async def get_payment_keys(request: Request) -> PaymentKeys:
    """The payment callback keys the app was built with."""
    keys: PaymentKeys = request.app.state.payment_keys
    return keys


ShopDep = Annotated[Shop, Depends(get_shop)]
PaymentKeysDep = Annotated[PaymentKeys, Depends(get_payment_keys)]


def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Whoever the bearer token proves; 401 without a valid one."""
    if credentials is None:
        raise Unauthorized("this route needs an Authorization: Bearer token")
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator.identify(credentials.credentials)


Caller = Annotated[Principal, Depends(get_caller)]


async def require_admin(caller: Caller) -> Principal:
    """Only the admin."""
    if caller.role != "admin":
        raise Forbidden("only an admin may do this")
    return caller


async def require_auditor(caller: Caller) -> Principal:
    """The auditor or the admin: read-only staff routes."""
    if caller.role not in ("admin", "auditor"):
        raise Forbidden("only an auditor or an admin may read this")
    return caller


async def current_merchant(caller: Caller) -> UUID:
    """The calling merchant's id."""
    if caller.role != "merchant" or caller.id is None:
        raise Forbidden("only a merchant may do this")
    return caller.id


async def current_promoter(caller: Caller) -> UUID:
    """The calling promoter's id."""
    if caller.role != "promoter" or caller.id is None:
        raise Forbidden("only a promoter may do this")
    return caller.id


async def admin_or_merchant(caller: Caller) -> UUID | None:
    """A merchant's id, or None for the admin: the Shop reads None as "any merchant"."""
    if caller.role == "admin":
        return None
    if caller.role == "merchant" and caller.id is not None:
        return caller.id
    raise Forbidden("only the owning merchant or an admin may do this")


Admin = Annotated[Principal, Depends(require_admin)]
Auditor = Annotated[Principal, Depends(require_auditor)]
CurrentMerchant = Annotated[UUID, Depends(current_merchant)]
CurrentPromoter = Annotated[UUID, Depends(current_promoter)]
AdminOrMerchant = Annotated[UUID | None, Depends(admin_or_merchant)]

PromoterIdPath = Annotated[UUID, Path(description="The promoter's id.")]


async def promoter_self(promoter_id: PromoterIdPath, promoter: CurrentPromoter) -> UUID:
    """The promoter named in the path, when it is the caller."""
    if promoter != promoter_id:
        raise Forbidden("a promoter may act only on its own account")
    return promoter


async def promoter_self_or_admin(promoter_id: PromoterIdPath, caller: Caller) -> UUID:
    """The promoter named in the path, when the caller is that promoter or the admin."""
    if caller.role == "admin" or (caller.role == "promoter" and caller.id == promoter_id):
        return promoter_id
    raise Forbidden("only this promoter or an admin may read this")


PromoterSelf = Annotated[UUID, Depends(promoter_self)]
PromoterSelfOrAdmin = Annotated[UUID, Depends(promoter_self_or_admin)]
