"""``rtcfleet reach``: every flow the platform needs, evaluated across an environment's stacks."""

from __future__ import annotations

import time
from pathlib import Path

from infra.plan.runner import STACKS_DIR, PlanError, Planner, StackFiles, StackSource
from infra.reach.analysis import ReachReport, analyse
from infra.settings import RegionSettings

STACK_FILE_PREFIX = "Pulumi."


def environment_stacks(env: str, directory: Path = STACKS_DIR) -> list[str]:
    """Every stack of ``env`` that has a stack file, in name order."""
    names = []
    for path in sorted(directory.glob(f"{STACK_FILE_PREFIX}{env}-*.yaml")):
        names.append(path.name.removeprefix(STACK_FILE_PREFIX).removesuffix(".yaml"))
    return names


def reach(
    env: str,
    stacks: list[str] | None = None,
    source: StackSource | None = None,
    planner: Planner | None = None,
) -> ReachReport:
    """Plan every stack of ``env`` offline and evaluate every flow across them."""
    source = source or StackFiles()
    if stacks is None:
        directory = source.directory if isinstance(source, StackFiles) else STACKS_DIR
        stacks = environment_stacks(env, directory)
    if not stacks:
        raise PlanError(f"no stacks of environment {env!r}")
    planner = planner or Planner(source)
    started = time.perf_counter()
    plans = {stack: planner.plan(stack) for stack in stacks}
    plan_seconds = time.perf_counter() - started
    regions = {s: p.settings for s, p in plans.items() if isinstance(p.settings, RegionSettings)}
    report = analyse(env, {s: p.resources for s, p in plans.items()}, regions)
    report.plan_seconds = plan_seconds
    return report


__all__ = ["ReachReport", "environment_stacks", "reach"]
