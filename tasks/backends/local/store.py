"""A folder standing in for the GCS bucket, with the same prefix layout (`models/<key>/…`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


class LocalFolderStore:
    """`ArtifactStore` over a local folder; paths are POSIX-style prefixes under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()

    @property
    def root_uri(self) -> str:
        return self.root.as_uri()

    def path(self, prefix: str) -> Path:
        """Absolute path of a prefix; refuses prefixes that would escape the root."""
        candidate = (self.root / prefix).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise ValueError(f"prefix {prefix!r} escapes the store root {self.root}")
        return candidate

    def uri_for(self, prefix: str) -> str:
        return self.path(prefix).as_uri()

    def list_files(self, prefix: str) -> dict[str, int]:
        folder = self.path(prefix)
        if not folder.is_dir():
            return {}
        return {
            path.relative_to(folder).as_posix(): path.stat().st_size
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }

    def read_bytes(self, path: str, start: int = 0, length: int | None = None) -> bytes:
        with self.path(path).open("rb") as handle:
            handle.seek(start)
            return handle.read() if length is None else handle.read(length)

    def iter_chunks(self, path: str, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        with self.path(path).open("rb") as handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def local_dir(self, prefix: str) -> Path | None:
        return self.path(prefix)

    def write_bytes(self, path: str, data: bytes) -> None:
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(data)
        partial.replace(target)  # a reader sees the old file or the new one, never half
