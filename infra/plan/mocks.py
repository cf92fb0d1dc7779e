"""A ``pulumi.runtime.Mocks`` that records every resource and answers like the cloud would.

It returns ids, ARNs and endpoints shaped like the real ones (with the provider's region) so
the program's outputs resolve, and answers ``StackReference`` reads from planned stacks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra.azure import arm_rules
from infra.plan import azure_mocks, certificate_mocks

ACCOUNT_ID = "123456789012"
STACK_REFERENCE = "pulumi:pulumi:StackReference"
_ID_PREFIXES = {
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "rtbassoc",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt",
    "aws:ec2transitgateway/transitGateway:TransitGateway": "tgw",
    "aws:ec2transitgateway/vpcAttachment:VpcAttachment": "tgw-attach",
    "aws:ec2transitgateway/peeringAttachment:PeeringAttachment": "tgw-attach",
    "aws:ec2/customerGateway:CustomerGateway": "cgw",
    "aws:ec2/vpnConnection:VpnConnection": "vpn",
}


_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def _unwrap(value: Any) -> tuple[Any, bool]:
    """Plain value, and whether it held a secret (CrossGuard also hands policies plain values)."""
    if isinstance(value, dict):
        if value.get(_SIG) == _SECRET_SIG:
            return _unwrap(value.get("value"))[0], True
        pairs = {k: _unwrap(v) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(s for _, s in pairs.values())
    if isinstance(value, list):
        items = [_unwrap(v) for v in value]
        return [v for v, _ in items], any(s for _, s in items)
    return value, False


def _digest(*parts: str) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()


def _public_ip(seed: str) -> str:
    """A documentation address (RFC 5737) standing in for one the cloud allocates."""
    return f"198.51.100.{int(seed, 16) % 254 + 1}"


def _azure_outputs(typ: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Computed properties of the azure-native resources the plan reads back."""
    digest = _digest(typ, name)
    out: dict[str, Any] = {}
    if "name" not in inputs:
        out["name"] = name
    if typ == "azure-native:network:PublicIPAddress":
        out["ipAddress"] = f"203.0.113.{int(digest[:4], 16) % 254 + 1}"
    return out


@dataclass
class RecordedResource:
    """One resource the program declared, as the engine would have received it."""

    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None
    id: str
    custom: bool
    region: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    urn: str = ""
    # Input properties that held Pulumi secrets (unwrapped in ``inputs``).
    secret_inputs: frozenset[str] = frozenset()
    # URNs of the resources it depends on (explicit ``depends_on`` and through its inputs).
    dependencies: list[str] = field(default_factory=list)

    @property
    def tags(self) -> dict[str, str]:
        tags = self.inputs.get("tags")
        if isinstance(tags, list):
            return {t["key"]: t["value"] for t in tags if isinstance(t, dict) and "key" in t}
        return dict(tags) if isinstance(tags, dict) else {}


@dataclass(frozen=True)
class Refusal:
    """A create the cloud's API would refuse, with the reason it would give."""

    type: str
    name: str
    message: str


