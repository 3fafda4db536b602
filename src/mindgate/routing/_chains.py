"""Routers built from the ``routing:`` section of the configuration.

A target's ``endpoint`` is a name under ``providers:`` (e.g. a LAN LM Studio) or a provider name
(``lmstudio``, ``ollama``, ``openai``, ``local``, ``auto``...); a provider named directly uses the ``llm``
section's settings when ``llm.provider`` is that provider, else its defaults. ``model`` overrides the
endpoint's model.

```yaml
providers:
  lan: {provider: lmstudio, config: {lmstudio_base_url: "http://192.168.1.20:1234/v1"}}
routing:
  default: main
  chains:
    main:
      targets:
        - {endpoint: lmstudio, model: qwen2.5-7b-instruct, timeout: 60, first_token_timeout: 10}
        - lan:qwen2.5-7b-instruct
        - {endpoint: openai, model: gpt-4o-mini}
        - local
      retries: 2
      breaker_failures: 3
      breaker_cooldown: 30
    # tiers: large to small, each with the free memory it needs (see mindgate.routing._tiers)
    sized:
      targets:
        - {endpoint: big, min_free_memory: 12GiB}
        - {endpoint: small, min_free_memory: 3GiB}
        - local
```

Every chain admits its local targets by fit (``resources.fit_routing``, :mod:`mindgate.routing._placement`).
"""

from __future__ import annotations

from mindgate.config import AUTO, EndpointConfig, LLMSection, MindgateConfig, ProviderConfig, TargetConfig
from mindgate.errors import ConfigurationError
from mindgate.providers import create_chat_model, provider_names
from mindgate.providers._base import ChatModel
from mindgate.routing._placement import shared_placement
from mindgate.routing._retry import RetryPolicy
from mindgate.routing._router import Router, Target


def chain_names(config: MindgateConfig) -> list[str]:
    """The chains a config defines, plus ``auto`` (always available)."""
    names = list(config.routing.chains)
    return names if "auto" in names else [*names, "auto"]


def router_from_config(chain: str, config: MindgateConfig) -> Router:
    """The router for chain ``chain``; ``auto``, unless defined, is the embedded default chain."""
    spec = config.routing.chains.get(chain)
    if spec is None:
        if chain == "auto":
            from mindgate.routing._auto import auto_from_config

            return auto_from_config(config)
        raise ConfigurationError(f"no routing chain named {chain!r}",
                                 hint=f"chains defined under routing.chains: {', '.join(chain_names(config))}")
    targets = [Target(target_model(t, config), name=t.display_name, timeout=t.timeout,
                      first_token_timeout=t.first_token_timeout, context_length=t.context_length,
                      min_free_memory=int(t.min_free_memory) if t.min_free_memory is not None else None)
               for t in spec.targets]
    resources = config.resources
    return Router(targets, name=chain,
                  retry=RetryPolicy(spec.retries, spec.backoff_base, spec.backoff_max),
                  breaker_failures=spec.breaker_failures, breaker_cooldown=spec.breaker_cooldown,
                  health_check_interval=config.routing.health_check_interval,
                  placement=shared_placement(resources), tier_hysteresis=resources.tier_hysteresis,
                  tier_recover_after=resources.tier_recover_after)


def target_model(target: TargetConfig, config: MindgateConfig) -> ChatModel:
    """The chat model behind one chain target."""
    provider: str
    if target.endpoint in config.providers:
        endpoint = config.providers[target.endpoint]
        provider, settings = endpoint.provider, endpoint.config
    elif target.endpoint == AUTO or target.endpoint in provider_names():
        provider = target.endpoint
        settings = config.llm.config if config.llm.provider == provider else ProviderConfig()
    else:
        known = sorted(config.providers)
        raise ConfigurationError(
            f"routing target {target.endpoint!r} is neither an endpoint under `providers:` nor a provider",
            hint=f"endpoints: {', '.join(known) or 'none defined'}; providers: {', '.join((AUTO, *provider_names()))}")
    if target.model:
        settings = settings.model_copy(update={"model": target.model})
    if provider == "auto":
        from mindgate.routing._auto import auto_from_config

        return auto_from_config(config, settings)
    return create_chat_model(provider, settings)


def chat_model_for(section: LLMSection | EndpointConfig, config: MindgateConfig | None = None) -> ChatModel:
    """The chat model a config section names: the ``auto`` chain for ``auto`` (its named endpoints resolved
    against ``config``), else the provider's model."""
    if section.provider == "auto":
        from mindgate.routing._auto import auto_from_config

        whole = config or MindgateConfig.from_dict({}, env=False)
        return auto_from_config(whole, section.config)
    return create_chat_model(section.provider, section.config)


def resolve_route_target(spec: str, config: MindgateConfig) -> ChatModel:
    """A semantic route's target: a chain name (a :class:`Router`), else ``endpoint[:model]``."""
    if spec in config.routing.chains or spec == "auto":
        return router_from_config(spec, config)
    return target_model(TargetConfig.model_validate(spec), config)
