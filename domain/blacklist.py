"""Buyer blacklists (黑名单): contacts that a merchant, or the whole platform, will not sell to.

One Blacklist aggregate per scope, with a deterministic id (a merchant's, or the
platform's), so that the first entry of two concurrent admins collides on save instead
of opening two lists. A buyer is a contact trimmed and lower-cased, as the read models
count buyers, so "Bob@X.com " and "bob@x.com" are one buyer to the list too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.exceptions import InvalidInput

MAX_CONTACT = 200
MAX_REASON = 500
MAX_ENTRIES = 100_000  # keeps one list's state (loaded at every order) bounded
PLATFORM = "platform"


def normalise_contact(contact: str) -> str:
    """The buyer a contact names: trimmed and lower-cased."""
    return contact.strip().lower()


# Every placement looks up two lists (the platform's and the merchant's): a hash each
# time for ids that never change.
@lru_cache(maxsize=4_096)
def blacklist_id(merchant_id: UUID | None) -> UUID:
    """The list of a merchant, or with None the platform's list."""
    scope = PLATFORM if merchant_id is None else str(merchant_id)
    return uuid5(NAMESPACE_URL, f"kami:blacklist/{scope}")


@dataclass(frozen=True)
class Entry:
    contact: str
    reason: str
    by: str
    added_at: datetime


class Blacklist(Aggregate):
    class Opened(Aggregate.Created):
        merchant_id: UUID | None

    class ContactAdded(Aggregate.Event):
        contact: str  # normalised
        reason: str
        by: str  # "merchant" or "admin"

        def apply(self, blacklist: Blacklist) -> None:
            blacklist.entries[self.contact] = Entry(self.contact, self.reason, self.by, self.timestamp)

    class ContactRemoved(Aggregate.Event):
        contact: str
        by: str

        def apply(self, blacklist: Blacklist) -> None:
            blacklist.entries.pop(self.contact, None)

    def __init__(self, merchant_id: UUID | None) -> None:
        self.merchant_id = merchant_id
        self.entries: dict[str, Entry] = {}

    @classmethod
    def open(cls, merchant_id: UUID | None, at: datetime) -> Blacklist:
        return cls._create(cls.Opened, id=blacklist_id(merchant_id), timestamp=at, merchant_id=merchant_id)

    def add(self, contact: str, reason: str, by: str, at: datetime) -> bool:
        """List a buyer; False (and no event) when already listed."""
        key = _checked(contact)
        if len(reason) > MAX_REASON:
            raise InvalidInput(f"a reason has at most {MAX_REASON} characters")
        if key in self.entries:
            return False
        if len(self.entries) >= MAX_ENTRIES:
            raise InvalidInput(f"a blacklist holds at most {MAX_ENTRIES} contacts")
        self.trigger_event(self.ContactAdded, timestamp=at, contact=key, reason=reason, by=by)
        return True

    def remove(self, contact: str, by: str, at: datetime) -> bool:
        """Take a buyer off the list; False (and no event) when not listed."""
        key = _checked(contact)
        if key not in self.entries:
            return False
        self.trigger_event(self.ContactRemoved, timestamp=at, contact=key, by=by)
        return True

    def refuses(self, contact: str) -> bool:
        return normalise_contact(contact) in self.entries


def _checked(contact: str) -> str:
    key = normalise_contact(contact)
    if not key or len(key) > MAX_CONTACT:
        raise InvalidInput(f"a contact has 1 to {MAX_CONTACT} characters")
    return key


@dataclass(frozen=True)
class BlacklistChanged:
    """What an add or remove did: ``changed`` is False when the list already said so."""

    contact: str
    changed: bool
    position: int


@dataclass(frozen=True)
class BlacklistView:
    merchant_id: UUID | None
    entries: list[Entry]
    position: int
