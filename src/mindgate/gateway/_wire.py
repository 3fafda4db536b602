"""Small pieces every OpenAI route shares: compact JSON, the lone-surrogate check, SSE headers, the usage
callback that charges a key, and the error body of an unexpected failure mid-stream."""

from __future__ import annotations

import logging
import sys
from typing import Any

from mindgate._json import dumps
from mindgate.errors import InvalidRequestError, MindgateError
from mindgate.gateway._auth import Principal
from mindgate.gateway._state import Gateway
from mindgate.pipeline._core import UsageSink

log = logging.getLogger("mindgate.gateway")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_DONE = b"data: [DONE]\n\n"


def json_bytes(data: Any) -> bytes:
    return dumps(data)


def check_unicode(what: str, value: Any) -> None:
    """A lone surrogate (an unpaired ``\\udXXX`` escape in the request JSON) can be neither sent upstream nor
    embedded: a 400 naming it, not a 500 from deep inside an encoder."""
    try:
        json_bytes(value)
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(f"{what} holds a lone surrogate (\\u{ord(exc.object[exc.start]):04x})",
                                  hint="send proper UTF-8 text; U+D800-U+DFFF alone is not a character") from None


def charger(gateway: Gateway, principal: Principal | None) -> UsageSink:
    """The pipeline's ``on_usage`` for one request: tokens count against the key's limits and in metrics."""
    def charge(label: str, prompt: int, completion: int) -> None:
        gateway.charge(principal, label, prompt, completion)
    return charge


def failed_stream_end(exc: BaseException, rid: str | None, what: str = "stream") -> bytes:
    """The last frames of a stream that failed mid-way: OpenAI's error body, then ``[DONE]``, never a silent
    cut. A mindgate error says what it is; anything else is logged with its traceback and named only by its
    type and the request id (no internals in the body)."""
    if isinstance(exc, MindgateError):
        log.warning("%s of request %s failed mid-way: %s", what, rid, exc)
        body = exc.to_openai()
    else:
        log.error("%s of request %s failed mid-way", what, rid, exc_info=sys.exc_info())
        body = {"error": {"message": f"the stream failed: {type(exc).__name__}; request id {rid}",
                          "type": "server_error", "param": None, "code": "stream_failed"}}
    return b"data: " + json_bytes(body) + b"\n\n" + SSE_DONE
