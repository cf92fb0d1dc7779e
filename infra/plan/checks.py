"""Evaluate CrossGuard policies offline on recorded resources.

The engine normally builds ``ResourceValidationArgs``/``StackValidationArgs`` from a preview;
here they are built from what the mocks recorded (the resources' inputs, camelCase, as the
engine sees them), so the policy pack's own functions decide.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from infra.plan.mocks import RecordedResource


@dataclass(frozen=True)
class Violation:
    policy: str
    resource: str
    resource_type: str
    message: str
    mandatory: bool = True


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )


def _run(result: Any) -> None:
    if inspect.isawaitable(result):
        asyncio.run(_await(result))


async def _await(awaitable: Any) -> None:
    await awaitable


def _policy_resources(resources: Sequence[RecordedResource]) -> list[PolicyResource]:
    """The stack as CrossGuard hands it over, each resource with its dependencies."""
    made = {
        r.urn or r.name: PolicyResource(
            r.type, r.inputs, r.urn, r.name, _options(), None, None, [], {}
        )
        for r in resources
    }
    for r in resources:
        made[r.urn or r.name].dependencies = [made[u] for u in r.dependencies if u in made]
    return list(made.values())


def evaluate(resources: Iterable[RecordedResource], policies: Sequence[Any]) -> list[Violation]:
    """Every violation the policies report on the resources (advisory ones marked so)."""
    resources = [r for r in resources if not r.type.startswith("pulumi:")]
    violations: list[Violation] = []
    for policy in policies:
        mandatory = policy.enforcement_level in (None, EnforcementLevel.MANDATORY)
        if policy.enforcement_level == EnforcementLevel.DISABLED:
            continue

        def reporter(
            resource: RecordedResource | None, name: str = policy.name, mandatory: bool = mandatory
        ) -> Any:
            def report(message: str, urn: str | None = None) -> None:
                target = urn or (resource.urn or resource.name if resource else "stack")
                kind = resource.type if resource else "stack"
                violations.append(Violation(name, target, kind, message, mandatory))

            return report

        if isinstance(policy, ResourceValidationPolicy):
            validators = policy.validate if isinstance(policy.validate, list) else [policy.validate]
            for resource in resources:
                args = ResourceValidationArgs(
                    resource_type=resource.type,
                    # The same read-only proxies the engine's analyzer hands to policies.
                    props=unknown_checking_proxy(resource.inputs),
                    urn=resource.urn,
                    name=resource.name,
                    opts=_options(),
                    provider=None,
                )
                for validate in validators:
                    if validate is None:
                        continue
                    try:
                        _run(validate(args, reporter(resource)))
                    except UnknownValueError:
                        # Unknown until deployed: the engine reports the policy as not applicable.
                        continue
        elif isinstance(policy, StackValidationPolicy) and policy.validate is not None:
            stack = StackValidationArgs(resources=_policy_resources(resources))
            _run(policy.validate(stack, reporter(None)))
    return violations
