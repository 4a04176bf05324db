"""Where artsim's files live: a local directory, or an S3 bucket (through dagster-aws's S3 client).

Both stores take keys relative to their root (`storage/artworks.parquet`, `images/ab/cd.jpg`).
The local store writes a temporary file and renames it, so a crash never leaves half a file where
the old one was; S3 PUTs are atomic per object. `s3://bucket/prefix` roots select the S3 store;
anything else is a local directory.

Two conditional writes let several writers share a key safely: `create_bytes` writes only where
nothing is (a hard link of the finished temporary file locally, `If-None-Match: *` on S3) and
`replace_bytes` only over the version the writer read (`version`: inode, mtime and size checked
under an exclusive `flock` of the directory locally, the ETag with `If-Match` on S3). S3 has
honoured both since 2024 (MinIO too); an S3-compatible server that ignores these headers makes
them plain PUTs, and the writers that rely on them (`resources/tables.py`) lose that guarantee.
"""

from __future__ import annotations

import errno
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


class ObjectStore:
    """The operations the resources need; implemented by `LocalObjectStore` and `S3ObjectStore`."""

    url: str

    def read_bytes(self, key: str) -> bytes | None:
        raise NotImplementedError

    def write_bytes(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def read_tail(self, key: str, size: int) -> bytes | None:
        """The last `size` bytes of the object (all of it when smaller), or None if missing."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove the object at `key` (nothing happens when it is missing)."""
        raise NotImplementedError

    def list_keys(self, prefix: str) -> Iterator[str]:
        raise NotImplementedError

    def stamp(self, key: str) -> tuple | None:
        """Something that changes whenever the object at `key` is replaced (None if missing)."""
        raise NotImplementedError

    def version(self, key: str) -> object | None:
        """The version of the object at `key` that `replace_bytes` compares (None if missing)."""
        raise NotImplementedError

    def create_bytes(self, key: str, data: bytes) -> bool:
        """Write `data` at `key` only if no object is there; False (nothing written) if one is.
        The object appears whole or not at all."""
        raise NotImplementedError

    def replace_bytes(self, key: str, data: bytes, expected: object | None) -> bool:
        """Write `data` at `key` only if the object there is still at version `expected` (None:
        only if there is none); False, nothing written, when another writer got there first."""
        raise NotImplementedError

    def uri(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"

    @property
    def is_local(self) -> bool:
        return False


class LocalObjectStore(ObjectStore):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    @property
    def is_local(self) -> bool:
        return True

    def path(self, key: str) -> Path:
        return self.root / key

    def read_bytes(self, key: str) -> bytes | None:
        path = self.path(key)
        return path.read_bytes() if path.is_file() else None

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def read_tail(self, key: str, size: int) -> bytes | None:
        try:
            with self.path(key).open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - size))
                return handle.read()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def stamp(self, key: str) -> tuple | None:
        try:
            st = self.path(key).stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def version(self, key: str) -> tuple | None:
        try:
            st = self.path(key).stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def create_bytes(self, key: str, data: bytes) -> bool:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)  # atomic, and fails where a file is: readers never see half of it
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            return self._create_without_links(path, data)
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _create_without_links(path: Path, data: bytes) -> bool:
        """On a filesystem without hard links: an exclusive create, written in place."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return True

    def replace_bytes(self, key: str, data: bytes, expected: object | None) -> bool:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            # one conditional replacement at a time per directory (every process, this machine)
            fcntl.flock(directory, fcntl.LOCK_EX)
            if self.version(key) != expected:
                return False
            self.write_bytes(key, data)
            return True
        finally:
            os.close(directory)  # releases the lock

    def list_keys(self, prefix: str) -> Iterator[str]:
        base = self.path(prefix)
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file() and not path.name.endswith(".tmp"):
                    yield path.relative_to(self.root).as_posix()


class S3ObjectStore(ObjectStore):
    def __init__(self, url: str, *, endpoint_url: str | None = None, region_name: str | None = None) -> None:
        from dagster_aws.s3 import S3Resource

        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {url!r}")
        self.url = url.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = S3Resource(endpoint_url=endpoint_url, region_name=region_name).get_client()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def read_tail(self, key: str, size: int) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=f"bytes=-{size}")["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def stamp(self, key: str) -> tuple | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return (head.get("ETag"), head.get("ContentLength"))

    def version(self, key: str) -> str | None:
        stamp = self.stamp(key)
        return None if stamp is None else stamp[0]

    def create_bytes(self, key: str, data: bytes) -> bool:
        return self._put_if(key, data, IfNoneMatch="*")

    def replace_bytes(self, key: str, data: bytes, expected: object | None) -> bool:
        if expected is None:
            return self.create_bytes(key, data)
        return self._put_if(key, data, IfMatch=str(expected))

    def _put_if(self, key: str, data: bytes, **condition: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
            return True
        except ClientError as exc:
            # 412: the condition failed; 409: a concurrent conditional write won; 404: If-Match on a missing object
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412", "409"):
                return False
            raise

    def list_keys(self, prefix: str) -> Iterator[str]:
        start = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix.rstrip("/") + "/")):
            for item in page.get("Contents", []):
                yield item["Key"][start:]


def open_store(root: str, *, endpoint_url: str | None = None, region_name: str | None = None) -> ObjectStore:
    """The store for `root`: `s3://bucket/prefix` or a local directory."""
    if root.startswith("s3://"):
        return S3ObjectStore(root, endpoint_url=endpoint_url, region_name=region_name)
    return LocalObjectStore(root)
