"""Image and text embedding core: backbones, the batched image pipeline, MiniLM text vectors.

No Dagster import here; torch is imported by the functions that need it, and nothing here reads
a model file (that is resources/models.py),
so importing this package is cheap.
"""
