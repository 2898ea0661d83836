"""`ImageBuilder` on Cloud Build + Artifact Registry, addressed by the content of `job_image/`.

The tag is the content hash, so "is this code already built?" is one registry read, and a
rebuild of unchanged code never happens. The source goes up as a deterministic tarball (sorted
names, zeroed times and owners) so identical code uploads identical bytes to a content-addressed
object. The job runs the image pinned by registry digest: a re-pushed tag can never change
what an existing lineage key trained with.

`builds.create` is not idempotent (it takes no request id), and it can start a build while the
client sees a 5xx or a reset. Each attempt carries a unique `attempt-…` tag; before trying again
the builder looks the tag up (the listing lags behind creates, so for `gcp.listing_settle_s`)
and follows the build it finds, so a lost answer never costs a second build. The build is then
followed by reading the build itself, which names its status and log URL when it fails.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

from google.api_core import exceptions as gexc
from google.cloud.devtools import cloudbuild_v1
from google.protobuf import duration_pb2

from core.contracts import ConfigurationError, DeadlineExceeded, ImageRef, LogCallback
from core.hashing import sha256_tree, tree_files
from tasks.backends.gcp.calls import GoogleCalls
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import GcpNames, GcpSettings
from tasks.backends.gcp.store import GcsStore

TAG_CHARS = 16
BUILDS_PREFIX = "builds"
BUILD_TIMEOUT_S = 3600
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
FILE_MODE = 0o644
EXEC_MODE = 0o755
Status = cloudbuild_v1.Build.Status
UNFINISHED = (Status.STATUS_UNKNOWN, Status.PENDING, Status.QUEUED, Status.WORKING)
CLOUD_LOGGING_ONLY = cloudbuild_v1.BuildOptions.LoggingMode.CLOUD_LOGGING_ONLY


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

    def __init__(
        self,
        clients: GoogleClients,
        names: GcpNames,
        store: GcsStore,
        calls: GoogleCalls,
        settings: GcpSettings,
    ) -> None:
        self.clients = clients
        self.names = names
        self.store = store
        self.calls = calls
        self.settings = settings

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
        attempt = f"attempt-{uuid.uuid4().hex[:16]}"
        build = cloudbuild_v1.Build(
            source=cloudbuild_v1.Source(
                storage_source=cloudbuild_v1.StorageSource(bucket=self.names.bucket, object_=source)
            ),
            steps=[
                cloudbuild_v1.BuildStep(name=DOCKER_BUILDER, args=["build", "-t", wanted.uri, "."])
            ],
            images=[wanted.uri],
            timeout=duration_pb2.Duration(seconds=BUILD_TIMEOUT_S),
            tags=["emoji-finetune", wanted.uri.rsplit(":", 1)[1], attempt],
            # The builder account (read builds/, push to the repository, write logs), not the
            # default one; with a named account Cloud Build cannot use its default logs bucket.
            service_account=self.names.account_name("builder"),
            options=cloudbuild_v1.BuildOptions(logging=CLOUD_LOGGING_ONLY),
        )
        build_id = self.calls.call(
            "build",
            wanted.uri,
            lambda: str(
                self.clients.builds.create_build(
                    project_id=self.names.project, parent=self.names.location, build=build
                ).metadata.build.id
            ),
            adopt=lambda: self._started_by(attempt),
            on_log=on_log,
        )
        finished = self._wait(build_id, on_log)
        digests = [image.digest for image in finished.results.images if image.digest]
        if finished.status != Status.SUCCESS or not digests:
            detail = finished.failure_info.detail or finished.status_detail or "no detail"
            raise ConfigurationError(
                f"image build of {wanted.uri} ended {Status(finished.status).name} ({detail}); "
                f"fix job_image/ and rerun; logs: {finished.log_url or 'none'}"
            )
        on_log(f"image {wanted.uri} built and pushed ({digests[0]})")
        return self._pinned(wanted, digests[0])

    def _started_by(self, attempt: str) -> str | None:
        """The id of the build that carries `attempt`, looked for until the listing settles."""

        def find() -> str | None:
            request = cloudbuild_v1.ListBuildsRequest(
                project_id=self.names.project,
                parent=self.names.location,
                filter=f'tags="{attempt}"',
            )
            builds = self.clients.builds.list_builds(request=request)
            return next((str(b.id) for b in builds if attempt in b.tags), None)

        return self.calls.poll(f"builds tagged {attempt}", find, self.settings.listing_settle_s)

    def _build_name(self, build_id: str) -> str:
        return f"{self.names.location}/builds/{build_id}"

    def _wait(self, build_id: str, on_log: LogCallback) -> cloudbuild_v1.Build:
        """Read the build until it ends (within its own timeout)."""
        deadline = time.monotonic() + BUILD_TIMEOUT_S
        logged = False
        while True:
            current = self.calls.call(
                "read",
                f"build {build_id}",
                lambda: self.clients.builds.get_build(
                    name=self._build_name(build_id), project_id=self.names.project, id=build_id
                ),
            )
            if not logged:
                on_log(f"Cloud Build {build_id} started; logs: {current.log_url or 'none'}")
                logged = True
            if current.status not in UNFINISHED:
                return current
            if time.monotonic() > deadline:
                raise DeadlineExceeded(
                    f"Cloud Build {build_id} still running after {BUILD_TIMEOUT_S} s; "
                    f"logs: {current.log_url}"
                )
            time.sleep(self.settings.poll_interval_s)

    def _pinned(self, wanted: ImageRef, registry_digest: str) -> ImageRef:
        """The image addressed by its registry digest; `content_hash` stays the hash of
        `job_image/`, which is what the lineage key records (it is known before any build)."""
        uri = f"{self.names.image_repository}@{registry_digest}"
        return ImageRef(uri=uri, content_hash=wanted.content_hash)

    def _registry_digest(self, image: ImageRef) -> str | None:
        """The digest the content-hash tag points at, None when that tag does not exist."""
        tag = image.uri.rsplit(":", 1)[1]
        name = f"{self.names.repository}/packages/{self.names.job_id}/tags/{tag}"

        def read() -> str | None:
            try:
                return str(self.clients.registry.get_tag(name=name).version)
            except gexc.NotFound:
                return None

        version = self.calls.call("read", f"image tag {tag}", read)
        return None if version is None else (version.rsplit("/", 1)[1] or None)

    def _upload_source(self, context_dir: Path, image: ImageRef, on_log: LogCallback) -> str:
        tag = image.uri.rsplit(":", 1)[1]
        path = f"{BUILDS_PREFIX}/job-image-{tag}.tar.gz"
        with tempfile.TemporaryDirectory() as scratch:
            archive = Path(scratch) / "source.tar.gz"
            archive.write_bytes(source_tarball(context_dir))
            written = self.store.upload_file(path, archive)
        on_log(f"build source {self.store.uri_for(path)} {'uploaded' if written else 'present'}")
        return path
