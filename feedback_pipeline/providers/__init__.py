"""Provider registry: contract name -> provider class (one module per API)."""

from __future__ import annotations

import importlib

from .base import Provider

PROVIDER_CLASSES: dict[str, str] = {
    "mintlify": "feedback_pipeline.providers.mintlify:MintlifyProvider",
    "usersnap": "feedback_pipeline.providers.usersnap:UsersnapProvider",
    "formbricks": "feedback_pipeline.providers.formbricks:FormbricksProvider",
    "mapbox": "feedback_pipeline.providers.mapbox:MapboxProvider",
    "feedbackkit": "feedback_pipeline.providers.feedbackkit:FeedbackKitProvider",
}


def provider_class(name: str) -> type[Provider]:
    """The class implementing provider ``name``."""
    module_name, _, class_name = PROVIDER_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
