"""The OpenAI-compatible HTTP gateway with memory built in: :func:`create_app` builds the ASGI app from a
config, :func:`serve` runs it under uvicorn (what ``mindgate serve`` does). Only HTTP concerns live here;
the request pipeline is :mod:`mindgate.pipeline`."""

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    # Imported on first use so that CLI commands touching one gateway helper do not load the whole app.
    if name == "create_app":
        from mindgate.gateway._app import create_app

        return create_app
    if name == "serve":
        from mindgate.gateway._server import serve

        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
