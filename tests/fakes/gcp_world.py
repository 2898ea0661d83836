"""A whole fake Google Cloud for one test: the API fake in front of the GCS emulator.

Each world has its own project (so its own bucket name) on the shared emulator, a fresh API
fake, and helpers the tests need: settings pointing every API at the fake, a storage client
straight to the emulator for assertions, `bootstrap` (what an admin runs once: by default the
world starts bootstrapped, with its requests forgotten, so tests see only what a run sends),
and `publish_model`, which plays the training job by writing a real model folder sealed with a
MANIFEST.json into the bucket.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from core.contracts import ProvisionReport
from tasks.backends.gcp.backend import build_gcp_bootstrap
from tasks.backends.gcp.config import GcpNames, GcpSettings
from tests.fakes.google_apis import GoogleApisFake

# What a good training job measures on held-out rows, its base model's scores included (the
# quality gate compares the two).
FAKE_METRICS = {
    "eval_examples": 8,
    "eval_loss": 0.01,
    "exact_match": 1.0,
    "emoji_only_rate": 1.0,
    "emoji_f1": 1.0,
    "train_loss": 0.01,
    "base_eval_loss": 2.0,
    "base_emoji_only_rate": 0.5,
    "base_emoji_f1": 0.5,
}
_projects = itertools.count(1)
WORLD_TOKEN = "hf_worldBootstrapToken0123"  # the secret's value unless a test sets $HF_TOKEN


class FakeGoogleCloud:
    def __init__(self, gcs_url: str, fake: GoogleApisFake, project: str) -> None:
        self.gcs_url = gcs_url
        self.fake = fake
        self.project = project
        self.url = ""

    def gcp_values(self, **overrides: Any) -> dict[str, Any]:
        """The `gcp` settings a run against the fake uses, as a flow run would pass them:
        waits and backoffs short (the fake answers at once), endpoints left to the
        environment (`PIPELINE_GCP__API_ENDPOINTS`), as for any run."""
        fast = {
            "project": self.project,
            "poll_interval_s": 0.05,
            "log_tail_s": 0.2,
            "api_retry_first_delay_s": 0.05,
            "api_retry_deadline_s": 20.0,
            "service_enable_propagation_s": 20.0,
            "listing_settle_s": 1.0,
        }
        return fast | overrides

    def settings(self, **overrides: Any) -> GcpSettings:
        """Every API at the fake, for tests that build the backend directly."""
        return GcpSettings(api_endpoints={"*": self.url}, **self.gcp_values(**overrides))

    def bootstrap(self, **overrides: Any) -> ProvisionReport:
        """`python -m deployments.bootstrap --gcp-project P` against this world."""
        token = os.environ.get("HF_TOKEN") or WORLD_TOKEN
        with mock.patch.dict(os.environ, {"HF_TOKEN": token}):
            return build_gcp_bootstrap(self.settings(**overrides)).ensure(on_log=lambda _: None)

    def executions(self) -> list[str]:
        return [name for name in self.fake.state.resources if "/executions/" in name]

    @property
    def names(self) -> GcpNames:
        return GcpNames.from_settings(self.settings())

    @property
    def storage(self) -> storage.Client:
        """Straight to the emulator: what a test reads here bypasses the fake's recording."""
        return storage.Client(
            project=self.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": self.gcs_url},
        )

    def objects(self, prefix: str = "") -> list[str]:
        return sorted(b.name for b in self.storage.list_blobs(self.names.bucket, prefix=prefix))

    def publish_model(self, model_dir: Path, args: list[str]) -> None:
        """What a successful training execution leaves in the bucket (manifest last)."""
        output = args[args.index("--output-dir") + 1].removeprefix("/mnt/store/")
        key = args[args.index("--lineage-key") + 1]
        lineage = json.loads(args[args.index("--lineage-json") + 1])
        bucket = self.storage.bucket(self.names.bucket)
        files: dict[str, dict[str, Any]] = {}
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            name = path.relative_to(model_dir).as_posix()
            data = path.read_bytes()
            files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            bucket.blob(f"{output}/{name}").upload_from_string(data)
        manifest = {
            "format_version": 1,
            "lineage_key": key,
            "lineage": lineage,
            "files": files,
            "metrics": FAKE_METRICS,
            "completed_at": "2026-11-28T00:00:00Z",
        }
        bucket.blob(f"{output}/MANIFEST.json").upload_from_string(json.dumps(manifest))


@contextmanager
def fake_google_cloud(gcs_url: str, bootstrapped: bool = True) -> Iterator[FakeGoogleCloud]:
    """A fresh API fake (own thread, 127.0.0.1) for a fresh project on the shared emulator,
    bootstrapped unless asked not to (then the test runs `world.bootstrap()` itself)."""
    fake = GoogleApisFake(gcs_url)
    world = FakeGoogleCloud(gcs_url, fake, project=f"test-project-{next(_projects):04d}")
    world.url = fake.serve()
    try:
        if bootstrapped:
            world.bootstrap()
            fake.requests.clear()
        yield world
    finally:
        fake.shutdown()
