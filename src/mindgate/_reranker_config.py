"""The ``reranker`` section: mem0 2.x's shape (``{"provider": ..., "config": {...}}``) and its keys.

Providers built in (mem0's names):

* ``sentence_transformer`` / ``huggingface``: a cross-encoder (sentence-transformers ``CrossEncoder``) from a
  local folder or the Hugging Face cache; mindgate never downloads weights.
* ``llm_reranker``: a chat model scores each candidate 0-10 with bounded decoding (a JSON schema whose
  only value is an integer in that range, temperature 0, a few tokens).

mem0's cloud rerankers (cohere, zero_entropy, ...) are refused by :mod:`mindgate._mem0_compat` with the
alternative. ``candidates`` is mindgate's own key: how many fused candidates the reranker reads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RERANKER_PROVIDERS = ("sentence_transformer", "huggingface", "llm_reranker")
DEFAULT_CROSS_ENCODER = "cross-encoder/ms-marco-MiniLM-L-6-v2"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _RerankerCommon(_Strict):
    top_k: int | None = Field(default=None, gt=0, description="at most this many results after reranking")
    api_key: str | None = Field(default=None, repr=False, description="accepted for mem0 compatibility")


class CrossEncoderRerankerConfig(_RerankerCommon):
    """mem0's SentenceTransformerRerankerConfig / HuggingFaceRerankerConfig keys."""

    model: str = Field(default=DEFAULT_CROSS_ENCODER, min_length=1,
                       description="a local folder, or a model id already in the Hugging Face cache")
    device: str | None = Field(default=None, description="torch device; default cpu")
    batch_size: int = Field(default=32, gt=0, le=4096)
    max_length: int | None = Field(default=None, gt=0, le=8192, description="tokens per query+memory pair; "
                                   "default the model's own limit")
    normalize: bool = Field(default=True, description="squash scores into 0-1 (sigmoid) for one-label models")
    show_progress_bar: bool = Field(default=False, description="accepted for mem0 compatibility; never shown")
    candidates: int = Field(default=30, gt=0, le=1000, description="fused candidates the reranker scores")


class LLMRerankerConfig(_RerankerCommon):
    """mem0's LLMRerankerConfig keys. With no ``llm``, ``provider`` or ``model``, the ``llm`` section's
    model scores (the embedded SmolLM2 on the defaults)."""

    provider: str | None = Field(default=None, description="chat provider of `model` (mem0's default: openai)")
    model: str | None = Field(default=None, min_length=1)
    llm: dict[str, Any] | None = Field(default=None, description="a whole chat model section "
                                       "({provider, config}); wins over provider/model/api_key")
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=16, gt=0, le=256, description="answer cap per candidate")
    max_workers: int = Field(default=1, gt=0, le=64, description="candidates scored concurrently")
    scoring_prompt: str | None = Field(default=None, min_length=1,
                                       description="template with {query} and {document}")
    candidates: int = Field(default=10, gt=0, le=200, description="fused candidates the reranker scores")

    @model_validator(mode="after")
    def _prompt_placeholders(self) -> LLMRerankerConfig:
        if self.scoring_prompt is not None:
            missing = [p for p in ("{query}", "{document}") if p not in self.scoring_prompt]
            if missing:
                raise ValueError(f"scoring_prompt must contain {' and '.join(missing)} (where the query and the "
                                 "memory's text go)")
        return self


def _none_is_empty(value: Any) -> Any:
    return {} if value is None else value


class CrossEncoderRerankerSection(_Strict):
    provider: Literal["sentence_transformer", "huggingface"]
    config: CrossEncoderRerankerConfig = Field(default_factory=CrossEncoderRerankerConfig)

    _config = field_validator("config", mode="before")(_none_is_empty)


class LLMRerankerSection(_Strict):
    provider: Literal["llm_reranker"]
    config: LLMRerankerConfig = Field(default_factory=LLMRerankerConfig)

    _config = field_validator("config", mode="before")(_none_is_empty)


# ``reranker: {provider, config}``: search reranks the fused candidates with it (``rerank=False`` per call
# skips it); the provider picks which keys ``config`` takes.
RerankerSection = Annotated[CrossEncoderRerankerSection | LLMRerankerSection, Field(discriminator="provider")]
