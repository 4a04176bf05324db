"""Partitions shared by the assets of several stages."""

from dagster import StaticPartitionsDefinition

from artsim_pipeline.core.sources import SOURCES

# one partition per source of the registry: the museum APIs, then the collection exports
source_partitions = StaticPartitionsDefinition(list(SOURCES))

# Image embedding runs in chunks by the first hex digit of the image sha256 (16 values folded
# onto EMBEDDING_BUCKETS buckets), so chunks can run as separate, parallel Dagster runs.
EMBEDDING_BUCKETS = 8
embedding_buckets = StaticPartitionsDefinition([f"bucket{i}" for i in range(EMBEDDING_BUCKETS)])


def sha_bucket(sha256: str) -> str:
    """The embedding chunk an image belongs to."""
    return f"bucket{int(sha256[0], 16) % EMBEDDING_BUCKETS}"
