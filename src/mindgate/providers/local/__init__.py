"""The in-process engine: llama.cpp (``llama_cpp.Llama``) on a GGUF for chat, sentence-transformers for
embeddings. Needs no server, no key and no network; the defaults are the models shipped in PyPI packages
(see :mod:`mindgate._assets`).

Heavy libraries are imported on first use, so ``import mindgate`` stays light. A ``Llama`` is not
thread-safe: calls are serialised by a lock taken in the worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from mindgate._assets import (
    DEFAULT_CHAT_MODEL,
    DEFAULT_EMBEDDING_MODEL,
    default_embedder_path,
    default_gguf_path,
)
from mindgate.config import TTL_DESCRIPTION, ProviderConfig
from mindgate.errors import ConfigurationError, ContextOverflowError, InvalidRequestError, ProviderError
from mindgate.providers._base import (
    ChatChunk,
    ChatModel,
    ChatResponse,
    Embedder,
    Message,
    Usage,
    Vector,
    message_text,
)
from mindgate.providers._json_constraint import SchemaConstraint, Unsupported, schema_regex, vocabulary
from mindgate.providers._spec import ProviderSpec
from mindgate.providers.local._management import LocalDriver
from mindgate.providers.local._pool import LocalModelPool, default_pool
from mindgate.providers.local._requests import check_logit_bias, check_options, prepare_messages
from mindgate.providers.openai_compat import sampling_defaults


class LocalConfig(ProviderConfig):
    """``provider: local``, the in-process engine: the common keys plus the model file and how it runs (it
    takes no base URL)."""

    model_path: str | None = Field(default=None, description="a GGUF file (chat) or model folder (embeddings)")
    n_ctx: int | None = Field(default=None, gt=0, description="context length")
    n_threads: int | None = Field(default=None, gt=0, description="CPU threads")
    device: str | None = Field(default=None, description="sentence-transformers device (cpu, cuda, mps)")
    ttl: int | None = Field(default=None, gt=0, description=TTL_DESCRIPTION)

_PACKAGED_EMBEDDER_NAMES = {DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}",
                            "all-minilm-l6-v2"}
_DONE = object()
log = logging.getLogger("mindgate.providers")


LLAMA_SAMPLING = frozenset({"top_k", "min_p", "typical_p", "repeat_penalty", "tfs_z", "mirostat_mode",
                            "mirostat_tau", "mirostat_eta"})
"""Request extras (top-level fields OpenAI does not have) that llama.cpp takes; the rest are dropped."""


def _default_threads() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


class LlamaCppChatModel(ChatModel):
    """Chat with a GGUF model in this process. ``model_path`` None means the shipped SmolLM2-135M. ``ttl``:
    seconds idle before the model is unloaded (None: stays loaded); ``pool``: where it is loaded (default:
    the process-wide pool)."""

    provider = "local"
    accepts_extras = True  # LLAMA_SAMPLING; other extras are dropped with a debug log

    def __init__(self, model_path: str | Path | None = None, *, n_ctx: int = 4096, n_threads: int | None = None,
                 defaults: dict[str, Any] | None = None, ttl: float | None = None,
                 pool: LocalModelPool | None = None) -> None:
        path = Path(model_path).expanduser() if model_path else default_gguf_path()
        if not path.is_file():
            raise ConfigurationError(f"GGUF model file not found: {path}",
                                     hint="set `model_path` to a .gguf file, or leave it out for the shipped "
                                          "SmolLM2-135M-Instruct")
        super().__init__(DEFAULT_CHAT_MODEL if model_path is None else path.stem, defaults=defaults)
        self.model_path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads or _default_threads()
        if ttl is not None and ttl <= 0:
            raise ConfigurationError(f"ttl must be positive seconds, got {ttl}")
        self.ttl = ttl
        self.pool = pool or default_pool()

    @property
    def endpoint_key(self) -> str:
        return f"local:{self.model_path}"

    @property
    def context_length(self) -> int | None:
        return self.n_ctx

    @property
    def loaded(self) -> bool:
        return self.pool.find(self.model_path, n_ctx=self.n_ctx) is not None

    @contextmanager
    def _llama(self) -> Iterator[Any]:
        """Exclusive use of the loaded model, from the process-wide pool (loads on first use)."""
        try:
            with self.pool.lease(self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads, ttl=self.ttl) as llama:
                yield llama
        except ImportError:
            raise ConfigurationError("the local chat engine needs llama-cpp-python",
                                     hint="pip install 'mindgate[local]'") from None

    def unload(self) -> None:
        """Free the model's memory; the next call loads it again."""
        self.pool.unload(self.model_path, n_ctx=self.n_ctx)

    def _kwargs(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = {**check_options(self.endpoint_key, self._options(options)), **self._extras(options, LLAMA_SAMPLING)}
        opts.pop("user", None)
        opts.pop("parallel_tool_calls", None)
        fmt = opts.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            # llama-cpp-python constrains JSON output through json_object + schema (a grammar).
            opts["response_format"] = {"type": "json_object", "schema": fmt.get("json_schema", {}).get("schema")}
        return opts

    def _prepared(self, llama: Any, messages: list[Message], kwargs: dict[str, Any]) -> dict[str, Any]:
        self._check_declared_context(llama, messages)
        if "logit_bias" in kwargs:
            kwargs = {**kwargs, "logit_bias": check_logit_bias(self.endpoint_key, kwargs["logit_bias"],
                                                               llama.n_vocab())}
        return kwargs

    def _complete_blocking(self, messages: list[Message], kwargs: dict[str, Any]) -> dict[str, Any]:
        with self._llama() as llama:
            kwargs = self._fast_constraint(llama, self._prepared(llama, messages, kwargs))
            try:
                return dict(llama.create_chat_completion(messages=messages, **kwargs))
            except ValueError as exc:
                raise _local_error(exc, self.n_ctx) from None
            except (TypeError, KeyError, AttributeError, IndexError) as exc:
                raise _engine_failure(exc, self.endpoint_key) from None

    def _fast_constraint(self, llama: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Greedy JSON-schema answers through :class:`SchemaConstraint` instead of llama.cpp's grammar,
        which checks the whole vocabulary at every step; other requests are passed on unchanged."""
        fmt = kwargs.get("response_format")
        schema = fmt.get("schema") if isinstance(fmt, dict) else None
        if not isinstance(schema, dict) or kwargs.get("temperature") != 0 or kwargs.get("logits_processor") \
                or kwargs.get("logit_bias"):
            return kwargs
        try:
            pattern = schema_regex(schema)
        except Unsupported:
            return kwargs
        constraint = SchemaConstraint(pattern, vocabulary(llama, str(self.model_path)), llama.token_eos(),
                                      frequency_penalty=float(kwargs.get("frequency_penalty") or 0.0))
        rest = {k: v for k, v in kwargs.items() if k not in ("response_format", "frequency_penalty")}
        return {**rest, "logits_processor": [constraint]}

    async def acomplete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        if not messages:
            raise ConfigurationError("messages is empty", hint="pass at least one message")
        kwargs = self._kwargs(options)
        data = await asyncio.to_thread(self._complete_blocking, prepare_messages(self.endpoint_key, messages), kwargs)
        data["model"] = self.model
        choice = data["choices"][0]
        message = choice.get("message") or {}
        usage = data.get("usage") or {}
        return ChatResponse(content=message.get("content"), model=self.model,
                            finish_reason=choice.get("finish_reason"),
                            tool_calls=list(message.get("tool_calls") or []),
                            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
                            raw=data)

    def _stream_blocking(self, messages: list[Message], kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self._llama() as llama:
            kwargs = self._prepared(llama, messages, kwargs)
            try:
                yield from llama.create_chat_completion(messages=messages, stream=True, **kwargs)
            except ValueError as exc:
                raise _local_error(exc, self.n_ctx) from None
            except (TypeError, KeyError, AttributeError, IndexError) as exc:
                raise _engine_failure(exc, self.endpoint_key) from None

    async def astream(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[ChatChunk]:
        if not messages:
            raise ConfigurationError("messages is empty", hint="pass at least one message")
        kwargs = self._kwargs(options)
        prepared = prepare_messages(self.endpoint_key, messages)
        async for item in _pumped(lambda: self._stream_blocking(prepared, kwargs)):
            item["model"] = self.model
            choice = (item.get("choices") or [{}])[0]
            delta = choice.get("delta") or {}
            yield ChatChunk(content=delta.get("content"), tool_calls=list(delta.get("tool_calls") or []),
                            finish_reason=choice.get("finish_reason"), raw=item)

    # -- raw text completion ---------------------------------------------------------------------

    @property
    def text_completions(self) -> bool:
        return True

    def _text_kwargs(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = {**self._text_options(options), **self._extras(options, LLAMA_SAMPLING)}
        opts.pop("user", None)
        if opts.pop("n", 1) != 1 or opts.pop("best_of", 1) != 1:
            raise InvalidRequestError("the local engine returns one completion per request; n and best_of must be 1",
                                      hint="send several requests instead")
        return opts

    def _text_blocking(self, prompt: str, kwargs: dict[str, Any], *, stream: bool) -> Iterator[dict[str, Any]]:
        """``create_completion``'s result: the chunks when streaming, else the one body."""
        with self._llama() as llama:
            if "logit_bias" in kwargs:
                kwargs = {**kwargs, "logit_bias": check_logit_bias(self.endpoint_key, kwargs["logit_bias"],
                                                                   llama.n_vocab())}
            try:
                if stream:
                    yield from llama.create_completion(prompt=prompt, stream=True, **kwargs)
                else:
                    yield dict(llama.create_completion(prompt=prompt, **kwargs))
            except ValueError as exc:
                raise _local_error(exc, self.n_ctx) from None
            except (TypeError, KeyError, AttributeError, IndexError) as exc:
                raise _engine_failure(exc, self.endpoint_key) from None

    async def atext_complete(self, prompt: str, **options: Any) -> dict[str, Any]:
        kwargs = self._text_kwargs(options)
        [data] = await asyncio.to_thread(lambda: list(self._text_blocking(prompt, kwargs, stream=False)))
        data["model"] = self.model
        return data

    async def atext_stream(self, prompt: str, **options: Any) -> AsyncIterator[dict[str, Any]]:
        kwargs = self._text_kwargs(options)
        async for item in _pumped(lambda: self._text_blocking(prompt, kwargs, stream=True)):
            item["model"] = self.model
            yield item

    def _check_declared_context(self, llama: Any, messages: Sequence[Message]) -> None:
        """The pool may lend an instance with a larger context than this model declares; keep the
        declared window (llama.cpp checks it itself when the sizes are equal)."""
        if llama.n_ctx() > self.n_ctx and (needed := self._count_with(llama, messages)) > self.n_ctx:
            raise ContextOverflowError(f"the prompt needs about {needed} tokens; the local model's context is "
                                       f"{self.n_ctx}", needed=needed, available=self.n_ctx,
                                       hint="shorten the conversation or raise `n_ctx`")

    def _count_blocking(self, messages: Sequence[Message]) -> int:
        with self._llama() as llama:
            return self._count_with(llama, prepare_messages(self.endpoint_key, messages))

    @staticmethod
    def _count_with(llama: Any, messages: Sequence[Message]) -> int:
        """The prompt's tokens as the engine will see them: the model's own chat template (from the GGUF,
        as llama.cpp renders it) tokenized; an estimate from the message texts when it has none."""
        formatter = _template_formatter(llama)
        if formatter is not None:
            try:
                result = formatter(messages=[dict(m) for m in messages])
            except Exception:  # a template that cannot render these messages: the generic count below
                pass
            else:
                return len(llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special,
                                          special=True))
        total = 2
        for message in messages:
            total += 4 + len(llama.tokenize(message_text(message).encode("utf-8"), add_bos=False, special=True))
        return total

    async def acount_tokens(self, messages: Sequence[Message]) -> int | None:
        """Prompt tokens with the model's own chat template and tokenizer (exact for a GGUF that carries its
        template; otherwise its tokenizer over the message texts, plus 4 per message and 2 for the reply)."""
        return await asyncio.to_thread(self._count_blocking, messages)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.unload)


_FORMATTERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _template_formatter(llama: Any) -> Any:
    """The Jinja formatter of the GGUF's chat template (built as llama.cpp builds it; cached per instance),
    or None when the model has no template."""
    if llama in _FORMATTERS:
        return _FORMATTERS[llama]
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = (getattr(llama, "metadata", None) or {}).get("tokenizer.chat_template")
    formatter = None
    if template:
        def text(token: int) -> str:
            return str(llama._model.token_get_text(token)) if token != -1 else ""

        formatter = Jinja2ChatFormatter(template=template, eos_token=text(llama.token_eos()),
                                        bos_token=text(llama.token_bos()))
    _FORMATTERS[llama] = formatter
    return formatter


async def _pumped(blocking: Callable[[], Iterator[dict[str, Any]]]) -> AsyncIterator[dict[str, Any]]:
    """Items of a blocking iterator (run in a worker thread) as they come; stops the thread when closed."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def hand_over(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the consumer's loop is gone
            stop.set()

    def produce() -> None:
        try:
            for event in blocking():
                if stop.is_set():
                    return
                hand_over(event)
            hand_over(_DONE)
        except Exception as exc:  # re-raised by the consumer
            hand_over(exc)

    loop.run_in_executor(None, produce)
    try:
        while (item := await queue.get()) is not _DONE:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()


def _engine_failure(exc: Exception, target: str) -> ProviderError:
    """llama.cpp failing on a request it was handed (a bug or a shape it does not take): logged with its
    traceback; the caller gets the kind only. Not retryable, so it neither trips a breaker nor moves on."""
    log.error("the local engine %s failed on a request", target, exc_info=exc)
    return ProviderError(f"the local engine {target} could not process this request ({type(exc).__name__}; "
                         "details in the gateway log)", provider="local", status_code=500, retryable=False)


def _local_error(exc: ValueError, n_ctx: int) -> Exception:
    text = str(exc)
    if "context window" in text or "exceed" in text:
        return ContextOverflowError(f"the prompt does not fit the local model's context ({text})",
                                    available=n_ctx, hint="shorten the conversation or raise `n_ctx`")
    return ProviderError(f"the local engine rejected the request: {text}", provider="local", status_code=400,
                         retryable=False)


class SentenceTransformerEmbedder(Embedder):
    """sentence-transformers in this process. ``model`` None (or all-MiniLM-L6-v2) is the shipped
    MiniLM; any other value is a local folder, or a name already in the local model cache."""

    provider = "local"

    def __init__(self, model: str | None = None, *, device: str | None = None, embedding_dims: int | None = None,
                 batch_size: int = 64, provider: str = "local", options: dict[str, Any] | None = None) -> None:
        name = model or DEFAULT_EMBEDDING_MODEL
        super().__init__(DEFAULT_EMBEDDING_MODEL if name in _PACKAGED_EMBEDDER_NAMES else name,
                         embedding_dims=embedding_dims, batch_size=batch_size)
        self.provider = provider
        self.source = str(default_embedder_path()) if name in _PACKAGED_EMBEDDER_NAMES else name
        self.device = device or "cpu"
        self.options = dict(options or {})
        self._st: Any = None
        self._load_lock = threading.Lock()

    def _model(self) -> Any:
        if self._st is None:
            with self._load_lock:
                if self._st is None:
                    try:
                        from sentence_transformers import SentenceTransformer
                    except ImportError:
                        raise ConfigurationError("the local embedder needs sentence-transformers",
                                                 hint="pip install 'mindgate[local]'") from None
                    try:
                        self._st = SentenceTransformer(self.source, device=self.device, local_files_only=True,
                                                       **self.options)
                    except (OSError, ValueError, TypeError) as exc:
                        raise ConfigurationError(
                            f"cannot load the sentence-transformers model {self.source!r}: {exc}",
                            hint="give a local model folder; mindgate never downloads weights") from None
        return self._st

    def encode(self, texts: list[str]) -> Vector:
        """Blocking encode of any number of texts (sentence-transformers batches internally)."""
        vectors = self._model().encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                       show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    async def _embed_batch(self, texts: Sequence[str]) -> Vector:
        return await asyncio.to_thread(self.encode, list(texts))

    async def _embed_all(self, texts: list[str]) -> Vector:
        return await asyncio.to_thread(self.encode, texts)

    def embed_batch(self, texts: Sequence[str]) -> Vector:
        # Blocking callers skip the event-loop hop: the work is CPU-bound in this thread anyway.
        valid = self._validated(texts)
        if not valid:
            return self._empty()
        vectors = self.encode(valid)
        self._check_dims(int(vectors.shape[1]))
        return vectors


def chat_model(config: LocalConfig) -> LlamaCppChatModel:
    return LlamaCppChatModel(config.model_path, n_ctx=config.n_ctx or 4096, n_threads=config.n_threads,
                             defaults={**sampling_defaults(config), **config.model_kwargs}, ttl=config.ttl)


def embedder(config: LocalConfig) -> SentenceTransformerEmbedder:
    if config.model_kwargs:
        raise ConfigurationError("model_kwargs is not used by the local embedder",
                                 hint="remove it, or use `device` / `batch_size`")
    return SentenceTransformerEmbedder(config.model_path or config.model, device=config.device,
                                       embedding_dims=config.embedding_dims, batch_size=config.batch_size)


SPEC = ProviderSpec(name="local", config_model=LocalConfig,
                    display="the local engine", chat_model=chat_model, embedder=embedder,
                    base_url_keys=(), takes_top_k=True, driver=LocalDriver)
