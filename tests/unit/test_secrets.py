"""Bearer secrets: stored as hashes, tokens name their owner."""

from __future__ import annotations

from uuid import uuid4

from domain.secrets import compose_token, hash_secret, matches, new_secret, split_token


def test_a_secret_matches_only_its_own_hash() -> None:
    secret = new_secret()
    stored = hash_secret(secret)
    assert secret not in stored
    assert matches(secret, stored)
    assert not matches(new_secret(), stored)


def test_a_token_splits_back_into_owner_and_secret() -> None:
    owner, secret = uuid4(), new_secret()
    assert split_token("mk", compose_token("mk", owner, secret)) == (owner, secret)


def test_malformed_tokens_do_not_split() -> None:
    owner = uuid4()
    for token in (
        "",
        "mk",
        "mk_",
        f"mk_{owner.hex}",
        f"mk_{owner.hex}_",
        "mk_nothex_abc",
        compose_token("pt", owner, "s"),
    ):
        assert split_token("mk", token) is None
