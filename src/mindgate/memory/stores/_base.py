"""The store contract every memory backend (SQLite, pgvector) implements.

Semantics both stores share (one contract test suite checks them on both):

* **Scope.** Every record has a :class:`Scope` (user_id / agent_id / run_id, at least one set). Its
  ``partition`` is the most specific owner: ``user:<id>`` if a user is set, else ``agent:<id>``, else
  ``run:<id>``. Vectors and indexes are partitioned by it, and it leads every key, so a deployment can
  distribute the tables by it. A read with scope S sees the live records whose partition equals S's
  partition and whose other ids equal those S gives (ids S leaves out are not constrained).
* **Transactions.** :meth:`MemoryStore.apply` writes a batch of changes (row, vector, full-text row and
  one history row per change) in ONE transaction: all of it is stored or none of it.
* **Dedupe.** An ADD whose ``hash`` equals a live record's in the same exact scope (``Scope.key``) is not
  stored; its result is ``NONE`` with the existing id. A unique constraint enforces it, not a read.
* **Soft delete.** DELETE marks the record deleted (reads no longer see it) and writes a history row;
  :meth:`MemoryStore.history` still shows everything.
* **Embedder identity.** :meth:`MemoryStore.open` records the embedder identity on first use and raises
  :class:`~mindgate.errors.EmbedderMismatchError` (naming ``mindgate reindex``) when it differs later.
* **Context summaries.** A small cache beside the memories: rolling summaries (and markers of turns already
  written to memory) of long conversations, keyed by (partition, conversation, covered prefix digest), so
  turn N+1 reuses what turn N computed, across restarts and processes. ``delete_scope`` and ``reset``
  drop a partition's (all) entries with the memories.
* **Scores.** ``vector_search`` returns cosine similarity in [-1, 1] (higher is closer);
  ``text_search`` returns a BM25-style relevance (higher is better, scale store-specific).
* **Long text queries.** ``text_search`` searches for at most :data:`MAX_SEARCH_TERMS` of the query's
  words, the most selective ones (fewest documents), so a long query costs about what a short one does.

Stores are synchronous and thread-safe; async callers run them in a worker thread.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from mindgate.errors import EmbedderMismatchError, InvalidRequestError, ScopeError
from mindgate.memory._filters import Filter
from mindgate.providers._base import EmbedderIdentity, Vector

Event = Literal["ADD", "UPDATE", "DELETE", "NONE"]
MAX_SEARCH_TERMS = 8


def utcnow() -> datetime:
    return datetime.now(UTC)


def content_hash(text: str) -> str:
    """Hash of normalised text (NFKC, case-folded, whitespace collapsed): equal facts collide."""
    norm = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


def check_identity(identity: EmbedderIdentity, max_dims: int) -> None:
    """A store's guard on the identity it is handed (1 to ``max_dims`` integer dims)."""
    if not isinstance(identity, EmbedderIdentity) or isinstance(identity.dims, bool) \
            or not isinstance(identity.dims, int) or not 0 < identity.dims <= max_dims:
        raise InvalidRequestError(f"invalid embedder identity {identity!r}",
                                  hint=f"pass an EmbedderIdentity with 1 to {max_dims} dims")


def reindexed_since_open(store: str, recorded: EmbedderIdentity, opened: EmbedderIdentity) -> EmbedderMismatchError:
    """The error for a store whose keys changed under a running process (``mindgate reindex`` run elsewhere):
    only a restart helps, so the hint says that rather than asking for another reindex."""
    return EmbedderMismatchError(
        f"{store} was reindexed by another process after this one opened it: it now holds vectors made by "
        f"{recorded.describe()}, while this process embeds with {opened.describe()}",
        hint="restart this process (the gateway, the MCP server or your Python program) so that it opens the "
             "store as it is now; configure the same embedder and memory key settings the reindex used")


def check_count(name: str, value: int, minimum: int = 0) -> None:
    """A store's guard on an integer argument (limit, offset, k, batch size)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidRequestError(f"{name} must be an integer >= {minimum}, got {value!r}")


def keyset_pages(fetch: Callable[[str, int], Sequence[Any]], batch_size: int, key: int = 0) -> Iterator[Any]:
    """Every row of a key-ordered listing, read ``batch_size`` at a time: ``fetch(after, limit)`` returns up to
    ``limit`` rows whose text key (column ``key``) sorts after ``after``, in key order. Each fetch is its own
    short read, so a long export never holds a transaction open. The one paging loop of the stores."""
    check_count("batch_size", batch_size, minimum=1)
    after = ""
    while True:
        rows = fetch(after, batch_size)
        yield from rows
        if len(rows) < batch_size:
            return
        after = rows[-1][key]


def check_vector(vector: Vector, dims: int, what: str) -> Vector:
    """A store's guard on a vector: it as float32, after checking it has ``dims`` finite values, not all zero."""
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim != 1 or arr.shape[0] != dims:
        raise InvalidRequestError(f"{what} has shape {arr.shape}, but the store's embedder makes "
                                  f"{dims}-dimensional vectors",
                                  hint="embed with the embedder the store was opened with")
    if not np.isfinite(arr).all() or not np.any(arr):
        raise InvalidRequestError(f"{what} is zero or not finite",
                                  hint="cosine similarity needs a non-zero, finite vector")
    return arr


