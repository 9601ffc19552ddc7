"""Card keys are sealed per merchant; fingerprints dedupe without revealing; shredding is final."""

from __future__ import annotations

from uuid import uuid4

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.cards import MAX_CARD_LENGTH, InMemoryKeyring, fingerprint, normalise, seal, unseal
from domain.exceptions import InvalidInput, InvalidState


def key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def test_a_sealed_card_unseals_to_the_same_key() -> None:
    k, card_id = key(), uuid4()
    card = f"GAME-{uuid4().hex}-卡密"
    assert unseal(k, seal(k, card, card_id), card_id) == card


def test_a_sealed_card_does_not_contain_the_plaintext() -> None:
    k, card = key(), f"PLAIN{uuid4().hex}"
    sealed = seal(k, card, uuid4())
    assert card not in sealed
    assert card[5:15] not in sealed


def test_sealing_the_same_card_twice_gives_different_ciphertexts() -> None:
    k, card_id = key(), uuid4()
    assert seal(k, "same", card_id) != seal(k, "same", card_id)


def test_a_sealed_card_is_bound_to_its_card_id() -> None:
    k = key()
    sealed = seal(k, "secret", uuid4())
    with pytest.raises(InvalidTag):
        unseal(k, sealed, uuid4())


def test_another_merchants_key_cannot_unseal() -> None:
    card_id = uuid4()
    sealed = seal(key(), "secret", card_id)
    with pytest.raises(InvalidTag):
        unseal(key(), sealed, card_id)


def test_equal_cards_have_equal_fingerprints_under_one_key() -> None:
    k = key()
    assert fingerprint(k, "ABC-123") == fingerprint(k, "ABC-123")
    assert fingerprint(k, "ABC-123") != fingerprint(k, "ABC-124")


def test_fingerprints_differ_between_merchants_and_hide_the_card() -> None:
    card = "ABC-123"
    assert fingerprint(key(), card) != fingerprint(key(), card)
    assert card not in fingerprint(key(), card)


def test_normalise_strips_whitespace_and_refuses_empty_or_huge_cards() -> None:
    assert normalise("  AB-1 \n") == "AB-1"
    assert normalise("x" * MAX_CARD_LENGTH) == "x" * MAX_CARD_LENGTH
    for bad in ("", "   ", "\n\t", "x" * (MAX_CARD_LENGTH + 1)):
        with pytest.raises(InvalidInput):
            normalise(bad)


def test_a_keyring_gives_one_key_per_merchant() -> None:
    keyring = InMemoryKeyring()
    a, b = uuid4(), uuid4()
    assert keyring.get(a) is None
    first = keyring.create(a)
    assert keyring.create(a) == first
    assert keyring.get(a) == first
    assert keyring.create(b) != first


def test_a_shredded_key_is_gone_and_never_comes_back() -> None:
    keyring = InMemoryKeyring()
    merchant, card_id = uuid4(), uuid4()
    sealed = seal(keyring.create(merchant), "secret", card_id)
    keyring.shred(merchant)
    assert keyring.get(merchant) is None
    with pytest.raises(InvalidState):
        keyring.create(merchant)
    # Nothing else can open the card any more.
    with pytest.raises(InvalidTag):
        unseal(key(), sealed, card_id)


def test_shredding_a_merchant_without_a_key_still_blocks_new_keys() -> None:
    keyring = InMemoryKeyring()
    merchant = uuid4()
    keyring.shred(merchant)
    with pytest.raises(InvalidState):
        keyring.create(merchant)
