"""The GPU quota check against the API fake: which quota, which region, and what an unreadable
quota gives (a line, never an error) — the real discovery client, Service Usage v1beta1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.contracts import GpuQuota
from tasks.backends.gcp.backend import build_gcp_backend
from tasks.backends.gcp.quota import NO_ZONAL_REDUNDANCY, ZONAL_REDUNDANCY, region_limit
from tests.fakes.gcp_world import FakeGoogleCloud, fake_google_cloud

QUOTA_GET = "serviceusage.services.consumerQuotaMetrics.get"


@pytest.fixture
def world(gcs_emulator: str) -> Iterator[FakeGoogleCloud]:
    with fake_google_cloud(gcs_emulator) as cloud:
        yield cloud


def read(world: FakeGoogleCloud, **gcp: object) -> GpuQuota:
    quota = build_gcp_backend(world.settings(**gcp)).provisioner.gpu_quota()
    assert quota is not None
    return quota


def test_the_region_bucket_wins_over_the_default_and_other_regions() -> None:
    limit = {
        "unit": "1/{project}/{region}",
        "quotaBuckets": [
            {"effectiveLimit": "0"},
            {"effectiveLimit": "5", "dimensions": {"region": "us-central1"}},
            {"effectiveLimit": "1", "dimensions": {"region": "europe-west1"}},
        ],
    }
    metric = {"consumerQuotaLimits": [{"unit": "1/{project}", "quotaBuckets": []}, limit]}
    assert region_limit(metric, "europe-west1") == 1
    assert region_limit(metric, "us-central1") == 5
    assert region_limit(metric, "asia-south1") == 0, "no bucket of its own: the default"
    assert region_limit({"consumerQuotaLimits": []}, "europe-west1") is None


def test_the_quota_follows_zonal_redundancy_and_region(world: FakeGoogleCloud) -> None:
    world.fake.gpu_quota[(NO_ZONAL_REDUNDANCY.metric, "europe-west1")] = 0
    world.fake.gpu_quota[(ZONAL_REDUNDANCY.metric, "europe-west1")] = 2

    without = read(world)
    assert (without.name, without.region, without.limit) == (
        "NvidiaL4GpuAllocNoZonalRedundancyPerProjectRegion",
        "europe-west1",
        0,
    )
    enough, line = without.verdict()
    assert enough is False
    assert f"https://console.cloud.google.com/iam-admin/quotas?project={world.project}" in line
    assert "europe-west1 is 0" in line and "us-central1" in line, "names other regions to try"

    redundant = read(world, gpu_zonal_redundancy=True)
    assert (redundant.name, redundant.limit) == ("NvidiaL4GpuAllocPerProjectRegion", 2)
    assert read(world, region="us-central1").limit == world.fake.gpu_quota_default
    (request, *_) = world.fake.calls(QUOTA_GET)
    assert request.path.endswith("nvidia_l4_gpu_allocation_no_zonal_redundancy")
    assert not any(r.mutating for r in world.fake.requests), "a read, nothing else"


@pytest.mark.parametrize(
    ("code", "status", "shown"),
    [(403, "PERMISSION_DENIED", "permission denied"), (404, "NOT_FOUND", "not found")],
)
def test_an_unreadable_quota_is_unknown_not_an_error(
    world: FakeGoogleCloud, code: int, status: str, shown: str
) -> None:
    world.fake.inject(QUOTA_GET, code, "Permission 'serviceusage.quotas.get' denied", status)

    quota = read(world)

    assert quota.limit is None
    enough, line = quota.verdict()
    assert enough is None and shown in line and "going on" in line
    assert len(world.fake.calls(QUOTA_GET)) == 1, "not retried"
