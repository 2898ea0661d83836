"""Plan mode: what a run would do, decided from reads only — and what it would cost.

`decide_plan` turns what the backend found (resources, the image, the model folder, what
serves) into one line per step: exists / would create / would build / would train / would
deploy. Nothing here calls anything; the flow gathers the facts with GETs only.

Prices are the settings' Cloud Run list prices (`core.cost.Prices`), in USD; they are an
estimate to compare runs, not a bill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from core.contracts import GpuQuota, ResourceState
from core.cost import Prices, Usage, estimate_usd

BUILD_USD_PER_MIN = 0.006  # Cloud Build, e2-standard-2
BUILD_MINUTES = 10.0  # a training image build, upper bound


@dataclass(frozen=True)
class PlanStep:
    """One step of the plan: `action` is what the run would do ("exists" = nothing)."""

    step: str
    action: str
    detail: str


@dataclass(frozen=True)
class PipelinePlan:
    """What a run with these settings would do; returned by a `plan: true` run."""

    backend: str
    inputs: Mapping[str, object]
    lineage_key: str
    model_uri: str
    steps: tuple[PlanStep, ...]
    cost: Mapping[str, float] = field(default_factory=dict)
    cost_notes: tuple[str, ...] = ()

    @property
    def total_usd(self) -> float:
        return sum(self.cost.values())


@dataclass(frozen=True)
class Facts:
    """What the reads found; `None` for image/model means it could not be read (unknown)."""

    resources: Sequence[ResourceState]
    image_uri: str
    image_built: bool | None
    model_sealed: bool | None
    model_verdict: str
    serving: Mapping[str, str]
    keeps_serving: bool
    quota: GpuQuota | None = None  # None: the backend has no GPU quota (local)


QUOTA_ACTIONS = {True: "enough", False: "would stop", None: "unreadable"}


def quota_steps(quota: GpuQuota | None) -> list[PlanStep]:
    """The `quota` line: enough / would stop (the run fails before building) / unreadable."""
    if quota is None:
        return []
    enough, line = quota.verdict()
    return [PlanStep("quota", QUOTA_ACTIONS[enough], line)]


def resource_steps(resources: Sequence[ResourceState]) -> list[PlanStep]:
    """`provision` lines: each resource that exists, and each that would be created."""
    steps = []
    for resource in resources:
        if resource.exists:
            steps.append(PlanStep("provision", "exists", f"{resource.kind} {resource.name}"))
        else:
            action = "would enable" if resource.kind == "api" else "would create"
            unknown = f" (unreadable now: {resource.detail})" if resource.exists is None else ""
            steps.append(PlanStep("provision", action, f"{resource.kind} {resource.name}{unknown}"))
    return steps


def decide_plan(key: str, facts: Facts) -> list[PlanStep]:
    """Every step's action, in pipeline order."""
    steps = quota_steps(facts.quota) + resource_steps(facts.resources)
    steps.append(
        PlanStep("build", "exists", facts.image_uri)
        if facts.image_built
        else PlanStep("build", "would build", facts.image_uri)
    )
    if facts.model_sealed:
        steps.append(PlanStep("train", "exists", f"model {key} is complete; nothing to train"))
    else:
        steps.append(PlanStep("train", "would train", f"model {key}"))
    if facts.model_sealed and facts.model_verdict != "passed":
        steps.append(PlanStep("verify", "would refuse", f"model {key}: {facts.model_verdict}"))
        return steps
    steps.append(PlanStep("verify", "would verify", "integrity checks and the quality gate"))
    if key in facts.serving:
        where = facts.serving[key]
        steps.append(PlanStep("deploy", "exists", f"already serving: {where}"))
        return steps
    steps.append(PlanStep("deploy", "would deploy", "a candidate server, then the smoke test"))
    traffic = "would move traffic" if facts.keeps_serving else "would stop after the smoke test"
    live = ", ".join(facts.serving.values()) or "nothing serves now"
    steps.append(PlanStep("promote", traffic, f"previous: {live}"))
    return steps


def gcp_cost(
    steps: Sequence[PlanStep], train_deadline_s: float, instance: Usage, prices: Prices
) -> tuple[dict[str, float], tuple[str, ...]]:
    """Upper bounds in USD: the image build and the training job (shaped like `instance`,
    seconds ignored) at its deadline."""
    actions = {step.step: step.action for step in steps}
    per_hour = prices.per_second(instance) * 3600
    cost: dict[str, float] = {}
    if actions.get("build") == "would build":
        cost["build"] = BUILD_MINUTES * BUILD_USD_PER_MIN
    if actions.get("train") == "would train":
        cost["train"] = estimate_usd(replace(instance, seconds=train_deadline_s), prices)
    shape = f"1x L4 + {instance.vcpus:g} vCPU + {instance.memory_gib:g} GiB"
    notes = (
        f"training: at most {train_deadline_s:.0f} s (training.timeout_s) on {shape}"
        f" = ${per_hour:.2f}/h (list prices checked {prices.checked})",
        f"serving: ${per_hour:.2f} per hour while an instance runs; the service "
        "scales to zero when idle ($0)",
    )
    return cost, notes


def render_plan(plan: PipelinePlan) -> str:
    """The plan as an operator reads it in the terminal or in the run's artifact."""
    lines = [
        f"plan    backend {plan.backend}; nothing was changed",
        f"model   {plan.lineage_key}  ({plan.model_uri})",
        *(f"input   {name} = {value}" for name, value in plan.inputs.items()),
        *(f"{step.step:<10}{step.action:<18}{step.detail}" for step in plan.steps),
        *(f"cost    {name}: ${usd:.2f}" for name, usd in plan.cost.items()),
        f"cost    total (upper bound): ${plan.total_usd:.2f}",
        *(f"        {note}" for note in plan.cost_notes),
    ]
    return "\n".join(lines)
