"""Context- and fact-augmented keys, time-aware and speaker-aware search through the Memory API, with the real MiniLM
embedder and the real SQLite store (format level: which turn is linked to which, what the stored key is, what
reindex does, which signal a query turns on)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mindgate import AsyncMemory, EmbedderMismatchError, InvalidRequestError, Memory
from mindgate.config import MemorySettings
from mindgate.memory._expand import comparison_parts
from mindgate.memory._keys import fact_text, mix
from mindgate.memory._speaker import query_speaker
from mindgate.memory.stores._base import Scope
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers.local import SentenceTransformerEmbedder

ALICE = Scope(user_id="alice")
QUESTION = "Which of my running shoes should I clean first, the white ones or the blue ones?"
ANSWER = "Start with the white ones."
REPLY = "Done. I bought them at the outlet last week."


def open_memory(path: Path, minilm: SentenceTransformerEmbedder, **settings: object) -> Memory:
    return Memory(AsyncMemory(embedder=minilm, store=SQLiteStore(path), settings=MemorySettings(**settings)))


@pytest.fixture
def keyed(tmp_path: Path, minilm: SentenceTransformerEmbedder) -> Iterator[Memory]:
    m = open_memory(tmp_path / "memory.db", minilm, key_context=True)
    yield m
    m.store.close()


def contexts(memory: Memory) -> dict[str, str | None]:
    return {r.memory: r.key_context for r in memory.store.list(ALICE)}


def stored_vectors(memory: Memory) -> dict[str, np.ndarray]:
    texts = {r.id: r.memory for r in memory.store.iter_records()}
    return {texts[i]: v for i, v in memory.store.iter_vectors()}


def test_turns_of_one_call_and_of_later_calls_are_keyed_with_the_previous_turn(keyed: Memory) -> None:
    keyed.add([{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}],
              user_id="alice", infer=False)
    keyed.add(REPLY, user_id="alice", infer=False)  # its own call, same scope, moments later
    keyed.add("Unrelated: I like tea.", user_id="bob", infer=False)  # another scope is never context
    assert contexts(keyed) == {QUESTION: None, ANSWER: QUESTION, REPLY: ANSWER}
    assert keyed.store.list(Scope(user_id="bob"))[0].key_context is None
    # results and get() keep mem0's shape: the key context is internal
    assert "key_context" not in keyed.get_all(user_id="alice")["results"][0]


def test_the_key_is_the_text_vector_mixed_with_its_context(keyed: Memory,
                                                          minilm: SentenceTransformerEmbedder) -> None:
    keyed.add([{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}],
              user_id="alice", infer=False)
    vectors = stored_vectors(keyed)
    question, answer = minilm.embed_batch([QUESTION, ANSWER])
    assert np.allclose(vectors[QUESTION], question, atol=1e-5)
    assert np.allclose(vectors[ANSWER], mix(answer, question, 0.5), atol=1e-5)
    assert float(vectors[ANSWER] @ question) > float(answer @ question) + 0.1  # the answer now "knows" the topic


def test_context_needs_the_same_exact_scope_a_conversation_turn_and_the_time_window(keyed: Memory) -> None:
    keyed.add(QUESTION, user_id="alice", infer=False, metadata={"date": "2023/05/01 (Mon) 10:00"})
    keyed.add(ANSWER, user_id="alice", run_id="r1", infer=False, metadata={"date": "2023/05/01 (Mon) 10:01"})
    keyed.add(REPLY, user_id="alice", infer=False, metadata={"date": "2023/05/01 (Mon) 10:02"})
    keyed.add("A new session a day later.", user_id="alice", infer=False, metadata={"date": "2023/05/02 (Tue) 10:02"})
    found = contexts(keyed)
    assert found[ANSWER] is None  # the newest memory before it was in another exact scope
    assert found[REPLY] is None  # its newest predecessor (ANSWER) is in scope alice+r1, not alice
    assert found["A new session a day later."] is None  # a day apart: past key_context_window (30 min)


def test_a_fact_stored_by_update_keeps_its_context_and_the_key_follows_the_new_text(
        keyed: Memory, minilm: SentenceTransformerEmbedder) -> None:
    keyed.add([{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}],
              user_id="alice", infer=False)
    answer_id = next(r.id for r in keyed.store.list(ALICE) if r.memory == ANSWER)
    keyed.update(answer_id, "Start with the blue ones.")
    [new, question] = minilm.embed_batch(["Start with the blue ones.", QUESTION])
    assert np.allclose(stored_vectors(keyed)["Start with the blue ones."], mix(new, question, 0.5), atol=1e-5)


def test_turning_key_context_on_or_off_asks_for_reindex_which_rebuilds_the_keys(
        tmp_path: Path, minilm: SentenceTransformerEmbedder) -> None:
    path = tmp_path / "memory.db"
    keyed = open_memory(path, minilm, key_context=True)
    keyed.add([{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}],
              user_id="alice", infer=False)
    built = stored_vectors(keyed)
    keyed.store.close()

    plain = open_memory(path, minilm)
    with pytest.raises(EmbedderMismatchError, match="mindgate reindex"):
        plain.search("shoes", user_id="alice")
    assert plain.reindex() == 2
    [answer] = minilm.embed_batch([ANSWER])
    assert np.allclose(stored_vectors(plain)[ANSWER], answer, atol=1e-5)  # plain keys again
    plain.store.close()

    again = open_memory(path, minilm, key_context=True)
    assert again.reindex() == 2
    rebuilt = stored_vectors(again)
    assert all(np.allclose(rebuilt[text], built[text], atol=1e-5) for text in built)  # from the stored context
    assert again.search("which running shoes to clean", user_id="alice")["results"]
    again.store.close()


def test_off_by_default_nothing_is_stored_or_mixed(tmp_path: Path, minilm: SentenceTransformerEmbedder) -> None:
    plain = open_memory(tmp_path / "memory.db", minilm)
    plain.add([{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}],
              user_id="alice", infer=False)
    assert contexts(plain) == {QUESTION: None, ANSWER: None}
    plain.store.close()


# -- fact-augmented keys ----------------------------------------------------------------------------

REQUEST = ("Can you recommend good paints for a kids' art project? By the way, I volunteered at the Children's "
           "Museum for their Art Afternoon event on February 17th. Thanks!")
FACT = "By the way, I volunteered at the Children's Museum for their Art Afternoon event on February 17th."


@pytest.mark.parametrize(("text", "role", "facts"), [
    (REQUEST, "user", FACT),
    (REQUEST, "assistant", None),  # only the user's own statements are facts about them
    (REQUEST, None, None),
    ("Could you help me plan a trip? What should I pack?", "user", None),  # requests and questions only
    ("I'm looking for a phone case. My old phone is a Pixel 6 and I got it in 2021.\nIt works.", "user",
     "My old phone is a Pixel 6 and I got it in 2021."),
    ("The weather is nice today.", "user", None),  # no first person
])
def test_fact_text_keeps_the_users_first_person_statements(text: str, role: str | None, facts: str | None) -> None:
    assert fact_text(text, role) == facts


def test_a_user_message_is_keyed_with_its_facts_and_found_by_a_question_about_them(
        tmp_path: Path, minilm: SentenceTransformerEmbedder) -> None:
    memory = open_memory(tmp_path / "memory.db", minilm, key_facts=True, key_facts_weight=1.0)
    echo = f"You said: {REQUEST}"
    memory.add([{"role": "user", "content": REQUEST}, {"role": "assistant", "content": echo}],
               user_id="alice", infer=False)
    memory.add("The weather is nice today.", user_id="alice", infer=False)
    text, fact, plain, question, echoed = minilm.embed_batch(
        [REQUEST, FACT, "The weather is nice today.", "Which art events did I attend?", echo])
    records = memory.store.list(ALICE)
    vectors = {(r.memory, r.metadata.get("role")): v for r in records
               for i, v in memory.store.iter_vectors() if i == r.id}
    assert np.allclose(vectors[(REQUEST, "user")], mix(text, None, 0.0, [(fact, 1.0)]), atol=1e-5)
    assert np.allclose(vectors[(echo, "assistant")], echoed, atol=1e-5)  # not the user's words: plain key
    assert np.allclose(vectors[("The weather is nice today.", "user")], plain, atol=1e-5)  # no fact sentence
    assert float(vectors[(REQUEST, "user")] @ question) > float(text @ question) + 0.05
    assert all(r.key_context is None for r in records)  # nothing stored: the facts come from the text
    # update re-derives the facts from the new text
    user_id = next(r.id for r in records if r.metadata.get("role") == "user")
    memory.update(user_id, "Thanks! I moved to Lisbon in May.")
    [new] = minilm.embed_batch(["Thanks! I moved to Lisbon in May."])
    [moved] = minilm.embed_batch(["I moved to Lisbon in May."])
    assert np.allclose(stored_vectors(memory)["Thanks! I moved to Lisbon in May."], mix(new, None, 0.0, [(moved, 1.0)]),
                       atol=1e-5)
    memory.store.close()


def test_turning_key_facts_on_asks_for_reindex_which_builds_the_same_keys_as_adding(
        tmp_path: Path, minilm: SentenceTransformerEmbedder) -> None:
    path = tmp_path / "memory.db"
    faceted = open_memory(path, minilm, key_facts=True)
    faceted.add([{"role": "user", "content": REQUEST}, {"role": "assistant", "content": ANSWER}],
                user_id="alice", infer=False)
    built = stored_vectors(faceted)
    faceted.store.close()
    plain = open_memory(path, minilm, key_facts=False)
    with pytest.raises(EmbedderMismatchError, match="mindgate reindex"):
        plain.search("art events", user_id="alice")
    assert plain.reindex() == 2
    plain.store.close()
    again = open_memory(path, minilm, key_facts=True)
    assert again.reindex() == 2
    rebuilt = stored_vectors(again)
    assert all(np.allclose(rebuilt[text], built[text], atol=1e-5) for text in built)
    assert again.search("Which art events did I attend?", user_id="alice")["results"][0]["memory"] == REQUEST
    again.store.close()


def test_fact_keys_are_on_for_new_stores_and_a_store_built_without_them_is_searched_as_it_is(
        tmp_path: Path, minilm: SentenceTransformerEmbedder) -> None:
    assert MemorySettings().key_facts
    path = tmp_path / "memory.db"
    old = open_memory(path, minilm, key_facts=False)
    old.add(REQUEST, user_id="alice", infer=False)
    old.store.close()
    upgraded = open_memory(path, minilm)  # the defaults, nothing set: plain keys kept, no reindex asked
    assert upgraded.search("Which art events did I attend?", user_id="alice")["results"][0]["memory"] == REQUEST
    upgraded.add("I also ran the Walk for Hunger.", user_id="alice", infer=False)
    [walk] = minilm.embed_batch(["I also ran the Walk for Hunger."])
    assert np.allclose(stored_vectors(upgraded)["I also ran the Walk for Hunger."], walk, atol=1e-5)  # still plain
    upgraded.store.close()
    explicit = open_memory(path, minilm, key_facts=True)  # asked for explicitly: the store must be rebuilt
    with pytest.raises(EmbedderMismatchError, match="mindgate reindex"):
        explicit.search("art events", user_id="alice")
    assert explicit.reindex() == 2
    [text, fact] = minilm.embed_batch([REQUEST, FACT])
    assert np.allclose(stored_vectors(explicit)[REQUEST], mix(text, None, 0.0, [(fact, 1.5)]), atol=1e-5)
    explicit.store.close()
    new = open_memory(tmp_path / "new.db", minilm)
    new.add(REQUEST, user_id="alice", infer=False)
    assert np.allclose(stored_vectors(new)[REQUEST], mix(text, None, 0.0, [(fact, 1.5)]), atol=1e-5)
    new.store.close()


# -- time-aware search ------------------------------------------------------------------------------


@pytest.fixture
def diary(tmp_path: Path, minilm: SentenceTransformerEmbedder) -> Iterator[Memory]:
    m = open_memory(tmp_path / "memory.db", minilm)
    for day, text in (("2023/04/04 (Tue) 12:30", "I had lunch with Maria at the noodle bar."),
                      ("2023/04/11 (Tue) 12:30", "I had lunch with Tom at the noodle bar."),
                      ("2023/04/14 (Fri) 12:30", "I had lunch with Sam at the noodle bar.")):
        m.add(text, user_id="alice", infer=False, metadata={"date": day})
    yield m
    m.store.close()


def test_a_time_expression_boosts_memories_from_that_time(diary: Memory) -> None:
    query = "Who did I have lunch with last Tuesday?"
    found = diary.search(query, user_id="alice", reference_time="2023-04-18T16:50:00Z", explain=True)["results"]
    assert found[0]["memory"] == "I had lunch with Tom at the noodle bar."
    assert found[0]["explain"]["signals"]["time"]["raw"] == 1.0
    two_weeks = diary.search("Who did I have lunch with two weeks ago?", user_id="alice",
                             reference_time="2023-04-18T16:50:00Z")["results"]
    assert two_weeks[0]["memory"] == "I had lunch with Maria at the noodle bar."


def test_without_a_time_expression_or_with_time_aware_off_nothing_changes(
        diary: Memory, tmp_path: Path, minilm: SentenceTransformerEmbedder) -> None:
    plain = diary.search("Who did I have lunch with?", user_id="alice", reference_time="2023-04-18T16:50:00Z",
                         explain=True)["results"]
    assert all("time" not in r["explain"]["signals"] for r in plain)
    off = open_memory(tmp_path / "memory.db", minilm, time_aware=False)
    results = off.search("Who did I have lunch with last Tuesday?", user_id="alice",
                         reference_time="2023-04-18T16:50:00Z", explain=True)["results"]
    assert all("time" not in r["explain"]["signals"] for r in results)
    off.store.close()


def test_asking_for_the_most_recent_ranks_newer_memories_with_the_time_weight(
        diary: Memory, tmp_path: Path, minilm: SentenceTransformerEmbedder) -> None:
    query = "Who did I have lunch with most recently?"
    found = diary.search(query, user_id="alice", explain=True)["results"]
    newest = next(r for r in found if r["memory"] == "I had lunch with Sam at the noodle bar.")  # the latest date
    assert newest["explain"]["signals"]["recency"]["rank"] == 1
    by_recency = sorted(found, key=lambda r: -r["explain"]["signals"]["recency"]["contribution"])
    assert [r["memory"].split()[4] for r in by_recency] == ["Sam", "Tom", "Maria"]  # by the dates in metadata
    off = open_memory(tmp_path / "memory.db", minilm, time_weight=0.0)
    assert all("recency" not in r["explain"]["signals"]
               for r in off.search(query, user_id="alice", explain=True)["results"])
    off.store.close()


@pytest.mark.parametrize("bad", ["next blue moon", 1700000000, "2023-02-30"])
def test_a_reference_time_that_is_not_a_date_is_a_clear_error(diary: Memory, bad: object) -> None:
    with pytest.raises(InvalidRequestError, match="reference_time"):
        diary.search("lunch last Tuesday", user_id="alice", reference_time=bad)  # type: ignore[arg-type]


# -- speaker-aware search ---------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "speaker"), [
    ("How often do I see my therapist?", "user"),
    ("Where did I park?", "user"),
    ("Can you remind me which venue you recommended in Portland?", "assistant"),
    ("In our previous chat, what were the three aims?", "assistant"),
    ("I remember you told me to dilute tea tree oil. What ratio?", "assistant"),
    ("Can you suggest some useful accessories for my phone?", "user"),  # a request, not a recall of its words
    ("What is the capital of France?", None),
])
def test_query_speaker_reads_whose_words_a_question_asks_about(query: str, speaker: str | None) -> None:
    assert query_speaker(query) == speaker


def test_the_speaker_signal_prefers_the_turns_of_the_speaker_asked_about(tmp_path: Path,
                                                                        minilm: SentenceTransformerEmbedder) -> None:
    m = open_memory(tmp_path / "memory.db", minilm, speaker_weight=0.6)
    m.add([{"role": "user", "content": "For the trip to Portland I want a jazz venue."},
           {"role": "assistant", "content": "In Portland, try the Jack London Revue jazz venue."}],
          user_id="alice", infer=False)
    asked_assistant = m.search("Which jazz venue in Portland did you recommend?", user_id="alice",
                               explain=True)["results"]
    assert asked_assistant[0]["memory"].startswith("In Portland, try")
    assert asked_assistant[0]["explain"]["signals"]["speaker"]["raw"] == 1.0
    asked_user = m.search("What kind of venue did I want in Portland?", user_id="alice")["results"]
    assert asked_user[0]["memory"].startswith("For the trip")
    m.store.close()
    off = open_memory(tmp_path / "memory.db", minilm, speaker_weight=0.0)  # off: no speaker signal
    plain = off.search("Which jazz venue in Portland did you recommend?", user_id="alice", explain=True)["results"]
    assert all("speaker" not in r["explain"]["signals"] for r in plain)
    off.store.close()


# -- comparison questions: each compared part searched too ------------------------------------------


@pytest.mark.parametrize(("query", "parts"), [
    ("Which event did I participate in first, the volleyball league or the charity 5K run?",
     ["volleyball league", "charity 5K run"]),
    ("How many days had passed between the 'Walk for Hunger' event and the 'Coastal Cleanup' event?",
     ["Walk for Hunger' event", "Coastal Cleanup' event"]),
    ("Which mode of transport did I use most recently, a bus or a train?", ["a bus", "a train"]),
    ("Who did I have lunch with last Tuesday?", []),
    ("Do I prefer tea or coffee?", []),  # no comma before the alternatives: not read as a comparison
    # a pasted paragraph that merely holds "between ... and": its "parts" are not compared things
    ("You'll see the border between North and South Korea up close. " + "You'll also visit the museum. " * 4
     + "The Imjingak tour takes you to the Peace Bell.", []),
])
def test_comparison_parts_reads_the_two_compared_things(query: str, parts: list[str]) -> None:
    assert comparison_parts(query) == parts


def test_a_comparison_question_brings_up_a_memory_about_each_compared_event(
        tmp_path: Path, minilm: SentenceTransformerEmbedder) -> None:
    m = open_memory(tmp_path / "memory.db", minilm)
    m.add([{"role": "user", "content": text} for text in (
        "I joined a recreational volleyball league with friends from work in March.",
        "I ran the charity 5K for the children's hospital on April 2nd.",
        "Our volleyball league plays on Tuesdays; we won the first game.",
        "The volleyball league jerseys are blue and the team is called Spikers.",
        "I bought new running shoes for the spring.")], user_id="alice", infer=False)
    query = "Which event did I participate in first, the volleyball league or the charity 5K run?"
    found = m.search(query, user_id="alice", limit=3, explain=True)["results"]
    assert any("charity 5K" in r["memory"] for r in found[:2])  # the second event is not crowded out
    assert any("volleyball" in r["memory"] for r in found[:2])
    for r in found:
        signals = r["explain"]["signals"]
        assert 0.0 <= signals["expansion"]["raw"] <= 1.0 and signals["expansion"]["weight"] == 1.0
        assert sum(s["contribution"] for s in signals.values()) == pytest.approx(r["score"], abs=1e-5)
        assert 0.0 <= r["score"] <= 1.0
    plain = m.search("When did I run the charity 5K?", user_id="alice", explain=True)["results"]
    assert all("expansion" not in r["explain"]["signals"] for r in plain)  # not a comparison: searched as before
    m.store.close()
    off = open_memory(tmp_path / "memory.db", minilm, expansion_weight=0.0)
    assert all("expansion" not in r["explain"]["signals"]
               for r in off.search(query, user_id="alice", explain=True)["results"])
    off.store.close()
