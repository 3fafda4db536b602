"""The ``{provider, config}`` sections of the config (``llm``, ``embedder``, ``embedders.*``, ``providers.*``):
each provider's own pydantic config model, and validation by the model of the provider a section names.

:class:`ProviderConfig` holds the keys every provider takes; a provider's spec names its subclass
(``ProviderSpec.config_model``: LM Studio's adds ``lmstudio_base_url``, ``n_ctx``, ``ttl``; a plugin brings
its own). The union of those models is discriminated on ``provider``, but its members are only known at run
time (plugins are entry points), so the section's ``config`` validator looks the model up
(:func:`config_model`) and validates with it: ``section.config`` is an instance of the named provider's
model, and a key it does not take is an error naming the key, the provider and the keys it does take.
:mod:`mindgate.config` re-exports everything public here.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any, ClassVar, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import tagged_union_schema

from mindgate._plugins import load as load_plugin
from mindgate._plugins import provider_names
from mindgate.errors import ConfigurationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


# `auto` is a routing chain over LM Studio and Ollama (mindgate.routing._auto), not a provider; these keys
# move its targets.
AUTO = "auto"
_AUTO_BASE_URL_KEYS = ("lmstudio_base_url", "ollama_base_url")


def base_url_keys(provider: str) -> tuple[str, ...]:
    """The config keys that may carry ``provider``'s URL, first set wins (from its spec; mem0 names them per
    provider). An unregistered name gets ``("base_url",)``."""
    if provider == AUTO:
        return _AUTO_BASE_URL_KEYS
    try:
        keys: tuple[str, ...] = tuple(load_plugin(provider).base_url_keys)
    except ConfigurationError:
        return ("base_url",)
    return keys


def config_model(provider: str) -> type[ProviderConfig]:
    """The pydantic model of ``provider``'s ``config`` section: its spec's ``config_model`` (``auto``:
    :class:`AutoConfig`). An unregistered name is a ConfigurationError listing the registered ones."""
    if provider == AUTO:
        return AutoConfig
    model = getattr(load_plugin(provider), "config_model", None)
    if not (isinstance(model, type) and issubclass(model, ProviderConfig)):
        raise ConfigurationError(f"provider {provider!r} declares no config model",
                                 hint="its ProviderSpec needs config_model=<a ProviderConfig subclass>")
    return model


def _check_provider(name: str, *, kind: Literal["chat", "embedder"], auto: bool) -> str:
    """``name`` if it is a registered provider offering ``kind`` (or ``auto`` where allowed)."""
    if auto and name == AUTO:
        return name
    names = provider_names()
    if name not in names:
        valid = ([AUTO] if auto else []) + list(names)
        close = difflib.get_close_matches(name, valid, n=1)
        did_you_mean = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{name!r} is not a valid choice{did_you_mean}; valid providers: {', '.join(valid)}")
    spec = load_plugin(name)
    if getattr(spec, "chat_model" if kind == "chat" else "embedder", None) is None:
        raise ValueError(f"provider {name!r} offers no {'chat model' if kind == 'chat' else 'embedder'}")
    return name


class ProviderConfig(_Strict):
    """The keys every provider's ``config`` section takes (mem0's names); the base of each provider's own
    model.

    A provider's spec names its model (``ProviderSpec.config_model``, a subclass adding the provider's own
    keys: its base-URL key, ``ttl``, ``azure_kwargs``, ...), and a section is validated by the model of the
    provider it names, so a key is checked against that provider alone. Code that only reads the common
    keys takes a ``ProviderConfig``; :meth:`as_config` turns one into another provider's model."""

    model: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    embedding_dims: int | None = Field(default=None, gt=0)
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    top_p: float | None = Field(default=None, ge=0, le=1)
    timeout: float = Field(default=120.0, gt=0, description="seconds for a whole request")
    connect_timeout: float = Field(default=3.0, gt=0, description="seconds to establish a connection")
    headers: dict[str, str] = Field(default_factory=dict)
    http_client_proxies: str | dict[str, str] | None = Field(
        default=None, description="mem0's: a proxy URL for every request, or {scheme: proxy URL}")
    batch_size: int = Field(default=64, gt=0, description="embedding batch size")

    def base_url_for(self, provider: str) -> str | None:
        """The URL this config gives ``provider`` (its base-URL keys, first set wins), or None."""
        for key in base_url_keys(provider):
            value = getattr(self, key, None)
            if value:
                return str(value).rstrip("/")
        return None

    def as_config(self, model: type[_C], /, *, strict: bool = True, **update: Any) -> _C:
        """This config as ``model`` (another provider's), with ``update`` applied (a None in ``update``
        leaves a key out). Keys set here that ``model`` does not take are a ValidationError naming them
        (``strict``) or left out."""
        values = {key: getattr(self, key) for key in self.model_fields_set
                  if strict or key in model.model_fields}
        values.update(update)
        return model.model_validate({key: value for key, value in values.items() if value is not None})

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` when this provider's model has it (``default`` otherwise): for code that
        serves several providers, e.g. ``config.get("ttl")``."""
        return getattr(self, key, default) if key in type(self).model_fields else default


_C = TypeVar("_C", bound=ProviderConfig)

class BaseURLConfig(ProviderConfig):
    """The common keys plus ``base_url``: the model of a provider with no keys of its own (most
    OpenAI-compatible ones, :func:`mindgate.providers.openai_compatible_spec`)."""

    base_url: str | None = None


ResponsesAPI = Literal["bridge", "native", "auto"]
"""How a provider's chat model serves ``POST /v1/responses`` (the ``responses_api`` key of the providers whose
servers have their own Responses API: OpenAI, OpenAI-compatible servers such as vLLM, LM Studio, Ollama).
``bridge``: onto chat completions, as for every other target (the default); ``native``: the request is passed
to the server's own ``/v1/responses`` whenever nothing in it needs mindgate's help (docs/openai-compat.md);
``auto``: the same, but a server that turns out to have no such route (HTTP 404/405) is remembered and
bridged."""
RESPONSES_API_DESCRIPTION = ("POST /v1/responses: bridge (onto chat completions), native (pass through to the "
                             "server's own /v1/responses when nothing needs mindgate's help), or auto (native, "
                             "bridged when the server has no such route)")

TTL_DESCRIPTION = ("seconds an idle model stays loaded (LM Studio's JIT ttl, Ollama's keep_alive, the local "
                    "engine's idle TTL)")


class AutoConfig(ProviderConfig):
    """``llm.provider: auto``: the common keys, where its LM Studio and Ollama are, the endpoints tried first,
    and the keys of its last resort, the local engine."""

    lmstudio_base_url: str | None = None
    ollama_base_url: str | None = None
    endpoints: list[str] = Field(default_factory=list, description="endpoint names (under providers:) or server "
                                                                    "URLs tried first, in order")
    model_path: str | None = Field(default=None, description="local engine: a GGUF file")
    n_ctx: int | None = Field(default=None, gt=0, description="local engine: context length")
    n_threads: int | None = Field(default=None, gt=0, description="local engine: CPU threads")
    ttl: int | None = Field(default=None, gt=0, description=TTL_DESCRIPTION)


class _ProviderSection(_Strict):
    """``{"provider": NAME, "config": {...}}``: ``config`` is validated by NAME's own model
    (:func:`config_model`), so every key is checked against that provider.

    Its JSON schema is the discriminated union this is: one member per provider registered when the
    schema is made (plugins included), each with that provider's config model (:meth:`__get_pydantic_json_schema__`)."""

    _kind: ClassVar[Literal["chat", "embedder"]] = "chat"
    _auto: ClassVar[bool] = True  # `auto` is a valid provider here

    provider: str
    # SerializeAsAny: dumped as the provider's model, its own keys included (not as the declared base)
    config: SerializeAsAny[ProviderConfig] = Field(default_factory=ProviderConfig, validate_default=True)

    @field_validator("provider")
    @classmethod
    def _registered(cls, value: str) -> str:
        return _check_provider(value, kind=cls._kind, auto=cls._auto)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        default = cls.model_fields["provider"].default
        members = {name: _member(cls, name, model, default=name == default).__pydantic_core_schema__
                   for name, model in _section_models(cls._kind, cls._auto).items()}
        union = handler(tagged_union_schema(members, discriminator="provider"))
        return {**union, "title": cls.__name__, "description": " ".join((cls.__doc__ or "").split("\n\n")[0].split())}

    @field_validator("config", mode="before")
    @classmethod
    def _by_provider(cls, value: Any, info: ValidationInfo) -> Any:
        provider = info.data.get("provider")
        if provider is None:  # the provider itself was invalid: that is the error to report
            return ProviderConfig.model_construct()
        model = config_model(provider)
        if isinstance(value, ProviderConfig):
            if type(value) is model:  # exact: a subclass is another provider's model
                return value
            value = {key: getattr(value, key) for key in value.model_fields_set}
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            raise _per_provider(exc, provider, model) from None

    @model_validator(mode="after")
    def _config_follows_provider(self) -> _ProviderSection:
        """After ``section.provider = ...`` (assignment is validated), ``config`` becomes the new provider's
        model; a key it does not take is an error."""
        model = config_model(self.provider)
        if type(self.config) is not model:
            values = {key: getattr(self.config, key) for key in self.config.model_fields_set}
            try:
                self.__dict__["config"] = model.model_validate(values)  # not via setattr: no re-validation loop
            except ValidationError as exc:
                raise _per_provider(exc, self.provider, model, at=("config",)) from None
        return self


def _per_provider(exc: ValidationError, provider: str, model: type[ProviderConfig], *,
                  at: tuple[str, ...] = ()) -> ValidationError:
    """``exc`` with each unknown key explained for ``provider``: whose key it is, and the keys it takes."""
    details: list[InitErrorDetails] = []
    for err in exc.errors():
        if err["type"] != "extra_forbidden":
            details.append(InitErrorDetails(type=err["type"], loc=(*at, *err["loc"]), input=err["input"],
                                            ctx=err.get("ctx", {})))
            continue
        key = str(err["loc"][-1])
        own = sorted(set(model.model_fields) - set(ProviderConfig.model_fields))
        if len(err["loc"]) > 1:  # inside one of its keys, e.g. azure_kwargs
            valid = _keys_at(model, [str(p) for p in err["loc"][:-1]])
            close = difflib.get_close_matches(key, valid, n=1)
            did_you_mean = f" (did you mean `{close[0]}`?)" if close else ""
            message = f"unknown key{did_you_mean}; valid keys: {', '.join(valid)}"
        elif key == "endpoints":
            message = (f"`endpoints` belongs to the `auto` provider, not {provider!r}; list fallbacks in a routing "
                       "chain instead")
        elif key in _other_providers_keys():
            message = (f"`{key}` is not used by provider {provider!r} (its own keys: {', '.join(own) or 'none'}; "
                       f"common keys: {', '.join(sorted(ProviderConfig.model_fields))})")
        else:
            valid = sorted(model.model_fields)
            close = difflib.get_close_matches(key, valid, n=1)
            did_you_mean = f" (did you mean `{close[0]}`?)" if close else ""
            message = f"unknown key for provider {provider!r}{did_you_mean}; valid keys: {', '.join(valid)}"
        details.append(InitErrorDetails(type=PydanticCustomError("provider_key", message.replace("{", "{{")
                                                                 .replace("}", "}}")),
                                        loc=(*at, *err["loc"]), input=err["input"]))
    return ValidationError.from_exception_data(exc.title, details)


def _other_providers_keys() -> set[str]:
    """Every key some registered provider (or ``auto``) takes (for naming a key used with the wrong one)."""
    keys = set(AutoConfig.model_fields)
    for name in provider_names():
        try:
            keys |= set(config_model(name).model_fields)
        except ConfigurationError:
            continue  # a broken plugin is reported when it is used
    return keys


class LLMSection(_ProviderSection):
    """The chat model: a registered provider (entry-point group ``mindgate.providers``) or ``auto``, and
    its config."""

    provider: str = Field(default=AUTO, description="a registered provider (entry-point group "
                          "mindgate.providers) or `auto`")


class EmbedderSection(_ProviderSection):
    """An embedder: a registered provider offering embeddings, and its config."""

    _kind = "embedder"
    _auto = False

    provider: str = Field(default="local", description="a registered provider offering embeddings")


class EndpointConfig(_ProviderSection):
    """A named endpoint under ``providers:``, e.g. a LAN LM Studio."""

    provider: str


def _section_models(kind: Literal["chat", "embedder"], auto: bool) -> dict[str, type[ProviderConfig]]:
    """Provider name -> config model for every provider registered now that offers ``kind`` (``auto``
    first where allowed); a plugin that fails to load is left out (it is reported when it is used)."""
    models: dict[str, type[ProviderConfig]] = {AUTO: AutoConfig} if auto else {}
    for name in provider_names():
        try:
            _check_provider(name, kind=kind, auto=False)
            models[name] = config_model(name)
        except (ValueError, ConfigurationError):
            continue
    return models


@functools.lru_cache(maxsize=512)
def _member(section: type[_ProviderSection], provider: str, model: type[ProviderConfig], *,
            default: bool) -> type[BaseModel]:
    """The member of ``section``'s union for ``provider``: ``provider`` fixed to that name, ``config`` its model
    (for the JSON schema only; validation goes through :class:`_ProviderSection`)."""
    display = getattr(load_plugin(provider), "display", None) if provider != AUTO else None
    description = f"the keys {display} takes" if display else "the keys of `auto` and of its local engine"
    name_field = Field(default=provider) if default else Field()
    return create_model(f"{section.__name__}_{provider}",
                        __config__=ConfigDict(extra="forbid", title=f"{section.__name__} ({provider})"),
                        provider=(_LITERAL[provider], name_field),
                        config=(model, Field(default_factory=model, description=description)))


_LITERAL: Any = Literal  # indexed with a provider name known at run time only


def _keys_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """Field names of the model found by walking ``loc`` from ``model`` (for error messages)."""
    current: Any = model
    for part in loc:
        field = current.model_fields.get(part) if isinstance(current, type) and issubclass(current, BaseModel) else None
        if field is None:
            return []
        current = model_in(field.annotation)
    return sorted(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def model_in(annotation: Any) -> Any:
    """The pydantic model inside a field's annotation (``Model``, ``Model | None``, ``dict[str, Model]``), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = model_in(arg)
        if found is not None:
            return found
    return None
