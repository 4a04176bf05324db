"""The one L2-normalise helper: unit rows, refused NaN/inf, zero rows refused or kept."""

import numpy as np
import pytest

from artsim_pipeline.core.vectors import l2_normalise


def test_rows_become_unit_length_in_the_asked_dtype():
    x = np.array([[3.0, 4.0], [0.0, 2.0]])
    out = l2_normalise(x)
    assert out.dtype == np.float32 and np.allclose(out, [[0.6, 0.8], [0.0, 1.0]])
    assert l2_normalise(x, dtype=np.float64).dtype == np.float64


def test_zero_rows_are_refused_or_kept_and_bad_values_refused():
    x = np.array([[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="row 1 has zero norm"):
        l2_normalise(x)
    assert np.array_equal(l2_normalise(x, zero_rows="keep"), [[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="image embeddings contain NaN"):
        l2_normalise([[np.nan, 1.0]], name="image embeddings")
    with pytest.raises(ValueError, match="2-D"):
        l2_normalise([1.0, 2.0])
    assert l2_normalise(np.zeros((0, 3))).shape == (0, 3)
