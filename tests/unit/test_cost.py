"""The cost estimate's arithmetic with known numbers, the prices from settings, and where the
lines show up (report, CLI summary)."""

from __future__ import annotations

import pytest

from core.contracts import Endpoint, JobOutcome
from core.cost import CostEstimate, Prices, Usage, estimate_usd
from core.report import LOCAL_COST, PipelineResult, StepRecord, render_report
from flows.cli import print_summary
from flows.cost import run_cost
from flows.settings import load_settings

PRICES = Prices(gpu_usd_per_s=0.0002, vcpu_usd_per_s=0.00002, gib_usd_per_s=0.000002, checked="x")


def test_resource_seconds_times_prices() -> None:
    job = Usage(seconds=600, gpus=1, vcpus=8, memory_gib=32)
    assert (job.gpu_seconds, job.vcpu_seconds, job.gib_seconds) == (600, 4800, 19200)
    # 600 × 0.0002 + 4800 × 0.00002 + 19200 × 0.000002 = 0.12 + 0.096 + 0.0384
    assert estimate_usd(job, PRICES) == pytest.approx(0.2544)

    estimate = CostEstimate({"training job": job, "serving": Usage(100, 1, 4, 16)}, PRICES)
    # serving: 100 × (0.0002 + 4 × 0.00002 + 16 × 0.000002) = 0.0312
    assert estimate.total_usd == pytest.approx(0.2856)
    lines = estimate.lines()
    assert lines[0] == "training job: 600 GPU-s + 4800 vCPU-s + 19200 GiB-s = $0.2544"
    assert lines[1] == "serving: 100 GPU-s + 400 vCPU-s + 1600 GiB-s = $0.0312"
    assert lines[2].startswith("total ≈ $0.2856 (list prices checked x")


def test_prices_come_from_settings_with_their_date_and_zonal_redundancy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPELINE_GCP__PRICES_CHECKED", "2027-01-31")
    gcp = load_settings().gcp
    assert gcp.prices() == Prices(0.0001867, 0.000018, 0.000002, "2027-01-31")
    redundant = load_settings(gcp={"gpu_zonal_redundancy": True}).gcp.prices()
    assert redundant.gpu_usd_per_s == 0.0002909


def steps(train_state: str) -> list[StepRecord]:
    return [
        StepRecord("train", train_state, 700.0),
        StepRecord("deploy", "Completed", 80.0),
        StepRecord("smoke", "Completed", 10.0),
        StepRecord("promote", "Completed", 1.0),
    ]


def test_a_run_counts_its_execution_only_when_it_trained_and_the_serving_steps() -> None:
    settings = load_settings(backend="gcp", gcp={"project": "my-project-1"})
    job = JobOutcome("k", "gs://b/models/k", "e", 700.0, False, Usage(600, 1, 8, 32))

    lines = run_cost(settings, job, steps("Completed"))
    assert lines[0] == "training job: 600 GPU-s + 4800 vCPU-s + 19200 GiB-s = $0.2368"
    # deploy + smoke = 90 s on 1 L4 + 8 vCPU + 32 GiB
    assert lines[1] == "serving (deploy + smoke test): 90 GPU-s + 720 vCPU-s + 2880 GiB-s = $0.0355"
    assert lines[2].startswith("total ≈ $0.2723 (list prices checked 2026-12-01")

    cached = run_cost(settings, job, steps("Cached"))
    assert not any(line.startswith("training job") for line in cached), "trained in another run"
    assert run_cost(load_settings(), job, steps("Completed")) == (LOCAL_COST,)


def test_the_report_and_the_cli_summary_carry_the_cost(capsys: pytest.CaptureFixture[str]) -> None:
    cost = ("training job: 1 GPU-s + 8 vCPU-s + 32 GiB-s = $0.0004", "total ≈ $0.0004 (…)")
    report = render_report(
        lineage_key="k", model_uri="gs://b/m", lineage={}, metrics={}, endpoint="https://e",
        served_model="emoji-gemma", prompt="p", answer="🍕", latency_s=0.1, steps=[],
        serving_note="kept", cost=cost,
    )  # fmt: skip
    assert "## Cost (estimate)\n\n- training job: 1 GPU-s" in report
    endpoint = Endpoint("https://e", "emoji-gemma", "vllm", "rev")
    result = PipelineResult(
        lineage_key="k", model_uri="gs://b/m", metrics={}, endpoint=endpoint, answer="🍕",
        kept_serving=True, stop_hint="stop", cost=cost,
    )  # fmt: skip
    print_summary(result)
    out = capsys.readouterr().out
    assert "cost     training job: 1 GPU-s" in out and "         total ≈ $0.0004" in out
