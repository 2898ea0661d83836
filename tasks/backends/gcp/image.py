"""`ImageBuilder` on Cloud Build + Artifact Registry, addressed by the content of `job_image/`.

The tag is the content hash, so "is this code already built?" is one registry read, and a
rebuild of unchanged code never happens. The source goes up as a deterministic tarball (sorted
names, zeroed times and owners) so identical code uploads identical bytes to a content-addressed
object. The job runs the image pinned by registry digest: a re-pushed tag can never change
what an existing lineage key trained with.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import tempfile
from pathlib import Path

from google.api_core import exceptions as gexc
from google.cloud.devtools import cloudbuild_v1
from google.protobuf import duration_pb2

from core.contracts import ConfigurationError, ImageRef, LogCallback
from core.hashing import sha256_tree, tree_files
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import GcpNames
from tasks.backends.gcp.errors import google_call
from tasks.backends.gcp.store import GcsStore

TAG_CHARS = 16
BUILDS_PREFIX = "builds"
BUILD_TIMEOUT_S = 3600
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
FILE_MODE = 0o644
EXEC_MODE = 0o755


def source_tarball(context_dir: Path) -> bytes:
    """A .tar.gz of `context_dir` whose bytes depend only on file names and contents."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in tree_files(context_dir):
            info = tarfile.TarInfo(path.relative_to(context_dir).as_posix())
            info.size = path.stat().st_size
            info.mode = EXEC_MODE if path.stat().st_mode & 0o100 else FILE_MODE
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with path.open("rb") as handle:
                archive.addfile(info, handle)
    return gzip.compress(raw.getvalue(), mtime=0)


class CloudBuildImageBuilder:
    """Builds `job_image/` with Cloud Build, pushes to Artifact Registry, tag = content hash."""

    def __init__(self, clients: GoogleClients, names: GcpNames, store: GcsStore) -> None:
        self.clients = clients
        self.names = names
        self.store = store

    def image_for(self, context_dir: Path) -> ImageRef:
        digest = "sha256:" + sha256_tree(context_dir)
        tag = digest.removeprefix("sha256:")[:TAG_CHARS]
        return ImageRef(uri=f"{self.names.image_repository}:{tag}", content_hash=digest)

    def find(self, image: ImageRef) -> ImageRef | None:
        registry_digest = self._registry_digest(image)
        return None if registry_digest is None else self._pinned(image, registry_digest)

    def build(self, context_dir: Path, on_log: LogCallback) -> ImageRef:
        wanted = self.image_for(context_dir)
        existing = self._registry_digest(wanted)
        if existing is not None:
            on_log(f"image {wanted.uri} already in the registry ({existing})")
            return self._pinned(wanted, existing)
        source = self._upload_source(context_dir, wanted, on_log)
        build = cloudbuild_v1.Build(
            source=cloudbuild_v1.Source(
                storage_source=cloudbuild_v1.StorageSource(bucket=self.names.bucket, object_=source)
            ),
            steps=[
                cloudbuild_v1.BuildStep(name=DOCKER_BUILDER, args=["build", "-t", wanted.uri, "."])
            ],
            images=[wanted.uri],
            timeout=duration_pb2.Duration(seconds=BUILD_TIMEOUT_S),
            tags=["emoji-finetune", wanted.uri.rsplit(":", 1)[1]],
        )
        with google_call(self.names, "build", wanted.uri):
            operation = self.clients.builds.create_build(
                project_id=self.names.project, parent=self.names.location, build=build
            )
            log_url = operation.metadata.build.log_url or None
            on_log(f"Cloud Build {operation.metadata.build.id} started; logs: {log_url}")
            try:
                result = operation.result(timeout=BUILD_TIMEOUT_S)
            except gexc.GoogleAPICallError as error:
                if isinstance(error, gexc.ServerError | gexc.TooManyRequests):
                    raise
                raise ConfigurationError(
                    f"image build of {wanted.uri} failed ({error.message}); "
                    f"fix job_image/ and rerun; logs: {log_url}"
                ) from None
        digests = [image.digest for image in result.results.images if image.digest]
        if result.status != cloudbuild_v1.Build.Status.SUCCESS or not digests:
            raise ConfigurationError(
                f"image build of {wanted.uri} ended {result.status.name} without a pushed "
                f"image; fix job_image/ and rerun; logs: {log_url}"
            )
        on_log(f"image {wanted.uri} built and pushed ({digests[0]})")
        return self._pinned(wanted, digests[0])

    def _pinned(self, wanted: ImageRef, registry_digest: str) -> ImageRef:
        """The image addressed by its registry digest; `content_hash` stays the hash of
        `job_image/`, which is what the lineage key records (it is known before any build)."""
        uri = f"{self.names.image_repository}@{registry_digest}"
        return ImageRef(uri=uri, content_hash=wanted.content_hash)

    def _registry_digest(self, image: ImageRef) -> str | None:
        """The digest the content-hash tag points at, None when that tag does not exist."""
        tag = image.uri.rsplit(":", 1)[1]
        name = f"{self.names.repository}/packages/{self.names.job_id}/tags/{tag}"
        with google_call(self.names, "read", f"image tag {tag}"):
            try:
                version = self.clients.registry.get_tag(name=name).version
            except gexc.NotFound:
                return None
        return version.rsplit("/", 1)[1] or None

    def _upload_source(self, context_dir: Path, image: ImageRef, on_log: LogCallback) -> str:
        tag = image.uri.rsplit(":", 1)[1]
        path = f"{BUILDS_PREFIX}/job-image-{tag}.tar.gz"
        with tempfile.TemporaryDirectory() as scratch:
            archive = Path(scratch) / "source.tar.gz"
            archive.write_bytes(source_tarball(context_dir))
            written = self.store.upload_file(path, archive)
        on_log(f"build source {self.store.uri_for(path)} {'uploaded' if written else 'present'}")
        return path
