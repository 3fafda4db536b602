"""Operational endpoints: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics`` (Prometheus).

``/readyz`` is 200 only when the memory store answers a query and at least one chat target is usable
(a router's targets by their breaker state, an HTTP upstream by listing its models, the in-process engine
by its model file); otherwise 503 with what failed. ``/metrics`` needs an API key when keys are
configured (it names keys and models).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

import psutil
from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from mindgate.gateway.responses import JSONBytes
from mindgate.gateway.state import Gateway, gateway_of
from mindgate.providers.base import ChatModel

router = APIRouter(tags=["operations"])

PROBE_USER = "__mindgate_readyz__"
CHECK_TIMEOUT = 5.0
_process = psutil.Process(os.getpid())


@router.get("/healthz")
async def healthz() -> Response:
    """Liveness: the process answers."""
    return JSONBytes({"status": "ok"})


async def _check(coro: Any) -> str | None:
    """None when ``coro`` finishes in time, else the reason it did not."""
    try:
        await asyncio.wait_for(coro, CHECK_TIMEOUT)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT:.0f}s"
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


async def chat_problem(model: ChatModel) -> str | None:
    """Why ``model`` cannot serve now, or None when it can."""
    status = getattr(model, "status", None)
    if callable(status):
        targets = status().get("targets", [])
        if any(t.get("state") != "open" for t in targets):
            return None
        return "every target's circuit breaker is open"
    client = getattr(model, "client", None)
    if client is not None and hasattr(client, "list_models"):
        return await _check(client.list_models())
    return None


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Readiness: the store answers and at least one chat target is usable."""
    gateway = gateway_of(request)
    problems: dict[str, str] = {}
    store = await _check(gateway.memory.count(user_id=PROBE_USER))
    if store:
        problems["memory"] = store
    chat_issues = await asyncio.gather(*(chat_problem(m) for m in gateway.targets.all().values()))
    if all(chat_issues):
        problems["chat"] = "; ".join(f"{name}: {issue}" for name, issue in
                                     zip(gateway.targets.all(), chat_issues, strict=True))
    if problems:
        return JSONBytes({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONBytes({"status": "ready"})


def _gauge(name: str, help_text: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    lines.extend(f"{name}{labels} {value}" for labels, value in samples)
    return lines


def _extra_metrics(gateway: Gateway) -> list[str]:
    out: list[str] = []
    out += _gauge("mindgate_process_resident_memory_bytes", "Resident memory of the gateway process.",
                  [("", _process.memory_info().rss)])
    pending = gateway.writer.pending if gateway.writer is not None else 0
    out += _gauge("mindgate_memory_write_queue", "Turns waiting to be remembered.", [("", pending)])
    return out


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    gateway = gateway_of(request)
    gateway.authenticate(request)
    return PlainTextResponse(gateway.metrics.render(_extra_metrics(gateway)),
                             media_type="text/plain; version=0.0.4; charset=utf-8")
