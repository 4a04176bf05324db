"""Partitions shared by the assets of several stages."""

from dagster import StaticPartitionsDefinition

from artsim_pipeline.resources.museum_api import SOURCES

source_partitions = StaticPartitionsDefinition(list(SOURCES))
