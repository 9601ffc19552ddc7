"""One router per resource; `api_router` gathers the write side's routes."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import health, merchants, orders, payments, products, promoters

api_router = APIRouter()
for module in (merchants, products, promoters, orders, payments, health):
    api_router.include_router(module.router)
