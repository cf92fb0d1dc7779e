"""The rtcfleet policy pack's policies, importable by the pack and by the offline plan."""

from __future__ import annotations

from pulumi_policy import Policy

from infra.policy.aws import AWS_POLICIES
from infra.policy.azure import AZURE_POLICIES
from infra.policy.global_stack import GLOBAL_POLICIES

POLICIES: list[Policy] = [*AWS_POLICIES, *AZURE_POLICIES, *GLOBAL_POLICIES]

__all__ = ["POLICIES"]
