"""Where the files beside the tables are kept: `ArtsimStorage`, files by key (which key holds
which artefact, and in what format, is the storage layout: `resources/artefacts/`).

Locally everything lives under `$ARTSIM_HOME`. With `remote_url` (`s3://bucket/prefix`, prod) the
durable files go to S3 and `home` only holds scratch space and a read-through cache, so an asset
can run on any machine (a Celery worker, an ECS task) that shares no directory with the others.
Fetch checkpoints stay in `home`: they only let a crashed run on the same machine resume.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Iterator, Optional

from dagster import ConfigurableResource
from pydantic import Field

from artsim_pipeline.resources.config import MergingConfig
from artsim_pipeline.resources.objects import LocalObjectStore, ObjectStore, open_store


class ArtsimStorage(MergingConfig, ConfigurableResource):
    """Durable files (local or S3) plus local scratch space under one home directory."""

    home: str = Field(description="local state directory ($ARTSIM_HOME); scratch and cache when remote_url is set")
    remote_url: Optional[str] = Field(default=None, description="s3://bucket/prefix for the durable files (prod)")
    s3_endpoint_url: Optional[str] = None
    s3_region: Optional[str] = None

    @property
    def root(self) -> Path:
        return Path(self.home)

    @cached_property
    def objects(self) -> ObjectStore:
        if self.remote_url:
            return open_store(self.remote_url, endpoint_url=self.s3_endpoint_url, region_name=self.s3_region)
        return LocalObjectStore(self.home)

    @property
    def is_remote(self) -> bool:
        return not self.objects.is_local

    # -- files by key ---------------------------------------------------------------------------

    def local_file(self, key: str, *, refresh: bool = False) -> Path | None:
        """A local path holding the file at `key` (downloaded into the cache when remote), or None."""
        if not self.is_remote:
            path = self.root / key
            return path if path.is_file() else None
        path = self.root / "cache" / key
        if refresh or not path.is_file():
            data = self.objects.read_bytes(key)
            if data is None:
                return None
            LocalObjectStore(self.root / "cache").write_bytes(key, data)
        return path

    def publish_dir(self, local_dir: Path, key: str) -> str:
        """Store every file of `local_dir` under `key/`; returns where it now lives."""
        for path in sorted(Path(local_dir).rglob("*")):
            if path.is_file():
                self.objects.write_bytes(f"{key}/{path.relative_to(local_dir).as_posix()}", path.read_bytes())
        return self.objects.uri(key)

    def fetch_dir(self, key: str) -> Path | None:
        """A local directory with the files under `key/` (a fresh download when remote), or None."""
        if not self.is_remote:
            path = self.root / key
            return path if path.is_dir() and any(path.iterdir()) else None
        keys = list(self.objects.list_keys(key))
        if not keys:
            return None
        # download beside the cached copy, then swap it in: another process on this machine
        # (a parallel step, a second worker) never sees a half-downloaded or half-deleted dir
        target = self.root / "cache" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        for item in keys:
            LocalObjectStore(fresh).write_bytes(item[len(key):].lstrip("/"), self.objects.read_bytes(item) or b"")
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
        try:
            target.rename(old)
        except FileNotFoundError:
            pass
        try:
            fresh.rename(target)
        except OSError:  # another process swapped in its copy first: same objects, keep that one
            shutil.rmtree(fresh, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        return target

    @contextmanager
    def staged_dir(self, key: str) -> Iterator[Path]:
        """A directory to write `key/` into: the real one locally, a scratch one published on exit
        when remote."""
        if not self.is_remote:
            path = self.root / key
            path.mkdir(parents=True, exist_ok=True)
            yield path
            return
        scratch = self.root / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            yield Path(tmp)
            self.publish_dir(Path(tmp), key)
