"""Helpers for asset metadata a person can read at a glance in the Dagster UI."""

import polars as pl
from dagster import MetadataValue


def markdown_table(df: pl.DataFrame, columns: list[str], rows: int = 10) -> MetadataValue:
    """The first `rows` rows of `columns` as a Markdown table (cells cut to 80 characters)."""
    present = [c for c in columns if c in df.columns]
    lines = ["| " + " | ".join(present) + " |", "|" + "---|" * len(present)]
    for row in df.select(present).head(rows).iter_rows():
        cells = []
        for value in row:
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value)
            cells.append(str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")[:80])
        lines.append("| " + " | ".join(cells) + " |")
    return MetadataValue.md("\n".join(lines))
