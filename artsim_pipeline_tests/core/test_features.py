"""`core.features.as_matrix`: a polars Array column becomes float32 rows in one block copy, equal to
what its Python rows give; columns with missing vectors still go the row-by-row way."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from artsim_pipeline.core.features import as_matrix


def test_an_array_column_converts_to_the_same_rows_as_its_python_lists():
    x = np.random.default_rng(0).normal(size=(50, 7))
    for dtype in (pl.Float32, pl.Float64):
        column = pl.Series("vector", x, dtype=pl.Array(dtype, 7))
        matrix = as_matrix(column)
        assert matrix.dtype == np.float32 and matrix.shape == (50, 7) and matrix.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(matrix, np.asarray(column.to_list(), dtype=np.float32))
    np.testing.assert_array_equal(as_matrix(pl.Series("vector", x[:3].tolist(), dtype=pl.List(pl.Float32))), x[:3].astype(np.float32))
    assert as_matrix(pl.Series("vector", [], dtype=pl.Array(pl.Float32, 7))).shape[0] == 0


def test_a_missing_vector_is_not_turned_into_numbers():
    with_gap = pl.Series("vector", [[1.0, 2.0], None], dtype=pl.Array(pl.Float32, 2))
    with pytest.raises((TypeError, ValueError)):
        as_matrix(with_gap)
