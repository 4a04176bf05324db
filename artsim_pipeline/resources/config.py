"""Resource configuration that merges: run config sets fields, it never resets the others.

A `ConfigurableResource` built with values (as `definitions.build_resources` does, from the
environment) gives Dagster one default for its *whole* config. Run config that names any one
field (``{"museum_api": {"config": {"requests_per_second": 5}}}``) replaces that default, and
every field it does not name falls back to the class default: a live `museum_api` silently
became the bundled sample (`mode="snapshot"`, the public URLs), a `storage` lost its S3 URL.

`MergingConfig` moves the values given at construction into the defaults of the individual
fields, so that run config is merged into them field by field.
"""

from __future__ import annotations

from typing import Any


def merged_schema(schema_field, values: dict[str, Any]):
    """The resource's config field with each value in `values` as its field's own default."""
    from dagster import Field
    from dagster._config import Shape

    config_type = schema_field.config_type
    fields = getattr(config_type, "fields", None)
    if not values or not isinstance(fields, dict):
        return schema_field
    merged = {}
    for name, field in fields.items():
        if name in values:
            merged[name] = Field(field.config_type, default_value=values[name], is_required=False,
                                 description=field.description)
        else:
            merged[name] = field
    return Field(Shape(merged), is_required=False, description=schema_field.description)


class MergingConfig:
    """Mix in before `ConfigurableResource` (or `ConfigurableIOManager`): the values given at
    construction become the per-field defaults of the resource's config schema."""

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        from dagster._core.definitions.definition_config_schema import DefinitionConfigSchema

        state = self._state__internal__
        schema = merged_schema(state.schema, state.resolved_config_dict)
        self._state__internal__ = state._replace(config_schema=DefinitionConfigSchema(schema))
