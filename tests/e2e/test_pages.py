"""The web pages in a real browser: headless Debian chromium driven by Playwright against a
live server with the embedded read side. The tests sign in by the login form, compare the
figures shown with the API's JSON, watch them update live, and save the screenshots that
the README shows (docs/screenshots/)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from api.main import create_app
from consumers.embedded import EmbeddedWorkers
from domain.clock import ManualClock
from kami.bootstrap import Kami
from tests.e2e.api_client import Api, bearer, live_server, random_cards, random_settings, unique

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# The flags the machine's notes give for Chromium as root in a closed network: without the
# background-networking ones it keeps trying to reach Google's hosts.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
POLL_MS = 200  # the pages' polling interval in these tests; people get 3 s
WAIT_MS = 15_000  # how long a figure may take to show: the read side, then one poll
AGREE_MS = 10 * POLL_MS  # how long the page gets to match one reading of the API
expect.set_options(timeout=WAIT_MS)


def chromium_path() -> str:
    found = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        # `make test` installs it; a plain `pytest` on a machine without it must say so.
        pytest.fail("Debian's chromium is needed: apt-get install -y chromium (make test does it)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Site:
    api: Api
    base_url: str
    clock: ManualClock


@pytest.fixture
def site(kami: Kami, clock: ManualClock) -> Iterator[Site]:
    settings = random_settings()
    workers = EmbeddedWorkers(kami).start()
    try:
        with (
            live_server(create_app(kami, settings)) as base_url,
            httpx.Client(base_url=base_url, timeout=30) as http,
        ):
            yield Site(Api(http, settings), base_url, clock)
    finally:
        workers.stop()
        assert workers.error is None


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site.base_url)
    # The pages poll every few seconds; the tests would rather not wait that long.
    context.add_init_script(f"sessionStorage.setItem('kami.poll_ms', '{POLL_MS}')")
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Uncaught script errors fail the test; refused requests (a 401 at a bad login, a 404
    # score) are answers the pages handle, which the console reports all the same.
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    try:
        yield page
    finally:
        context.close()
    assert errors == [], errors


def sign_in(page: Page, path: str, token: str) -> None:
    page.goto(path)
    expect(page.locator("#app")).to_be_hidden()
    page.fill("#token", token)
    page.click("button[type=submit]")
    expect(page.locator("#app")).to_be_visible()


def field(page: Page, name: str) -> Any:
    return page.locator(f'[data-field="{name}"]').first


def once_agreed(
    page: Page, read: Callable[[], dict[str, Any]], money: Sequence[str], rounds: int = 10
) -> dict[str, Any]:
    """The API's answer, once the page shows the same amounts in these fields.

    Each round reads the API again and gives the page a few of its polls to match it:
    while commands are still landing, either may be ahead of the other.
    """
    for _ in range(rounds):
        answer = read()
        try:
            for name in money:
                expect(field(page, name)).to_have_text(f"¥{answer[name]}", timeout=AGREE_MS)
        except AssertionError:
            continue
        return answer
    shown = {name: field(page, name).inner_text() for name in money}
    raise AssertionError(f"the page shows {shown}, the API says {read()}")


def percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def json_of(api: Api, path: str, token: dict[str, str], after: int = 0) -> dict[str, Any]:
    r = api.http.get(path, params={"after": after}, headers=token)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# ------------------------------------------------------------------ the shop


@dataclass
class Shop:
    merchant_id: str
    merchant: dict[str, str]
    api_key: str
    plenty: str
    scarce: str
    manual: str
    promoter: dict[str, Any]
    sharer: dict[str, Any]
    last: int


def build_shop(site: Site, days: int = 8) -> Shop:
    """A merchant selling over `days` days: repeat buyers, reviews, a dispute, a refund, a
    product running low, and orders shared by a two-level promoter chain."""
    api, clock = site.api, site.clock
    clock.advance(-timedelta(days=days))
    r = api.http.post("/v1/merchants", json={"name": "Star Card Shop", "contact": "m@x"}, headers=api.admin)
    merchant_id, api_key = r.json()["merchant_id"], r.json()["api_key"]
    merchant = bearer(api_key)
    plenty = api.product(merchant, random_cards(40), title="Steam 100 CNY gift card", price="98.50")
    scarce = api.product(merchant, random_cards(10), title="Game pass 30 days", price="29.90")
    manual = api.product(merchant, title="Custom avatar (made by hand)", price="15.00", delivery="manual")
    promoter = api.promoter()
    sharer = api.promoter(promoter["code"])
    regular = unique("regular")
    last = 0
    paid: list[dict[str, Any]] = []
    for day in range(days):
        for i in range(1 + (day * 3) % 4):
            product = scarce if (day + i) % 3 == 0 else plenty
            contact = regular if i == 0 else unique("buyer")
            code = sharer["code"] if i % 2 else None
            order = api.order(product, contact=contact, **({"promoter_code": code} if code else {}))
            api.pay(order)
            paid.append(order)
        clock.advance(timedelta(days=1))
    for order, rating in zip(paid[:5], (5, 5, 4, 3, 5), strict=True):
        r = api.http.post(
            f"/v1/orders/{order['order_id']}/review",
            params={"token": order["token"]},
            json={"rating": rating},
        )
        assert r.status_code == 200, r.text
    r = api.http.post(
        f"/v1/orders/{paid[5]['order_id']}/dispute",
        params={"token": paid[5]["token"]},
        json={"reason": "code used"},
    )
    assert r.status_code == 201, r.text
    r = api.http.post(
        f"/v1/orders/{paid[6]['order_id']}/refund", json={"reason": "duplicate"}, headers=merchant
    )
    assert r.status_code == 200, r.text
    last = r.json()["position"]
    return Shop(merchant_id, merchant, api_key, plenty, scarce, manual, promoter, sharer, last)


# ------------------------------------------------------------------ merchant


def test_the_merchant_dashboard_shows_what_the_api_says_and_follows_new_sales(page: Page, site: Site) -> None:
    api = site.api
    shop = build_shop(site)
    dashboard = json_of(api, f"/v1/merchants/{shop.merchant_id}/dashboard", shop.merchant, shop.last)

    sign_in(page, "/dashboard", shop.api_key)

    expect(field(page, "gmv")).to_have_text(f"¥{dashboard['gmv']}")
    expect(field(page, "orders_paid")).to_have_text(str(dashboard["orders_paid"]))
    expect(field(page, "net_revenue")).to_have_text(f"¥{dashboard['net_revenue']}")
    expect(field(page, "repeat_rate")).to_have_text(percent(dashboard["repeat_rate"]))
    expect(field(page, "good_review_rate")).to_have_text(percent(dashboard["good_review_rate"]))
    expect(field(page, "reviews")).to_have_text(str(dashboard["reviews"]))
    expect(field(page, "open_disputes")).to_have_text(
        str(dashboard["disputes"] - dashboard["disputes_resolved"])
    )
    expect(field(page, "orders_refunded")).to_have_text(str(dashboard["orders_refunded"]))
    expect(field(page, "refund_amount")).to_have_text(f"¥{dashboard['refund_amount']}")
    assert dashboard["disputes"] == 1 and dashboard["orders_refunded"] == 1

    # Stock per product, live from GET /v1/products/{id}, with the low-stock warnings.
    for product_id, state in ((shop.plenty, "ok"), (shop.scarce, "low"), (shop.manual, "manual")):
        row = page.locator(f'#stock tr[data-product-id="{product_id}"]')
        live = api.http.get(f"/v1/products/{product_id}").json()
        expect(row.locator('[data-field="stock"]')).to_have_text(str(live["stock"]))
        expect(row).to_have_attribute("data-state", state)
    expect(field(page, "low_stock_count")).to_have_text("1")

    # The charts: one mark per day from the first sale to the last, as the daily series says.
    daily = {d["date"]: d for d in dashboard["daily"]}
    first, last = date.fromisoformat(min(daily)), date.fromisoformat(max(daily))
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    bars = page.locator("#chart-orders rect.bar")
    expect(bars).to_have_count(len(days))
    shown = {
        bars.nth(i).get_attribute("data-label"): bars.nth(i).get_attribute("data-value")
        for i in range(len(days))
    }
    assert shown == {d: str(daily[d]["orders_paid"] if d in daily else 0) for d in days}
    expect(page.locator("#chart-gmv circle.dot")).to_have_count(len(days))

    # The score, its components and what the next tier needs, as GET .../score says.
    score = api.http.get(f"/v1/merchants/{shop.merchant_id}/score", headers=shop.merchant)
    if score.status_code == 200:
        s = score.json()
        expect(field(page, "score")).to_have_text(f"{s['score']:.2f}")
        expect(page.locator("#components tbody tr")).to_have_count(len(s["components"]))
        if s["next_tier"]:
            expect(field(page, "next-tier")).to_contain_text(
                f"{s['next_tier']['points_needed']:.2f} more points"
            )
    else:
        expect(field(page, "score-missing")).to_be_visible()

    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    # Live: a sale made now shows without reloading the page.
    paid = api.pay(api.order(shop.plenty, quantity=2))
    after = json_of(api, f"/v1/merchants/{shop.merchant_id}/dashboard", shop.merchant, paid["position"])
    expect(field(page, "gmv")).to_have_text(f"¥{after['gmv']}")
    expect(field(page, "orders_paid")).to_have_text(str(after["orders_paid"]))
    assert after["gmv"] != dashboard["gmv"]

    # The key stays out of the URL; it lives in this tab's sessionStorage until logout.
    assert "mk_" not in page.url
    assert page.evaluate("sessionStorage.getItem('kami.token.merchant')") == shop.api_key
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('kami.token.merchant')") is None


def test_a_wrong_key_or_another_roles_token_is_refused_at_the_login(page: Page, site: Site) -> None:
    promoter = site.api.promoter()

    page.goto("/dashboard")
    page.fill("#token", "mk_00000000000000000000000000000000_nope")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("This key is not valid.")

    page.fill("#token", promoter["token"])
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("this is a promoter token")
    expect(page.locator("#app")).to_be_hidden()


def test_without_a_score_route_the_dashboard_says_so_and_shows_the_rest(page: Page, site: Site) -> None:
    api = site.api
    merchant_id, merchant = api.merchant()
    product = api.product(merchant, random_cards(3))
    paid = api.pay(api.order(product))
    dashboard = json_of(api, f"/v1/merchants/{merchant_id}/dashboard", merchant, paid["position"])
    # A server without the score route (or one that cannot answer it) answers 404.
    page.route("**/v1/merchants/*/score", lambda route: route.fulfill(status=404, json=NOT_FOUND))

    sign_in(page, "/dashboard", merchant["Authorization"].removeprefix("Bearer "))

    expect(field(page, "score-missing")).to_have_text("The score is not available on this server yet.")
    expect(field(page, "gmv")).to_have_text(f"¥{dashboard['gmv']}")
    expect(page.locator(f'#stock tr[data-product-id="{product}"] [data-field="stock"]')).to_have_text("2")


NOT_FOUND = {"error": "not_found", "detail": "Not Found"}


def test_the_merchant_blacklists_a_buyer_from_the_dashboard(page: Page, site: Site) -> None:
    api = site.api
    merchant_id, merchant = api.merchant()
    product = api.product(merchant, random_cards(3))
    sign_in(page, "/dashboard", merchant["Authorization"].removeprefix("Bearer "))

    page.fill("#blacklist-contact", "  Scalper@Example.com ")
    page.fill("#blacklist-reason", "resells our codes")
    page.click("#blacklist-add button[type=submit]")

    expect(page.locator('#blacklist tr[data-contact="scalper@example.com"]')).to_be_visible()
    listed = api.http.get(f"/v1/merchants/{merchant_id}/blacklist", headers=merchant).json()
    assert [(e["contact"], e["reason"]) for e in listed["entries"]] == [
        ("scalper@example.com", "resells our codes")
    ]
    refused = api.http.post(
        "/v1/orders", json={"product_id": product, "quantity": 1, "contact": "SCALPER@example.com"}
    )
    assert refused.json()["error"] == "buyer_blacklisted"

    page.locator('#blacklist tr[data-contact="scalper@example.com"] button').click()
    expect(page.locator('#blacklist tr[data-contact="scalper@example.com"]')).to_have_count(0)
    assert api.http.get(f"/v1/merchants/{merchant_id}/blacklist", headers=merchant).json()["entries"] == []


# ------------------------------------------------------------------ promoter


def test_the_promoter_page_shows_payouts_level_and_referrals(page: Page, site: Site) -> None:
    api = site.api
    shop = build_shop(site)
    sharer = shop.sharer
    token = bearer(sharer["token"])
    path = f"/v1/promoters/{sharer['promoter_id']}/payouts"
    assert json_of(api, path, token, shop.last)["history"], "the shop shares orders through this promoter"

    sign_in(page, "/promoter", sharer["token"])

    expect(field(page, "code")).to_have_text(sharer["code"])
    # The clock has passed the first orders' after-sales window: the deadlines process
    # manager may still be settling their commissions, moving money from pending to
    # available under both the page and the API. They agree once it is done.
    money = ("pending", "available", "withdrawn", "reversed")
    payouts = once_agreed(page, lambda: json_of(api, path, token, shop.last), money)
    expect(field(page, "level")).to_have_text(str(payouts["level"]))
    expect(field(page, "direct_referrals")).to_have_text(str(payouts["direct_referrals"]))
    rows = page.locator("#history tbody tr")
    expect(rows).to_have_count(len(payouts["history"]))
    shown = sorted(rows.nth(i).locator('[data-field="amount"]').inner_text() for i in range(rows.count()))
    assert shown == sorted(f"¥{c['amount']}" for c in payouts["history"])
    expect(page.locator("#chart-status rect.bar")).to_have_count(3)
    page.screenshot(path=str(SCREENSHOTS / "promoter.png"), full_page=True)

    # The upline promoter sees its second-level commission from the same order.
    top = json_of(
        api, f"/v1/promoters/{shop.promoter['promoter_id']}/payouts", bearer(shop.promoter["token"])
    )
    assert top["direct_referrals"] == 1 and {c["level"] for c in top["history"]} == {2}


# ------------------------------------------------------------------ admin


def test_the_admin_overview_and_platform_blacklist(page: Page, site: Site) -> None:
    api = site.api
    shop = build_shop(site, days=4)
    overview = json_of(api, "/v1/admin/overview", api.admin, shop.last)

    sign_in(page, "/admin", api.settings.admin_token)

    expect(field(page, "gmv")).to_have_text(f"¥{overview['gmv']}")
    expect(field(page, "orders_paid")).to_have_text(str(overview["orders_paid"]))
    expect(field(page, "orders_placed")).to_have_text(str(overview["orders_placed"]))
    expect(field(page, "platform_fees")).to_have_text(f"¥{overview['platform_fees']}")
    expect(field(page, "take_rate")).to_have_text(percent(overview["take_rate"]))
    expect(field(page, "merchants")).to_have_text(str(overview["merchants"]))
    tiers = page.locator("#chart-tiers rect.bar")
    expect(tiers).to_have_count(4)
    by_tier = {
        tiers.nth(i).get_attribute("data-label"): tiers.nth(i).get_attribute("data-value") for i in range(4)
    }
    assert by_tier == {
        t: str(overview["merchants_by_tier"].get(t, 0)) for t in ("core", "growth", "basic", "watch")
    }

    page.fill("#blacklist-contact", "fraudster@example.com")
    page.fill("#blacklist-reason", "chargebacks at three shops")
    page.click("#blacklist-add button[type=submit]")
    expect(page.locator('#blacklist tr[data-contact="fraudster@example.com"]')).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "admin.png"), full_page=True)

    refused = api.http.post(
        "/v1/orders", json={"product_id": shop.plenty, "quantity": 1, "contact": "Fraudster@example.com"}
    )
    assert (refused.status_code, refused.json()["error"]) == (403, "buyer_blacklisted")
    # A merchant key opens no admin page.
    page.click("#logout")
    page.fill("#token", shop.api_key)
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("this is a merchant token")


def test_the_pages_allow_no_inline_script_and_no_other_origin(site: Site) -> None:
    for path in ("/dashboard", "/promoter", "/admin", "/pages/common.js"):
        r = site.api.http.get(path)
        assert r.status_code == 200
        policy = r.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert site.api.http.get("/pages/../api/main.py").status_code == 404
    assert site.api.http.get("/pages/secrets.json").status_code == 404
    assert "/dashboard" not in site.api.http.get("/openapi.json").json()["paths"]
