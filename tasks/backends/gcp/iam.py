"""IAM policy edits that never drop someone else's binding.

A policy is read with its etag, changed, and written back with that etag: a concurrent writer
makes the write fail (409 ABORTED, or 412 on GCS) instead of being silently overwritten. The
caller runs this through `GoogleCalls.call(..., converge=True)`, which redoes it from a fresh
read. Membership is checked first, so an existing grant costs one read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from google.iam.v1 import policy_pb2

P = TypeVar("P")


def add_member_with_etag(
    read: Callable[[], P],
    has_member: Callable[[P], bool],
    add_member: Callable[[P], None],
    write: Callable[[P], object],
) -> Callable[[], bool]:
    """One read-modify-write of an IAM policy, as a call; it returns True when it changed it."""

    def edit() -> bool:
        policy = read()
        if has_member(policy):
            return False
        add_member(policy)
        write(policy)
        return True

    return edit


def has_proto_member(policy: policy_pb2.Policy, role: str, member: str) -> bool:
    return any(b.role == role and member in b.members for b in policy.bindings)


def add_proto_member(policy: policy_pb2.Policy, role: str, member: str) -> None:
    """Add `member` to the binding of `role` (unconditional), creating the binding if needed."""
    for binding in policy.bindings:
        if binding.role == role and not binding.HasField("condition"):
            binding.members.append(member)
            return
    policy.bindings.add(role=role, members=[member])


def _expression(condition: Mapping[str, Any] | None) -> str | None:
    return None if not condition else str(condition.get("expression"))


def has_binding(
    bindings: Iterable[Mapping[str, Any]],
    role: str,
    member: str,
    condition: Mapping[str, Any] | None = None,
) -> bool:
    """`member` holds `role` under exactly `condition` (None: unconditionally) in JSON bindings."""
    wanted = _expression(condition)
    return any(
        b["role"] == role and member in b["members"] and _expression(b.get("condition")) == wanted
        for b in bindings
    )


def add_binding(
    bindings: list[dict[str, Any]],
    role: str,
    member: str,
    condition: Mapping[str, Any] | None = None,
) -> None:
    """Add `member` to the binding of `role` under `condition`, creating it if needed (the
    storage client keeps members as a set, Google's JSON as a list)."""
    wanted = _expression(condition)
    for binding in bindings:
        if binding["role"] == role and _expression(binding.get("condition")) == wanted:
            members = binding["members"]
            members.add(member) if isinstance(members, set) else members.append(member)
            return
    added: dict[str, Any] = {"role": role, "members": [member]}
    if condition:
        added["condition"] = dict(condition)
    bindings.append(added)
