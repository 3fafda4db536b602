"""Operational endpoints: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics`` (Prometheus).

``/readyz`` is 200 only when the memory store answers a query and at least one chat target is usable
(a router's targets by their breaker state, an HTTP upstream by listing its models, the in-process engine
by its model file); otherwise 503 with what failed. ``/metrics`` needs an API key when keys are
configured (it names keys and models).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psutil
from fastapi import APIRouter, Request
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.responses import PlainTextResponse, Response

from mindgate.gateway._responses import JSONBytes
from mindgate.gateway._state import Gateway, gateway_of
from mindgate.providers._base import ChatModel

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


def router_metrics(models: dict[str, ChatModel]) -> list[Metric]:
    """Per-target series of every router: breaker state, requests, successes, errors by kind, and
    fallbacks (answers served by a target after the chain's first)."""
    target = ["chain", "target"]
    state = GaugeMetricFamily("mindgate_breaker_state", "Circuit breaker per target: 0 closed, 1 half-open, "
                              "2 open.", labels=target)
    requests = CounterMetricFamily("mindgate_target_requests", "Calls made to each routing target.", labels=target)
    successes = CounterMetricFamily("mindgate_target_successes", "Successful calls per routing target.",
                                    labels=target)
    errors = CounterMetricFamily("mindgate_target_errors", "Failed calls per routing target by kind.",
                                 labels=[*target, "kind"])
    fallbacks = CounterMetricFamily("mindgate_fallbacks", "Answers served by a fallback target (not the chain's "
                                    "first).", labels=["chain"])
    for chain, model in models.items():
        status = getattr(model, "status", None)
        if not callable(status):
            continue
        rows = status()
        for row in rows:
            names = [chain, row["name"]]
            state.add_metric(names, _STATES.get(row["state"], -1))
            requests.add_metric(names, row["requests"])
            successes.add_metric(names, row["successes"])
            for kind, count in sorted(row.get("errors", {}).items()):
                errors.add_metric([*names, kind], count)
        fallbacks.add_metric([chain], sum(row["successes"] for row in rows[1:]))
    return [state, requests, successes, errors, fallbacks]


def _extra_metrics(gateway: Gateway) -> list[Metric]:
    pending = gateway.writer.pending if gateway.writer is not None else 0
    return [*router_metrics(gateway.targets.all()),
            GaugeMetricFamily("mindgate_process_resident_memory_bytes", "Resident memory of the gateway process.",
                              _process.memory_info().rss),
            GaugeMetricFamily("mindgate_memory_write_queue", "Turns waiting to be remembered.", pending)]


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    gateway = gateway_of(request)
    gateway.authenticate(request)
    return PlainTextResponse(gateway.metrics.render(_extra_metrics(gateway)),
                             media_type="text/plain; version=0.0.4; charset=utf-8")
