"""The one place where errors become HTTP answers: `{"error": code, "detail": sentence}`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from eventsourcing import persistence
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain import exceptions as domain

log = logging.getLogger("kami.api")

# Walked along each error's MRO, so a subclass (OverLimit, AlreadyReviewed...) takes
# its parent's status unless it is listed itself. Its code stays its own.
STATUS_BY_ERROR: dict[type[domain.KamiError], int] = {
    domain.InvalidInput: 422,
    domain.NotFound: 404,
    domain.Unauthorized: 401,
    domain.Forbidden: 403,
    domain.OutOfStock: 409,
    domain.DuplicateTxn: 409,
    domain.InvalidState: 409,
    domain.InsufficientBalance: 409,
    domain.BadSignature: 400,
    domain.AmountMismatch: 400,
    domain.Busy: 503,
    domain.ProjectionLagging: 503,
    domain.RateLimited: 429,
}

# The store is unreachable or its pool is exhausted: nothing was written, retrying is safe.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,  # includes psycopg_pool.PoolTimeout
    psycopg.InterfaceError,
    persistence.OperationalError,  # includes ConnectionUnavailableError
    persistence.InterfaceError,
)

STATUS_PHRASES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


class ErrorOut(BaseModel):
    """A refused request: a stable machine code and a sentence for a person."""

    error: str
    detail: str


class FieldError(BaseModel):
    """One problem in the request: where it is and what is wrong."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(ErrorOut):
    """Malformed input: the fields at fault."""

    errors: list[FieldError] = []


def status_for(error: domain.KamiError) -> int:
    """The HTTP status of a domain error; an unmapped one is a plain client error."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def error_body(code: str, detail: str) -> dict[str, Any]:
    """The contract's error body."""
    return {"error": code, "detail": detail}


def field_errors(errors: Any) -> list[dict[str, Any]]:
    """Pydantic's errors without their `input` and `ctx`, which may echo secrets or objects."""
    return [
        {
            "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


def validation_response(errors: Any) -> JSONResponse:
    """422 for input that does not fit the request model (malformed JSON included)."""
    items = field_errors(errors)
    first = items[0] if items else None
    if first is None:
        detail = "the request is malformed"
    elif first["type"] == "json_invalid":
        detail = "the request body is not valid JSON"
    else:
        detail = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    body = error_body("invalid_input", detail) | {"errors": items}
    return JSONResponse(status_code=422, content=body)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, domain.KamiError)
    status = status_for(exc)
    headers = {"Retry-After": "1"} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, domain.RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    return JSONResponse(status_code=status, content=error_body(exc.code, exc.detail), headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_response(exc.errors())


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        status_code=503,
        content=error_body("unavailable", "the store is unavailable; nothing was changed, please retry"),
        headers={"Retry-After": "1"},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's one 400 is a body it could not decode (bytes that are not UTF-8): that
        # is malformed input, a 422 in the contract (found by schemathesis).
        return validation_response([{"loc": ("body",), "msg": str(exc.detail), "type": "json_invalid"}])
    code = STATUS_PHRASES.get(exc.status_code, "http_error")
    return JSONResponse(
        status_code=exc.status_code,
        content=error_body(code, str(exc.detail)),
        headers=getattr(exc, "headers", None),
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log, never to the client.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(status_code=500, content=error_body("internal", "an unexpected error occurred"))


ErrorHandler = Callable[[Request, Exception], Awaitable[JSONResponse]]

HANDLERS: dict[type[Exception], ErrorHandler] = {
    domain.KamiError: _domain_error,
    RequestValidationError: _validation_error,
    StarletteHTTPException: _http_error,
    **dict.fromkeys(UNAVAILABLE_ERRORS, _unavailable),
    Exception: _unexpected,
}


def install_error_handlers(app: FastAPI) -> None:
    """Register every mapping above on the app."""
    for error, handler in HANDLERS.items():
        app.add_exception_handler(error, handler)


async def exception_response(request: Request, exc: Exception) -> JSONResponse:
    """The answer the app's handlers give ``exc``, for code outside FastAPI (api.hot).

    The handler is looked up along the error's MRO, as Starlette does.
    """
    for cls in type(exc).__mro__:
        handler = HANDLERS.get(cls)
        if handler is not None:
            return await handler(request, exc)
    raise exc  # unreachable: Exception is in HANDLERS


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the errors a route may answer."""
    described = {
        400: "Bad signature or amount mismatch (`bad_signature`, `amount_mismatch`).",
        401: "Missing or bad credentials (`unauthorized`).",
        403: "Valid credentials that may not do this (`forbidden`).",
        404: "No such resource, or a wrong buyer token (`not_found`).",
        409: "The resource's state refuses the command "
        "(`out_of_stock`, `invalid_state`, `insufficient_balance`, ...).",
        422: "Malformed or invalid input (`invalid_input`, `over_limit`, `unknown_referrer`, ...).",
        503: "Contention, an unreachable store or a lagging view "
        "(`busy`, `unavailable`, `projection_lagging`); safe to retry.",
    }
    out: dict[int | str, dict[str, Any]] = {}
    for status in (*statuses, 503):
        model = ValidationErrorOut if status == 422 else ErrorOut
        out[status] = {"model": model, "description": described[status]}
    return out
