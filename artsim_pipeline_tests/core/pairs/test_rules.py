"""The rule configuration (PairRules)."""

from __future__ import annotations

import pytest

from artsim_pipeline.core.pairs import NEGATIVE_RULES, POSITIVE_RULES, PairRules


def test_rules_config_is_validated():
    with pytest.raises(ValueError):
        PairRules(train_fraction=0.8, val_fraction=0.15, test_fraction=0.15)
    with pytest.raises(ValueError):
        PairRules(hard_fraction=1.5)
    assert PairRules().weight("same_artist") == 1.0
    assert set(PairRules().rule_weights()) == set(POSITIVE_RULES) | set(NEGATIVE_RULES)
