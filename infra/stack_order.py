"""The order in which stacks deploy, derived from the stack settings alone.

A stack deploys after every stack whose outputs it reads. Region stacks read their home
region's outputs (the Postgres writer they replicate) and, without ``rtcfleet:imageId``, the
image stack's; the global stack reads every region's outputs (client load balancers,
networks, transit gateways). So the phases are:

0. ``images``: the image stack (``<env>-image``), read by regions without ``rtcfleet:imageId``;
1. ``home``: region stacks that hold their Postgres writer;
2. ``replicas``: region stacks that replicate from a home region (or, in another cloud than
   the environment's writer, ``rtcfleet:writerStack``, subscribe to it);
3. ``global``: DNS and the private network between the regions, over their outputs.

The CI deploy workflow and a person at a terminal both take the order from here
(``rtcfleet stacks order``). The dependencies are read from the raw stack files, not the
full settings models, so an order exists even while one stack's settings are being fixed;
``rtcfleet plan`` is where settings are validated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.settings import StackName
from infra.settings_errors import SettingsError, config_key
from infra.stack_config import decode_config_value
from infra.stack_files import load_stack_file
from infra.stack_names import image_stack_name, is_global_stack, is_image_stack

PHASES = ("images", "home", "replicas", "global")


class StackOrderError(ValueError):
    """Stacks that cannot be put in a deploy order: a cycle or a missing stack."""


@dataclass(frozen=True)
class StackNode:
    """One stack, the phase it deploys in, and the stacks whose outputs it reads."""

    stack: str
    env: str
    phase: str
    after: tuple[str, ...]


@dataclass(frozen=True)
class DeployOrder:
    """Stacks in deploy order, grouped in phases whose stacks may deploy in parallel."""

    nodes: tuple[StackNode, ...]

    @property
    def order(self) -> list[str]:
        return [node.stack for node in self.nodes]

    def phase(self, name: str) -> list[StackNode]:
        return [node for node in self.nodes if node.phase == name]

    def document(self) -> dict[str, Any]:
        """JSON-ready: the flat order, and per phase the matrix entries CI deploys."""
        return {
            "order": self.order,
            "phases": {
                name: [{"stack": n.stack, "env": n.env} for n in self.phase(name)]
                for name in PHASES
            },
            "stacks": [
                {"stack": n.stack, "env": n.env, "phase": n.phase, "after": list(n.after)}
                for n in self.nodes
            ],
        }


def _value(values: Mapping[str, Any], key: str) -> Any:
    return decode_config_value(values.get(config_key(key)))


def dependencies(stack: str, values: Mapping[str, Any]) -> tuple[str, list[str]]:
    """A stack's phase and the stacks it reads, by the rules of its settings model."""
    if is_image_stack(stack):
        return "images", []
    if is_global_stack(stack):
        regions = _value(values, "regions")
        if not isinstance(regions, list) or not regions:
            raise StackOrderError(f"{stack}: {config_key('regions')} must list region stacks")
        return "global", [str(region) for region in regions]
    try:
        name = StackName.parse(stack)
    except SettingsError as exc:
        raise StackOrderError(str(exc)) from None
    home_region = _value(values, "homeRegion")
    if not home_region:
        raise StackOrderError(f"{stack}: {config_key('homeRegion')} is not set")
    after: list[str] = []
    phase = "home"
    writer = _value(values, "writerStack")
    if writer and str(writer).split("-", 2)[1:2] != [name.cloud]:
        # a subscriber of the environment's writer in another cloud
        phase = "replicas"
        after.append(str(writer))
    elif home_region != name.region:
        phase = "replicas"
        after.append(f"{name.env}-{name.cloud}-{home_region}")
    if not _value(values, "imageId"):
        after.append(str(_value(values, "imageStack") or image_stack_name(name.env)))
    return phase, after


def _env(stack: str) -> str:
    return stack.split("-", 1)[0]


def deploy_order(stacks: Mapping[str, Mapping[str, Any]]) -> DeployOrder:
    """Order stacks given as ``{stack: config values}``; errors name the stacks involved."""
    phases: dict[str, str] = {}
    after: dict[str, list[str]] = {}
    for stack in sorted(stacks):
        phases[stack], after[stack] = dependencies(stack, stacks[stack])
    problems = []
    for stack in sorted(stacks):
        for needed in after[stack]:
            if needed in stacks:
                continue
            # A replica's first dependency is its home stack.
            if phases[stack] == "replicas" and needed == after[stack][0]:
                problems.append(f"region stack {stack} has no home stack {needed}")
            else:
                problems.append(f"{stack} reads outputs of {needed}, which has no stack file")
    if problems:
        raise StackOrderError("; ".join(problems))
    _reject_cycles(after)
    rank = {name: index for index, name in enumerate(PHASES)}
    for stack in sorted(stacks):
        for needed in after[stack]:
            if rank[phases[needed]] >= rank[phases[stack]]:
                raise StackOrderError(
                    f"{stack} ({phases[stack]}) reads outputs of {needed} ({phases[needed]}), "
                    f"which deploys in the same phase or later: set {config_key('imageId')} "
                    "on region stacks, or point rtcfleet:imageStack at a stack of its own"
                )
    nodes = sorted(
        (StackNode(s, _env(s), phases[s], tuple(after[s])) for s in stacks),
        key=lambda node: (rank[node.phase], node.env, node.stack),
    )
    return DeployOrder(tuple(nodes))


def _reject_cycles(after: Mapping[str, Iterable[str]]) -> None:
    state: dict[str, int] = {}

    def visit(stack: str, path: tuple[str, ...]) -> None:
        if state.get(stack) == 2:
            return
        if state.get(stack) == 1:
            cycle = (*path[path.index(stack) :], stack)
            raise StackOrderError(f"stacks read each other's outputs: {' -> '.join(cycle)}")
        state[stack] = 1
        for needed in after.get(stack, ()):
            visit(needed, (*path, stack))
        state[stack] = 2

    for stack in sorted(after):
        visit(stack, ())


def load_stacks(directory: Path, env: str | None = None) -> dict[str, dict[str, Any]]:
    """Every ``Pulumi.<stack>.yaml`` of a directory (of one environment, if given)."""
    stacks = {}
    for path in sorted(directory.glob("Pulumi.*.yaml")):
        stack_file = load_stack_file(path)
        if env is None or _env(stack_file.stack) == env:
            stacks[stack_file.stack] = stack_file.values
    if not stacks:
        raise StackOrderError(f"no stack files in {directory}" + (f" for {env}" if env else ""))
    return stacks


def stacks_order(directory: Path, env: str | None = None) -> DeployOrder:
    return deploy_order(load_stacks(directory, env))


_IMAGE_LINE = re.compile(r"^(?P<indent>\s*)rtcfleet:imageId:.*$", re.MULTILINE)


def set_image_ids(directory: Path, cloud: str, images: Mapping[str, str]) -> list[str]:
    """Point each ``<env>-<cloud>-<region>`` stack that pins an image at ``images[region]``.

    Only the ``rtcfleet:imageId`` line changes, so the files keep their comments and the
    change reads as one line per stack in review. Returns the stacks changed.
    """
    changed = []
    for path in sorted(directory.glob(f"Pulumi.*-{cloud}-*.yaml")):
        stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
        region = stack.split("-", 2)[2]
        if region not in images:
            continue
        text = path.read_text()
        line = f"\\g<indent>rtcfleet:imageId: {images[region]}"
        updated = _IMAGE_LINE.sub(line, text)
        if updated != text:
            path.write_text(updated)
            changed.append(stack)
    return changed
