"""The code location loads fast, without heavy imports, and Dagster itself accepts it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "great_expectations", "mlflow", "lightning", "hnswlib", "sklearn", "umap", "numba", "pynndescent")


def test_loading_definitions_imports_nothing_heavy(tmp_path):
    code = (
        "import sys, time; t = time.perf_counter(); from artsim_pipeline.definitions import defs; "
        "print(round(time.perf_counter() - t, 2)); print(','.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    )
    env = {**os.environ, "ARTSIM_HOME": str(tmp_path), "ARTSIM_ENV": "sample"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=REPO)
    lines = out.stdout.splitlines()
    seconds, heavy = lines[-2], lines[-1]
    assert heavy == "", f"heavy modules imported at load: {heavy}"
    print(f"definitions loaded in {seconds} s")


def test_dagster_validates_the_code_location(tmp_path):
    env = {**os.environ, "ARTSIM_HOME": str(tmp_path), "DAGSTER_HOME": str(REPO), "DAGSTER_DISABLE_TELEMETRY": "1"}
    dagster = Path(sys.executable).with_name("dagster")
    out = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], env=env, capture_output=True,
                         text=True, cwd=REPO, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_stack_module_imports_side_by_side():
    """torch, Lightning, transformers, hnswlib, mlflow and GX together; torchvision stays out."""
    for name in ("torch", "lightning", "transformers", "hnswlib", "mlflow", "great_expectations", "polars", "dagster_aws", "umap"):
        importlib.import_module(name)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("torchvision")


def test_unknown_environment_is_a_clear_error(monkeypatch):
    from artsim_pipeline import settings

    monkeypatch.setenv("ARTSIM_ENV", "staging")
    with pytest.raises(ValueError, match="ARTSIM_ENV"):
        settings.artsim_env()
