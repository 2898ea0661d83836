"""The region's Cloud Run L4 quota, read before a run builds or trains anything.

Neither Cloud Run GPU quota is granted by default, and a job execution that gets no GPU only
fails once Cloud Run tries to schedule its task — after the image build and the upload. So a
run reads the quota first and stops when it is 0, naming the quota, the region, where to ask
for more and which other regions to try.

Which quota: Cloud Run keeps two, per project and region, and a GPU draws on one of them by
`gcp.gpu_zonal_redundancy`:

- zonal redundancy off (the default): `NvidiaL4GpuAllocNoZonalRedundancyPerProjectRegion`,
  metric `run.googleapis.com/nvidia_l4_gpu_allocation_no_zonal_redundancy`;
- on: `NvidiaL4GpuAllocPerProjectRegion`, metric `run.googleapis.com/nvidia_l4_gpu_allocation`.

How: Service Usage v1beta1 `services.consumerQuotaMetrics.get` (permission
`serviceusage.quotas.get`, in `roles/serviceusage.serviceUsageViewer`, which bootstrap grants
the runner). The Cloud Quotas API (`quotaInfos.get`) answers the same, but needs its own API
enabled and `roles/cloudquotas.viewer`; Service Usage is enabled in every project that enables
anything. A quota that cannot be read (no permission, API disabled, timeout) is one warning:
the quota decides whether the GPU is scheduled later, not whether the run may start.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.contracts import GpuQuota, PipelineError
from tasks.backends.gcp.calls import GoogleCalls
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import GcpNames, GcpSettings

RUN_SERVICE = "run.googleapis.com"
REGION_DIMENSION = "region"


@dataclass(frozen=True)
class QuotaMetric:
    """A quota as the console names it (`quota_id`) and as Service Usage does (`metric`)."""

    quota_id: str
    metric: str


NO_ZONAL_REDUNDANCY = QuotaMetric(
    "NvidiaL4GpuAllocNoZonalRedundancyPerProjectRegion",
    f"{RUN_SERVICE}/nvidia_l4_gpu_allocation_no_zonal_redundancy",
)
ZONAL_REDUNDANCY = QuotaMetric(
    "NvidiaL4GpuAllocPerProjectRegion", f"{RUN_SERVICE}/nvidia_l4_gpu_allocation"
)


def quota_metric(zonal_redundancy: bool) -> QuotaMetric:
    """The quota a GPU with (or without) zonal redundancy draws on."""
    return ZONAL_REDUNDANCY if zonal_redundancy else NO_ZONAL_REDUNDANCY


def console_link(project: str) -> str:
    """The console's quota page of the project (filter it by the quota id to request more)."""
    return f"https://console.cloud.google.com/iam-admin/quotas?project={project}"


def region_limit(metric: Mapping[str, Any], region: str) -> int | None:
    """The effective limit for `region` in a ConsumerQuotaMetric: the bucket of that region,
    else the limit's default bucket (no dimensions); None when the metric has no regional
    limit at all."""
    for limit in metric.get("consumerQuotaLimits", []):
        if "{region}" not in str(limit.get("unit", "")):
            continue
        buckets = limit.get("quotaBuckets", [])
        for bucket in buckets:
            if (bucket.get("dimensions") or {}).get(REGION_DIMENSION) == region:
                return int(bucket.get("effectiveLimit", 0))
        for bucket in buckets:
            if not bucket.get("dimensions"):
                return int(bucket.get("effectiveLimit", 0))
    return None


@dataclass(frozen=True)
class GpuQuotaReader:
    """Reads the one quota a run's GPUs draw on, in the run's region; one GET, no write."""

    clients: GoogleClients
    names: GcpNames
    calls: GoogleCalls
    settings: GcpSettings

    @property
    def quota(self) -> QuotaMetric:
        return quota_metric(self.settings.gpu_zonal_redundancy)

    def resource_name(self) -> str:
        metric = urllib.parse.quote(self.quota.metric, safe="")
        return f"projects/{self.names.project}/services/{RUN_SERVICE}/consumerQuotaMetrics/{metric}"

    def read(self) -> GpuQuota:
        region, quota = self.names.region, self.quota
        others = [r for r in self.settings.gpu_regions if r != region]
        fix = (
            f"request it at {console_link(self.names.project)} (filter: {quota.quota_id}), "
            f"or pick another region (gcp.region; one of {', '.join(others) or 'gcp.gpu_regions'})"
        )
        metrics = self.clients.service_usage_quotas.services().consumerQuotaMetrics()
        request = metrics.get(name=self.resource_name(), view="FULL")
        try:
            found = self.calls.call("read", f"quota {quota.quota_id}", request.execute)
        except PipelineError as error:
            return GpuQuota(quota.quota_id, region, None, str(error).split(";")[0], fix)
        limit = region_limit(found, region)
        detail = "" if limit is not None else f"{quota.metric} has no limit per region"
        return GpuQuota(quota.quota_id, region, limit, detail, fix)
