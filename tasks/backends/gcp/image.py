"""`ImageBuilder` on Cloud Build + Artifact Registry, addressed by the content of `job_image/`.

The tag is the content hash, so "is this code already built?" is one registry read, and a
rebuild of unchanged code never happens. The source goes up as a deterministic tarball (sorted
names, zeroed times and owners) so identical code uploads identical bytes to a content-addressed
object. The job runs the image pinned by registry digest: a re-pushed tag can never change
what an existing lineage key trained with.

A context with a `deps.Dockerfile` is built in two images, so a code change never reinstalls
the ~4.3 GB of wheels: the dependencies image (tag `deps-<hash of requirements.txt +
deps.Dockerfile>`, its source only those two files) is ensured first, then the code image is
built `FROM` it by digest (`--build-arg DEPS_IMAGE=<repository>@sha256:…`). The code image's
tag is `<content hash>-<deps digest>`: rebuilt dependencies (a deleted tag, a new base) give a
new code image on top of them. It is also tagged `<content hash>`, the name `find` reads
without knowing the dependencies digest. A context without `deps.Dockerfile` is one image.

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
from collections.abc import Sequence
from dataclasses import dataclass
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
DEPS_DIGEST_CHARS = 12
DEPS_DOCKERFILE = "deps.Dockerfile"
DEPS_INPUTS = ("requirements.txt", DEPS_DOCKERFILE)
DEPS_TAG_PREFIX = "deps-"
DEPS_BUILD_ARG = "DEPS_IMAGE"
BUILDS_PREFIX = "builds"
BUILD_TIMEOUT_S = 3600
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
FILE_MODE = 0o644
EXEC_MODE = 0o755
Status = cloudbuild_v1.Build.Status
UNFINISHED = (Status.STATUS_UNKNOWN, Status.PENDING, Status.QUEUED, Status.WORKING)
CLOUD_LOGGING_ONLY = cloudbuild_v1.BuildOptions.LoggingMode.CLOUD_LOGGING_ONLY


def source_tarball(context_dir: Path, files: Sequence[Path] | None = None) -> bytes:
    """A .tar.gz of `files` (default: all of `context_dir`) whose bytes depend only on file
    names and contents."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in files if files is not None else tree_files(context_dir):
            info = tarfile.TarInfo(path.relative_to(context_dir).as_posix())
            info.size = path.stat().st_size
            info.mode = EXEC_MODE if path.stat().st_mode & 0o100 else FILE_MODE
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with path.open("rb") as handle:
                archive.addfile(info, handle)
    return gzip.compress(raw.getvalue(), mtime=0)


@dataclass(frozen=True)
class BuildRecipe:
    """One image to ensure: the tags it is pushed under (the first is the one looked up),
    the context files its build reads, the docker arguments that differ per image, and what
    to fix when its build fails."""

    uris: tuple[str, ...]
    files: tuple[Path, ...]
    fix: str
    docker_args: tuple[str, ...] = ()

    @property
    def tag(self) -> str:
        return self.uris[0].rsplit(":", 1)[1]


