"""Validation of the ``artworks`` table: great-expectations 1.x suite plus row-level rules.

Public API
----------
- :class:`CheckOutcome`: one check's result (name, passed, severity, failed_count, details).
- :func:`validate_artworks` runs the suite on a polars frame, offline, and returns outcomes.
- :func:`row_rule_exprs` / :func:`row_rule_violations`: the row-level rules (pure polars)
  that :mod:`artsim_pipeline.core.normalise` uses to quarantine records, so that what the
  suite checks at table level and what normalisation rejects row by row agree.

great-expectations is imported on the first :func:`validate_artworks` only (it takes seconds
to import).  The run uses an ephemeral context (nothing on disk, one per process), analytics
off, progress bars off; the polars frame is converted to pandas at the boundary.  GX has no list-aware
expectations, so list columns reach it as their lengths (their presence is still checked),
and dtypes are checked against :data:`ARTWORKS_SCHEMA` on the polars side, where they are
exact (pandas turns a nullable Int32 into float64).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import polars as pl

from artsim_pipeline.core.schema import (
    ARTWORKS_CONTRACT_COLUMNS,
    ARTWORKS_SCHEMA,
    MAX_YEAR,
    MET_CANONICAL_DEPARTMENTS,
    MIN_YEAR,
)
from artsim_pipeline.core.sources import REGISTRY

__all__ = [
    "CheckOutcome",
    "ID_PATTERNS",
    "URL_PATTERN",
    "row_rule_exprs",
    "row_rule_violations",
    "validate_artworks",
]

Severity = Literal["error", "warn"]

URL_PATTERN = r"^https?://"
#: ``artwork_id`` pattern per source (``met:\d+``, ``smk:...``, ``met_medialab:\d+``), from the registry.
ID_PATTERNS: dict[str, str] = {spec.key: spec.artwork_id_pattern for spec in REGISTRY}
#: Columns that must never be null.
REQUIRED_COLUMNS: tuple[str, ...] = ("artwork_id", "source", "source_id", "landing_url")


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one check on the ``artworks`` table.

    ``severity`` says what a failure means: ``error`` (the table breaks its contract) or
    ``warn`` (worth a look, not blocking).  ``failed_count`` is the number of offending
    rows (or missing columns for table-level checks).
    """

    name: str
    passed: bool
    severity: Severity
    failed_count: int
    details: dict[str, Any] = field(default_factory=dict)


# ======================================================================================
# Row-level rules (pure polars, used by normalise for quarantine)
# ======================================================================================
def _year_text(expr: pl.Expr) -> pl.Expr:
    """A year for a message: integral values without a trailing ``.0``."""
    as_float = expr.cast(pl.Float64)
    return (
        pl.when(as_float.abs() < 1e15)
        .then(as_float.cast(pl.Int64).cast(pl.String))
        .otherwise(as_float.cast(pl.String))
        .fill_null("null")
    )


def row_rule_exprs(columns: Collection[str] | None = None) -> tuple[pl.Expr, pl.Expr]:
    """``(rule, reason)`` expressions over an artworks-shaped frame; null where the row is fine.

    ``columns``: the frame's columns, when it may lack ``attribution_note`` (default: it has it).
    Rules, first match wins: ``missing_id``, ``no_title_and_no_artist`` (an attribution note
    counts as an artist: "Unidentified artist" says who made it as far as the museum knows),
    ``date_out_of_range`` (outside ``MIN_YEAR..MAX_YEAR``), ``date_order`` (begin > end),
    ``invalid_url`` (landing_url missing or not http(s)).  Dates may be any numeric dtype.
    """
    aid = pl.col("artwork_id")
    begin, end = pl.col("date_begin"), pl.col("date_end")
    note = pl.col("attribution_note") if columns is None or "attribution_note" in columns else pl.lit(None, pl.String)
    no_artists = (pl.col("artists").list.len().fill_null(0) == 0) & note.is_null()
    out_of_range = (
        begin.is_not_null() & ((begin < MIN_YEAR) | (begin > MAX_YEAR))
    ) | (end.is_not_null() & ((end < MIN_YEAR) | (end > MAX_YEAR)))
    checks: list[tuple[str, pl.Expr, pl.Expr]] = [
        ("missing_id", aid.is_null(), pl.lit("artwork_id is null")),
        (
            "no_title_and_no_artist",
            pl.col("title").is_null() & no_artists,
            pl.lit("record has neither a title nor an artist"),
        ),
        (
            "date_out_of_range",
            out_of_range.fill_null(False),
            pl.format(
                "date_begin {} / date_end {} outside the plausible range {}..{}",
                _year_text(begin),
                _year_text(end),
                pl.lit(MIN_YEAR),
                pl.lit(MAX_YEAR),
            ),
        ),
        (
            "date_order",
            (begin > end).fill_null(False),
            pl.format("date_begin {} is after date_end {}", _year_text(begin), _year_text(end)),
        ),
        (
            "invalid_url",
            ~pl.col("landing_url").str.contains(URL_PATTERN).fill_null(False),
            pl.format(
                "landing_url {} is not an http(s) URL", pl.col("landing_url").fill_null("null")
            ),
        ),
    ]
    rule: Any = pl
    reason: Any = pl
    for name, condition, message in checks:
        rule = rule.when(condition).then(pl.lit(name))
        reason = reason.when(condition).then(message)
    return rule.otherwise(pl.lit(None, dtype=pl.String)), reason.otherwise(
        pl.lit(None, dtype=pl.String)
    )


