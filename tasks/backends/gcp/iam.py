"""IAM policy edits that never drop someone else's binding.

A policy is read with its etag, changed, and written back with that etag; a concurrent writer
makes the write fail (409, 412 or ABORTED) instead of being silently overwritten, and the edit
is retried on a fresh read. Membership is checked first, so an existing grant costs one read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from google.api_core import exceptions as gexc
from google.iam.v1 import policy_pb2

from core.contracts import TransientError

POLICY_WRITE_ATTEMPTS = 5
POLICY_CONFLICTS = (gexc.Conflict, gexc.Aborted, gexc.PreconditionFailed)

P = TypeVar("P")


def add_member_with_etag(
    read: Callable[[], P],
    has_member: Callable[[P], bool],
    add_member: Callable[[P], None],
    write: Callable[[P], object],
) -> bool:
    """Read-modify-write of an IAM policy; True when this call changed it.

    The policy carries the etag it was read with, so a concurrent writer makes the write fail
    (409/412/ABORTED) instead of silently dropping their binding; then read again and retry.
    """
    for _attempt in range(POLICY_WRITE_ATTEMPTS):
        policy = read()
        if has_member(policy):
            return False
        add_member(policy)
        try:
            write(policy)
        except POLICY_CONFLICTS:
            continue
        return True
    raise TransientError(
        f"IAM policy kept changing during {POLICY_WRITE_ATTEMPTS} read-modify-write attempts"
    )


def has_proto_member(policy: policy_pb2.Policy, role: str, member: str) -> bool:
    return any(b.role == role and member in b.members for b in policy.bindings)


def add_proto_member(policy: policy_pb2.Policy, role: str, member: str) -> None:
    """Add `member` to the binding of `role` (unconditional), creating the binding if needed."""
    for binding in policy.bindings:
        if binding.role == role and not binding.HasField("condition"):
            binding.members.append(member)
            return
    policy.bindings.add(role=role, members=[member])