class CloudBuildImageBuilder:
    """Builds `job_image/` with Cloud Build, pushes to Artifact Registry, tag = content hash."""

    def __init__(
        self,
        clients: GoogleClients,
        names: GcpNames,
        store: GcsStore,
        calls: GoogleCalls,
        settings: GcpSettings,
        package: str | None = None,
    ) -> None:
        self.clients = clients
        self.names = names
        self.store = store
        self.calls = calls
        self.settings = settings
        # The registry package the images go to: the training job's name unless told otherwise
        # (the orchestrator image, `deployments.deploy_gcp`).
        self.package = package or names.job_id
        self.repository = names.image_path(self.package)

    def image_for(self, context_dir: Path) -> ImageRef:
        digest = "sha256:" + sha256_tree(context_dir)
        tag = digest.removeprefix("sha256:")[:TAG_CHARS]
        return ImageRef(uri=f"{self.repository}:{tag}", content_hash=digest)

    def find(self, image: ImageRef) -> ImageRef | None:
        registry_digest = self._registry_digest(image.uri.rsplit(":", 1)[1])
        return None if registry_digest is None else self._pinned(image, registry_digest)

    def build(self, context_dir: Path, on_log: LogCallback) -> ImageRef:
        wanted = self.image_for(context_dir)
        files = tuple(tree_files(context_dir))
        if not (context_dir / DEPS_DOCKERFILE).is_file():
            single = BuildRecipe((wanted.uri,), files, fix=f"{context_dir.name}/")
            return self._pinned(wanted, self._ensure(context_dir, single, on_log))
        deps_digest = self._ensure(context_dir, self._deps_recipe(context_dir), on_log)
        code = BuildRecipe(
            uris=(
                f"{wanted.uri}-{deps_digest.removeprefix('sha256:')[:DEPS_DIGEST_CHARS]}",
                wanted.uri,
            ),
            files=files,
            fix=f"{context_dir.name}/",
            docker_args=(
                "--build-arg",
                f"{DEPS_BUILD_ARG}={self.repository}@{deps_digest}",
            ),
        )
        return self._pinned(wanted, self._ensure(context_dir, code, on_log))

    def _deps_recipe(self, context_dir: Path) -> BuildRecipe:
        """The dependencies image: its tag and its source are those two files and no more."""
        files = tuple(context_dir / name for name in DEPS_INPUTS)
        missing = [path.name for path in files if not path.is_file()]
        if missing:
            raise ConfigurationError(
                f"{context_dir.name}/{DEPS_DOCKERFILE} needs {', '.join(missing)} beside it; "
                "add it or remove the dependencies Dockerfile"
            )
        tag = DEPS_TAG_PREFIX + sha256_tree(context_dir, files)[:TAG_CHARS]
        return BuildRecipe(
            uris=(f"{self.repository}:{tag}",),
            files=files,
            fix=" or ".join(f"{context_dir.name}/{name}" for name in DEPS_INPUTS),
            docker_args=("-f", DEPS_DOCKERFILE),
        )

    def _ensure(self, context_dir: Path, recipe: BuildRecipe, on_log: LogCallback) -> str:
        """The registry digest of `recipe`'s image: read when its tag exists, else built once."""
        existing = self._registry_digest(recipe.tag)
        if existing is not None:
            on_log(f"image {recipe.uris[0]} already in the registry ({existing})")
            return existing
        source = self._upload_source(context_dir, recipe.files, on_log)
        attempt = f"attempt-{uuid.uuid4().hex[:16]}"
        tagged = [arg for uri in recipe.uris for arg in ("-t", uri)]
        build = cloudbuild_v1.Build(
            source=cloudbuild_v1.Source(
                storage_source=cloudbuild_v1.StorageSource(bucket=self.names.bucket, object_=source)
            ),
            steps=[
                cloudbuild_v1.BuildStep(
                    name=DOCKER_BUILDER, args=["build", *recipe.docker_args, *tagged, "."]
                )
            ],
            images=list(recipe.uris),
            timeout=duration_pb2.Duration(seconds=BUILD_TIMEOUT_S),
            tags=["emoji-finetune", recipe.tag, attempt],
            # The builder account (read builds/, push to the repository, write logs), not the
            # default one; with a named account Cloud Build cannot use its default logs bucket.
            service_account=self.names.account_name("builder"),
            options=cloudbuild_v1.BuildOptions(logging=CLOUD_LOGGING_ONLY),
        )
        build_id = self.calls.call(
            "build",
            recipe.uris[0],
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
                f"image build of {recipe.uris[0]} ended {Status(finished.status).name} "
                f"({detail}); fix {recipe.fix} and rerun; "
                f"logs: {finished.log_url or 'none'}"
            )
        on_log(f"image {recipe.uris[0]} built and pushed ({digests[0]})")
        return digests[0]

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
        uri = f"{self.repository}@{registry_digest}"
        return ImageRef(uri=uri, content_hash=wanted.content_hash)

    def _registry_digest(self, tag: str) -> str | None:
        """The digest `tag` points at, None when that tag does not exist."""
        name = f"{self.names.repository}/packages/{self.package}/tags/{tag}"

        def read() -> str | None:
            try:
                return str(self.clients.registry.get_tag(name=name).version)
            except gexc.NotFound:
                return None

        version = self.calls.call("read", f"image tag {tag}", read)
        return None if version is None else (version.rsplit("/", 1)[1] or None)

    def _upload_source(self, context_dir: Path, files: Sequence[Path], on_log: LogCallback) -> str:
        """Upload `files` under a name keyed by their content (identical bytes, one object)."""
        path = f"{BUILDS_PREFIX}/job-image-{sha256_tree(context_dir, files)[:TAG_CHARS]}.tar.gz"
        with tempfile.TemporaryDirectory() as scratch:
            archive = Path(scratch) / "source.tar.gz"
            archive.write_bytes(source_tarball(context_dir, files))
            written = self.store.upload_file(path, archive)
        on_log(f"build source {self.store.uri_for(path)} {'uploaded' if written else 'present'}")
        return path
