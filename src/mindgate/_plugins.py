"""Discovery of provider plugins: the ``mindgate.providers`` entry-point group.

Every provider, built-in or third-party, is registered through this group, in one of two forms:

* ``name = "package.module:SPEC"``: one provider, whose object is a
  :class:`mindgate.providers._spec.ProviderSpec`; listed without importing it, imported on first use;
* ``label = "package"`` (no ``:attr``): a package of providers: each public module (or subpackage) of it that
  defines ``SPEC`` is one provider, named by its spec (a plain module with ``SPEC`` is one provider). Its
  modules are imported when the group is first listed, so they must import lightly (heavy dependencies
  inside functions). mindgate's built-ins are one such entry (``mindgate = "mindgate.providers"``): a new
  built-in is one new module, nothing else.

This module sits below :mod:`mindgate.config` (which checks provider names and per-provider keys with it)
and imports nothing of mindgate but the errors; it hands specs back untyped, and
:func:`mindgate.providers.provider_spec` checks their type.

Running from a source checkout (``src/`` on ``PYTHONPATH``) with an older install's metadata, mindgate's
own entry points are read from the checkout's ``pyproject.toml``, so the checkout's entries are the ones
used without reinstalling; third-party packages always come from installed metadata.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
import tomllib
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from mindgate.errors import ConfigurationError

GROUP = "mindgate.providers"
_DIST = "mindgate"

_log = logging.getLogger(__name__)
# Reentrant: listing a package of providers imports its modules, which may ask for the registry themselves.
_lock = threading.RLock()
_points: dict[str, EntryPoint] | None = None
_loaded: dict[str, Any] = {}


def _checkout_points() -> list[EntryPoint] | None:
    """mindgate's own entry points from ``pyproject.toml`` when this package runs from a source checkout."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    project = data.get("project", {})
    if project.get("name") != _DIST:
        return None
    table = project.get("entry-points", {}).get(GROUP, {})
    return [EntryPoint(name=name, value=value, group=GROUP) for name, value in table.items()]


def _expand(point: EntryPoint) -> list[EntryPoint]:
    """``point`` when it names an object; for a package (no ``:attr``), one entry point per public module of
    it that defines ``SPEC``, named by the spec. A module that fails to import is logged and left out (it
    must not hide every other provider)."""
    if point.attr:
        return [point]
    try:
        package = importlib.import_module(point.module)
    except Exception as exc:
        _log.warning("provider package %s (entry point %r) could not be imported: %s: %s", point.module,
                     point.name, type(exc).__name__, exc)
        return []
    modules = [package]  # a plain module (no ``:SPEC`` written) is its own one provider
    for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
        if info.name.startswith("_"):
            continue
        try:
            modules.append(importlib.import_module(f"{point.module}.{info.name}"))
        except Exception as exc:
            _log.warning("provider module %s.%s could not be imported: %s: %s", point.module, info.name,
                         type(exc).__name__, exc)
    found = []
    for module in modules:
        name = getattr(getattr(module, "SPEC", None), "name", None)
        if isinstance(name, str):
            found.append(EntryPoint(name=name, value=f"{module.__name__}:SPEC", group=GROUP))
    if not found:
        _log.warning("entry point %r (%s) registers no provider: no public module of it defines SPEC", point.name,
                     point.value)
    return found


def _scan() -> dict[str, EntryPoint]:
    own = _checkout_points()
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=GROUP):
        dist = point.dist.name if point.dist is not None else None
        if own is not None and dist is not None and dist.lower() == _DIST:
            continue  # the checkout's pyproject is the truth for mindgate's own providers
        for each in _expand(point):
            found.setdefault(each.name, each)
    for point in own or ():
        for each in _expand(point):
            found[each.name] = each
    return found


def provider_names() -> tuple[str, ...]:
    """Names of every registered provider (built-in and installed plugins), sorted."""
    global _points
    with _lock:
        if _points is None:
            _points = _scan()
        return tuple(sorted(_points))


def load(name: str) -> Any:
    """The object the entry point ``name`` names (imported on first use), or ConfigurationError.

    A name not seen yet triggers one fresh scan, so a plugin installed while the process runs is found."""
    global _points
    with _lock:
        if name in _loaded:
            return _loaded[name]
        if _points is None or name not in _points:
            _points = _scan()
        point = _points.get(name)
        if point is None:
            raise ConfigurationError(f"unknown provider {name!r}",
                                     hint=f"valid providers: {', '.join(sorted(_points)) or 'none registered'}"
                                          " (install a provider package to add one; a source checkout needs "
                                          "`pip install -e .` for its metadata)")
    try:
        obj = point.load()
    except Exception as exc:
        raise ConfigurationError(f"provider {name!r} could not be loaded from {point.value}: "
                                 f"{type(exc).__name__}: {exc}",
                                 hint="reinstall the package that provides it, or remove it from the config"
                                 ) from exc
    with _lock:
        return _loaded.setdefault(name, obj)
