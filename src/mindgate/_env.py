"""The ``MINDGATE_*`` environment overlay, read by pydantic-settings.

``MINDGATE_<SECTION>__<KEY>__...=value`` sets ``section.key...`` (case-insensitive, ``__`` between levels),
e.g. ``MINDGATE_LLM__CONFIG__MODEL=qwen2.5-7b-instruct``. Values are read as YAML scalars or flow
collections (``true``, ``9100``, ``[a, b]``, ``{x: 1}``), anything else stays a string. ``MINDGATE_HOME``
and ``MINDGATE_CONFIG`` say where things are and are not part of the overlay. A variable whose section is
not one of the config's is an error naming the closest section, never silently ignored.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from typing import Any

import yaml
from pydantic import create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from mindgate.errors import ConfigurationError

PREFIX = "MINDGATE_"
NOT_CONFIG = frozenset({"MINDGATE_HOME", "MINDGATE_CONFIG"})


class _Environment(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_nested_delimiter="__", case_sensitive=False,
                                      extra="ignore", env_file=None)


def environment_overrides(sections: Iterable[str]) -> dict[str, Any]:
    """The overlay (from the process environment) as a nested dict over the config's top-level ``sections``."""
    names = sorted(sections)
    for name in os.environ:
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in NOT_CONFIG:
            continue
        path = upper[len(PREFIX):].split("__")
        if not all(path):
            raise ConfigurationError(f"environment variable {name} has an empty key segment",
                                     hint="separate nested keys with a double underscore, "
                                          "e.g. MINDGATE_LLM__CONFIG__MODEL")
        if path[0].lower() not in names:
            close = difflib.get_close_matches(path[0].lower(), names, n=1)
            raise ConfigurationError(f"environment variable {name} names no config section {path[0].lower()!r}"
                                     + (f" (did you mean `{close[0]}`?)" if close else ""),
                                     hint=f"sections: {', '.join(names)}")
    fields: dict[str, Any] = {name: (dict[str, Any] | str | None, None) for name in names}
    environment = create_model("MindgateEnvironment", __base__=_Environment, **fields)
    return {k: _scalars(v) for k, v in environment().model_dump(exclude_none=True).items()}


def _scalars(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scalars(v) for k, v in value.items()}
    if isinstance(value, str) and value.strip():
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value
