"""The watcher's rules: one event per change, first sight recorded quietly unless asked."""

from __future__ import annotations

import pytest

from core.dataset_watch import decide, resource_id, state_variable_name


@pytest.mark.parametrize(
    ("previous", "current", "first_sight_emits", "emit", "record"),
    [
        (None, "r1", False, False, True),  # first sight: remember, stay quiet
        (None, "r1", True, True, True),  # … unless configured to announce it
        ("r1", "r1", False, False, False),  # unchanged: nothing to do
        ("r1", "r2", False, True, True),  # changed: one event, then remember
        ("r1", "r2", True, True, True),
    ],
)
def test_decision(
    previous: str | None, current: str, first_sight_emits: bool, emit: bool, record: bool
) -> None:
    decision = decide("data.jsonl", previous, current, first_sight_emits)
    assert (decision.emit, decision.record) == (emit, record)
    assert decision.reason


def test_names_are_stable_and_valid_prefect_identifiers() -> None:
    name = state_variable_name("KomeijiForce/Text2Emoji")
    assert name == state_variable_name("KomeijiForce/Text2Emoji")
    assert name != state_variable_name("KomeijiForce/Text2Emoji-v2")
    assert name.replace("-", "").replace("_", "").isalnum() and name == name.lower()
    assert resource_id("a").startswith("emoji-finetune.dataset.")
