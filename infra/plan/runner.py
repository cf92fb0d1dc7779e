"""Run a stack program under Pulumi's mocks and evaluate the policy pack on what it declared.

Pulumi keeps its runtime settings, root stack resource and config in process-global state;
every run here resets them and uses its own event loop, so tests and the benchmark can plan
many stacks, one after the other, in one process.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Protocol

import pulumi
import yaml
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import run_pulumi_func

from infra.global_settings import GlobalSettings
from infra.outputs import ROOM_LOOKUP_URL, SIGNALING_URL, VNET_CIDR
from infra.plan.checks import Violation, evaluate
from infra.plan.mocks import RecordedResource, RecordingMocks, Refusal
from infra.settings import RegionSettings, StackName
from infra.settings_errors import SettingsError
from infra.stack_files import StackFile, load_stack_file
from infra.stack_settings import StackSettings, stack_settings

PROJECT = "rtcfleet"
REPO_ROOT = Path(__file__).resolve().parents[2]
STACKS_DIR = REPO_ROOT / "stacks"
# Outputs of stacks whose program is not in this repository yet, answered to stacks reading them.
RECORDED_OUTPUTS_DIR = "offline-outputs"
Program = Callable[[str], Mapping[str, Any]]


class PlanError(RuntimeError):
    """A plan that cannot run for a reason other than the stack's own settings."""


def placeholder(key: str) -> str:
    """What stands in for a ``secure:`` value the plan cannot decrypt."""
    return f"PLACEHOLDER-{key.replace(':', '-')}-not-a-secret"


class StackSource(Protocol):
    def load(self, stack: str) -> StackFile: ...

    def recorded_outputs(self, stack: str) -> Mapping[str, Any] | None: ...


@dataclass
class StackFiles:
    """Stacks from ``stacks/Pulumi.<stack>.yaml``."""

    directory: Path = STACKS_DIR

    def load(self, stack: str) -> StackFile:
        path = self.directory / f"Pulumi.{stack}.yaml"
        if not path.exists():
            raise PlanError(f"no stack file {path}")
        return load_stack_file(path)

    def recorded_outputs(self, stack: str) -> Mapping[str, Any] | None:
        path = self.directory / RECORDED_OUTPUTS_DIR / f"{stack}.yaml"
        if not path.exists():
            return None
        document = yaml.safe_load(path.read_text()) or {}
        outputs = document.get("outputs")
        if not isinstance(outputs, dict):
            raise PlanError(f"{path}: `outputs` must be a mapping")
        return outputs


@dataclass
class StackConfigs:
    """Stacks given as config mappings (benchmarks, tests of settings)."""

    configs: Mapping[str, Mapping[str, Any]]
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def load(self, stack: str) -> StackFile:
        if stack not in self.configs:
            raise PlanError(f"no config for stack {stack}")
        return StackFile(stack, dict(self.configs[stack]), frozenset())

    def recorded_outputs(self, stack: str) -> Mapping[str, Any] | None:
        return self.outputs.get(stack)


@dataclass
class ProgramRun:
    resources: list[RecordedResource]
    exports: dict[str, Any]
    # Creates the cloud's API would refuse (see ``infra.azure.arm_rules``).
    refusals: list[Refusal] = field(default_factory=list)


# What a refused create is reported as among the plan's violations.
CLOUD_API = "cloud-api-refuses"


@dataclass
class StackPlan:
    stack: str
    settings: StackSettings
    resources: list[RecordedResource]
    exports: dict[str, Any]
    violations: list[Violation]
    # Config keys whose ``secure:`` values were replaced by placeholders.
    placeholders: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    # peer region stacks read for the gateways' settings (not deploy-order edges)
    peers: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not any(v.mandatory for v in self.violations)

    def of_type(self, type_token: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_token]

    def named(self, type_token: str, name: str) -> RecordedResource:
        matches = [r for r in self.of_type(type_token) if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} {type_token} named {name!r}")
        return matches[0]


