"""Payment callback signatures: sandbox HMAC-SHA256 and 易支付 MD5."""

from __future__ import annotations

import hashlib
import hmac

from domain.signatures import (
    epay_signature,
    epay_signature_ok,
    sandbox_signature,
    sandbox_signature_ok,
)

SECRET = "sekret"
BODY = b'{"order_id": "x"}'
# hmac.new(b"sekret", b'{"order_id": "x"}', sha256).hexdigest(), computed once by hand.
BODY_SIGNATURE = "d22e135299c4d4baa9087d9d3471026a6f62185cd3317008bc3800181721f32e"


def test_the_sandbox_signature_is_hex_hmac_sha256_of_the_raw_body() -> None:
    assert sandbox_signature(SECRET, BODY) == BODY_SIGNATURE
    assert sandbox_signature(SECRET, BODY) == hmac.new(b"sekret", BODY, hashlib.sha256).hexdigest()


def test_a_correct_sandbox_signature_is_accepted_in_any_case_and_padding() -> None:
    assert sandbox_signature_ok(SECRET, BODY, BODY_SIGNATURE)
    assert sandbox_signature_ok(SECRET, BODY, f" {BODY_SIGNATURE.upper()} ")


def test_a_wrong_or_missing_sandbox_signature_is_refused() -> None:
    assert not sandbox_signature_ok(SECRET, BODY, None)
    assert not sandbox_signature_ok(SECRET, BODY, "")
    assert not sandbox_signature_ok("other", BODY, BODY_SIGNATURE)
    assert not sandbox_signature_ok(SECRET, BODY + b" ", BODY_SIGNATURE)
    assert not sandbox_signature_ok(SECRET, BODY, BODY_SIGNATURE[:-1] + "0")


EPAY_KEY = "k3y"
EPAY_PARAMS = {
    "pid": "1001",
    "trade_no": "T1",
    "out_trade_no": "abc",
    "type": "alipay",
    "name": "card",
    "money": "9.90",
    "trade_status": "TRADE_SUCCESS",
    "sign_type": "MD5",
}
# md5("money=9.90&name=card&out_trade_no=abc&pid=1001&trade_no=T1&trade_status=TRADE_SUCCESS&type=alipay"
#     + "k3y"): sorted by name, sign and sign_type left out, the key appended.
EPAY_SIGN = "c5125a45fdec5549eddcf22de059bf59"


def test_the_epay_signature_matches_a_hand_computed_example() -> None:
    assert epay_signature(EPAY_PARAMS, EPAY_KEY) == EPAY_SIGN
    text = "money=9.90&name=card&out_trade_no=abc&pid=1001&trade_no=T1&trade_status=TRADE_SUCCESS&type=alipay"
    assert hashlib.md5((text + EPAY_KEY).encode()).hexdigest() == EPAY_SIGN


def test_the_epay_signature_ignores_empty_parameters_and_sign_itself() -> None:
    params = {**EPAY_PARAMS, "param": "", "sign": "whatever", "sign_type": "RSA"}
    assert epay_signature(params, EPAY_KEY) == EPAY_SIGN


def test_a_correct_epay_sign_is_accepted() -> None:
    assert epay_signature_ok({**EPAY_PARAMS, "sign": EPAY_SIGN}, EPAY_KEY)
    assert epay_signature_ok({**EPAY_PARAMS, "sign": EPAY_SIGN.upper()}, EPAY_KEY)


def test_a_tampered_or_missing_epay_sign_is_refused() -> None:
    assert not epay_signature_ok(EPAY_PARAMS, EPAY_KEY)
    assert not epay_signature_ok({**EPAY_PARAMS, "sign": ""}, EPAY_KEY)
    assert not epay_signature_ok({**EPAY_PARAMS, "sign": EPAY_SIGN}, "other")
    assert not epay_signature_ok({**EPAY_PARAMS, "money": "0.01", "sign": EPAY_SIGN}, EPAY_KEY)


def test_a_non_ascii_signature_is_refused_not_an_error() -> None:
    assert not sandbox_signature_ok(SECRET, BODY, "é" * 64)
    assert not epay_signature_ok({**EPAY_PARAMS, "sign": "签名" * 16}, EPAY_KEY)


def test_the_epay_signature_covers_non_ascii_parameters_as_utf8() -> None:
    params = {**EPAY_PARAMS, "name": "游戏点卡"}
    text = (
        "money=9.90&name=游戏点卡&out_trade_no=abc&pid=1001"
        "&trade_no=T1&trade_status=TRADE_SUCCESS&type=alipay"
    )
    sign = hashlib.md5((text + EPAY_KEY).encode()).hexdigest()
    assert epay_signature_ok({**params, "sign": sign}, EPAY_KEY)