@dataclass(frozen=True)
class Scope:
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("user_id", "agent_id", "run_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > 256):
                raise ScopeError(f"{name} must be a non-empty string of at most 256 characters, got {value!r}")
            if value is not None and any(c < " " or c == "\x7f" or "\ud800" <= c <= "\udfff" for c in value):
                # control characters would make Scope.key ambiguous (it joins ids with \x1f)
                raise ScopeError(f"{name} must not contain control characters or lone surrogates, got {value!r}")
        if not (self.user_id or self.agent_id or self.run_id):
            raise ScopeError("no scope given: pass at least one of user_id, agent_id or run_id",
                             hint='e.g. memory.add(messages, user_id="alice")')

    @property
    def partition(self) -> str:
        if self.user_id:
            return f"user:{self.user_id}"
        if self.agent_id:
            return f"agent:{self.agent_id}"
        return f"run:{self.run_id}"

    @property
    def key(self) -> str:
        """The exact scope, canonical (for the dedupe constraint)."""
        return "\x1f".join(v or "" for v in (self.user_id, self.agent_id, self.run_id))

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("user_id", self.user_id), ("agent_id", self.agent_id),
                                  ("run_id", self.run_id)) if v}


@dataclass
class MemoryRecord:
    id: str
    memory: str
    hash: str
    scope: Scope
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime | None = None
    key_context: str | None = None
    """The neighbouring turn this memory's vector key was built with (see :mod:`mindgate.memory._keys`);
    stored so that a reindex rebuilds the same key; never part of the result shape."""

    def to_result(self, score: float | None = None) -> dict[str, Any]:
        """mem0's result item shape."""
        out: dict[str, Any] = {"id": self.id, "memory": self.memory, "hash": self.hash,
                               "metadata": self.metadata or None,
                               "created_at": self.created_at.isoformat(),
                               "updated_at": self.updated_at.isoformat() if self.updated_at else None}
        out.update(self.scope.as_dict())
        if score is not None:
            out["score"] = score
        return out


_DECODER = json.JSONDecoder()


def decode_metadata(text: str) -> Any:
    """Stored metadata JSON text as a value (the same as ``json.loads``)."""
    # a search builds ~100 records: the decoder's raw_decode skips json.loads' two wrapper layers (a third
    # of a record's cost); text with surrounding white space (not written by metadata_json) takes the
    # full path, which also refuses trailing data
    try:
        value, end = _DECODER.raw_decode(text)
    except ValueError:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


@dataclass(slots=True, eq=False)
class Candidate:
    """A search hit before its record is read: what fusion needs (the id, the times for tie-breaking and
    the recency and time signals, the metadata for the speaker and time signals). A store hands these out
    so that search reads full records only for the fused top ``limit`` (:meth:`MemoryStore.records`).

    ``ref`` is the store's own handle for reading the record (SQLite: the rowid); ``record`` is the
    record itself when the store read it with the hit anyway; ``raw_metadata`` is the metadata as stored
    JSON text, decoded on first use of :attr:`metadata` (most searches never ask for it)."""

    id: str
    created_at: datetime
    updated_at: datetime | None
    ref: Any = None
    record: MemoryRecord | None = None
    raw_metadata: str | None = None
    _metadata: dict[str, Any] | None = None

    @classmethod
    def of(cls, record: MemoryRecord) -> Candidate:
        return cls(record.id, record.created_at, record.updated_at, record=record)

    @property
    def metadata(self) -> dict[str, Any]:
        if self.record is not None:
            return self.record.metadata
        if self._metadata is None:
            self._metadata = decode_metadata(self.raw_metadata) if self.raw_metadata else {}
        return self._metadata


@dataclass
class HistoryRecord:
    id: str
    memory_id: str
    event: Literal["ADD", "UPDATE", "DELETE"]
    old_memory: str | None
    new_memory: str | None
    created_at: datetime
    actor: str | None = None

    def to_result(self) -> dict[str, Any]:
        return {"id": self.id, "memory_id": self.memory_id, "event": self.event,
                "old_memory": self.old_memory, "new_memory": self.new_memory,
                "created_at": self.created_at.isoformat(), "actor": self.actor,
                "is_deleted": self.event == "DELETE"}


