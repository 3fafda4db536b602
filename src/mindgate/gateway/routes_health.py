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

from mindgate.gateway.observability import labels
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
    """Why ``model`` cannot serve now, or None when it can. A router probes its targets (closing or
    opening their breakers) and is usable while any target's breaker is not open."""
    probe = getattr(model, "ahealth_check", None)
    if callable(probe) and hasattr(model, "status"):
        problem = await _check(probe())
        rows = model.status()
        if any(row.get("state") != "open" for row in rows):
            return None
        return problem or "; ".join(f"{row['name']}: {row.get('last_error') or row['state']}" for row in rows)
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


_STATES = {"closed": 0, "half_open": 1, "open": 2}


def router_metrics(models: dict[str, ChatModel]) -> list[str]:
    """Per-target series of every router: breaker state, requests, successes, errors by kind, and
    fallbacks (answers served by a target after the chain's first)."""
    state, requests, successes, errors, fallbacks = [], [], [], [], []
    for chain, model in models.items():
        status = getattr(model, "status", None)
        if not callable(status):
            continue
        rows = status()
        for row in rows:
            target = labels(chain=chain, target=row["name"])
            state.append((target, _STATES.get(row["state"], -1)))
            requests.append((target, row["requests"]))
            successes.append((target, row["successes"]))
            for kind, count in sorted(row.get("errors", {}).items()):
                errors.append((labels(chain=chain, target=row["name"], kind=kind), count))
        fallbacks.append((labels(chain=chain), sum(row["successes"] for row in rows[1:])))
    out = _series("mindgate_breaker_state", "gauge", "Circuit breaker per target: 0 closed, 1 half-open, 2 open.",
                  state)
    out += _series("mindgate_target_requests_total", "counter", "Calls made to each routing target.", requests)
    out += _series("mindgate_target_successes_total", "counter", "Successful calls per routing target.", successes)
    out += _series("mindgate_target_errors_total", "counter", "Failed calls per routing target by kind.", errors)
    out += _series("mindgate_fallbacks_total", "counter", "Answers served by a fallback target (not the "
                   "chain's first).", fallbacks)
    return out


def _series(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines.extend(f"{name}{labels} {value}" for labels, value in samples)
    return lines


def _extra_metrics(gateway: Gateway) -> list[str]:
    out = router_metrics(gateway.targets.all())
    out += _series("mindgate_process_resident_memory_bytes", "gauge", "Resident memory of the gateway process.",
                   [("", _process.memory_info().rss)])
    pending = gateway.writer.pending if gateway.writer is not None else 0
    out += _series("mindgate_memory_write_queue", "gauge", "Turns waiting to be remembered.", [("", pending)])
    return out


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    gateway = gateway_of(request)
    gateway.authenticate(request)
    return PlainTextResponse(gateway.metrics.render(_extra_metrics(gateway)),
                             media_type="text/plain; version=0.0.4; charset=utf-8")
