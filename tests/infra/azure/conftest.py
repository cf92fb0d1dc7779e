"""Plans of the example Azure stacks: the home region and the region replicating from it."""

from __future__ import annotations

import pytest

from infra.plan.runner import Planner, StackPlan

HOME = "prod-azure-westeurope"
REPLICA = "prod-azure-northeurope"


@pytest.fixture(scope="session")
def weu_plan(planner: Planner) -> StackPlan:
    return planner.plan(HOME)


@pytest.fixture(scope="session")
def neu_plan(planner: Planner) -> StackPlan:
    return planner.plan(REPLICA)
