"""The provider registry: every module of this package that exports a ``SPEC`` is a provider.

Nothing here names a provider: the list, the asset names, descriptions, status tables and which
providers are configured all come from the specs (``spec.py``). Modules are imported on the
first call, not with the package, so ``providers.base`` can be imported from anywhere.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..http import RetryPolicy
    from .base import Provider
    from .spec import ProviderSpec


@cache
def specs() -> Mapping[str, ProviderSpec]:
    """Provider name -> spec, in name order."""
    found: dict[str, ProviderSpec] = {}
    for module in pkgutil.iter_modules(__path__):
        spec = getattr(importlib.import_module(f"{__name__}.{module.name}"), "SPEC", None)
        if spec is not None:
            found[spec.name] = spec
    return dict(sorted(found.items()))


def names() -> tuple[str, ...]:
    """Every provider's name (CONTRACT.md: the ``provider`` column's values)."""
    return tuple(specs())


def asset_names() -> dict[str, str]:
    """Provider name -> its asset's name (CONTRACT.md section 2: ``<provider>_feedback``)."""
    return {name: spec.asset_name for name, spec in specs().items()}


def get_spec(name: str) -> ProviderSpec:
    """The spec of provider ``name``; a KeyError naming the known ones otherwise."""
    try:
        return specs()[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(names())}") from None


def configured(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The providers whose required variables are all set in ``environ``."""
    return tuple(name for name, s in specs().items() if s.is_configured(environ))


def provider_from_env(name: str, environ: Mapping[str, str], *, policy: RetryPolicy | None = None, **kwargs: Any) -> Provider:
    """Provider ``name`` configured from ``environ`` with plain values (outside Dagster)."""
    return get_spec(name).provider_from_env(environ, policy=policy, **kwargs)
