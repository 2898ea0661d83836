"""A local folder seen only through the `ArtifactStore` protocol, as a GCS bucket is.

`local_dir` is None, so verification takes the path it takes on GCS: listing, ranged reads
and streamed hashing only. Torch-free on purpose: a subprocess that blocks torch imports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tasks.backends.local.store import LocalFolderStore


class RemoteLikeStore:
    """The same files as `inner`, without a local folder (`local_dir` is None)."""

    def __init__(self, inner: LocalFolderStore) -> None:
        self.inner = inner

    @property
    def root_uri(self) -> str:
        return "gs://test-bucket"

    def uri_for(self, prefix: str) -> str:
        return f"gs://test-bucket/{prefix}"

    def list_files(self, prefix: str) -> dict[str, int]:
        return self.inner.list_files(prefix)

    def read_bytes(self, path: str, start: int = 0, length: int | None = None) -> bytes:
        return self.inner.read_bytes(path, start, length)

    def iter_chunks(self, path: str, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        return self.inner.iter_chunks(path, chunk_size)

    def local_dir(self, prefix: str) -> Path | None:
        return None

    def write_bytes(self, path: str, data: bytes) -> None:
        self.inner.write_bytes(path, data)
