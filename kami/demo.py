"""Demo data for ``kami serve --demo``: a shop with something in it to look at and poke.

A merchant with three products (two auto-delivered with cards, one with wholesale
tiers, one manual), a promoter chain A <- B <- C, paid orders (some through C's code
so commissions accrue on two levels), one refund and reviews.

The api key and tokens are handed out once by the commands, so the demo's
credentials are kept in a state file (``.kami/demo.json``, mode 0600) to be printed
again on the next start. Seeding is skipped while that file still matches the
database (its merchant key still authenticates); otherwise the demo is seeded anew.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from domain.exceptions import KamiError
from domain.money import format_yuan, parse_yuan
from domain.shop import Shop
from kami.settings import write_private_file

PROVIDER = "sandbox"


@dataclass(frozen=True)
class DemoProduct:
    product_id: str
    title: str
    price: str
    delivery: str


@dataclass(frozen=True)
class DemoPromoter:
    name: str
    promoter_id: str
    code: str
    token: str
    referrer: str | None


@dataclass(frozen=True)
class DemoOrder:
    order_id: str
    token: str
    product: str
    quantity: int
    amount: str
    status: str
    promoter: str | None


@dataclass(frozen=True)
class DemoInfo:
    merchant_id: str
    merchant_name: str
    api_key: str
    products: list[DemoProduct]
    promoters: list[DemoPromoter]
    orders: list[DemoOrder]
    # False when an earlier run's demo was found and reused.
    seeded: bool = field(default=True, compare=False)

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("seeded")
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DemoInfo:
        data: dict[str, Any] = json.loads(text)
        return cls(
            merchant_id=data["merchant_id"],
            merchant_name=data["merchant_name"],
            api_key=data["api_key"],
            products=[DemoProduct(**p) for p in data["products"]],
            promoters=[DemoPromoter(**p) for p in data["promoters"]],
            orders=[DemoOrder(**o) for o in data["orders"]],
            seeded=False,
        )


def seed_demo(shop: Shop, state_file: Path | None = None) -> DemoInfo:
    """Seed the demo, or return the earlier one when ``state_file`` still matches the database."""
    if state_file is not None:
        earlier = _load(state_file)
        if earlier is not None and _still_there(shop, earlier):
            return earlier
    info = _seed(shop)
    if state_file is not None:
        write_private_file(state_file, info.to_json())
    return info


def _load(state_file: Path) -> DemoInfo | None:
    try:
        return DemoInfo.from_json(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or unreadable: seed afresh rather than refuse to start


def _still_there(shop: Shop, info: DemoInfo) -> bool:
    # The key authenticating proves the file belongs to this database, not to one wiped since.
    try:
        if shop.authenticate_merchant(info.api_key) != UUID(info.merchant_id):
            return False
        for product in info.products:
            shop.get_product(UUID(product.product_id))
    except (KamiError, ValueError):
        return False
    return True


def _cards(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{secrets.token_hex(4).upper()}-{secrets.token_hex(4).upper()}" for _ in range(count)]


def _seed(shop: Shop) -> DemoInfo:
    name = "Demo Game Keys"
    merchant = shop.register_merchant(name, "owner@demo.kami.example")
    mid = merchant.merchant_id

    steam = shop.list_product(
        mid,
        "Steam Wallet Code ¥50",
        parse_yuan("48.00"),
        "auto",
        # 批发价: cheaper per code from 5 and from 10 codes on.
        wholesale=[(5, parse_yuan("46.50")), (10, parse_yuan("45.00"))],
        max_per_order=20,
    ).product_id
    shop.import_cards(mid, steam, _cards("STEAM50", 40))
    vip = shop.list_product(mid, "Video VIP 1 Month", parse_yuan("19.90"), "auto").product_id
    shop.import_cards(mid, vip, _cards("VIP1M", 20))
    avatar = shop.list_product(
        mid, "Custom Avatar Drawing", parse_yuan("30.00"), "manual", max_per_order=1
    ).product_id
    products = [
        DemoProduct(str(steam), "Steam Wallet Code ¥50", "48.00", "auto"),
        DemoProduct(str(vip), "Video VIP 1 Month", "19.90", "auto"),
        DemoProduct(str(avatar), "Custom Avatar Drawing", "30.00", "manual"),
    ]
    titles = {p.product_id: p.title for p in products}

    # The chain: A refers B, B refers C. C's buyers pay C (level 1) and B (level 2), never A.
    a = shop.join_promoter("Promoter A", "a@promoters.kami.example")
    b = shop.join_promoter("Promoter B", "b@promoters.kami.example", referrer_code=a.code)
    c = shop.join_promoter("Promoter C", "c@promoters.kami.example", referrer_code=b.code)
    promoters = [
        DemoPromoter("Promoter A", str(a.promoter_id), a.code, a.token, None),
        DemoPromoter("Promoter B", str(b.promoter_id), b.code, b.token, "Promoter A"),
        DemoPromoter("Promoter C", str(c.promoter_id), c.code, c.token, "Promoter B"),
    ]
    codes = {"Promoter B": b.code, "Promoter C": c.code}

    plan: list[tuple[UUID, int, str, str | None]] = [
        (steam, 1, "alice@buyers.kami.example", "Promoter C"),
        (steam, 5, "bob@buyers.kami.example", "Promoter C"),  # the wholesale price applies
        (vip, 1, "alice@buyers.kami.example", "Promoter B"),  # alice buys again: a repeat buyer
        (vip, 2, "carol@buyers.kami.example", None),
        (vip, 1, "dave@buyers.kami.example", "Promoter C"),  # refunded below
        (avatar, 1, "erin@buyers.kami.example", None),  # delivered by hand below
    ]
    orders: list[DemoOrder] = []
    for product_id, quantity, contact, promoter in plan:
        placed = shop.place_order(product_id, quantity, contact, codes.get(promoter or ""))
        paid = shop.record_payment(PROVIDER, placed.order_id, f"demo-{uuid4().hex}", placed.amount)
        orders.append(
            DemoOrder(
                order_id=str(placed.order_id),
                token=placed.token,
                product=titles[str(product_id)],
                quantity=quantity,
                amount=format_yuan(placed.amount),
                status=paid.status,
                promoter=promoter,
            )
        )

    first, _, _, _, refunded, manual = orders
    shop.review_order(UUID(first.order_id), first.token, 5, "Code worked instantly.")
    shop.review_order(UUID(orders[3].order_id), orders[3].token, 4, "Fine, a bit slow to find.")
    shop.refund_order(UUID(refunded.order_id), "Buyer bought the wrong region", mid)
    shop.deliver_manual(mid, UUID(manual.order_id), "Your drawing: https://example.com/avatar.png")
    orders[4] = replace(refunded, status="refunded")
    orders[5] = replace(manual, status="delivered")

    return DemoInfo(
        merchant_id=str(mid),
        merchant_name=name,
        api_key=merchant.api_key,
        products=products,
        promoters=promoters,
        orders=orders,
    )


def describe(info: DemoInfo, base_url: str, payment_secret: str | None) -> str:
    """What ``kami serve --demo`` prints: the credentials and requests to try."""
    steam, vip, avatar = info.products
    _, _, c = info.promoters
    first = info.orders[0]
    secret = payment_secret or "$KAMI_PAYMENT_SECRET"
    auth = f"-H 'Authorization: Bearer {info.api_key}'"
    lines = [
        f"Demo shop ({'seeded now' if info.seeded else 'kept from an earlier run'}):",
        f"  merchant   {info.merchant_name}  id {info.merchant_id}",
        f"             api_key {info.api_key}",
    ]
    lines += [
        f"  product    {p.product_id}  {p.title} ({p.delivery}, {p.price})" for p in info.products
    ]
    lines += [
        f"  promoter   {p.name}: id {p.promoter_id} code {p.code}"
        + (f" (referred by {p.referrer})" if p.referrer else "")
        + f"\n             token {p.token}"
        for p in info.promoters
    ]
    lines += [
        f"  order      {o.order_id}  {o.product} x{o.quantity} {o.amount} {o.status}"
        + (f" via {o.promoter}" if o.promoter else "")
        + f"\n             buyer token {o.token}"
        for o in info.orders
    ]
    lines += [
        "",
        "Try:",
        f"  curl {base_url}/v1/products/{steam.product_id}",
        f"  curl '{base_url}/v1/orders/{first.order_id}?token={first.token}'",
        f"  curl {auth} {base_url}/v1/merchants/{info.merchant_id}/dashboard",
        f"  curl -H 'Authorization: Bearer {c.token}' {base_url}/v1/promoters/{c.promoter_id}/payouts",
        "  # buy 5 Steam codes through promoter C (wholesale price 46.50 each), then pay:",
        f"  curl -s -X POST {base_url}/v1/orders -H 'Content-Type: application/json' \\",
        f"    -d '{{\"product_id\": \"{steam.product_id}\", \"quantity\": 5,"
        f" \"contact\": \"you@example.com\", \"promoter_code\": \"{c.code}\"}}'",
        "  ORDER=<order_id from above>",
        "  BODY=\"{\\\"order_id\\\": \\\"$ORDER\\\", \\\"amount\\\": \\\"232.50\\\","
        " \\\"txn_id\\\": \\\"try-$ORDER\\\"}\"",
        # Double quotes: the placeholder $KAMI_PAYMENT_SECRET must expand in the shell.
        f"  SIG=$(printf %s \"$BODY\" | openssl dgst -sha256 -hmac \"{secret}\" | sed 's/.* //')",
        f"  curl -X POST {base_url}/v1/payments/notify -H 'Content-Type: application/json' \\",
        "    -H \"X-Kami-Signature: $SIG\" -d \"$BODY\"",
        f"  # a manual product ({avatar.title}) and a second auto one ({vip.title}) are listed too",
    ]
    return "\n".join(lines)
