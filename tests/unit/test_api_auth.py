"""Bearer tokens resolve to the right principal; the staff tokens are kept only as digests."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from api.deps import Authenticator, Principal
from api.settings import ApiSettings
from domain.exceptions import Unauthorized

SETTINGS = ApiSettings(
    admin_token="admin-token-0123456789",
    auditor_token="auditor-token-0123456789",
    payment_secret="payment-secret-0123456789",
    epay_key="epay-key-0123456789",
)


class FakeShop:
    """Knows one merchant key and one promoter token."""

    def __init__(self) -> None:
        self.merchant_id = uuid4()
        self.promoter_id = uuid4()

    def authenticate_merchant(self, token: str) -> UUID:
        if token != "mk_good":
            raise Unauthorized("unknown merchant key")
        return self.merchant_id

    def authenticate_promoter(self, token: str) -> UUID:
        if token != "pt_good":
            raise Unauthorized("unknown promoter token")
        return self.promoter_id


@pytest.fixture
def shop() -> FakeShop:
    return FakeShop()


@pytest.fixture
def authenticator(shop: FakeShop) -> Authenticator:
    return Authenticator(shop, SETTINGS)  # type: ignore[arg-type]


def test_each_token_resolves_to_its_principal(authenticator: Authenticator, shop: FakeShop) -> None:
    assert authenticator.identify(SETTINGS.admin_token) == Principal("admin")
    assert authenticator.identify(SETTINGS.auditor_token) == Principal("auditor")
    assert authenticator.identify("mk_good") == Principal("merchant", shop.merchant_id)
    assert authenticator.identify("pt_good") == Principal("promoter", shop.promoter_id)


@pytest.mark.parametrize(
    "token", ["", "nope", "mk_bad", "pt_bad", SETTINGS.admin_token + "x", SETTINGS.payment_secret]
)
def test_anything_else_is_unauthorized(authenticator: Authenticator, token: str) -> None:
    with pytest.raises(Unauthorized):
        authenticator.identify(token)


def test_the_staff_tokens_are_not_kept_in_the_clear(authenticator: Authenticator) -> None:
    kept = repr(vars(authenticator))

    assert SETTINGS.admin_token not in kept
    assert SETTINGS.auditor_token not in kept
