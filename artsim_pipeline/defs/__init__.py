"""Dagster definitions by pipeline stage: one folder per stage, plus operations (jobs, schedules, sensors)."""

import warnings

from dagster import BetaWarning

# artsim relies on Dagster features still marked beta in 1.13 (output data versions, observable
# source assets, pools); they are chosen on purpose, so their warnings would only be noise in logs.
warnings.filterwarnings("ignore", category=BetaWarning)
