"""`ArtifactStore` over a GCS bucket: the same `models/<key>/…` layout as the local folder.

Verification reads weights through this: listings for sizes, ranged reads for safetensors
headers and streamed chunks for sha256, so a multi-gigabyte model is checked without ever being
downloaded whole. `local_dir` is None, so the checks that must load tensors are skipped here;
the job already ran them before it sealed the folder with MANIFEST.json.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from google.api_core import exceptions as gexc
from google.cloud import storage

from tasks.backends.gcp.calls import GoogleCalls
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import GcpNames

MOUNT_PATH = "/mnt/store"  # where the job and the service see the bucket (a GCS volume)


class GcsStore:
    """Objects under `gs://<bucket>/`; prefixes are POSIX paths relative to the bucket root."""

    def __init__(self, clients: GoogleClients, names: GcpNames, calls: GoogleCalls) -> None:
        self.clients = clients
        self.names = names
        self.calls = calls

    @property
    def bucket(self) -> storage.Bucket:
        return self.clients.storage.bucket(self.names.bucket)

    @property
    def root_uri(self) -> str:
        return f"gs://{self.names.bucket}"

    def uri_for(self, prefix: str) -> str:
        return f"{self.root_uri}/{prefix.strip('/')}"

    @staticmethod
    def mounted_path(prefix: str) -> str:
        """Where the job and the service read or write `prefix` (the bucket is a volume)."""
        return f"{MOUNT_PATH}/{prefix.strip('/')}"

    def list_files(self, prefix: str) -> dict[str, int]:
        folder = prefix.strip("/") + "/"
        blobs = self.calls.call(
            "list",
            self.uri_for(prefix),
            lambda: list(self.clients.storage.list_blobs(self.names.bucket, prefix=folder)),
        )
        return {
            blob.name.removeprefix(folder): int(blob.size or 0)
            for blob in blobs
            if not blob.name.endswith("/")  # folder placeholders written by GCS FUSE
        }

    def read_bytes(self, path: str, start: int = 0, length: int | None = None) -> bytes:
        if length == 0:
            return b""
        end = None if length is None else start + length - 1  # GCS ranges are inclusive

        def read() -> bytes | None:
            try:
                return bytes(self._blob(path).download_as_bytes(start=start or None, end=end))
            except gexc.NotFound:
                return None

        data = self.calls.call("read", self.uri_for(path), read)
        if data is None:
            raise FileNotFoundError(self.uri_for(path))
        return data

    def iter_chunks(self, path: str, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        blob = self.calls.call(
            "read", self.uri_for(path), lambda: self.bucket.get_blob(path.strip("/"))
        )
        if blob is None:
            raise FileNotFoundError(self.uri_for(path))
        size = int(blob.size or 0)
        for start in range(0, size, chunk_size):
            yield self.read_bytes(path, start, min(chunk_size, size - start))

    def local_dir(self, prefix: str) -> Path | None:
        return None

    def write_bytes(self, path: str, data: bytes) -> None:
        # One request writes the whole object or nothing, so a retry is safe.
        self.calls.call(
            "write", self.uri_for(path), lambda: self._blob(path).upload_from_string(data)
        )

    def upload_file(self, path: str, source: Path) -> bool:
        """Create `path` from a local file unless it exists; True when this call wrote it.

        Only used for content-addressed paths, so an existing object is the same bytes, and
        `if_generation_match=0` makes two concurrent runs write it at most once.
        """

        def upload() -> bool:
            try:
                self._blob(path).upload_from_filename(str(source), if_generation_match=0)
            except gexc.PreconditionFailed:
                return False
            return True

        return self.calls.call("upload", self.uri_for(path), upload)

    def _blob(self, path: str) -> storage.Blob:
        return self.bucket.blob(path.strip("/"))
