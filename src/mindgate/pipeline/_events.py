"""A model's streamed events as the pipeline relays them: the first event awaited before the response starts
(so a failure before it is an ordinary error response), upstream errors counted, and the stream's usage
reported exactly once when it is closed. Subclasses say what an event means (:meth:`UpstreamEvents._seen`)
and how usage is settled (:meth:`UpstreamEvents._settle`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any

from mindgate.errors import MindgateError

if TYPE_CHECKING:
    from mindgate.pipeline._core import Pipeline


def count_upstream_error(pipeline: Pipeline, exc: BaseException) -> None:
    """One upstream failure in the pipeline's counters, by its error code (else its class name)."""
    code = exc.code if isinstance(exc, MindgateError) else None
    pipeline.counters.upstream_errors[code or type(exc).__name__] += 1


class UpstreamEvents(ABC):
    """Iterate it after :meth:`start`; always :meth:`aclose` it (closes the upstream, settles usage once)."""

    def __init__(self, pipeline: Pipeline, events: AsyncIterable[dict[str, Any]]) -> None:
        self.pipeline = pipeline
        self._events = aiter(events)
        self._first: dict[str, Any] | None = None
        self._closed = False

    def _unserved(self, exc: MindgateError) -> bool:
        """Whether a failure before the first event means "someone else answers" (nothing to count or settle)."""
        return False

    @abstractmethod
    def _seen(self, event: dict[str, Any]) -> None:
        """Note what ``event`` says (text, reported usage, the final object) before it is relayed."""

    @abstractmethod
    def _settle(self) -> None:
        """Work out the stream's usage and report it; called once, when the stream is closed."""

    async def start(self) -> None:
        """Await the first event: a failure before it raises here."""
        try:
            self._first = await anext(self._events)
        except StopAsyncIteration:
            self._first = None
        except MindgateError as exc:
            if self._unserved(exc):
                self._closed = True
                raise
            count_upstream_error(self.pipeline, exc)
            await self.aclose()
            raise

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        event = self._first
        if event is not None:
            self._first = None
        elif self._closed:
            raise StopAsyncIteration
        else:
            try:
                event = await anext(self._events)
            except StopAsyncIteration:
                raise
            except Exception as exc:
                count_upstream_error(self.pipeline, exc)
                raise
        self._seen(event)
        return event

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()
        self._settle()
