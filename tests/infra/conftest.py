"""Fixtures for the Pulumi programs: every run goes through ``infra.plan.runner``.

The runner installs Pulumi's mocks (``set_mocks``) afresh for each program it runs, so a test
never sees a resource or config value from another test's program.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import pytest

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_aws\..*")

from infra.plan.runner import (  # noqa: E402
    STACKS_DIR,
    Planner,
    ProgramRun,
    StackConfigs,
    StackPlan,
    run_program,
)
from infra.settings_errors import SettingsError  # noqa: E402
from infra.stack_files import load_stack_file  # noqa: E402
from infra.stack_settings import settings_from_values  # noqa: E402

EXAMPLE_STACKS = ("dev-aws-us-east-1", "prod-aws-us-east-1", "prod-aws-eu-west-1")
AZURE_EXAMPLE_STACKS = ("prod-azure-westeurope", "prod-azure-northeurope")


@pytest.fixture(scope="session")
def planner() -> Planner:
    """Plans of the example stack files, shared by the session (plans are read-only)."""
    return Planner()


@pytest.fixture(scope="session")
def dev_plan(planner: Planner) -> StackPlan:
    return planner.plan("dev-aws-us-east-1")


@pytest.fixture(scope="session")
def home_plan(planner: Planner) -> StackPlan:
    return planner.plan("prod-aws-us-east-1")


@pytest.fixture(scope="session")
def eu_plan(planner: Planner) -> StackPlan:
    return planner.plan("prod-aws-eu-west-1")


def example_values(stack: str) -> dict[str, Any]:
    return dict(load_stack_file(STACKS_DIR / f"Pulumi.{stack}.yaml").values)


def settings_error(stack: str, **changes: Any) -> SettingsError:
    """The error an example stack's settings raise with ``rtcfleet:<key>`` values changed."""
    values = example_values(stack)
    values.update({f"rtcfleet:{key}": value for key, value in changes.items()})
    with pytest.raises(SettingsError) as caught:
        settings_from_values(stack, values)
    return caught.value


@pytest.fixture
def plan_with() -> Callable[..., StackPlan]:
    """Plan an example stack with some settings changed (``None`` removes a key)."""

    def plan(stack: str, **changes: Any) -> StackPlan:
        configs: dict[str, Mapping[str, Any]] = {
            s: example_values(s) for s in (*EXAMPLE_STACKS, *AZURE_EXAMPLE_STACKS)
        }
        values = dict(configs[stack])
        for key, value in changes.items():
            full = f"rtcfleet:{key}"
            if value is None:
                values.pop(full, None)
            else:
                values[full] = value
        configs[stack] = values
        return Planner(StackConfigs(configs)).plan(stack)

    return plan


@pytest.fixture
def run_component() -> Callable[..., ProgramRun]:
    """Run a program that declares one component, as a stack of its own, under the mocks."""

    def run(program: Callable[[str], Mapping[str, Any]], stack: str = "test-aws-us-east-1"):
        return run_program(stack, {}, program=program)

    return run