def row_rule_violations(df: pl.DataFrame) -> pl.DataFrame:
    """The rows of an artworks frame that break a row-level rule.

    Returns ``artwork_id``, ``source_id``, ``rule``, ``reason`` (one row per offending
    artwork, the first rule that matches).  Duplicate ids are a table-level matter and are
    resolved by normalisation (``duplicate_id``), not reported here.
    """
    rule, reason = row_rule_exprs(df.columns)
    source_id = pl.col("source_id") if "source_id" in df.columns else pl.lit(None, pl.String)
    return (
        df.select(
            pl.col("artwork_id"),
            source_id.alias("source_id"),
            rule.alias("rule"),
            reason.alias("reason"),
        )
        .filter(pl.col("rule").is_not_null())
    )


# ======================================================================================
# great-expectations suite
# ======================================================================================
def _column_type_outcome(df: pl.DataFrame) -> CheckOutcome:
    wrong = {
        name: {"expected": str(dtype), "actual": str(df.schema[name])}
        for name, dtype in ARTWORKS_SCHEMA.items()
        if name in df.columns and df.schema[name] != dtype
    }
    return CheckOutcome(
        name="column_types",
        passed=not wrong,
        severity="error",
        failed_count=len(wrong),
        details={"mismatched": wrong},
    )


def _gx_frame(df: pl.DataFrame) -> Any:
    """The pandas frame GX sees: scalar columns as they are, list columns as lengths."""
    present = set(df.columns)
    artists_len = (
        pl.col("artists").list.len().fill_null(0) if "artists" in present else pl.lit(0)
    )
    title = pl.col("title") if "title" in present else pl.lit(None, pl.String)
    note = pl.col("attribution_note") if "attribution_note" in present else pl.lit(None, pl.String)
    public = pl.col("is_public_domain") if "is_public_domain" in present else pl.lit(None)
    image = pl.col("image_url") if "image_url" in present else pl.lit(None, pl.String)
    return df.select(
        *(_gx_column(name, dtype) for name, dtype in df.schema.items()),
        (title.is_not_null() | (artists_len > 0) | note.is_not_null()).alias("_has_title_or_artist"),
        (~public.fill_null(False) | image.is_not_null()).alias("_public_domain_image_ok"),
    ).to_pandas()


def _gx_column(name: str, dtype: pl.DataType) -> pl.Expr:
    """Lists as their lengths; 8-to-32-bit integers as Int64, which GX's range check compares
    vectorised (it maps any other numpy dtype row by row in Python)."""
    if isinstance(dtype, pl.List):
        return pl.col(name).list.len()
    if dtype in (pl.Int8, pl.Int16, pl.Int32, pl.UInt8, pl.UInt16, pl.UInt32):
        return pl.col(name).cast(pl.Int64)
    return pl.col(name)