@dataclass
class AddChange:
    record: MemoryRecord
    vector: Vector
    actor: str | None = None


@dataclass
class UpdateChange:
    """Replace a live record's text (and vector); ``metadata`` None keeps the old metadata."""

    id: str
    scope: Scope
    memory: str
    vector: Vector
    metadata: dict[str, Any] | None = None
    actor: str | None = None


@dataclass
class DeleteChange:
    id: str
    scope: Scope
    actor: str | None = None


Change = AddChange | UpdateChange | DeleteChange


@dataclass
class ChangeResult:
    id: str
    memory: str
    event: Event
    previous_memory: str | None = None

    def to_result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "memory": self.memory, "event": self.event}
        if self.previous_memory is not None:
            out["previous_memory"] = self.previous_memory
        return out


@dataclass(frozen=True)
class ContextSummary:
    """One cached fitting step of a conversation (see :mod:`mindgate.context._summary`).

    ``partition``: whose conversation (a scope partition, or the API key's name); ``conversation``: the
    digest of its first turn; ``covered``: how many leading non-system messages the entry covers;
    ``prefix``: the digest of exactly those messages; ``kind``: ``"summary"`` (``text`` is the rolling
    summary) or ``"memory"`` (the covered turns were written to long-term memory; ``text`` is empty)."""

    partition: str
    conversation: str
    covered: int
    prefix: str
    kind: Literal["summary", "memory"]
    text: str
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class StoredResponse:
    """A stored Responses API response (``store: true``): the response object as returned, this request's
    input items, and the chat messages a ``previous_response_id`` continuation starts from (the whole
    conversation so far without the request's ``instructions``, which do not carry over). ``owner`` is
    the acting user (None when the request named none); times are Unix seconds."""

    id: str
    owner: str | None
    created_at: float
    expires_at: float | None
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    context: list[dict[str, Any]]


