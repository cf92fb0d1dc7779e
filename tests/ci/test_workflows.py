"""The CI workflows hold the properties the deploy depends on (read from the YAML itself)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.stack_order import PHASES

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def _load(name: str) -> dict[Any, Any]:
    """YAML 1.1 reads the ``on:`` key as ``True``, hence keys of any type."""
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _text(name: str) -> str:
    return (WORKFLOWS / name).read_text()


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def _uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).startswith(f"{action}@")


@pytest.fixture(scope="module")
def deploy() -> dict[str, Any]:
    return _load("deploy.yml")


@pytest.fixture(scope="module")
def stack_job() -> dict[str, Any]:
    return _load("pulumi-stack.yml")["jobs"]["stack"]


def test_deploy_runs_on_merge_to_main(deploy) -> None:
    assert deploy[True]["push"]["branches"] == ["main"]  # PyYAML reads `on:` as True


def test_order_comes_from_rtcfleet_stacks_order(deploy) -> None:
    order = deploy["jobs"]["order"]
    script = "\n".join(str(step.get("run", "")) for step in _steps(order))
    assert "./scripts/rtcfleet stacks order --json" in script
    assert set(order["outputs"]) == set(PHASES)
    for phase in PHASES:
        job = deploy["jobs"][phase]
        assert job["strategy"]["matrix"]["include"] == (
            f"${{{{ fromJSON(needs.order.outputs.{phase}) }}}}"
        )
        assert job["uses"].endswith("/.github/workflows/pulumi-stack.yml")
        assert job["with"] == {"stack": "${{ matrix.stack }}", "env": "${{ matrix.env }}"}


def test_phases_deploy_in_dependency_order_and_failures_stay_local(deploy) -> None:
    jobs = deploy["jobs"]
    assert jobs["images"]["needs"] == "order"
    assert jobs["home"]["needs"] == ["order", "images"]
    assert jobs["replicas"]["needs"] == ["order", "images", "home"]
    assert jobs["global"]["needs"] == ["order", "images", "home", "replicas"]
    for phase in PHASES:
        assert jobs[phase]["strategy"]["fail-fast"] is False
    # A failed region in an earlier phase does not skip the later phases.
    for phase in ("home", "replicas", "global"):
        assert jobs[phase]["if"].startswith("${{ !cancelled()")


def test_one_concurrency_group_per_stack_never_cancelled(stack_job) -> None:
    assert stack_job["concurrency"] == {
        "group": "pulumi-${{ inputs.stack }}",
        "cancel-in-progress": False,
    }


def test_prod_deploys_in_its_protected_environment(stack_job) -> None:
    assert stack_job["environment"] == "${{ inputs.env }}"


def test_least_permissions_and_oidc(deploy, stack_job) -> None:
    assert deploy["permissions"] == {}
    assert _load("pulumi-stack.yml")["permissions"] == {}
    assert deploy["jobs"]["order"]["permissions"] == {"contents": "read"}
    for phase in PHASES:
        assert deploy["jobs"][phase]["permissions"] == {"contents": "read", "id-token": "write"}
    assert stack_job["permissions"] == {"contents": "read", "id-token": "write"}
    aws = next(s for s in _steps(stack_job) if _uses(s, "aws-actions/configure-aws-credentials"))
    assert set(aws["with"]) == {"role-to-assume", "role-session-name", "aws-region"}
    azure = next(s for s in _steps(stack_job) if _uses(s, "azure/login"))
    assert set(azure["with"]) == {"client-id", "tenant-id", "subscription-id"}


def test_up_with_the_policy_pack(stack_job) -> None:
    script = "\n".join(str(step.get("run", "")) for step in _steps(stack_job))
    assert 'pulumi up --yes --stack "$STACK" --policy-pack policy' in script
    assert './scripts/rtcfleet plan --stack "$STACK"' in script


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_no_long_lived_keys_and_every_action_pinned(name: str) -> None:
    text = _text(name)
    assert "secrets." not in text
    for key in ("aws-access-key-id", "aws-secret-access-key", "creds:", "client-secret"):
        assert key not in text
    workflow = _load(name)
    assert workflow["permissions"] == {}
    for job in workflow["jobs"].values():
        assert "permissions" in job
        for step in _steps(job):
            if "uses" in step:
                line = next(
                    line.strip().removeprefix("- ").removeprefix("uses: ")
                    for line in text.splitlines()
                    if f"uses: {step['uses']}" in line
                )
                assert PINNED.match(line), line
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_drill_keeps_its_json_and_summarises_it() -> None:
    workflow = _load("drill.yml")
    assert set(workflow[True]) == {"schedule", "workflow_dispatch"}
    job = workflow["jobs"]["region-outage"]
    script = "\n".join(str(step.get("run", "")) for step in _steps(job))
    assert "rtcfleet drill region-outage --target aws" in script and "--json > drill.json" in script
    assert "GITHUB_STEP_SUMMARY" in script
    upload = next(s for s in _steps(job) if _uses(s, "actions/upload-artifact"))
    assert upload["with"]["path"] == "drill.json"


def test_preview_plans_and_previews_every_stack() -> None:
    workflow = _load("preview.yml")
    assert "pull_request" in workflow[True]
    jobs = workflow["jobs"]
    plan_script = "\n".join(str(s.get("run", "")) for s in _steps(jobs["plan"]))
    assert "rtcfleet stacks order --json" in plan_script
    assert './scripts/rtcfleet plan --stack "$stack"' in plan_script
    preview = jobs["preview"]
    assert preview["strategy"]["fail-fast"] is False
    script = "\n".join(str(s.get("run", "")) for s in _steps(preview))
    assert 'pulumi preview --stack "$STACK" --policy-pack policy' in script
    assert "GITHUB_STEP_SUMMARY" in script
