"""The structured-output ladder's schema handling: what pydantic's ``model_json_schema()`` emits."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, Field

from mindgate.providers._structured import _with_schema_prompt, prompt_schema


class _Place(BaseModel):
    title: str = Field(max_length=20)  # a property named like the keyword: kept
    kind: Literal["city"]


class _Answer(BaseModel):
    home: _Place
    previous: _Place | None = None


class _Tree(BaseModel):
    label: str
    children: list[_Tree] = []


def test_the_text_prompt_gets_the_schema_inlined_without_titles() -> None:
    schema = _Answer.model_json_schema()
    assert "$defs" in schema and schema["properties"]["home"] == {"$ref": "#/$defs/_Place"}
    flat = prompt_schema(schema)
    place = {"type": "object", "properties": {"title": {"type": "string", "maxLength": 20},
                                              "kind": {"type": "string", "enum": ["city"]}},
             "required": ["title", "kind"]}
    assert flat == {"type": "object", "properties": {"home": place, "previous": {"anyOf": [place, {"type": "null"}]}},
                    "required": ["home"]}
    assert list(flat) == ["type", "properties", "required"] and list(place) == ["type", "properties", "required"]
    assert schema["$defs"]["_Place"]["title"] == "_Place"  # the caller's schema is left as it was
    prompt = _with_schema_prompt([{"role": "user", "content": "Where?"}], schema)
    assert prompt[0]["role"] == "system" and json.dumps(flat, separators=(",", ":")) in prompt[0]["content"]
    assert "$ref" not in prompt[0]["content"] and "$defs" not in prompt[0]["content"]


def test_a_recursive_schema_is_left_as_it_is() -> None:
    schema = _Tree.model_json_schema()
    assert prompt_schema(schema) == schema
