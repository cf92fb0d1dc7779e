"""Every health check the example stacks declare, read from their plans, against booted nodes."""

from __future__ import annotations

import dataclasses
import socket
import urllib.error
import urllib.request

import pytest

from infra.plan.health_checks import DeclaredHealthCheck, declared_health_checks
from infra.plan.runner import Planner
from infra.spec import Role
from rtcfleet.rehearsal.region import BootedNode

STACKS = (
    "dev-aws-us-east-1",
    "prod-aws-us-east-1",
    "prod-azure-westeurope",
    "prod-azure-northeurope",
)


def passes_inside(check: DeclaredHealthCheck, node: BootedNode) -> bool:
    """An extension's probe: from the machine itself, to localhost."""
    url = f"http://127.0.0.1:{check.port}{check.path or '/'}"
    probe = (
        "import sys, urllib.request\n"
        f"try:\n    r = urllib.request.urlopen({url!r}, timeout=5); print(r.status)\n"
        "except Exception as e:\n    print(getattr(e, 'code', 0))\n"
    )
    return node.instance.run("python3", "-c", probe).stdout.strip() == check.matcher


def passes(check: DeclaredHealthCheck, address: str) -> bool:
    """What the load balancer or scale set does: a TCP connect, or an HTTP GET and its status."""
    if check.protocol == "tcp":
        try:
            with socket.create_connection((address, check.port), timeout=3):
                return True
        except OSError:
            return False
    try:
        url = f"http://{address}:{check.port}{check.path or '/'}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.status) == check.matcher
    except urllib.error.HTTPError as failed:
        return str(failed.code) == check.matcher
    except OSError:
        return False


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner()


@pytest.mark.parametrize("stack", STACKS)
def test_declared_health_checks_pass_on_a_booted_node_and_a_wrong_port_fails(
    stack: str, planner: Planner, booted: dict[Role, BootedNode]
) -> None:
    checks = declared_health_checks(planner.plan(stack).resources)
    assert {c.role for c in checks} >= {"gateway"}, checks
    nodes = {node.role.value: node for node in booted.values()}

    def ok(check: DeclaredHealthCheck) -> bool:
        node = nodes[check.role]
        return passes_inside(check, node) if check.local else passes(check, node.address)

    failing = [c for c in checks if not ok(c)]
    for check in checks:
        assert not ok(dataclasses.replace(check, port=check.port + 1)), check
    assert not failing, failing
    print(f"\n{stack}: {len(checks)} declared health checks pass")
