"""Payment callback signatures: the sandbox HMAC and the 易支付 (epay) MD5 scheme."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def sandbox_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sandbox_signature_ok(secret: str, body: bytes, signature: str | None) -> bool:
    if not signature:
        return False
    # Bytes, not str: compare_digest raises TypeError on a non-ASCII str.
    return hmac.compare_digest(sandbox_signature(secret, body).encode(), signature.strip().lower().encode())


def epay_signature(params: Mapping[str, str], key: str) -> str:
    """MD5 of the non-empty parameters but sign/sign_type, sorted, joined k=v&k=v, plus key."""
    pairs = sorted(
        (k, v) for k, v in params.items() if k not in ("sign", "sign_type") and v not in ("", None)
    )
    text = "&".join(f"{k}={v}" for k, v in pairs) + key
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - the protocol fixes MD5


def epay_signature_ok(params: Mapping[str, str], key: str) -> bool:
    sign = params.get("sign") or ""
    return hmac.compare_digest(epay_signature(params, key).encode(), sign.strip().lower().encode())