class MemoryStore(ABC):
    """A memory backend. See the module docstring for the semantics every method must keep."""

    @abstractmethod
    def open(self, identity: EmbedderIdentity) -> None:
        """Create or migrate the schema; record ``identity`` or check it against the recorded one."""

    @abstractmethod
    def apply(self, changes: Sequence[Change]) -> list[ChangeResult]:
        """Write all changes in one transaction. An UPDATE/DELETE of an id that is not live in the
        given scope raises :class:`~mindgate.errors.NotFoundError` and nothing is written."""

    @abstractmethod
    def get(self, memory_id: str, scope: Scope | None = None, *,
            include_deleted: bool = False) -> MemoryRecord | None:
        """The live record (or a soft-deleted one too, with ``include_deleted``), or None; also None when
        ``scope`` is given and the record is outside it (same read semantics as every scoped read)."""

    @abstractmethod
    def list(self, scope: Scope, flt: Filter | None = None, *, limit: int = 100,
             offset: int = 0) -> list[MemoryRecord]:
        """Live records in scope, newest first (created_at DESC, id)."""

    @abstractmethod
    def count(self, scope: Scope, flt: Filter | None = None) -> int:
        """Number of live records in scope matching ``flt``."""

    @abstractmethod
    def scopes(self, *, limit: int = 1000) -> builtins.list[tuple[str, str, int]]:
        """The scopes that hold live records: ``(kind, id, count)`` with kind user_id / agent_id / run_id,
        most records first (then kind, id); at most ``limit`` rows. A record with several ids counts
        once under each."""

    @abstractmethod
    def vector_search(self, scope: Scope, vector: Vector, k: int,
                      flt: Filter | None = None) -> builtins.list[tuple[MemoryRecord, float]]:
        """Up to ``k`` live records by cosine similarity, best first."""

    @abstractmethod
    def text_search(self, scope: Scope, query: str, k: int,
                    flt: Filter | None = None) -> builtins.list[tuple[MemoryRecord, float]]:
        """Up to ``k`` live records by full-text relevance, best first. Query text is never parsed as
        query syntax (quotes, operators and SQL-looking text are searched as words)."""

    def vector_candidates(self, scope: Scope, vector: Vector, k: int,
                          flt: Filter | None = None) -> builtins.list[tuple[Candidate, float]]:
        """:meth:`vector_search`'s hits as :class:`Candidate` s (same order and scores). By default they carry
        their records, read with the hits (PostgreSQL: a second round trip for the fused top costs more than
        the rows it saves); the SQLite store overrides it to read only what fusion needs."""
        return [(Candidate.of(record), score) for record, score in self.vector_search(scope, vector, k, flt)]

    def text_candidates(self, scope: Scope, query: str, k: int,
                        flt: Filter | None = None) -> builtins.list[tuple[Candidate, float]]:
        """:meth:`text_search`'s hits as :class:`Candidate` s (same order and scores); see
        :meth:`vector_candidates`."""
        return [(Candidate.of(record), score) for record, score in self.text_search(scope, query, k, flt)]

    def records(self, candidates: Sequence[Candidate]) -> dict[str, MemoryRecord]:
        """The records of ``candidates`` (from this store's ``*_candidates``) by id. Where the candidates
        carry no record, they are read now, and one deleted since it was found is left out."""
        out: dict[str, MemoryRecord] = {}
        for candidate in candidates:
            if candidate.record is None:
                raise InvalidRequestError(f"candidate {candidate.id!r} carries no record and this store "
                                          "cannot read one by reference")
            out[candidate.id] = candidate.record
        return out

    @abstractmethod
    def history(self, memory_id: str) -> builtins.list[HistoryRecord]:
        """Every change to ``memory_id`` (also after it was deleted), oldest first."""

    @abstractmethod
    def delete_scope(self, scope: Scope, actor: str | None = None) -> int:
        """Soft-delete every live record in scope (with history rows) in one transaction; returns count."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every record, vector and history row and the recorded identity."""

    @abstractmethod
    def iter_records(self, *, include_deleted: bool = False,
                     batch_size: int = 1000) -> Iterator[MemoryRecord]:
        """Every record in id order (for reindex and migration)."""

    @abstractmethod
    def iter_history(self, *, batch_size: int = 1000) -> Iterator[HistoryRecord]:
        """Every history row in id order (for migration)."""

    @abstractmethod
    def reindex_pending(self, identity: EmbedderIdentity, *, limit: int) -> builtins.list[MemoryRecord]:
        """Up to ``limit`` live records whose vectors were not yet written by ``identity``
        (the resumable work list of ``mindgate reindex``)."""

    @abstractmethod
    def write_vectors(self, identity: EmbedderIdentity, items: Sequence[tuple[str, Vector]]) -> None:
        """Store vectors made by ``identity`` for the given ids, in one transaction. When no record is
        pending any more, ``identity`` becomes the store's recorded identity."""

    @abstractmethod
    def context_summaries(self, partition: str, conversation: str, kind: str, *,
                          limit: int = 8) -> builtins.list[ContextSummary]:
        """The cached entries of one conversation and kind, most covered first (at most ``limit``)."""

    @abstractmethod
    def put_context_summary(self, entry: ContextSummary) -> None:
        """Store ``entry``; an entry with the same (partition, conversation, prefix, kind) is replaced."""

    # -- migration between stores (``mindgate migrate``); optional: a store that lacks them cannot be
    # -- a migration source (the first two) or target (the last two).

    def recorded_identity(self) -> EmbedderIdentity | None:
        """The recorded embedder identity (None for a new store); works before :meth:`open`."""
        raise NotImplementedError(f"{type(self).__name__} cannot report its embedder identity, so it cannot "
                                  "be a migration source")

    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[str, Vector]]:
        """``(id, vector)`` of every record that has a vector (deleted ones included), in the same id order
        as :meth:`iter_records`, so records can be copied without re-embedding."""
        raise NotImplementedError(f"{type(self).__name__} cannot export its vectors, so it cannot be a "
                                  "migration source")

    def import_records(self, items: Sequence[tuple[MemoryRecord, Vector | None, bool]]) -> None:
        """Upsert ``(record, vector, deleted)`` items exactly as given (ids, timestamps, soft-deleted state;
        no history rows) in one transaction; importing the same items again changes nothing."""
        raise NotImplementedError(f"{type(self).__name__} cannot import records, so it cannot be a "
                                  "migration target")

    def import_history(self, items: Sequence[HistoryRecord]) -> None:
        """Insert history rows exactly as given (after their records), skipping ids already present."""
        raise NotImplementedError(f"{type(self).__name__} cannot import history, so it cannot be a "
                                  "migration target")

    # -- stored responses (``/v1/responses`` with ``store: true``); optional: a store without them makes
    # -- the gateway answer ``store: true`` requests without keeping them.

    def put_response(self, response: StoredResponse) -> None:
        """Insert (or replace, by id) one stored response in one transaction."""
        raise NotImplementedError(f"{type(self).__name__} cannot keep responses")

    def get_response(self, response_id: str, now: float) -> StoredResponse | None:
        """The stored response with this id unless it expired before ``now``; None otherwise."""
        raise NotImplementedError(f"{type(self).__name__} cannot keep responses")

    def delete_response(self, response_id: str) -> bool:
        """Delete one stored response; False when there was none."""
        raise NotImplementedError(f"{type(self).__name__} cannot keep responses")

    def purge_responses(self, now: float) -> int:
        """Delete the stored responses that expired before ``now``; returns how many."""
        raise NotImplementedError(f"{type(self).__name__} cannot keep responses")

    @abstractmethod
    def close(self) -> None:
        """Close connections."""

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
