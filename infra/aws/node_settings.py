"""Non-secret settings each node role reads at boot, published as SSM parameters.

Endpoints are only known once the data stores and load balancers exist, so this block comes
after them and before the node groups, whose instance profiles may read only their own entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.spec import ROLE_TAG, Role


def parameter_name(env: str, region: str, role: Role) -> str:
    return f"/rtcfleet/{env}/{region}/{role.value}/settings"


@dataclass
class NodeSettingsArgs:
    prefix: str
    env: str
    region: str
    # Per role, the settings document; values may be outputs of other blocks.
    documents: Mapping[Role, Mapping[str, Any]]
    tags: dict[str, str] = field(default_factory=dict)


class NodeSettings(pulumi.ComponentResource):
    """One SSM parameter per node role holding its JSON settings document."""

    parameters: dict[Role, aws.ssm.Parameter]

    def __init__(
        self, name: str, args: NodeSettingsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:aws:NodeSettings", name, None, opts)
        self.parameters = {}
        for role, document in args.documents.items():
            self.parameters[role] = aws.ssm.Parameter(
                f"{args.prefix}-{role.value}-settings",
                name=parameter_name(args.env, args.region, role),
                type="String",
                tier="Standard",
                value=pulumi.Output.json_dumps(dict(document)),
                description=f"rtcfleet {role.value} node settings (no secrets)",
                tags={**args.tags, ROLE_TAG: role.value},
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({r.value: p.name for r, p in self.parameters.items()})
