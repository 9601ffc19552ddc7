"""Buyer blacklists: contacts normalised, listed once, removable; order ids from idempotency keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from domain.blacklist import Blacklist, blacklist_id, normalise_contact
from domain.exceptions import InvalidInput
from domain.idempotency import order_request

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def replay(events: list[Any]) -> Blacklist:
    blacklist = None
    for event in events:
        blacklist = event.mutate(blacklist)
    assert isinstance(blacklist, Blacklist)
    return blacklist


def test_a_buyer_is_a_contact_trimmed_and_lower_cased() -> None:
    assert normalise_contact("  Bob@Example.COM ") == "bob@example.com"


def test_each_scope_has_one_list_whose_id_is_known_in_advance() -> None:
    merchant = uuid4()
    assert blacklist_id(merchant) == blacklist_id(merchant)
    assert blacklist_id(merchant) != blacklist_id(None) != blacklist_id(uuid4())
    assert Blacklist.open(merchant, T0).id == blacklist_id(merchant)


def test_a_listed_buyer_is_refused_whatever_the_case_and_spaces_of_the_contact() -> None:
    blacklist = Blacklist.open(None, T0)
    assert blacklist.add(" Bob@X.com", "chargebacks", "admin", T0) is True

    replayed = replay(blacklist.collect_events())

    assert replayed.refuses("bob@x.com") and replayed.refuses("BOB@X.COM  ")
    assert not replayed.refuses("alice@x.com")
    entry = replayed.entries["bob@x.com"]
    assert (entry.reason, entry.by, entry.added_at) == ("chargebacks", "admin", T0)


def test_listing_a_listed_buyer_or_removing_an_unlisted_one_records_nothing() -> None:
    blacklist = Blacklist.open(uuid4(), T0)
    blacklist.add("bob@x.com", "", "merchant", T0)
    blacklist.collect_events()

    assert blacklist.add("BOB@x.com", "again", "merchant", T0) is False
    assert blacklist.remove("alice@x.com", "merchant", T0) is False
    assert blacklist.collect_events() == []


def test_a_removed_buyer_may_order_again() -> None:
    blacklist = Blacklist.open(uuid4(), T0)
    blacklist.add("bob@x.com", "", "merchant", T0)
    assert blacklist.remove(" BOB@x.com", "merchant", T0) is True

    assert not replay(blacklist.collect_events()).refuses("bob@x.com")


@pytest.mark.parametrize(("contact", "reason"), [("", ""), ("   ", ""), ("x" * 201, ""), ("a@x", "r" * 501)])
def test_a_blank_or_oversized_entry_is_refused(contact: str, reason: str) -> None:
    with pytest.raises(InvalidInput):
        Blacklist.open(None, T0).add(contact, reason, "admin", T0)


def test_an_idempotency_key_names_one_order_and_one_token() -> None:
    server_key = b"k" * 32
    first, again = order_request("key-1", server_key), order_request("key-1", server_key)

    assert first == again
    assert order_request("key-2", server_key).order_id != first.order_id
    # The token needs the server's key: knowing a client's key is not enough to forge it.
    assert order_request("key-1", b"other" * 8).secret != first.secret
    assert first.order_id == order_request("key-1", b"other" * 8).order_id
    assert len(first.secret) == 32


@pytest.mark.parametrize("key", ["", "with space", "x" * 129, "ключ", "tab\t"])
def test_an_idempotency_key_is_visible_ascii_of_at_most_128_characters(key: str) -> None:
    with pytest.raises(InvalidInput):
        order_request(key, b"k" * 32)
