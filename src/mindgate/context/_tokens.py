"""Token counting: the model's own tokenizer when it is reachable, else a calibrated estimate with a
safety margin.

Three tools, cheapest first:

* :func:`byte_bound` -- a hard upper bound without reading the text: byte-level BPE (GPT-2 style, Llama 3,
  Qwen, SmolLM2) and SentencePiece with byte fallback never make more tokens than UTF-8 bytes. The router
  uses it to skip counting whenever a prompt clearly fits.
* :class:`TokenEstimator` -- a linear model over characters, words, digits, symbols, newlines and non-ASCII
  characters, fitted against the SmolLM2 tokenizer on LongMemEval chat turns, plus a margin.
* :class:`TokenCounter` -- asks the model (``ChatModel.acount_tokens``: the llama.cpp server's
  ``/extras/tokenize``, the in-process engine's tokenizer) and falls back to the estimate, remembering per
  endpoint when the model has no tokenizer to offer.

Measured error of the estimate (``python bench/token_estimate.py``; SmolLM2-135M tokenizer; 20,005 turns
of 1,940 LongMemEval sessions held out from the fit; relative error = (estimate - real) / real; "raw" is
the linear model alone, the default adds the 10% margin):

===============================  ======  ========  ========  ========  ===========
                                 mean    mean abs  p1        p99       undercounts
===============================  ======  ========  ========  ========  ===========
per turn, raw estimate           -1.3%   4.4%      -21.1%    +10.3%    57%
per turn, +10% margin (default)  +9.8%   10.5%     -10.5%    +25.4%    5.0%
per turn, 4 characters/token     +17.2%  19.4%     -25.1%    +60.0%    9.5%
per session, default, ChatML     +11.6%  11.8%     -2.9%     +28.7%    1.9%
===============================  ======  ========  ========  ========  ===========

Text unlike English chat (code, other scripts) is estimated less well: non-ASCII
characters count 2 tokens each (CJK measures ~1.9, Cyrillic ~0.8, emoji 3), so such text is
usually over-, rarely under-counted. Chat templates also add framing per message (ChatML: 5 tokens) and
sometimes a default system prompt (SmolLM2's: 22 tokens when the conversation has none), which the
estimate covers with ``per_message`` and ``per_prompt``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mindgate.errors import MindgateError
from mindgate.providers._base import Message, message_text

if TYPE_CHECKING:
    from mindgate.providers._base import ChatModel

_WORD = re.compile(r"\S+")
_DIGIT = re.compile(r"\d")
_SYMBOL = re.compile(r"[^\w\s]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_MEMO_SIZE = 1 << 16


def byte_bound(messages: Sequence[Message], *, per_message: int = 8, per_prompt: int = 32,
               stop_above: int | None = None) -> int:
    """A hard upper bound of the prompt's tokens for byte-level tokenizers: UTF-8 bytes plus framing. With
    ``stop_above``, returns as soon as the bound passes it (a long conversation costs a few messages)."""
    total = per_prompt
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) and not message.get("tool_calls"):
            total += len(content) * (1 if content.isascii() else 4) + per_message
        else:
            total += len(message_text(message).encode("utf-8")) + per_message
        if stop_above is not None and total > stop_above:
            return total
    return total


@dataclass(frozen=True)
class TokenEstimator:
    """Estimated tokens = ``(linear model of the text) * (1 + margin)``, plus ``per_message`` framing per
    message and ``per_prompt`` for the reply's opening and a template's default system prompt.

    The coefficients were fitted by least squares against the SmolLM2 tokenizer (``bench/token_estimate.py
    --fit`` reproduces them); see the module docstring for the measured error.
    """

    per_char: float = 0.0444
    per_word: float = 0.803
    per_digit: float = 1.052
    per_symbol: float = 0.682
    per_newline: float = 1.132
    per_non_ascii: float = 2.0
    margin: float = 0.10
    per_message: int = 6
    per_prompt: int = 24
    _memo: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def raw_text_tokens(self, text: str) -> float:
        """The model's estimate for ``text`` alone, without margin (may be a fraction)."""
        if not text:
            return 0.0
        estimate = (self.per_char * len(text) + self.per_word * len(_WORD.findall(text))
                    + self.per_digit * len(_DIGIT.findall(text)) + self.per_symbol * len(_SYMBOL.findall(text))
                    + self.per_newline * text.count("\n"))
        if not text.isascii():
            estimate += self.per_non_ascii * len(_NON_ASCII.findall(text))
        return estimate

    def text_tokens(self, text: str) -> int:
        """Estimated tokens of ``text`` with the safety margin (memoised: a long conversation is estimated
        again at every turn, and its old messages are the same strings)."""
        tokens = self._memo.get(text)
        if tokens is None:
            tokens = math.ceil(self.raw_text_tokens(text) * (1.0 + self.margin))
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[text] = tokens
        return tokens

    def message_tokens(self, message: Message) -> int:
        """Estimated tokens one message adds to a prompt (text with margin plus framing)."""
        return self.text_tokens(message_text(message)) + self.per_message

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        """Estimated tokens of a whole prompt."""
        return self.per_prompt + sum(self.message_tokens(m) for m in messages)


DEFAULT_ESTIMATOR = TokenEstimator()


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    exact: bool


@dataclass
class TokenCounter:
    """Counts a prompt's tokens with the model's tokenizer when it has one, else estimates.

    A model whose ``acount_tokens`` answers None is remembered (by ``endpoint_key``) and not asked again;
    a model that fails to answer (server down) is estimated this time and asked again next time.
    """

    estimator: TokenEstimator = DEFAULT_ESTIMATOR
    _without_tokenizer: set[str] = field(default_factory=set)

    def has_tokenizer(self, model: ChatModel) -> bool | None:
        """False when the model is known to have none; None when not known yet."""
        return False if model.endpoint_key in self._without_tokenizer else None

    async def count(self, messages: Sequence[Message], model: ChatModel | None = None) -> TokenCount:
        if model is not None and model.endpoint_key not in self._without_tokenizer:
            try:
                tokens = await model.acount_tokens(messages)
            except MindgateError:
                tokens = -1
            if tokens is None:
                self._without_tokenizer.add(model.endpoint_key)
            elif tokens >= 0:
                return TokenCount(tokens, exact=True)
        return TokenCount(self.estimator.prompt_tokens(messages), exact=False)

    def estimate(self, messages: Sequence[Message]) -> int:
        return self.estimator.prompt_tokens(messages)
