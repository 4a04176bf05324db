"""Which client class serves each API source of the registry (`core/sources.py`).

The registry entry says what a source is (key, API root, normaliser, incremental or not, rate
limit); this table binds its key to the `LiveMuseumClient` subclass that talks to the API. The
class also carries the record rules (`record_key`, `record_modified`, `snapshot_text`,
`public_image_url`) that the snapshot of the bundled sample and the sample builder apply, so
live runs and the sample store the same text under the same ids. Classes are imported on first
use: loading the definitions imports no client.
"""

from __future__ import annotations

import importlib

from artsim_pipeline.core.sources import API_SOURCES

__all__ = ["CLIENT_CLASSES", "client_class"]

#: source key -> "module:Class" of its live client
CLIENT_CLASSES: dict[str, str] = {
    "met": "artsim_pipeline.resources.clients.met:MetClient",
    "smk": "artsim_pipeline.resources.clients.smk:SmkClient",
    "cma": "artsim_pipeline.resources.clients.cma:CmaClient",
    "aic": "artsim_pipeline.resources.clients.aic:AicClient",
}


def client_class(source: str):
    """The live client class of an API source (a clear error for a source without one)."""
    if source not in API_SOURCES:
        raise ValueError(f"{source!r} is not an API source of the registry; API sources: {', '.join(API_SOURCES)}")
    try:
        target = CLIENT_CLASSES[source]
    except KeyError:
        raise ValueError(f"API source {source!r} has no client class in resources/clients/registry.py") from None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
