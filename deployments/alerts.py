"""Alerts: one Slack-compatible message for every failed, crashed or gate-rejected pipeline run.

Open-source Prefect 3 runs automations on a self-hosted server, so the alert is an automation:
its trigger is the server's own `prefect.flow-run.Failed` / `prefect.flow-run.Crashed` event
for the `emoji-finetune` flow (a gate rejection fails the run in `verify`), and its action
sends the message through a Custom Webhook block whose body is Slack's `{"text": …}`. The
failed step comes from the flow run's `emoji-finetune.failed-step` label, which the pipeline
sets when a step fails (`flows/steps.py`); the reason is the run's final state message.

The webhook URL is a setting, `PIPELINE_ALERTS__WEBHOOK_URL` (environment or `.env`), read
only here: a flow parameter can never redirect where alerts go. It is kept in the block's
secret values, never in its plain fields. `bootstrap` (run by `make deploy`) calls `ensure`.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.automations import Automation, EventTrigger, Posture, SendNotification
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.steps import FAILED_STEP_LABEL

FLOW_NAME = "emoji-finetune"
BLOCK_NAME = "emoji-finetune-alerts"
AUTOMATION_NAME = "emoji-finetune-alerts"
ALERTED_STATES = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed")
SUBJECT = "emoji-finetune run {{ flow_run.name }} {{ flow_run.state.name | lower }}"
BODY = (
    "run: {{ flow_run.name }} ({{ flow_run.id }})\n"
    "failed step: {{ flow_run.labels.get('" + FAILED_STEP_LABEL + "', 'none "
    "(it stopped outside a step)') }}\n"
    "reason: {{ flow_run.state.message }}"
)


class AlertSettings(BaseSettings):
    """Where alerts go; only `bootstrap` reads it (never a flow parameter)."""

    model_config = SettingsConfigDict(
        env_prefix="PIPELINE_ALERTS__",
        env_file=os.environ.get("PIPELINE_ENV_FILE", ".env"),
        extra="ignore",  # the same .env holds every other PIPELINE_* setting
    )

    webhook_url: SecretStr | None = Field(
        None,
        description=(
            "Slack incoming-webhook URL (or any endpoint taking Slack's JSON) that receives "
            "one message per failed, crashed or gate-rejected run; unset = no alerts."
        ),
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError(
                "alerts.webhook_url must be an http(s) URL: set PIPELINE_ALERTS__WEBHOOK_URL "
                "to the webhook's address (e.g. https://hooks.slack.com/services/…)"
            )
        return value


def webhook_block(url: str) -> CustomWebhookNotificationBlock:
    """Slack's JSON shape; the URL lives in the block's secret values."""
    return CustomWebhookNotificationBlock(
        name=BLOCK_NAME,
        url="{{webhook_url}}",
        method="POST",
        json_data={"text": "{{subject}}\n{{body}}"},
        secrets={"webhook_url": url},
    )


def ensure_webhook_block(url: str) -> tuple[str, Any]:
    """get → create if absent → overwrite only when the URL changed; (outcome, block id)."""
    try:
        existing = CustomWebhookNotificationBlock.load(BLOCK_NAME)
    except ValueError:  # Prefect's "block not found"
        existing = None
    if existing is not None and existing.secrets.get_secret_value().get("webhook_url") == url:
        return "unchanged", existing._block_document_id
    block_id = webhook_block(url).save(BLOCK_NAME, overwrite=True)
    return ("created" if existing is None else "updated"), block_id


def alert_automation(block_id: Any) -> Automation:
    """Any failed or crashed run of the pipeline flow → one message (both states are final)."""
    return Automation(
        name=AUTOMATION_NAME,
        description="Notify on a failed, crashed or gate-rejected emoji-finetune run.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAME},
            expect=set(ALERTED_STATES),
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    )


def ensure_automation(block_id: Any) -> str:
    """get by name → create if absent → update when its spec differs."""
    wanted = alert_automation(block_id)
    try:
        existing = Automation.read(name=AUTOMATION_NAME)
    except ValueError:  # "not found"
        wanted.create()
        return "created"
    spec = {"exclude": {"id", "owner_resource"}, "mode": "json"}
    if existing.model_dump(**spec) == wanted.model_dump(**spec):  # type: ignore[arg-type]
        return "unchanged"
    wanted.id = existing.id
    wanted.update()
    return "updated"


def ensure_alerts(url: str) -> dict[str, str]:
    """The block, then the automation that uses it → what was done to each."""
    block_outcome, block_id = ensure_webhook_block(url)
    return {
        f"block custom-webhook/{BLOCK_NAME}": block_outcome,
        f"automation {AUTOMATION_NAME}": ensure_automation(block_id),
    }
