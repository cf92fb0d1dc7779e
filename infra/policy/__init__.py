"""The rtcfleet policy pack's policies, importable by the pack and by the offline plan."""

from __future__ import annotations

from pulumi_policy import Policy

from infra.policy.aws import AWS_POLICIES
from infra.policy.azure import AZURE_POLICIES
from infra.policy.capacity import CAPACITY_POLICIES
from infra.policy.certificates import CERTIFICATE_POLICIES
from infra.policy.global_stack import GLOBAL_POLICIES
from infra.policy.storage import STORAGE_POLICIES

# recording storage, spot capacity and certificates: every cloud's stacks
OPERATIONS_POLICIES: list[Policy] = [*STORAGE_POLICIES, *CAPACITY_POLICIES, *CERTIFICATE_POLICIES]
POLICIES: list[Policy] = [*AWS_POLICIES, *AZURE_POLICIES, *GLOBAL_POLICIES, *OPERATIONS_POLICIES]

__all__ = ["OPERATIONS_POLICIES", "POLICIES"]
