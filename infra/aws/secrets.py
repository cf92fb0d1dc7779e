"""The region's secrets: read from Pulumi secret config or generated, stored per node role.

Nodes fetch their role's Secrets Manager secret at boot with their instance profile, so no
secret value ever appears in user data, launch templates or plain stack outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.secret_values import secret_values
from infra.spec import ROLE_SECRETS, ROLE_TAG, Role


def secret_name(env: str, region: str, role: Role) -> str:
    return f"rtcfleet/{env}/{region}/{role.value}"


@dataclass
class SecretsArgs:
    prefix: str
    env: str
    region: str
    # Values given by config or another stack; the rest are generated here.
    provided: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    recovery_window_days: int = 7
    tags: dict[str, str] = field(default_factory=dict)


class Secrets(pulumi.ComponentResource):
    """Every secret of the region as a Pulumi secret, and one Secrets Manager entry per role."""

    values: dict[str, pulumi.Output[str]]
    role_secrets: dict[Role, aws.secretsmanager.Secret]

    def __init__(
        self, name: str, args: SecretsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:aws:Secrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.values = secret_values(args.prefix, args.provided, parent=self)

        self.role_secrets = {}
        for role, names in ROLE_SECRETS.items():
            entry = aws.secretsmanager.Secret(
                f"{args.prefix}-{role.value}",
                name=secret_name(args.env, args.region, role),
                description=f"rtcfleet {role.value} node secrets",
                recovery_window_in_days=args.recovery_window_days,
                tags={**args.tags, ROLE_TAG: role.value},
                opts=child,
            )
            aws.secretsmanager.SecretVersion(
                f"{args.prefix}-{role.value}",
                secret_id=entry.id,
                secret_string=pulumi.Output.json_dumps({name: self.values[name] for name in names}),
                opts=child,
            )
            self.role_secrets[role] = entry
        self.register_outputs({role.value: s.arn for role, s in self.role_secrets.items()})

    def arn(self, role: Role) -> pulumi.Output[str]:
        return self.role_secrets[role].arn
