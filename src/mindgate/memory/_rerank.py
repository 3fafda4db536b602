"""Reranking search's fused candidates (mem0 2.x's ``reranker`` config).

:meth:`AsyncMemory.search` fuses vector and full-text candidates, keeps the best ``candidates`` of them
(the reranker's own setting, at least the search's ``limit``), and asks the reranker for one relevance
score per candidate. Results are then ordered by that score (ties keep the fused order), cut to
``min(limit, top_k)``, and carry it as ``rerank_score`` (mem0's field); ``score`` stays the fused score,
so ``threshold`` means the same with or without a reranker.

* :class:`CrossEncoderReranker` (``sentence_transformer`` / ``huggingface``): a sentence-transformers
  ``CrossEncoder`` read from a local folder or the Hugging Face cache, never downloaded.
* :class:`LLMReranker` (``llm_reranker``): a chat model answers ``{"score": N}`` with N an integer from 0
  to 10 under a JSON schema (bounded decoding: the schema admits nothing else, temperature 0 by default,
  ``max_tokens`` small); the score is N / 10.

A reranker that fails raises (a :class:`~mindgate.errors.MindgateError` naming the reranker and the
way out, ``rerank=False``): a search never silently returns another order than the one configured.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mindgate._reranker_config import (
    CrossEncoderRerankerConfig,
    LLMRerankerConfig,
    LLMRerankerSection,
    RerankerSection,
)
from mindgate.config import LLMSection, MindgateConfig
from mindgate.errors import ConfigurationError, MindgateError, ProviderError
from mindgate.memory._retrieval import Hit
from mindgate.providers._base import ChatModel
from mindgate.providers._structured import complete_json

_DOCUMENT_CHARS = 2000  # of each memory shown to an LLM reranker: bounds the prompt of long memories
SCORE_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"score": {"type": "integer", "enum": list(range(11))}},
    "required": ["score"], "additionalProperties": False}
_SYSTEM = "You rate how relevant a memory is to a query, from 0 (unrelated) to 10 (answers it)."
_PAIR = "Query: {query}\nMemory: {document}"
# worked examples, as earlier turns: small models follow them where an instruction alone gets one score for all
_EXAMPLES = (("What pet does Bob have?", "Bob has a dog named Rex.", 9),
             ("What pet does Bob have?", "Bob lives in Paris.", 2),
             ("Where does Carol work?", "Carol likes pizza.", 0),
             ("Where does Carol work?", "Carol is a teacher at a school in Rome.", 10))


class Reranker(ABC):
    """Scores (query, memory text) pairs; higher is more relevant."""

    provider: str
    model: str
    candidates: int
    top_k: int | None

    @abstractmethod
    async def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        """One score per text, in order."""

    @abstractmethod
    async def aclose(self) -> None:
        """Free what the reranker holds."""

    def describe(self) -> str:
        return f"{self.provider} reranker ({self.model})"


async def rerank(reranker: Reranker, query: str, hits: Sequence[Hit]) -> list[Hit]:
    """``hits`` ordered by the reranker's score, best first (stable: ties keep the fused order), each
    with ``rerank_score`` and ``fused_rank`` set."""
    if not hits:
        return []
    values = await reranker.scores(query, [h.record.memory for h in hits])
    if len(values) != len(hits):
        raise ProviderError(f"the {reranker.describe()} returned {len(values)} scores for {len(hits)} memories",
                            provider=reranker.provider, retryable=False)
    for rank, (hit, value) in enumerate(zip(hits, values, strict=True), start=1):
        hit.rerank_score = float(value)
        hit.fused_rank = rank
        hit.reranker = reranker.describe()
    return sorted(hits, key=lambda h: -(h.rerank_score or 0.0))


class CrossEncoderReranker(Reranker):
    """A sentence-transformers cross-encoder scoring each pair in batches, in a worker thread."""

    def __init__(self, config: CrossEncoderRerankerConfig, provider: str = "sentence_transformer") -> None:
        self.provider = provider
        self.model = config.model
        self.config = config
        self.candidates = config.candidates
        self.top_k = config.top_k
        local = Path(config.model).expanduser()
        if local.exists():
            self.source = str(local)
        elif config.model.startswith(("/", "./", "../", "~", "\\")) or Path(config.model).is_absolute():
            raise ConfigurationError(f"reranker.config.model: no cross-encoder folder at {config.model!r}",
                                     hint="give the folder of a cross-encoder (config.json, tokenizer and weights), "
                                          "or a model id already in the Hugging Face cache")
        else:
            self.source = config.model  # a model id: looked up in the cache when first used
        self._encoder: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._encoder is None:
                try:
                    from sentence_transformers import CrossEncoder
                except ImportError:
                    raise ConfigurationError("the sentence_transformer reranker needs sentence-transformers",
                                             hint="pip install 'mindgate[local]'") from None
                try:
                    self._encoder = CrossEncoder(self.source, device=self.config.device or "cpu",
                                                 max_length=self.config.max_length, local_files_only=True)
                except (OSError, ValueError, TypeError) as exc:
                    # a folder's own error says what is wrong in it; for a model id, only that it is not cached
                    why = (f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}" if Path(self.source).exists()
                           else "not in the Hugging Face cache")
                    raise ConfigurationError(
                        f"reranker.config.model: cannot load the cross-encoder {self.source!r} ({why})",
                        hint="give a local folder (config.json, tokenizer and weights); mindgate never "
                             "downloads weights") from None
            return self._encoder

    def _predict(self, query: str, texts: list[str]) -> list[float]:
        import torch

        encoder = self._load()
        several = int(getattr(encoder.model.config, "num_labels", 1) or 1) > 1
        activation = torch.nn.Sigmoid() if self.config.normalize and not several else torch.nn.Identity()
        raw = encoder.predict([(query, t) for t in texts], batch_size=self.config.batch_size,
                              show_progress_bar=False, activation_fn=activation,
                              apply_softmax=self.config.normalize and several, convert_to_numpy=True)
        # a model with several labels (e.g. irrelevant / relevant): the last label is "relevant"
        return [float(row[-1]) if several else float(row) for row in raw]

    async def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        return await asyncio.to_thread(self._predict, query, list(texts))

    async def aclose(self) -> None:
        self._encoder = None


class LLMReranker(Reranker):
    """A chat model asked once per candidate (``max_workers`` at a time) for a 0-10 relevance score."""

    provider = "llm_reranker"

    def __init__(self, config: LLMRerankerConfig, llm: Callable[[], ChatModel], *, owns_llm: bool = False) -> None:
        self.config = config
        self.owns_llm = owns_llm  # False: the memory's own chat model, closed by the memory
        self.candidates = config.candidates
        self.top_k = config.top_k
        self._factory = llm
        self._llm: ChatModel | None = None
        self.model = config.model or "the configured llm"

    @property
    def llm(self) -> ChatModel:
        if self._llm is None:
            self._llm = self._factory()
            self.model = self._llm.model
        return self._llm

    async def aclose(self) -> None:
        if self.owns_llm and self._llm is not None:
            await self._llm.aclose()

    def _messages(self, query: str, text: str) -> list[dict[str, Any]]:
        """``scoring_prompt`` filled in as one user message (mem0's way); by default a system message, the
        worked examples and the pair."""
        document = text if len(text) <= _DOCUMENT_CHARS else text[:_DOCUMENT_CHARS] + " ..."
        if self.config.scoring_prompt:
            return [{"role": "user",
                     "content": self.config.scoring_prompt.replace("{query}", query).replace("{document}", document)}]
        messages: list[dict[str, Any]] = [{"role": "system", "content": _SYSTEM}]
        for example_query, example_memory, score in _EXAMPLES:
            messages += [{"role": "user", "content": _PAIR.format(query=example_query, document=example_memory)},
                         {"role": "assistant", "content": f'{{"score": {score}}}'}]
        messages.append({"role": "user", "content": _PAIR.replace("{query}", query).replace("{document}", document)})
        return messages

    async def _score(self, query: str, text: str, gate: asyncio.Semaphore) -> float:
        async with gate:
            answer = await complete_json(self.llm, self._messages(query, text), SCORE_SCHEMA, name="relevance",
                                         validate=_score_of, max_tokens=self.config.max_tokens,
                                         temperature=self.config.temperature)
        return answer / 10.0

    async def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        gate = asyncio.Semaphore(self.config.max_workers)
        try:
            return list(await asyncio.gather(*(self._score(query, t, gate) for t in texts)))
        except MindgateError as exc:
            raise ProviderError(f"the {self.describe()} failed: {exc}", provider=self.provider, retryable=False,
                                hint="check the reranker's model (reranker.config), or search with rerank=False "
                                     "to skip reranking") from exc


def _score_of(value: Any) -> int:
    if not isinstance(value, dict) or isinstance(value.get("score"), bool) or value.get("score") not in range(11):
        raise ValueError('expected {"score": N} with N an integer from 0 to 10')
    return int(value["score"])


def create_reranker(section: RerankerSection, config: MindgateConfig,
                    default_llm: Callable[[], ChatModel]) -> Reranker:
    """The reranker of a ``reranker`` section. An ``llm_reranker`` with no ``llm``, ``provider`` or ``model``
    scores with ``default_llm`` (the memory's own chat model); one with ``provider``/``model`` builds that
    chat model (provider default ``openai``, as in mem0)."""
    if not isinstance(section, LLMRerankerSection):
        return CrossEncoderReranker(section.config, section.provider)
    cfg = section.config
    if cfg.llm is None and cfg.provider is None and cfg.model is None:
        return LLMReranker(cfg, default_llm)
    settings = {"model": cfg.model, "api_key": cfg.api_key}
    nested = cfg.llm if cfg.llm is not None else {
        "provider": cfg.provider or "openai", "config": {k: v for k, v in settings.items() if v is not None}}
    try:
        llm_section = LLMSection.model_validate(nested)
    except ValidationError as exc:
        where = "reranker.config.llm" if cfg.llm is not None else "reranker.config"
        raise ConfigurationError(f"{where} does not describe a chat model: " + "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(section)'}: {e['msg']}" for e in exc.errors()),
            hint="give `llm: {provider, config: {model, ...}}` as the `llm` section takes it") from None

    def build() -> ChatModel:
        from mindgate.routing._chains import chat_model_for

        return chat_model_for(llm_section, config)

    return LLMReranker(cfg, build, owns_llm=True)
