"""The memory REST API (mem0's shapes): ``/v1/memories``.

Every call acts for a scope (``user_id`` / ``agent_id`` / ``run_id``). A key bound to users acts only for
them: naming another user is a 403, and a key bound to exactly one user acts for it when no user is
named. Reads and writes of one memory by id take the scope too; a memory outside it is a 404 (its
existence is not revealed).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from mindgate.errors import InvalidRequestError, NotFoundError
from mindgate.gateway._auth import Principal
from mindgate.gateway._observability import annotate
from mindgate.gateway._on_behalf import on_behalf
from mindgate.gateway._responses import JSONBytes
from mindgate.gateway._schemas import MemoryAddRequest, MemorySearchRequest, MemoryUpdateRequest
from mindgate.gateway._state import Gateway, gateway_of
from mindgate.pipeline._scope import ScopeArgs, scope_args

router = APIRouter(prefix="/v1/memories", tags=["memory"])

UserQ = Annotated[str | None, Query(min_length=1, max_length=256)]
MAX_FILTER_CHARS = 16_384


def _acting(request: Request) -> tuple[Gateway, Principal | None]:
    gateway = gateway_of(request)
    principal = gateway.authenticate(request)
    annotate(request.scope, key=principal.name if principal else None)
    return gateway, principal


def _scope(principal: Principal | None, user_id: str | None, agent_id: str | None,
           run_id: str | None) -> ScopeArgs:
    """The scope arguments for a call, after checking the key may act for the user."""
    if principal is not None and principal.users is not None:
        user_id = user_id or principal.sole_user
        principal.check_user(user_id)
    return scope_args(user_id, agent_id, run_id)


def _filters(raw: str | None) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_FILTER_CHARS:
        raise InvalidRequestError(f"`filters` is {len(raw)} characters; the limit is {MAX_FILTER_CHARS}")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the JSON decoder goes
        raise InvalidRequestError("`filters` must be a JSON object",
                                  hint='e.g. filters={"category": "movies"} (URL-encoded)') from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"`filters` must be a JSON object, not {type(value).__name__}")
    return value


@router.post("")
async def add_memories(body: MemoryAddRequest, request: Request) -> Response:
    """Remember messages (``infer`` extracts facts with the LLM; ``false`` stores them as given)."""
    gateway, principal = _acting(request)
    scope = _scope(principal, body.user_id, body.agent_id, body.run_id)
    llm = None
    if body.infer and principal is not None:  # extraction is a model call made for the key: bound and charged
        llm = on_behalf(gateway, principal, gateway.memory.llm, gateway.memory_model)
    result = await gateway.memory.add(body.message_payload(), metadata=body.metadata, infer=body.infer,
                                      llm=llm, **scope)
    return JSONBytes(result)


@router.get("")
async def list_memories(request: Request, user_id: UserQ = None, agent_id: UserQ = None, run_id: UserQ = None,
                        filters: Annotated[str | None, Query(description="metadata filters as a JSON object")] = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Response:
    """Memories in a scope, newest first, with filters and paging."""
    gateway, principal = _acting(request)
    scope = _scope(principal, user_id, agent_id, run_id)
    result = await gateway.memory.get_all(filters=_filters(filters), limit=limit, offset=offset, **scope)
    return JSONBytes({**result, "limit": limit, "offset": offset})


@router.delete("")
async def delete_all_memories(request: Request, user_id: UserQ = None, agent_id: UserQ = None,
                              run_id: UserQ = None) -> Response:
    """Soft-delete every memory in a scope (history keeps them)."""
    gateway, principal = _acting(request)
    scope = _scope(principal, user_id, agent_id, run_id)
    return JSONBytes(await gateway.memory.delete_all(**scope))


@router.post("/search")
async def search_memories(body: MemorySearchRequest, request: Request) -> Response:
    """Memories relevant to a query (hybrid vector + full-text search), best first."""
    gateway, principal = _acting(request)
    scope = _scope(principal, body.user_id, body.agent_id, body.run_id)
    return JSONBytes(await gateway.memory.search(body.query, filters=body.filters, limit=body.limit,
                                                 threshold=body.threshold, explain=body.explain, rerank=body.rerank,
                                                 reference_time=body.reference_time, **scope))


@router.get("/{memory_id}")
async def get_memory(memory_id: str, request: Request, user_id: UserQ = None, agent_id: UserQ = None,
                     run_id: UserQ = None) -> Response:
    gateway, principal = _acting(request)
    scope = _scope(principal, user_id, agent_id, run_id)
    found = await gateway.memory.get(memory_id, **scope)
    if found is None:
        raise NotFoundError(f"memory {memory_id!r} not found" + (" in this scope" if scope else ""),
                            hint="GET /v1/memories?user_id=... lists valid ids")
    return JSONBytes(found)


@router.put("/{memory_id}")
async def update_memory(memory_id: str, body: MemoryUpdateRequest, request: Request, user_id: UserQ = None,
                        agent_id: UserQ = None, run_id: UserQ = None) -> Response:
    gateway, principal = _acting(request)
    scope = _scope(principal, user_id, agent_id, run_id)
    return JSONBytes(await gateway.memory.update(memory_id, body.new_text, metadata=body.metadata, **scope))


@router.delete("/{memory_id}")
async def delete_memory(memory_id: str, request: Request, user_id: UserQ = None, agent_id: UserQ = None,
                        run_id: UserQ = None) -> Response:
    gateway, principal = _acting(request)
    scope = _scope(principal, user_id, agent_id, run_id)
    return JSONBytes(await gateway.memory.delete(memory_id, **scope))


@router.get("/{memory_id}/history")
async def memory_history(memory_id: str, request: Request, user_id: UserQ = None, agent_id: UserQ = None,
                         run_id: UserQ = None) -> Response:
    """Every change to a memory, oldest first (also after it was deleted); a list, as mem0 returns."""
    gateway, principal = _acting(request)
    scope = _scope(principal, user_id, agent_id, run_id)
    rows = await gateway.memory.history(memory_id, **scope)
    if not rows:
        raise NotFoundError(f"memory {memory_id!r} has no history", hint="check the id")
    return JSONBytes(rows)