class RecordingMocks(pulumi.runtime.Mocks):
    """Records resources; ``stack_outputs`` answers StackReferences by short stack name.

    Azure resources are also judged by ``infra.azure.arm_rules`` as Resource Manager would
    judge the create: what it would refuse lands in ``refusals``.
    """

    def __init__(self, stack_outputs: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.stack_outputs = {name: dict(out) for name, out in (stack_outputs or {}).items()}
        self.resources: list[RecordedResource] = []
        self.refusals: list[Refusal] = []
        self._regions: dict[str, str] = {}

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token.startswith(azure_mocks.PREFIX):
            return azure_mocks.call(args.token, args.args), []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:root"}, []
        return {}, []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs: dict[str, Any] = {}
        secret_inputs = set()
        for key, raw in args.inputs.items():
            inputs[key], secret = _unwrap(raw)
            if secret:
                secret_inputs.add(key)
        if args.typ == STACK_REFERENCE:
            return self._stack_reference(args)
        resource_id = self._id(args.typ, args.name)
        region = self._region(args.provider)
        if args.typ.startswith("pulumi:providers:"):
            # AWS providers name their region, azure-native ones their location.
            location = inputs.get("region") or inputs.get("location")
            if isinstance(location, str):
                self._regions[resource_id] = location
            region = location
        outputs = self._outputs(args.typ, args.name, inputs, resource_id, region)
        if args.typ.startswith(azure_mocks.PREFIX):
            resource_id = azure_mocks.resource_id(args.typ, args.name, inputs)
            outputs = {**outputs, **azure_mocks.outputs(args.typ, args.name, inputs, region)}
        recorded = RecordedResource(
            type=args.typ,
            name=args.name,
            inputs=inputs,
            provider=args.provider or None,
            id=resource_id,
            custom=bool(args.custom),
            region=region,
            outputs=outputs,
            secret_inputs=frozenset(secret_inputs),
        )
        if args.typ.startswith(azure_mocks.PREFIX):
            self._judge(recorded)
        self.resources.append(recorded)
        return resource_id, {**args.inputs, **outputs}

    def _judge(self, resource: RecordedResource) -> None:
        messages = arm_rules.refusals(resource.type, resource.inputs)
        if resource.type == arm_rules.APPLICATION_GATEWAY:
            messages += self._app_gateway_subnet_refusals(resource)
        if resource.type == arm_rules.STORAGE_ACCOUNT:
            subnets = {r.id: r.inputs for r in self.resources if r.type == arm_rules.SUBNET}
            messages += arm_rules.storage_network_rule_refusals(resource.inputs, subnets)
        self.refusals += [Refusal(resource.type, resource.name, m) for m in messages]

    def _app_gateway_subnet_refusals(self, gateway: RecordedResource) -> list[str]:
        """Azure validates the NSG of the subnet an Application Gateway is created in."""
        by_id = {r.id: r for r in self.resources}
        messages = []
        for configuration in gateway.inputs.get("gatewayIPConfigurations") or []:
            subnet = by_id.get(str((configuration.get("subnet") or {}).get("id")))
            nsg_id = ((subnet.inputs.get("networkSecurityGroup") or {}) if subnet else {}).get("id")
            nsg = by_id.get(str(nsg_id))
            if nsg is not None:
                messages += [
                    f"subnet {subnet.name if subnet else '?'} NSG {nsg.name}: {m}"
                    for m in arm_rules.app_gateway_nsg_refusals(nsg.inputs)
                ]
        return messages

    def _stack_reference(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        full_name = str(args.inputs.get("name") or args.resource_id or args.name)
        short = full_name.rsplit("/", 1)[-1]
        if short not in self.stack_outputs:
            raise KeyError(f"no planned outputs for referenced stack {short!r}")
        outputs = self.stack_outputs[short]
        self.resources.append(
            RecordedResource(
                type=STACK_REFERENCE,
                name=args.name,
                inputs={"name": full_name},
                provider=None,
                id=full_name,
                custom=True,
                outputs={"outputNames": sorted(outputs)},
            )
        )
        state = {"name": full_name, "outputs": outputs, "secretOutputNames": []}
        return full_name, state

    def _region(self, provider: str | None) -> str | None:
        if not provider:
            return None
        return self._regions.get(provider.rsplit("::", 1)[-1])

    @staticmethod
    def _id(typ: str, name: str) -> str:
        prefix = _ID_PREFIXES.get(typ)
        digest = _digest(typ, name)
        return f"{prefix}-{digest[:17]}" if prefix else f"{name}-{digest[:8]}"

    @staticmethod
    def _outputs(
        typ: str, name: str, inputs: Mapping[str, Any], resource_id: str, region: str | None
    ) -> dict[str, Any]:
        """Computed properties a real provider would return (names, ARNs, endpoints)."""
        if typ.startswith("azure-native:"):
            return _azure_outputs(typ, name, inputs)
        if typ in certificate_mocks.TYPES:
            return certificate_mocks.outputs(typ, name, inputs, region or "us-east-1", ACCOUNT_ID)
        if typ.startswith("pulumi:providers:") or not typ.startswith(("aws:", "random:")):
            return {}
        digest = _digest(typ, name)
        physical = str(inputs.get("name") or f"{name}-{digest[:7]}")
        region = region or "us-east-1"
        service = typ.split(":")[1].split("/")[0]
        # the resource kind in the ARN, as AWS does: two kinds sharing a name keep distinct ARNs
        kind = typ.split(":")[1].split("/")[-1]
        out: dict[str, Any] = {"arn": f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{kind}/{physical}"}
        if "name" not in inputs:
            out["name"] = physical
        if typ == "random:index/randomPassword:RandomPassword":
            return {"result": f"planned-random-{digest[:24]}"}
        if typ == "aws:rds/instance:Instance":
            identifier = str(inputs.get("identifier") or physical)
            address = f"{identifier}.c{digest[:10]}.{region}.rds.amazonaws.com"
            out |= {
                "identifier": identifier,
                "arn": f"arn:aws:rds:{region}:{ACCOUNT_ID}:db:{identifier}",
                "address": address,
                "endpoint": f"{address}:{inputs.get('port', 5432)}",
            }
        elif typ == "aws:elasticache/replicationGroup:ReplicationGroup":
            host = f"master.{physical}.{digest[:6]}.{region}.cache.amazonaws.com"
            out |= {"primaryEndpointAddress": host, "readerEndpointAddress": "replica." + host[7:]}
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            scheme = "internal-" if inputs.get("internal") else ""
            out |= {
                "dnsName": f"{scheme}{physical}-{digest[:10]}.{region}.elb.amazonaws.com",
                "arnSuffix": f"app/{physical}/{digest[:16]}",
            }
        elif typ == "aws:autoscaling/group:Group":
            out["arn"] = (
                f"arn:aws:autoscaling:{region}:{ACCOUNT_ID}:autoScalingGroup:"
                f"{digest[:8]}:autoScalingGroupName/{physical}"
            )
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            out["latestVersion"] = 1
        elif typ == "aws:ssm/parameter:Parameter":
            out["arn"] = f"arn:aws:ssm:{region}:{ACCOUNT_ID}:parameter{physical}"
        elif typ == "aws:kms/key:Key":
            out |= {
                "keyId": digest[:32],
                "arn": f"arn:aws:kms:{region}:{ACCOUNT_ID}:key/{digest[:32]}",
            }
        elif typ == "aws:ec2transitgateway/transitGateway:TransitGateway":
            out["associationDefaultRouteTableId"] = f"tgw-rtb-{digest[:17]}"
            out["propagationDefaultRouteTableId"] = f"tgw-rtb-{digest[:17]}"
        elif typ == "aws:ec2/vpnConnection:VpnConnection":
            out |= {
                "transitGatewayAttachmentId": f"tgw-attach-{digest[17:34]}",
                "tunnel1Address": _public_ip(digest[:4]),
                "tunnel2Address": _public_ip(digest[4:8]),
                "tunnel1PresharedKey": f"planned-psk-{digest[:20]}",
                "tunnel2PresharedKey": f"planned-psk-{digest[20:40]}",
            }
        elif typ.startswith("aws:iam/"):
            kind = typ.rsplit(":", 1)[-1]
            out["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:{kind[0].lower() + kind[1:]}/{physical}"
        out.setdefault("id", resource_id)
        return out
