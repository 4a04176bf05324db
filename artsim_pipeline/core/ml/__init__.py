"""Image and text embedding core: backbones, the batched image pipeline, MiniLM text vectors.

No Dagster import here; torch and transformers are imported by the modules that need them,
so importing this package is cheap.
"""