def _config_text(value: Any) -> str:
    """Values as the Pulumi engine hands them to a program: JSON for anything structured."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def run_program(
    stack: str,
    config: Mapping[str, Any],
    secret_keys: Sequence[str] = (),
    stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
    program: Program | None = None,
) -> ProgramRun:
    """Run ``program`` (default: the real stack program) as stack ``stack`` under mocks."""
    if program is None:
        from infra.program import define_stack

        program = define_stack
    mocks = RecordingMocks(stack_outputs)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    exports: dict[str, Any] = {}
    try:
        runtime_settings.ROOT.set(None)
        pulumi.runtime.set_all_config(
            {key: _config_text(value) for key, value in config.items() if value is not None},
            list(secret_keys),
        )
        pulumi.runtime.set_mocks(
            mocks, project=PROJECT, stack=stack, preview=False, organization="organization"
        )
        runtime_settings.SETTINGS.rpc_manager.clear()
        runtime_settings.SETTINGS.outputs.clear()
        dependencies = _record_dependencies(runtime_settings.SETTINGS.monitor)

        async def body() -> None:
            declared = program(stack)
            resolved = await pulumi.Output.from_input(dict(declared)).future()
            exports.update(resolved or {})

        loop.run_until_complete(run_pulumi_func(body))
        monitor = runtime_settings.SETTINGS.monitor
        urns = {reg.id: urn for urn, reg in monitor.get_registered_resources().items()}
    finally:
        runtime_settings.ROOT.set(None)
        asyncio.set_event_loop(None)
        loop.close()
    for resource in mocks.resources:
        resource.urn = urns.get(resource.id, "")
        resource.dependencies = dependencies.get((resource.type, resource.name), [])
    return ProgramRun(mocks.resources, exports, mocks.refusals)


def _record_dependencies(monitor: Any) -> dict[tuple[str, str], list[str]]:
    """Each registration's dependency URNs, which Pulumi's mocks do not hand to ``Mocks``."""
    recorded: dict[tuple[str, str], list[str]] = {}
    register = monitor.RegisterResource

    def register_recording(request: Any) -> Any:
        recorded.setdefault((request.type, request.name), []).extend(request.dependencies)
        return register(request)

    monitor.RegisterResource = register_recording
    return recorded


# The outputs a region reads from its peers (infra.region_program.peer_gateways), by peer stack
# and its settings.
PEER_OUTPUTS = (ROOM_LOOKUP_URL, SIGNALING_URL)
_PEER_EXPORTS: dict[tuple[str, str], dict[str, Any]] = {}


class Planner:
    """Plans stacks from a source, planning the stacks they reference first (once each)."""

    def __init__(self, source: StackSource | None = None, policies: Sequence[Any] | None = None):
        from infra.policy import POLICIES

        self.source: StackSource = source or StackFiles()
        self.policies = list(POLICIES if policies is None else policies)
        self._plans: dict[str, StackPlan] = {}
        self._without_peers: dict[str, StackPlan] = {}

    def plan(self, stack: str, _chain: tuple[str, ...] = (), _peers: bool = True) -> StackPlan:
        """``_peers=False`` plans the stack as if its peers had no outputs yet: what breaks a
        cycle of peers, since a stack's own outputs never depend on its peers'."""
        if stack in self._plans:
            return self._plans[stack]
        if not _peers and stack in self._without_peers:
            return self._without_peers[stack]
        if stack in _chain:
            raise PlanError(f"stacks reference each other: {' -> '.join((*_chain, stack))}")
        stack_file = self.source.load(stack)
        settings = stack_settings(stack, stack_file.values)
        outputs: dict[str, Mapping[str, Any]] = {}
        for reference in settings.referenced_stacks():
            try:
                outputs[reference] = self._outputs_of(reference, (*_chain, stack), _peers)
            except PlanError as exc:
                raise PlanError(f"{stack} reads outputs of {reference}: {exc}") from None
        peers = list(settings.peer_stacks) if isinstance(settings, RegionSettings) else []
        for peer in peers:
            if peer not in outputs:
                outputs[peer] = self._peer_outputs(peer) if _peers else {}
        if isinstance(settings, GlobalSettings):
            self._check_global(settings, outputs)
        config = dict(stack_file.values)
        for key in stack_file.secure_keys:
            config[key] = placeholder(key)
        started = time.perf_counter()
        run = run_program(stack, config, sorted(stack_file.secure_keys), outputs)
        violations = [
            Violation(CLOUD_API, refusal.name, refusal.type, refusal.message)
            for refusal in run.refusals
        ]
        if _peers:
            violations += evaluate(run.resources, self.policies)
        plan = StackPlan(
            stack=stack,
            settings=settings,
            resources=run.resources,
            exports=run.exports,
            violations=violations,
            placeholders=sorted(stack_file.secure_keys),
            references=list(settings.referenced_stacks()),
            peers=peers,
            seconds=time.perf_counter() - started,
        )
        (self._plans if _peers else self._without_peers)[stack] = plan
        return plan

    def _peer_outputs(self, stack: str) -> Mapping[str, Any]:
        """A peer's planned outputs (its own never depend on its peers', so a plan without
        them serves while the full one is not made yet). A peer the source does not hold is
        answered as a stack that exists with no outputs yet, as ``pulumi up`` finds a peer
        before its first deploy."""
        if stack in self._plans:
            return self._plans[stack].exports
        try:
            stack_file = self.source.load(stack)
        except PlanError:
            return self.source.recorded_outputs(stack) or {}
        # what peers read depends on the peer's own settings only: planned once per process
        key = (stack, json.dumps(stack_file.values, sort_keys=True, default=str))
        if key not in _PEER_EXPORTS:
            exports = self.plan(stack, _peers=False).exports
            _PEER_EXPORTS[key] = {name: exports[name] for name in PEER_OUTPUTS if name in exports}
        return _PEER_EXPORTS[key]

    def _outputs_of(
        self, stack: str, chain: tuple[str, ...], peers: bool = True
    ) -> Mapping[str, Any]:
        """A referenced stack's planned outputs; recorded ones for a stack without a file."""
        recorded = self.source.recorded_outputs(stack)
        if recorded is not None and stack not in self._plans:
            try:
                self.source.load(stack)
            except PlanError:
                return recorded
        return self.plan(stack, chain, peers).exports

    def _check_global(
        self, settings: GlobalSettings, outputs: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """The global stack against the regions it names: outputs present, networks agree."""
        from infra.global_stack.program import required_outputs

        private_network = len(settings.regions) > 1
        regions: dict[str, RegionSettings] = {}
        networks: dict[str, IPv4Network] = {}
        for stack in settings.regions:
            cloud = StackName.parse(stack).cloud
            missing = sorted(set(required_outputs(cloud, private_network)) - set(outputs[stack]))
            if missing:
                raise PlanError(f"{stack} does not export {', '.join(missing)}")
            planned = self._plans.get(stack)
            if planned is not None and isinstance(planned.settings, RegionSettings):
                regions[stack] = planned.settings
            elif VNET_CIDR in outputs[stack]:
                networks[stack] = IPv4Network(str(outputs[stack][VNET_CIDR]))
        problems = settings.check_regions(regions, networks) if private_network else []
        if problems:
            raise SettingsError(problems)


def plan_stack(stack: str, source: StackSource | None = None) -> StackPlan:
    """Plan one stack (and, silently, the stacks it reads outputs from)."""
    return Planner(source).plan(stack)


__all__ = [
    "PlanError",
    "Planner",
    "SettingsError",
    "StackConfigs",
    "StackFiles",
    "StackPlan",
    "plan_stack",
    "run_program",
]
