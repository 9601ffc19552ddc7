"""The Shop application: every command of kami's write side.

Each command is a function of a unit of work: it loads aggregates, calls their
methods and returns a result. ``_run`` saves the new events atomically, and on a
concurrency conflict reloads and runs the command again, so a command either
happens once, whole, or not at all.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import EnvType

from domain import cards as card_crypto
from domain import ledger
from domain.aggregate_cache import DEFAULT_MAXSIZE as DEFAULT_CACHE_SIZE
from domain.aggregate_cache import CachedLoads, Loads, StaleRead, StoreLoads
from domain.append_counts import AppendCounter
from domain.blacklist import (
    Blacklist,
    BlacklistChanged,
    BlacklistView,
    blacklist_id,
    normalise_contact,
)
from domain.card_stock import CardBucket
from domain.cards import Keyring
from domain.clock import Clock, system_clock
from domain.commissions import Commission, commissions_for
from domain.event_store import ShopRecorder
from domain.exceptions import (
    AmountMismatch,
    Busy,
    BuyerBlacklisted,
    ConcurrencyConflict,
    DuplicateTxn,
    Forbidden,
    IdempotencyKeyReused,
    InvalidInput,
    InvalidState,
    KamiError,
    NotFound,
    OutOfStock,
    ProductUnavailable,
    Unauthorized,
    UnknownPromoter,
    UnknownReferrer,
)
from domain.fees import NEW_MERCHANT_TIER, fee_rate_for
from domain.group_commit import GroupCommitter
from domain.idempotency import TOKEN_KEY_OWNER, OrderRequest, order_request
from domain.ids import bucket_ids, payment_id, posting_id, promoter_code_id
from domain.merchant import Merchant
from domain.order import DELIVERED, PAID, PENDING, Order
from domain.payment import APPLIED, RETURNED, Payment
from domain.posting import Posting
from domain.product import DEFAULT_BUCKETS, Product
from domain.promoter import Promoter, PromoterCode, new_code, normalise_code
from domain.promoter_levels import BASE_LEVEL, level_for
from domain.results import (
    CardsImported,
    Done,
    MerchantCreated,
    OrderPlaced,
    OrderView,
    PaymentResult,
    ProductCreated,
    ProductView,
    PromoterJoined,
    WholesaleTier,
    WithdrawalRequested,
)
from domain.scoring import Figures
from domain.scoring import score as score_merchant
from domain.secrets import compose_token, hash_secret, matches, new_secret, split_token
from domain.tiering import (
    DEFAULT_POLICY,
    REJECTED,
    UPHELD,
    AppealFiled,
    Outcome,
    TierEvaluation,
    TieringPolicy,
    day_of,
    is_due,
    state_of,
)
from domain.tiering import appeal as appeal_outcome
from domain.tiering import evaluate as evaluation_outcome
from domain.unit_of_work import UnitOfWork

R = TypeVar("R")
A = TypeVar("A", bound=Aggregate)

MAX_CARDS_PER_IMPORT = 10_000
MAX_ATTEMPTS = 60


@dataclass(frozen=True)
class ShopSettings:
    order_ttl: timedelta = timedelta(minutes=15)
    after_sales_window: timedelta = timedelta(days=7)
    group_commit: bool = True
    # Aggregates kept between commands (0: load every one from the store).
    cache_size: int = DEFAULT_CACHE_SIZE
    # (i, n): this is process i of n serving the API on one database. It reserves first
    # from every n-th card bucket from the i-th, so that processes rarely work on the same
    # bucket: one process's cached bucket is stale once another changed it, and the
    # command catches up and runs again.
    bucket_share: tuple[int, int] = (0, 1)


class Shop(Application[UUID]):
    name = "kami"
    env = {  # noqa: RUF012 - eventsourcing reads this class attribute
        # kami's own cache (domain.aggregate_cache) replaces eventsourcing's, whose
        # fast-forward costs a SELECT per load.
        "AGGREGATE_CACHE_MAXSIZE": "",
        "APPLICATION_RECORDER_TOPIC": "domain.event_store:ShopRecorder",
        "POSTGRES_POOL_SIZE": "8",
        "POSTGRES_MAX_OVERFLOW": "24",
    }

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        keyring: Keyring,
        clock: Clock = system_clock,
        settings: ShopSettings | None = None,
    ) -> None:
        super().__init__(env)
        self.keyring = keyring
        self.clock = clock
        self.settings = settings or ShopSettings()
        self._committer = GroupCommitter(self.recorder) if self.settings.group_commit else None
        # The cache is only safe where every write's read set is checked: in group commit.
        self._loads: Loads = (
            CachedLoads(self.repository, self._shop_recorder(), self.settings.cache_size)
            if self._committer is not None and self.settings.cache_size > 0
            else StoreLoads(self.repository, self.recorder)
        )
        # Events appended by this process, per topic (the API's /metrics reads it).
        self.appended = AppendCounter()
        self._busy: dict[UUID, int] = {}
        self._busy_lock = threading.Lock()
        # Merchants' card keys, read once: see _card_key for why a cached key is safe.
        self._card_keys: dict[UUID, bytes] = {}

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
        super().close()

    # ------------------------------------------------------------------ plumbing

    def position(self) -> int:
        return self.recorder.max_notification_id() or 0

    def _mark_busy(self, uow: UnitOfWork, bucket: UUID) -> None:
        with self._busy_lock:
            self._busy[bucket] = self._busy.get(bucket, 0) + 1
        uow.busy.append(bucket)

    def _unmark_busy(self, uow: UnitOfWork) -> None:
        with self._busy_lock:
            for bucket in uow.busy:
                left = self._busy.get(bucket, 0) - 1
                if left > 0:
                    self._busy[bucket] = left
                else:
                    self._busy.pop(bucket, None)
        uow.busy.clear()

    def _shop_recorder(self) -> ShopRecorder:
        if not isinstance(self.recorder, ShopRecorder):
            raise TypeError("the aggregate cache needs domain.event_store.ShopRecorder")
        return self.recorder

    def _uow(self) -> UnitOfWork:
        return UnitOfWork(self._loads)

    def _run(self, command: Callable[[UnitOfWork], R]) -> R:
        """Run a command, save its events atomically, retry it on a conflict."""
        for attempt in range(MAX_ATTEMPTS):
            uow = self._uow()
            try:
                return self._attempt(command, uow)
            except (ConcurrencyConflict, IntegrityError) as conflict:
                # Spread the retries out so colliding commands do not collide again.
                time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.05)))
                # Then what moved on under the command (its writes, when nobody said what)
                # is caught up from the store, right before the command runs again: the
                # cache may not hold the winners' versions yet, the store does.
                stale = conflict.ids if isinstance(conflict, StaleRead) else [a.id for a in uow.changed]
                self._loads.refresh(stale)
            finally:
                self._unmark_busy(uow)
        raise Busy("too many concurrent changes to the same items; please retry")

    def _attempt(self, command: Callable[[UnitOfWork], R], uow: UnitOfWork) -> R:
        """One try: decide, then write; a conflict propagates for ``_run`` to retry."""
        try:
            result = command(uow)
        except KamiError:
            # A refusal (out of stock, not found...) is only as good as what it read.
            if self._loads.checks_reads and uow.reads:
                self._loads.check(uow.reads)
            raise
        events = uow.collect_events()
        if not events:
            return _with_position(result, self._loads.check(uow.reads))
        if self._committer is not None:
            ids = self._committer.write([self.mapper.to_stored_event(e) for e in events], uow.reads)
        else:
            # eventsourcing's plain way: one transaction per command.
            ids = [r.notification.id for r in self.events.put(events) if r.notification.id is not None]
        self._loads.remember(uow.changed)
        self.appended.add(events)
        return _with_position(result, max(ids))

    def _query(self, query: Callable[[UnitOfWork], R]) -> R:
        """A read: answered from the cache, then checked against the store like a command."""
        for _ in range(MAX_ATTEMPTS):
            uow = self._uow()
            try:
                return self._attempt(query, uow)
            except StaleRead as stale:
                self._loads.refresh(stale.ids)
        raise Busy("the items kept changing while being read; please retry")

    def _now(self) -> datetime:
        return self.clock()

    # ---------------------------------------------------------------- merchants

    def register_merchant(self, name: str, contact: str) -> MerchantCreated:
        def command(uow: UnitOfWork) -> MerchantCreated:
            now = self._now()
            tier = NEW_MERCHANT_TIER
            merchant = Merchant.register(name, contact, tier, fee_rate_for(tier), now)
            secret = new_secret()
            merchant.issue_api_key(hash_secret(secret), now)
            uow.add(merchant)
            return MerchantCreated(merchant.id, compose_token("mk", merchant.id, secret), 0)

        return self._run(command)

    def authenticate_merchant(self, api_key: str) -> UUID:
        merchant, secret = self._bearer("mk", api_key, Merchant)
        if merchant is None or not matches(secret, merchant.api_key_hash):
            raise Unauthorized("unknown merchant key")
        return merchant.id

    def _bearer(self, prefix: str, token: str, kind: type[A]) -> tuple[A | None, str]:
        """The aggregate a bearer token names, and the secret it must match."""
        parts = split_token(prefix, token)
        if parts is None:
            raise Unauthorized(f"not a {kind.__name__.lower()} token")
        owner_id, secret = parts
        return self._query(lambda uow: uow.peek(owner_id, kind)), secret

    def get_merchant(self, merchant_id: UUID) -> Merchant:
        return self._query(lambda uow: uow.get(merchant_id, Merchant, "merchant"))

    def change_fee_rate(self, merchant_id: UUID, fee_rate_bps: int, reason: str) -> Done:
        def command(uow: UnitOfWork) -> Done:
            uow.get(merchant_id, Merchant, "merchant").change_fee_rate(
                fee_rate_bps, reason, self._now()
            )
            return Done(0)

        return self._run(command)

    def change_tier(self, merchant_id: UUID, tier: str, score: float, reason: str) -> Done:
        """Move a merchant to a tier; its fee rate follows the fee table."""

        def command(uow: UnitOfWork) -> Done:
            now = self._now()
            merchant = uow.get(merchant_id, Merchant, "merchant")
            if merchant.tier != tier:
                merchant.change_tier(tier, score, reason, now)
                merchant.change_fee_rate(fee_rate_for(tier), f"tier {tier}", now)
            return Done(0)

        return self._run(command)

    def restrict_merchant(self, merchant_id: UUID, reason: str) -> Done:
        def command(uow: UnitOfWork) -> Done:
            uow.get(merchant_id, Merchant, "merchant").restrict(reason, self._now())
            return Done(0)

        return self._run(command)

    def shred_card_key(self, merchant_id: UUID, reason: str) -> Done:
        """Crypto-shred a merchant's cards: record it (so nothing more is sold), then delete
        the key. Run again after a failure: both steps are idempotent."""

        def command(uow: UnitOfWork) -> Done:
            uow.get(merchant_id, Merchant, "merchant").shred_card_key(reason, self._now())
            return Done(0)

        done = self._run(command)
        self.keyring.shred(merchant_id)
        return done

    def reinstate_merchant(self, merchant_id: UUID, reason: str) -> Done:
        def command(uow: UnitOfWork) -> Done:
            uow.get(merchant_id, Merchant, "merchant").reinstate(reason, self._now())
            return Done(0)

        return self._run(command)

    # ----------------------------------------------------------------- products

    def list_product(
        self,
        merchant_id: UUID,
        title: str,
        price: int,
        delivery: str,
        wholesale: Sequence[tuple[int, int]] = (),
        max_per_order: int | None = None,
        buckets: int = DEFAULT_BUCKETS,
    ) -> ProductCreated:
        """List a product; an auto-delivered one's stock is split over ``buckets`` streams."""

        def command(uow: UnitOfWork) -> ProductCreated:
            now = self._now()
            uow.get(merchant_id, Merchant, "merchant")
            product = Product.create(
                merchant_id, title, price, delivery, wholesale, max_per_order, now, buckets=buckets
            )
            uow.add(product)
            if delivery == "auto":
                for index in range(product.buckets):
                    uow.add(CardBucket.open(product.id, merchant_id, index, now))
            return ProductCreated(product.id, 0)

        return self._run(command)

    def _own_product(self, uow: UnitOfWork, merchant_id: UUID, product_id: UUID) -> Product:
        product = uow.get(product_id, Product, "product")
        if product.merchant_id != merchant_id:
            raise Forbidden("this product belongs to another merchant")
        return product

    def change_price(self, merchant_id: UUID, product_id: UUID, price: int) -> Done:
        def command(uow: UnitOfWork) -> Done:
            self._own_product(uow, merchant_id, product_id).change_price(price, self._now())
            return Done(0)

        return self._run(command)

    def delist_product(self, merchant_id: UUID, product_id: UUID) -> Done:
        def command(uow: UnitOfWork) -> Done:
            self._own_product(uow, merchant_id, product_id).delist(self._now())
            return Done(0)

        return self._run(command)

    def _buckets(self, uow: UnitOfWork, product: Product) -> list[CardBucket]:
        return [uow.get(bid, CardBucket, "card bucket") for bid in bucket_ids(product.id, product.buckets)]

    def _stock(self, uow: UnitOfWork, product: Product, now: datetime) -> int:
        if product.delivery != "auto":
            return 0
        # Counted, not changed: the cached buckets themselves, no copies.
        ids = bucket_ids(product.id, product.buckets)
        buckets = (uow.read(bid, CardBucket, "card bucket") for bid in ids)
        return sum(b.count_available(now) for b in buckets)

    def import_cards(
        self, merchant_id: UUID, product_id: UUID, cards: Sequence[str]
    ) -> CardsImported:
        if len(cards) > MAX_CARDS_PER_IMPORT:
            raise InvalidInput(f"at most {MAX_CARDS_PER_IMPORT} cards per import")
        texts = [card_crypto.normalise(c) for c in cards]

        def command(uow: UnitOfWork) -> CardsImported:
            now = self._now()
            product = self._own_product(uow, merchant_id, product_id)
            if product.delivery != "auto":
                raise InvalidState("manual products hold no card stock")
            key = self.keyring.create(merchant_id)
            buckets = self._buckets(uow, product)
            batch: dict[int, list[list[str]]] = {}
            seen: set[str] = set()
            duplicates = 0
            new_ids: list[UUID] = []
            for text in texts:
                fp = card_crypto.fingerprint(key, text)
                index = int(fp[:8], 16) % product.buckets
                if fp in seen or buckets[index].has_fingerprint(fp):
                    duplicates += 1
                    continue
                seen.add(fp)
                card_id = uuid4()
                new_ids.append(card_id)
                sealed = card_crypto.seal(key, text, card_id)
                batch.setdefault(index, []).append([str(card_id), fp, sealed])
            for index, items in batch.items():
                buckets[index].add_cards(items, now)
            stock = sum(b.count_available(now) for b in buckets)
            return CardsImported(len(new_ids), duplicates, stock, new_ids, 0)

        return self._run(command)

    def void_card(self, merchant_id: UUID, product_id: UUID, card_id: UUID, reason: str) -> Done:
        def command(uow: UnitOfWork) -> Done:
            product = self._own_product(uow, merchant_id, product_id)
            for bucket in self._buckets(uow, product):
                if str(card_id) in bucket.cards:
                    bucket.void(str(card_id), reason, self._now())
                    return Done(0)
            raise NotFound("no such card in this product")

        return self._run(command)

    def get_product(self, product_id: UUID) -> ProductView:
        return self._query(lambda uow: self._product_view(uow, product_id))

    def _product_view(self, uow: UnitOfWork, product_id: UUID) -> ProductView:
        product = uow.read(product_id, Product, "product")
        return ProductView(
            product_id=product.id,
            merchant_id=product.merchant_id,
            title=product.title,
            price=product.price,
            delivery=product.delivery,
            stock=self._stock(uow, product, self._now()),
            wholesale=[WholesaleTier(q, p) for q, p in product.wholesale],
            max_per_order=product.max_per_order,
            listed=product.listed,
        )

    # ---------------------------------------------------------------- promoters

    def join_promoter(
        self, name: str, contact: str, referrer_code: str | None = None
    ) -> PromoterJoined:
        def command(uow: UnitOfWork) -> PromoterJoined:
            now = self._now()
            referrer = None
            if referrer_code is not None:
                claim = uow.find(promoter_code_id(normalise_code(referrer_code)), PromoterCode)
                if claim is None:
                    raise UnknownReferrer("no promoter has this referrer code")
                referrer = uow.get(claim.promoter_id, Promoter, "promoter")
            secret = new_secret()
            code = new_code()
            promoter = Promoter.join(name, contact, code, hash_secret(secret), referrer, now)
            # A taken code collides on save; the retry draws a new one.
            uow.add(promoter, PromoterCode.claim(code, promoter.id, now))
            token = compose_token("pt", promoter.id, secret)
            return PromoterJoined(promoter.id, code, token, 0)

        return self._run(command)

    def authenticate_promoter(self, token: str) -> UUID:
        promoter, secret = self._bearer("pt", token, Promoter)
        if promoter is None or not matches(secret, promoter.token_hash):
            raise Unauthorized("unknown promoter token")
        return promoter.id

    def get_promoter(self, promoter_id: UUID) -> Promoter:
        return self._query(lambda uow: uow.get(promoter_id, Promoter, "promoter"))

    def request_withdrawal(self, promoter_id: UUID, amount: int) -> WithdrawalRequested:
        def command(uow: UnitOfWork) -> WithdrawalRequested:
            now = self._now()
            promoter = uow.get(promoter_id, Promoter, "promoter")
            withdrawal_id = promoter.withdraw(amount, now)
            uow.add(
                Posting.record(
                    "withdrawal",
                    str(withdrawal_id),
                    None,
                    ledger.withdrawal(promoter_id, amount),
                    now,
                )
            )
            return WithdrawalRequested(withdrawal_id, 0)

        return self._run(command)

    # ------------------------------------------------------------------- orders

    def place_order(
        self,
        product_id: UUID,
        quantity: int,
        contact: str,
        promoter_code: str | None = None,
        idempotency_key: str | None = None,
    ) -> OrderPlaced:
        request = self._order_request(idempotency_key)

        def command(uow: UnitOfWork) -> OrderPlaced:
            now = self._now()
            # A key is new but for a retry, which is found here or by the read check.
            if (
                request is not None
                and (earlier := uow.peek(request.order_id, Order, likely_new=True)) is not None
            ):
                return self._replayed_order(earlier, request, product_id, quantity, contact)
            product = uow.read(product_id, Product, "product")
            unit = product.quote(quantity)
            merchant = uow.read(product.merchant_id, Merchant, "merchant")
            merchant.check_can_sell()
            merchant.check_order_quantity(quantity)  # a restricted merchant's lower limit
            self._check_buyer_allowed(uow, product.merchant_id, contact)
            chain: list[UUID] = []
            if promoter_code:
                claim = uow.peek(promoter_code_id(normalise_code(promoter_code)), PromoterCode)
                if claim is None:
                    raise UnknownPromoter("no promoter has this code")
                sharer = uow.read(claim.promoter_id, Promoter, "promoter")
                chain = [sharer.id] + ([sharer.referrer_id] if sharer.referrer_id else [])
            order_id = request.order_id if request is not None else uuid4()
            expires_at = now + self.settings.order_ttl
            reservation: list[list[Any]] = []
            if product.delivery == "auto":
                if merchant.shredded:
                    # Its cards can no longer be read by anyone: selling one would sell nothing.
                    raise ProductUnavailable("this merchant's cards have been shredded")
                reservation = self._reserve(uow, product, order_id, quantity, expires_at, now)
            secret = request.secret if request is not None else new_secret()
            order = Order.place(
                product_id=product.id,
                merchant_id=product.merchant_id,
                delivery=product.delivery,
                quantity=quantity,
                unit_price=unit,
                contact=contact,
                token_hash=hash_secret(secret),
                promoter_chain=chain,
                reservation=reservation,
                expires_at=expires_at,
                at=now,
                order_id=order_id,
            )
            uow.add(order)
            return OrderPlaced(order.id, secret, order.amount, unit, quantity, expires_at, 0)

        return self._run(command)

    def _reserve(
        self,
        uow: UnitOfWork,
        product: Product,
        order_id: UUID,
        quantity: int,
        until: datetime,
        now: datetime,
    ) -> list[list[Any]]:
        # A random bucket order spreads concurrent buyers over the buckets, and buckets
        # another command of this process is working on go last: a collision costs a retry.
        need = quantity
        reservation: list[list[Any]] = []
        order = random.sample(range(product.buckets), product.buckets)
        mine, processes = self.settings.bucket_share
        if processes > 1:
            order.sort(key=lambda i: i % processes != mine)  # stable: still random within each
        every = bucket_ids(product.id, product.buckets)
        ids = [every[i] for i in order]
        with self._busy_lock:
            ids.sort(key=lambda bid: self._busy.get(bid, 0))
        for bid in ids:
            bucket = uow.get(bid, CardBucket, "card bucket")
            taken = bucket.reserve(order_id, need, until, now)
            if taken:
                self._mark_busy(uow, bucket.id)
                reservation.append([bucket.id, taken])
                need -= len(taken)
                if need == 0:
                    return reservation
        raise OutOfStock("not enough cards in stock for this quantity")

    def _buyer_order(self, uow: UnitOfWork, order_id: UUID, token: str | None) -> Order:
        order = uow.find(order_id, Order)
        # A wrong token and a missing order look the same: no existence leak.
        if order is None or not token or not matches(token, order.token_hash):
            raise NotFound("no such order")
        return order

    def _merchant_order(self, uow: UnitOfWork, order_id: UUID, merchant_id: UUID | None) -> Order:
        order = uow.get(order_id, Order, "order")
        if merchant_id is not None and order.merchant_id != merchant_id:
            raise Forbidden("this order belongs to another merchant")
        return order

    def get_order(self, order_id: UUID, token: str | None) -> OrderView:
        return self._query(
            lambda uow: self._order_view(uow, self._buyer_order(uow, order_id, token), reveal=True)
        )

    def get_order_for_merchant(self, order_id: UUID, merchant_id: UUID | None) -> OrderView:
        return self._query(
            lambda uow: self._order_view(uow, self._merchant_order(uow, order_id, merchant_id), reveal=False)
        )

    def _card_key(self, uow: UnitOfWork, merchant_id: UUID) -> bytes | None:
        """The merchant's card key; None once shredded.

        Buyers read their orders far more often than anything changes a key, so a key is
        read from the keyring once per process, and only where every read is checked
        against the store: a shred is recorded on the merchant before the key is deleted,
        so a merchant read as not shredded here is either still so when the read is
        checked, or the read is stale and the query runs again and sees the shred.
        """
        if not self._loads.checks_reads:
            return self.keyring.get(merchant_id)
        if uow.read(merchant_id, Merchant, "merchant").shredded:
            return None
        key = self._card_keys.get(merchant_id)
        if key is None:
            key = self.keyring.get(merchant_id)
            if key is not None:
                self._card_keys[merchant_id] = key
        return key

    def _order_view(self, uow: UnitOfWork, order: Order, *, reveal: bool) -> OrderView:
        cards: list[str] | None = None
        if reveal and order.status == DELIVERED and order.delivery == "auto":
            key = self._card_key(uow, order.merchant_id)
            cards = (
                [card_crypto.unseal(key, sealed, UUID(cid)) for cid, sealed in order.cards]
                if key is not None
                else []
            )
        return OrderView(
            order_id=order.id,
            product_id=order.product_id,
            merchant_id=order.merchant_id,
            status=order.status,
            amount=order.amount,
            unit_price=order.unit_price,
            quantity=order.quantity,
            placed_at=order.created_on,
            expires_at=order.expires_at,
            cards=cards,
            content=order.content if reveal else None,
            rating=order.rating,
            disputed=order.disputed,
        )

    def record_payment(
        self, provider: str, order_id: UUID, txn_id: str, amount: int
    ) -> PaymentResult:
        """A provider says it took ``amount`` for the order. Verify the signature first."""
        if not txn_id or len(txn_id) > 128:
            raise InvalidInput("a txn id has 1 to 128 characters")

        def command(uow: UnitOfWork) -> PaymentResult:
            now = self._now()
            # The payment first: once it is seen, the order loaded next is at least as new
            # as the command that recorded it, so a duplicate reports the current status.
            # A txn id is new but for a provider's retry, found here or by the read check.
            earlier = uow.peek(payment_id(provider, txn_id), Payment, likely_new=True)
            order = uow.get(order_id, Order, "order")
            # A txn seen before is a duplicate whatever else it says: the provider is
            # retrying, and a retry changes nothing.
            if earlier is not None:
                if earlier.order_id != order.id:
                    raise DuplicateTxn("this txn id already paid another order")
                return PaymentResult(order.id, order.status, True, 0)
            if amount != order.amount:
                raise AmountMismatch("the amount paid is not the order's amount")
            if not order.is_open():
                self._return_payment(uow, provider, txn_id, order, now)
                return PaymentResult(order.id, order.status, False, 0)
            if order.delivery == "auto":
                cards = self._claim_cards(uow, order, now)
                if cards is None:
                    self._pay(uow, provider, txn_id, order, now, honoured=False)
                    order.refund("no cards left when the payment arrived", "system", now)
                    self._release_cards(uow, order, now)
                    return PaymentResult(order.id, order.status, False, 0)
                self._pay(uow, provider, txn_id, order, now, honoured=True)
                order.deliver(cards, None, now)
            else:
                self._pay(uow, provider, txn_id, order, now, honoured=True)
            return PaymentResult(order.id, order.status, False, 0)

        return self._run(command)

    def _pay(
        self,
        uow: UnitOfWork,
        provider: str,
        txn_id: str,
        order: Order,
        now: datetime,
        *,
        honoured: bool,
    ) -> None:
        merchant = uow.read(order.merchant_id, Merchant, "merchant")
        commissions = (
            commissions_for(order.amount, order.promoter_chain, self._sharer_level(uow, order))
            if honoured
            else []
        )
        order.record_payment(
            provider,
            txn_id,
            order.amount,
            merchant.fee_rate_bps,
            [[c.promoter_id, c.level, c.amount] for c in commissions],
            now,
            honoured=honoured,
        )
        ref = str(order.id)
        if honoured:
            entries = ledger.payment_split(
                order.amount, merchant.fee_rate_bps, merchant.id, commissions
            )
            uow.add(
                Payment.receive(provider, txn_id, order.id, order.amount, APPLIED, now),
                Posting.record("payment", ref, order.id, entries, now),
            )
        else:
            self._return_payment(uow, provider, txn_id, order, now)

    def _return_payment(
        self, uow: UnitOfWork, provider: str, txn_id: str, order: Order, now: datetime
    ) -> None:
        """A payment the order cannot honour: record it and send it back."""
        ref = f"{provider}/{txn_id}"
        uow.add(
            Payment.receive(provider, txn_id, order.id, order.amount, RETURNED, now),
            Posting.record("unmatched", ref, order.id, ledger.unmatched_payment(order.amount), now),
            Posting.record("return", ref, order.id, ledger.returned_payment(order.amount), now),
        )

    def _claim_cards(self, uow: UnitOfWork, order: Order, now: datetime) -> list[list[str]] | None:
        """Claim the order's cards; a late payment may take others. None when too few are left."""
        held: list[tuple[CardBucket, list[str]]] = []
        for bid, ids in order.reservation:
            bucket = uow.get(UUID(str(bid)), CardBucket, "card bucket")
            still = bucket.reserved_for(order.id, list(ids))
            if still:
                self._mark_busy(uow, bucket.id)
                held.append((bucket, still))
        missing = order.quantity - sum(len(ids) for _, ids in held)
        extra: list[tuple[CardBucket, list[str]]] = []
        if missing > 0:
            held_ids = {cid for _, ids in held for cid in ids}
            product = uow.read(order.product_id, Product, "product")
            for bucket in self._buckets(uow, product):
                # This order's own lapsed cards count as available: look past them.
                offered = bucket.available(now, missing + len(held_ids))
                free = [c for c in offered if c not in held_ids][:missing]
                if free:
                    extra.append((bucket, free))
                    missing -= len(free)
                if missing == 0:
                    break
            if missing > 0:
                return None
        delivered: list[list[str]] = []
        for bucket, ids in held:
            bucket.claim(order.id, ids, now)
            delivered.extend([cid, bucket.sealed(cid)] for cid in ids)
        for bucket, ids in extra:
            bucket.reserve_these(order.id, ids, now)
            bucket.claim(order.id, ids, now)
            delivered.extend([cid, bucket.sealed(cid)] for cid in ids)
        return delivered

    def deliver_manual(self, merchant_id: UUID, order_id: UUID, content: str) -> Done:
        def command(uow: UnitOfWork) -> Done:
            order = self._merchant_order(uow, order_id, merchant_id)
            if order.delivery != "manual":
                raise InvalidState("auto-delivered orders receive their cards at payment")
            order.deliver([], content, self._now())
            return Done(0, status=order.status)

        return self._run(command)

    def review_order(self, order_id: UUID, token: str | None, rating: int, comment: str) -> Done:
        def command(uow: UnitOfWork) -> Done:
            self._buyer_order(uow, order_id, token).review(rating, comment, self._now())
            return Done(0)

        return self._run(command)

    def dispute_order(self, order_id: UUID, token: str | None, reason: str) -> Done:
        def command(uow: UnitOfWork) -> Done:
            self._buyer_order(uow, order_id, token).dispute(reason, self._now())
            return Done(0)

        return self._run(command)

    def resolve_dispute(self, merchant_id: UUID | None, order_id: UUID, resolution: str) -> Done:
        def command(uow: UnitOfWork) -> Done:
            order = self._merchant_order(uow, order_id, merchant_id)
            order.resolve_dispute(resolution, self._now())
            return Done(0)

        return self._run(command)

    def refund_order(self, order_id: UUID, reason: str, merchant_id: UUID | None) -> Done:
        """Refund a paid order; ``merchant_id`` None means an admin did it."""

        def command(uow: UnitOfWork) -> Done:
            now = self._now()
            order = self._merchant_order(uow, order_id, merchant_id)
            by = "admin" if merchant_id is None else "merchant"
            order.refund(reason, by, now)
            payment = uow.get(posting_id("payment", str(order.id)), Posting, "payment posting")
            entries = ledger.refund_split(
                payment.entries, order.commissions_settled, order.merchant_id
            )
            uow.add(Posting.record("refund", str(order.id), order.id, entries, now))
            return Done(0, status=order.status)

        return self._run(command)

    # --------------------------------------------------------- process managers

    def expire_order(self, order_id: UUID) -> Done:
        """Expire a pending order past its deadline and release its cards (idempotent)."""

        def command(uow: UnitOfWork) -> Done:
            now = self._now()
            order = uow.get(order_id, Order, "order")
            if order.status != PENDING or now < order.expires_at:
                return Done(0, status=order.status)
            order.expire(now)
            self._release_cards(uow, order, now)
            return Done(0, status=order.status)

        return self._run(command)

    def _release_cards(self, uow: UnitOfWork, order: Order, now: datetime) -> None:
        """Give back whatever cards are still reserved for an order that will not take them."""
        for bid, ids in order.reservation:
            uow.get(UUID(str(bid)), CardBucket, "card bucket").release(order.id, list(ids), now)

    def settle_commissions(self, order_id: UUID) -> Done:
        """Make an order's commissions available once its after-sales window closed."""

        def command(uow: UnitOfWork) -> Done:
            now = self._now()
            order = uow.get(order_id, Order, "order")
            if (
                order.status not in (PAID, DELIVERED)
                or order.commissions_settled
                or not order.commissions
                or order.paid_at is None
                or now < order.paid_at + self.settings.after_sales_window
            ):
                return Done(0, status=order.status)
            order.settle_commissions(now)
            settled = [
                Commission(UUID(str(promoter_id)), int(level), int(amount))
                for promoter_id, level, amount in order.commissions
            ]
            for c in settled:
                uow.get(c.promoter_id, Promoter, "promoter").credit(order.id, c.level, c.amount, now)
            entries = ledger.settlement(settled)
            uow.add(Posting.record("settlement", str(order.id), order.id, entries, now))
            return Done(0, status=order.status)

        return self._run(command)

    # ---------------------------------------------------------- tiers and levels

    def evaluate_merchant(
        self,
        merchant_id: UUID,
        figures: Figures,
        trigger: str,
        scheduled_for: datetime | None = None,
        policy: TieringPolicy = DEFAULT_POLICY,
    ) -> TierEvaluation:
        """Score a merchant from its 30-day figures and apply the tier rules
        (domain.tiering). A repeat of an evaluation already recorded changes nothing."""

        def command(uow: UnitOfWork) -> TierEvaluation:
            now = self._now()
            merchant = uow.get(merchant_id, Merchant, "merchant")
            state = state_of(merchant, day_of(now))
            old = merchant.tier
            if not is_due(state, trigger, scheduled_for, now):
                last, band = merchant.last_score or 0.0, merchant.last_band or old
                return TierEvaluation(merchant_id, False, last, band, old, old, "not due", 0)
            result = score_merchant(figures, merchant.violations)
            outcome = evaluation_outcome(state, result.score, now, policy)
            rows = result.as_rows()
            merchant.record_evaluation(result.score, outcome.band, rows, trigger, scheduled_for, now)
            self._apply_tier_outcome(merchant, outcome, result.score, rows, policy, now)
            return TierEvaluation(
                merchant_id, True, result.score, outcome.band, old, merchant.tier, outcome.reason, 0
            )

        return self._run(command)

    def file_appeal(
        self, merchant_id: UUID, reason: str, policy: TieringPolicy = DEFAULT_POLICY
    ) -> AppealFiled:
        """Record a merchant's appeal; the tiering process re-evaluates it."""

        def command(uow: UnitOfWork) -> AppealFiled:
            merchant = uow.get(merchant_id, Merchant, "merchant")
            return AppealFiled(merchant.file_appeal(reason, self._now(), policy.appeal_cooldown), 0)

        return self._run(command)

    def decide_appeal(
        self, merchant_id: UUID, figures: Figures, policy: TieringPolicy = DEFAULT_POLICY
    ) -> TierEvaluation:
        """Decide the merchant's open appeal on a fresh score; none open changes nothing."""

        def command(uow: UnitOfWork) -> TierEvaluation:
            now = self._now()
            merchant = uow.get(merchant_id, Merchant, "merchant")
            old = merchant.tier
            if merchant.open_appeal is None:
                return TierEvaluation(merchant_id, False, 0.0, old, old, old, "no open appeal", 0)
            result = score_merchant(figures, merchant.violations)
            outcome = appeal_outcome(state_of(merchant, day_of(now)), result.score)
            rows = result.as_rows()
            upheld = outcome.new_tier is not None or outcome.lift
            merchant.decide_appeal(
                UPHELD if upheld else REJECTED, result.score, outcome.band, rows, outcome.reason, now
            )
            self._apply_tier_outcome(merchant, outcome, result.score, rows, policy, now)
            return TierEvaluation(
                merchant_id, True, result.score, outcome.band, old, merchant.tier, outcome.reason, 0
            )

        return self._run(command)

    @staticmethod
    def _apply_tier_outcome(
        merchant: Merchant,
        outcome: Outcome,
        score: float,
        rows: list[list[Any]],
        policy: TieringPolicy,
        now: datetime,
    ) -> None:
        if outcome.new_tier is not None:
            merchant.change_tier(outcome.new_tier, score, outcome.reason, now, rows)
            # The fee table follows the tier; payments from now on pay the new rate.
            merchant.change_fee_rate(fee_rate_for(outcome.new_tier), f"tier {outcome.new_tier}", now)
        if outcome.end_rectification is not None:
            merchant.end_rectification(outcome.end_rectification, score, now)
        if outcome.start_rectification is not None:
            merchant.start_rectification(outcome.start_rectification, score, now)
        if outcome.restrict:
            merchant.limit_orders(policy.restricted_order_limit, outcome.reason, now)
            merchant.hold_withdrawals(outcome.reason, now)
        if outcome.lift:
            merchant.limit_orders(None, outcome.reason, now)
            merchant.release_withdrawals(outcome.reason, now)

    def set_promoter_level(self, promoter_id: UUID, referred_sales: int) -> Done:
        """Move a promoter to the level its cumulative referred sales earn (idempotent)."""

        def command(uow: UnitOfWork) -> Done:
            promoter = uow.get(promoter_id, Promoter, "promoter")
            promoter.change_level(level_for(referred_sales), referred_sales, self._now())
            return Done(0)

        return self._run(command)

    @staticmethod
    def _sharer_level(uow: UnitOfWork, order: Order) -> int:
        """The promoter level of the order's sharer now: what its commission is paid at."""
        if not order.promoter_chain:
            return BASE_LEVEL
        return uow.read(order.promoter_chain[0], Promoter, "promoter").level

    # ------------------------------------------- risk control: blacklist, idempotency

    def blacklist_buyer(
        self, merchant_id: UUID | None, contact: str, reason: str, by: str = "admin"
    ) -> BlacklistChanged:
        """Refuse a buyer's orders: on a merchant's list for its products, None for the platform's.
        ``by`` is who did it: "merchant" or "admin"."""

        def command(uow: UnitOfWork) -> BlacklistChanged:
            now = self._now()
            added = self._blacklist(uow, merchant_id, now).add(contact, reason, by, now)
            return BlacklistChanged(normalise_contact(contact), added, 0)

        return self._run(command)

    def unblacklist_buyer(
        self, merchant_id: UUID | None, contact: str, by: str = "admin"
    ) -> BlacklistChanged:
        """Accept a buyer's orders again; None names the platform's list."""

        def command(uow: UnitOfWork) -> BlacklistChanged:
            blacklist = uow.find(blacklist_id(merchant_id), Blacklist)
            removed = blacklist is not None and blacklist.remove(contact, by, self._now())
            return BlacklistChanged(normalise_contact(contact), removed, 0)

        return self._run(command)

    def get_blacklist(self, merchant_id: UUID | None) -> BlacklistView:
        """A merchant's list (None: the platform's), read from the aggregate itself."""
        if merchant_id is not None:
            self.get_merchant(merchant_id)  # NotFound for a merchant that does not exist

        def query(uow: UnitOfWork) -> BlacklistView:
            blacklist = uow.peek(blacklist_id(merchant_id), Blacklist)
            entries = sorted(blacklist.entries.values(), key=lambda e: e.contact) if blacklist else []
            return BlacklistView(merchant_id, entries, 0)

        # The position comes with the check of what was read: the entries are that new.
        return self._query(query)

    def _blacklist(self, uow: UnitOfWork, merchant_id: UUID | None, now: datetime) -> Blacklist:
        if merchant_id is not None:
            uow.read(merchant_id, Merchant, "merchant")
        blacklist = uow.find(blacklist_id(merchant_id), Blacklist)
        if blacklist is None:
            # Two first entries at once both open it: the second collides on save and retries.
            blacklist = Blacklist.open(merchant_id, now)
            uow.add(blacklist)
        return blacklist

    @staticmethod
    def _check_buyer_allowed(uow: UnitOfWork, merchant_id: UUID, contact: str) -> None:
        for scope in (None, merchant_id):
            blacklist = uow.peek(blacklist_id(scope), Blacklist)
            if blacklist is not None and blacklist.refuses(contact):
                raise BuyerBlacklisted("orders from this contact are refused")

    @cached_property
    def _order_token_key(self) -> bytes:
        # Outside the event store like the card keys; made once, shared by every process.
        return self.keyring.create(TOKEN_KEY_OWNER)

    def _order_request(self, idempotency_key: str | None) -> OrderRequest | None:
        if idempotency_key is None:
            return None
        return order_request(idempotency_key, self._order_token_key)

    @staticmethod
    def _replayed_order(
        order: Order, request: OrderRequest, product_id: UUID, quantity: int, contact: str
    ) -> OrderPlaced:
        """The answer of the placement this key made; the same key with another request is refused."""
        same = (
            order.product_id == product_id
            and order.quantity == quantity
            and normalise_contact(order.contact) == normalise_contact(contact)
        )
        if not same:
            raise IdempotencyKeyReused("this Idempotency-Key already placed a different order")
        return OrderPlaced(
            order.id, request.secret, order.amount, order.unit_price, order.quantity, order.expires_at, 0
        )


def _with_position(result: R, position: int) -> R:
    if hasattr(result, "position"):
        return replace(result, position=position)  # type: ignore[type-var]
    return result