def _build_suite(gx: Any, source: str, columns: set[str]) -> list[tuple[str, Severity, Any]]:
    """``(check name, severity, expectation)`` for the columns present in the GX frame."""
    E = gx.expectations
    checks: list[tuple[str, Severity, Any]] = [
        (
            "columns_exist",
            "error",
            E.ExpectTableColumnsToMatchSet(
                column_set=list(ARTWORKS_CONTRACT_COLUMNS), exact_match=False
            ),
        )
    ]

    def add(name: str, severity: Severity, needs: tuple[str, ...], expectation: Any) -> None:
        if set(needs) <= columns:
            checks.append((name, severity, expectation))

    not_null = E.ExpectColumnValuesToNotBeNull
    add("artwork_id_not_null", "error", ("artwork_id",), not_null(column="artwork_id"))
    add(
        "artwork_id_unique",
        "error",
        ("artwork_id",),
        E.ExpectColumnValuesToBeUnique(column="artwork_id"),
    )
    for col in REQUIRED_COLUMNS[1:]:
        add(f"{col}_not_null", "error", (col,), not_null(column=col))
    add(
        "title_or_artists",
        "error",
        (),
        E.ExpectColumnValuesToBeInSet(column="_has_title_or_artist", value_set=[True]),
    )
    add(
        "date_begin_le_date_end",
        "error",
        ("date_begin", "date_end"),
        E.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="date_end",
            column_B="date_begin",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
    )
    for col in ("date_begin", "date_end"):
        add(
            f"{col}_in_range",
            "error",
            (col,),
            E.ExpectColumnValuesToBeBetween(column=col, min_value=MIN_YEAR, max_value=MAX_YEAR),
        )
    for col in ("landing_url", "image_url"):
        add(
            f"{col}_well_formed",
            "error",
            (col,),
            E.ExpectColumnValuesToMatchRegex(column=col, regex=URL_PATTERN),
        )
    if source in ID_PATTERNS:
        add(
            "artwork_id_format",
            "error",
            ("artwork_id",),
            E.ExpectColumnValuesToMatchRegex(column="artwork_id", regex=ID_PATTERNS[source]),
        )
        add(
            "source_value",
            "error",
            ("source",),
            E.ExpectColumnValuesToBeInSet(column="source", value_set=[source]),
        )
    if source == "met":
        add(
            "met_department_canonical",
            "warn",
            ("department",),
            E.ExpectColumnValuesToBeInSet(
                column="department", value_set=list(MET_CANONICAL_DEPARTMENTS)
            ),
        )
    add(
        "public_domain_has_image",
        "warn",
        (),
        E.ExpectColumnValuesToBeInSet(column="_public_domain_image_ok", value_set=[True]),
    )
    return checks


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    item = getattr(value, "item", None)  # numpy scalars
    return item() if callable(item) else str(value)


def _outcome(name: str, severity: Severity, result: Any) -> CheckOutcome:
    res = dict(result.result or {})
    details: dict[str, Any] = {"expectation": result.expectation_config.type}
    exception = result.exception_info or {}
    if isinstance(exception, dict) and exception.get("raised_exception"):
        details["exception"] = str(exception.get("exception_message"))
    if "unexpected_count" in res:
        failed = int(res.get("unexpected_count") or 0)
        details["element_count"] = _jsonable(res.get("element_count"))
        details["unexpected_percent"] = _jsonable(res.get("unexpected_percent"))
        partial = list(res.get("partial_unexpected_list") or [])[:10]
        details["partial_unexpected"] = _jsonable(partial)
    else:
        mismatched = (res.get("details") or {}).get("mismatched") or {}
        missing = list(mismatched.get("missing") or [])
        failed = len(missing) if missing else int(not result.success)
        details["missing"] = _jsonable(missing)
    return CheckOutcome(
        name=name,
        passed=bool(result.success),
        severity=severity,
        failed_count=failed if not result.success else 0,
        details=details,
    )


def validate_artworks(df: pl.DataFrame, source: str) -> list[CheckOutcome]:
    """Run the artworks suite on ``df`` (one source's partition) and return every outcome.

    Offline: an ephemeral GX context (nothing on disk), built once per process with one
    validation definition per source and set of columns (building them costs more than
    validating 50,000 rows). Checks: contract columns exist, dtypes (polars side),
    ``artwork_id`` not null / unique / well formed for the source, required columns not null,
    a title or an artist, ``date_begin <= date_end``, years within range, http(s) URLs,
    ``source`` value; warnings for non-canonical Met departments and public-domain works
    without an image.
    """
    frame = _gx_frame(df)
    with _GX_LOCK:
        validation, checks = _validation(source, tuple(frame.columns))
        result = validation.run(batch_parameters={"dataframe": frame}, result_format="BASIC")

    by_name = {}
    for r in result.results:
        meta = r.expectation_config.meta or {}
        by_name[meta.get("check")] = _outcome(meta.get("check"), meta.get("severity"), r)
    outcomes = [by_name[name] for name, _, _ in checks if name in by_name]
    outcomes.insert(1, _column_type_outcome(df))
    return outcomes


_GX_LOCK = threading.Lock()


@cache
def _gx_context() -> Any:
    """The process's ephemeral GX context (analytics and progress bars off)."""
    import great_expectations as gx  # its analytics: off in the project config below, and `settings.silence_great_expectations`
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        ),
    )
    context.data_sources.add_pandas("artsim")
    return context


@cache
def _validation(source: str, columns: tuple[str, ...]) -> tuple[Any, list[tuple[str, Severity, Any]]]:
    """The validation definition (and its checks) for ``source``'s frames with ``columns``."""
    import great_expectations as gx

    context = _gx_context()
    name = f"artworks_{source}_{hashlib.sha256(repr(columns).encode()).hexdigest()[:8]}"
    checks = _build_suite(gx, source, set(columns))
    batch = (
        context.data_sources.get("artsim")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for check, severity, expectation in checks:
        expectation.meta = {"check": check, "severity": severity}
        suite.add_expectation(expectation)
    validation = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    return validation, checks
