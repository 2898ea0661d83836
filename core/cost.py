"""What a run cost, estimated: resource-seconds used × list prices per second.

Cloud Run bills GPU jobs and GPU services by instance (instance-based billing): the GPU, every
vCPU and every GiB of memory for as long as the instance runs, whether it works or idles. So a
run's cost is, for each thing that ran, its seconds × (GPU + vCPUs + GiB) prices. The prices
come from the settings (`gcp.price_*`, with the date they were checked); this module only does
the arithmetic, so the report and the CLI print the same numbers. An estimate to compare runs
against each other, not a bill: it has no free tier, discount or tax.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Prices:
    """List prices in USD per second of one GPU, one vCPU and one GiB of memory."""

    gpu_usd_per_s: float
    vcpu_usd_per_s: float
    gib_usd_per_s: float
    checked: str  # ISO date the prices were read from the pricing page

    def per_second(self, usage: Usage) -> float:
        """USD per second of an instance shaped like `usage`."""
        return (
            usage.gpus * self.gpu_usd_per_s
            + usage.vcpus * self.vcpu_usd_per_s
            + usage.memory_gib * self.gib_usd_per_s
        )


@dataclass(frozen=True)
class Usage:
    """One instance shape for `seconds`: what Cloud Run bills by."""

    seconds: float
    gpus: int
    vcpus: float
    memory_gib: float

    @property
    def gpu_seconds(self) -> float:
        return self.seconds * self.gpus

    @property
    def vcpu_seconds(self) -> float:
        return self.seconds * self.vcpus

    @property
    def gib_seconds(self) -> float:
        return self.seconds * self.memory_gib


def estimate_usd(usage: Usage, prices: Prices) -> float:
    """GPU-seconds, vCPU-seconds and GiB-seconds, each times its price."""
    return usage.seconds * prices.per_second(usage)


@dataclass(frozen=True)
class CostEstimate:
    """What each part of a run used (e.g. "training", "serving"), at `prices`."""

    usages: Mapping[str, Usage]
    prices: Prices

    def usd(self, part: str) -> float:
        return estimate_usd(self.usages[part], self.prices)

    @property
    def total_usd(self) -> float:
        return sum(self.usd(part) for part in self.usages)

    def lines(self) -> list[str]:
        """One line a part and a total, as the report and the CLI summary print them."""
        rows = [
            f"{part}: {u.gpu_seconds:.0f} GPU-s + {u.vcpu_seconds:.0f} vCPU-s + "
            f"{u.gib_seconds:.0f} GiB-s = ${self.usd(part):.4f}"
            for part, u in self.usages.items()
        ]
        checked = f"list prices checked {self.prices.checked}"
        return [*rows, f"total ≈ ${self.total_usd:.4f} ({checked}; an estimate, not a bill)"]
