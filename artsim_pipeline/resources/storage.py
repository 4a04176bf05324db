"""Local state beside the tables: images, fetch checkpoints and cursors, all under `$ARTSIM_HOME`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource


class ArtsimStorage(ConfigurableResource):
    """Paths and small JSON state files under one home directory."""

    home: str

    @property
    def root(self) -> Path:
        return Path(self.home)

    def images_dir(self) -> Path:
        path = self.root / "images"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def checkpoint_path(self, asset: str, partition: str) -> Path:
        return self.root / "checkpoints" / asset / f"{partition}.jsonl"

    def _state_path(self, name: str) -> Path:
        return self.root / "state" / f"{name}.json"

    def read_state(self, name: str) -> dict[str, Any]:
        path = self._state_path(name)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def write_state(self, name: str, state: dict[str, Any]) -> None:
        path = self._state_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
