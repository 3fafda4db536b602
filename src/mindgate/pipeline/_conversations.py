"""Stored responses: the conversation state behind ``previous_response_id`` and ``GET /v1/responses/{id}``.

Responses live in the memory store (same database, migrations and transactions as memories). Each is
owned by the user its request acted for (None when it named none) and is visible only to requests acting
for that same owner: a key bound to user A never reads B's responses, and a request that names no user
sees only responses that named none. Another owner's response is reported exactly like a missing one.
Expired responses (``gateway.response_retention_days``) are invisible at once and deleted in the
background, at most every ``PURGE_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from mindgate.errors import MindgateError, NotFoundError
from mindgate.memory.stores._base import MemoryStore, StoredResponse

log = logging.getLogger("mindgate.pipeline")
PURGE_INTERVAL = 3600.0


class ResponseLog:
    """Stored responses over ``store`` with a retention of ``retention_days`` (None: forever)."""

    def __init__(self, store: MemoryStore, retention_days: float | None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.retention = retention_days * 86400.0 if retention_days is not None else None
        self.clock = clock
        self._purged = 0.0
        self._purge: asyncio.Task[None] | None = None

    async def save(self, response: dict[str, Any], owner: str | None, input_items: list[dict[str, Any]],
                   context: list[dict[str, Any]]) -> None:
        now = self.clock()
        record = StoredResponse(str(response["id"]), owner, now,
                                now + self.retention if self.retention is not None else None,
                                response, input_items, context)
        await asyncio.to_thread(self.store.put_response, record)
        if self.retention is not None and now - self._purged >= PURGE_INTERVAL and \
                (self._purge is None or self._purge.done()):
            self._purged = now
            self._purge = asyncio.get_running_loop().create_task(self._purge_expired(now))

    async def _purge_expired(self, now: float) -> None:
        try:
            purged = await asyncio.to_thread(self.store.purge_responses, now)
        except MindgateError as exc:  # the next save retries; expired rows are invisible meanwhile
            log.warning("deleting expired stored responses failed: %s", exc)
            return
        if purged:
            log.info("deleted %d expired stored response(s)", purged)

    async def load(self, response_id: str, owner: str | None) -> StoredResponse:
        """The stored response for this owner; :class:`NotFoundError` (404) when missing, expired or not
        the owner's."""
        found = await asyncio.to_thread(self.store.get_response, response_id, self.clock())
        if found is None or found.owner != owner:
            raise NotFoundError(f"no stored response {response_id!r} for this caller",
                                hint="responses are kept only with store: true, for the user that created "
                                     f"them, for {self._kept()}")
        return found

    async def delete(self, response_id: str, owner: str | None) -> None:
        await self.load(response_id, owner)
        await asyncio.to_thread(self.store.delete_response, response_id)

    def _kept(self) -> str:
        return "ever" if self.retention is None else f"{self.retention / 86400:g} day(s)"

    async def aclose(self) -> None:
        if self._purge is not None and not self._purge.done():
            await asyncio.gather(self._purge, return_exceptions=True)
