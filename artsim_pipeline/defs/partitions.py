"""Partitions shared by the assets of several stages."""

from dagster import StaticPartitionsDefinition

from artsim_pipeline.core.images import EMBEDDING_BUCKET_KEYS, EMBEDDING_BUCKETS, sha_bucket  # noqa: F401 - used by the stages
from artsim_pipeline.core.sources import SOURCES

# one partition per source of the registry: the museum APIs, then the collection exports
source_partitions = StaticPartitionsDefinition(list(SOURCES))

# image embedding chunks by image sha256 (core/images.py)
embedding_buckets = StaticPartitionsDefinition(list(EMBEDDING_BUCKET_KEYS))
