"""`artsim serve`: the curators' web app (FastAPI). See :mod:`artsim_pipeline.web.app`."""

from artsim_pipeline.web.app import create_app, serve

__all__ = ["create_app", "serve"]
