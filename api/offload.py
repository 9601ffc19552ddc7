"""The thread pool the hot routes hand the Shop's blocking calls to.

A Shop command blocks (on the group commit, on a cache miss), so the event loop hands it
to a thread. FastAPI's way, anyio's ``run_in_threadpool``, cost 50 us of CPU per call
(a capacity limiter, a cancel scope and context lookups around the hand-over) against
16.5 us for asyncio's ``run_in_executor`` on a plain ThreadPoolExecutor, measured with
16 concurrent callers on uvloop; with three calls per order the difference is a few
percent of the API process's CPU, all of it on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

# As many threads as anyio allows by default: each holds one command in flight.
MAX_THREADS = 40


@functools.cache
def _pool() -> ThreadPoolExecutor:
    # One per process, made on first use (threads start as calls need them).
    return ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="kami-api")


async def in_thread(call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``call(*args, **kwargs)`` on the pool, awaited; its exception is raised here."""
    # submit and wrap_future are what run_in_executor does, without its check that the
    # call is not a coroutine function (inspect, on every call) and without a partial.
    return await asyncio.wrap_future(_pool().submit(call, *args, **kwargs))
