"""Payment provider callbacks: the signed sandbox JSON and the 易支付 (epay) protocol.

Epay answers: the body is `success` once the payment is recorded (a duplicate included)
and `fail` otherwise. Gateways look only at the body and re-send until they read
`success`, so a refusal that no retry can fix (bad sign, wrong amount, unknown order)
answers 200 `fail`, while a transient one (contention, store down) answers 503 `fail`.
Either way the reason's code is in the `X-Kami-Error` header, for logs and operators.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import ValidationError

from api.deps import PaymentKeys, PaymentKeysDep, ShopDep
from api.errors import UNAVAILABLE_ERRORS, error_responses
from api.offload import in_thread
from api.schemas.payments import PaymentOut, SandboxNotification
from domain.exceptions import BadSignature, Busy, InvalidInput, KamiError
from domain.money import parse_yuan
from domain.shop import Shop
from domain.signatures import epay_signature_ok, sandbox_signature_ok

router = APIRouter(prefix="/v1/payments", tags=["payments"])

MAX_CALLBACK_BYTES = 64 * 1024
EPAY_FIELDS = (
    "pid",
    "trade_no",
    "out_trade_no",
    "type",
    "name",
    "money",
    "trade_status",
    "sign",
    "sign_type",
)


async def raw_body(request: Request) -> bytes:
    """The request body exactly as sent: the signature covers these bytes."""
    body = await request.body()
    if len(body) > MAX_CALLBACK_BYTES:
        raise InvalidInput("the callback body is too large")
    return body


async def epay_params(request: Request) -> dict[str, str]:
    """The epay parameters: the query string, and for a POST its urlencoded form on top."""
    params = dict(request.query_params)
    if request.method == "POST":
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await request.body()
        # An oversized form is left unparsed: its sign then fails and the answer is `fail`.
        if media_type == "application/x-www-form-urlencoded" and 0 < len(body) <= MAX_CALLBACK_BYTES:
            # Parsed by hand: Starlette's form parser needs python-multipart for no gain here.
            params.update(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    return params


RawBody = Annotated[bytes, Depends(raw_body)]
EpayParams = Annotated[dict[str, str], Depends(epay_params)]


def _sandbox_openapi() -> dict[str, Any]:
    # The body is read raw (to check its signature), so FastAPI cannot describe it alone.
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SandboxNotification.model_json_schema()}},
        }
    }


@router.post(
    "/notify",
    response_model=PaymentOut,
    responses=error_responses(400, 404, 409, 422),
    openapi_extra=_sandbox_openapi(),
)
async def sandbox_notify(
    body: RawBody,
    shop: ShopDep,
    keys: PaymentKeysDep,
    x_kami_signature: Annotated[
        str | None, Header(description="Hex HMAC-SHA256 of the raw body with the payment secret.")
    ] = None,
) -> PaymentOut:
    """The sandbox provider took a payment: record it, and deliver auto goods at once."""
    return await sandbox_payment(shop, keys, body, x_kami_signature)


async def sandbox_payment(shop: Shop, keys: PaymentKeys, body: bytes, signature: str | None) -> PaymentOut:
    """What ``sandbox_notify`` does with the raw body; api.hot calls it too."""
    # Nothing of an unsigned body is parsed: the signature is checked on the bytes first.
    if not sandbox_signature_ok(keys.sandbox, body, signature):
        raise BadSignature("the X-Kami-Signature header does not sign this body")
    try:
        note = SandboxNotification.model_validate_json(body)
    except ValidationError as error:
        # Located under "body" like every other request body's errors.
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors()]) from None
    # Async with the Shop's blocking call sent to the pool by hand: one hop, where a sync
    # route takes two (the call, then FastAPI's validation of the answer). The signature
    # and the body are checked on the event loop: CPU only, a few microseconds.
    result = await in_thread(shop.record_payment, "sandbox", note.order_id, note.txn_id, note.amount)
    return PaymentOut.model_validate(
        {
            "order_id": result.order_id,
            "status": result.status,
            "duplicate": result.duplicate,
            "position": result.position,
        }
    )


def _epay_openapi(*, form: bool) -> dict[str, Any]:
    params = [
        {
            "name": name,
            "in": "query",
            "required": name not in ("type", "name", "sign_type"),
            "schema": {"type": "string"},
        }
        for name in EPAY_FIELDS
    ]
    if not form:
        return {"parameters": params}
    schema = {"type": "object", "properties": {name: {"type": "string"} for name in EPAY_FIELDS}}
    return {"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": schema}}}}


EPAY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`success` once the payment is recorded (duplicates too); "
        "`fail` for a refusal a retry cannot fix (reason in `X-Kami-Error`).",
        "content": {"text/plain": {"schema": {"type": "string", "enum": ["success", "fail"]}}},
    },
    503: {
        "description": "`fail`: contention or an unreachable store; the gateway's retry will do.",
        "content": {"text/plain": {"schema": {"type": "string", "enum": ["fail"]}}},
    },
}


def _record_epay(params: dict[str, str], shop: Shop, key: str) -> PlainTextResponse:
    try:
        if (params.get("sign_type") or "MD5").upper() != "MD5" or not epay_signature_ok(params, key):
            raise BadSignature("the sign does not match the parameters")
        if params.get("trade_status") != "TRADE_SUCCESS":
            raise InvalidInput("trade_status is not TRADE_SUCCESS")
        try:
            order_id = UUID(params.get("out_trade_no", ""))
        except ValueError:
            raise InvalidInput("out_trade_no is not an order id") from None
        amount = parse_yuan(params.get("money", ""))
        shop.record_payment("epay", order_id, params.get("trade_no", ""), amount)
    except KamiError as error:
        status = 503 if isinstance(error, Busy) else 200
        return PlainTextResponse("fail", status_code=status, headers={"X-Kami-Error": error.code})
    except UNAVAILABLE_ERRORS:
        return PlainTextResponse("fail", status_code=503, headers={"X-Kami-Error": "unavailable"})
    return PlainTextResponse("success")


@router.get(
    "/epay/notify",
    response_class=PlainTextResponse,
    responses=EPAY_RESPONSES,
    openapi_extra=_epay_openapi(form=False),
)
def epay_notify_get(params: EpayParams, shop: ShopDep, keys: PaymentKeysDep) -> PlainTextResponse:
    """易支付 asynchronous notification sent as a GET query string."""
    return _record_epay(params, shop, keys.epay)


@router.post(
    "/epay/notify",
    response_class=PlainTextResponse,
    responses=EPAY_RESPONSES,
    openapi_extra=_epay_openapi(form=True),
)
def epay_notify_post(params: EpayParams, shop: ShopDep, keys: PaymentKeysDep) -> PlainTextResponse:
    """易支付 asynchronous notification sent as a POST form (or query string)."""
    return _record_epay(params, shop, keys.epay)
